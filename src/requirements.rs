//! Turning the recipe's dependencies into the inline list a runtime_env carries.
//!
//! Ray reads a `pip: requirements.txt` path on the submitter and hashes `-r` lines literally,
//! so raypack always inlines: recipe `requirements` first, then the lines of
//! `requirements_file` (nested `-r`/`-c` files expanded, `--hash` options dropped because pip
//! demands hashes for all or none), or for a `pylock.toml` one `name==version` per package.
//!
//! It also maps the recipe's dependencies to pinned wheels ([`recipe_wheels`]) through the
//! index options it names ([`sources`]).

use std::path::{Path, PathBuf};

use crate::python::index::IndexClient;
use crate::python::pinned::{
    PinnedError, PinnedWheel, Sources, from_pylock, parse_hashed, resolve_hashed,
};
use crate::python::tags::Target;
use crate::python::wheel::normalize;

#[derive(Debug, thiserror::Error)]
pub enum RequirementsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] crate::python::requirements_txt::RequirementsTxtError),
    #[error("{path}:{line}: {message}")]
    Bad {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Remembers the credentials in the recipe's index URLs for every request to their hosts
/// (one credential path: `lock`, `bake` and the bundle all send them; nothing prints them).
pub fn remember_recipe_credentials(d: &crate::recipe::Dependencies) {
    use crate::python::netrc::remember;
    remember(&d.index_url);
    d.extra_index_urls.iter().for_each(|u| remember(u));
    d.package_indexes.values().for_each(|u| remember(u));
}

/// Whether the recipe's dependencies install without resolving: no inline requirements, and
/// a `requirements_file` that is a pylock.toml or fully `==` + `--hash` pinned.
pub fn is_pinned(recipe: &crate::recipe::Recipe, target: &Target) -> bool {
    let deps = &recipe.dependencies;
    deps.requirements.is_empty()
        && deps.requirements_file.as_ref().is_none_or(|f| {
            f.extension().is_some_and(|e| e == "toml") || parse_hashed(f, target).is_ok()
        })
}

/// The recipe's pinned wheels for `target`: its `requirements_file` (a PEP 751 pylock.toml,
/// or a requirements.txt where every line is `==` with `--hash`, mapped to files through the
/// index). Inline requirements are not pinned, so they are an error here.
pub async fn recipe_wheels(
    recipe: &crate::recipe::Recipe,
    target: &Target,
    client: &IndexClient,
) -> Result<Vec<PinnedWheel>, PinnedError> {
    let deps = &recipe.dependencies;
    if let Some(first) = deps.requirements.first() {
        return Err(PinnedError::InlineUnpinned {
            recipe: recipe.path.display().to_string(),
            requirement: first.clone(),
        });
    }
    let Some(file) = &deps.requirements_file else {
        return Ok(Vec::new());
    };
    if file.extension().is_some_and(|e| e == "toml") {
        from_pylock(file, target)
    } else {
        let reqs = parse_hashed(file, target)?;
        resolve_hashed(client, &reqs, &sources(deps), target).await
    }
}

/// The recipe's index options as pin sources (and their credentials remembered).
pub fn sources(deps: &crate::recipe::Dependencies) -> Sources {
    remember_recipe_credentials(deps);
    Sources {
        index_url: deps.index_url.clone(),
        extra_index_urls: deps.extra_index_urls.clone(),
        find_links: deps.find_links.clone(),
        package_indexes: deps
            .package_indexes
            .iter()
            .map(|(k, v)| (normalize(k), v.clone()))
            .collect(),
    }
}

/// The recipe's index options as pip lines. Credentials in the URLs are dropped: the
/// runtime_env is printed and stored, so the cluster must bring its own (pip.conf, netrc).
pub fn index_lines(recipe: &crate::recipe::Recipe) -> Vec<String> {
    use crate::python::netrc::redact;
    let d = &recipe.dependencies;
    let mut out = Vec::new();
    if d.index_url != crate::recipe::DEFAULT_INDEX {
        out.push(format!("--index-url {}", redact(&d.index_url)));
    }
    for u in &d.extra_index_urls {
        out.push(format!("--extra-index-url {}", redact(u)));
    }
    for u in &d.find_links {
        out.push(format!("--find-links {}", redact(u)));
    }
    out
}

pub fn inline_list(recipe: &crate::recipe::Recipe) -> Result<Vec<String>, RequirementsError> {
    let mut out: Vec<String> = Vec::new();
    let d = &recipe.dependencies;
    remember_recipe_credentials(d);
    out.extend(index_lines(recipe));
    out.extend(d.requirements.iter().cloned());
    if let Some(f) = &d.requirements_file {
        if f.extension().is_some_and(|e| e == "toml") {
            out.extend(pylock_pins(f)?);
        } else {
            out.extend(requirements_txt_lines(f)?);
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|l| seen.insert(l.clone()));
    Ok(out)
}

/// A requirements.txt as inline lines: index options without credentials (the runtime_env
/// is printed and stored), then the requirements without `--hash` options (pip demands
/// hashes for all lines or none). Constraint files are refused.
fn requirements_txt_lines(f: &Path) -> Result<Vec<String>, RequirementsError> {
    use crate::python::netrc::redact;
    let mut out = Vec::new();
    let txt = crate::python::requirements_txt::read(f)?;
    for u in txt.index_url.iter().chain(&txt.extra_index_urls) {
        crate::python::netrc::remember(u);
    }
    if let Some(c) = txt.constraints.first() {
        // Dropping constraints would silently widen what gets installed.
        return Err(RequirementsError::Bad {
            path: c.file.clone(),
            line: c.line,
            message: format!(
                "constraint `{}`: constraint files are not supported by `env --deps pip` yet; put those pins into the requirements themselves, or run `raypack lock`",
                c.spec
            ),
        });
    }
    // Index options without credentials: the runtime_env is printed and stored.
    if let Some(u) = &txt.index_url {
        out.push(format!("--index-url {}", redact(u)));
    }
    if txt.no_index {
        out.push("--no-index".into());
    }
    for u in &txt.extra_index_urls {
        out.push(format!("--extra-index-url {}", redact(u)));
    }
    for u in &txt.find_links {
        out.push(format!("--find-links {}", redact(u)));
    }
    if txt.pre {
        out.push("--pre".into());
    }
    // `--hash` options dropped: pip demands hashes for all lines or none.
    out.extend(txt.requirements.into_iter().map(|l| l.spec));
    Ok(out)
}

fn pylock_pins(path: &Path) -> Result<Vec<String>, RequirementsError> {
    use crate::python::pylock::{PylockError, read};
    let text = std::fs::read_to_string(path).map_err(|source| RequirementsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let packages = read(&text).map_err(|e| RequirementsError::Bad {
        path: path.to_path_buf(),
        line: match &e {
            PylockError::Toml { line, .. } => *line,
            PylockError::Invalid(_) => 1,
        },
        message: match e {
            PylockError::Toml { message, .. } => message,
            PylockError::Invalid(m) => m,
        },
    })?;
    Ok(packages
        .into_iter()
        .map(|p| match p.marker {
            Some(m) => format!("{}=={}; {m}", p.name, p.version),
            None => format!("{}=={}", p.name, p.version),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_files_are_refused_not_dropped() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("constraints.txt"), "urllib3<2\n").unwrap();
        let p = d.path().join("requirements.txt");
        std::fs::write(&p, "requests\n-c constraints.txt\n").unwrap();
        let e = requirements_txt_lines(&p).unwrap_err().to_string();
        assert!(
            e.contains("constraint files") && e.contains("constraints.txt:1"),
            "{e}"
        );
    }

    #[test]
    fn expands_nested_files_drops_hashes_and_credentials() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("base.txt"),
            format!("numpy==2.1.0 \\\n    --hash=sha256:{}\n", "ab".repeat(32)),
        )
        .unwrap();
        std::fs::write(
            d.path().join("req.txt"),
            "# c\n-r base.txt\nrequests>=2.31  # web\n--extra-index-url https://user:TOKEN@x.example/simple\n",
        )
        .unwrap();
        let out = requirements_txt_lines(&d.path().join("req.txt")).unwrap();
        assert_eq!(
            out,
            vec![
                "--extra-index-url https://x.example/simple",
                "numpy==2.1.0",
                "requests>=2.31",
            ]
        );
    }
}
