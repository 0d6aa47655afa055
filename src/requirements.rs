//! Turning the recipe's dependencies into the inline list a runtime_env carries.
//!
//! Ray reads a `pip: requirements.txt` path on the submitter and hashes `-r` lines literally,
//! so raypack always inlines: recipe `requirements` first, then the lines of
//! `requirements_file` (nested `-r`/`-c` files expanded, `--hash` options dropped because pip
//! demands hashes for all or none), or for a `pylock.toml` one `name==version` per package.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RequirementsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Bad {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// The inline requirement list for `recipe`'s dependencies.
/// The recipe's index options as pip lines. Credentials in the URLs are dropped: the
/// runtime_env is printed and stored, so the cluster must bring its own (pip.conf, netrc).
pub fn index_lines(recipe: &crate::recipe::Recipe) -> Vec<String> {
    use crate::python::pinned::redact;
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
    out.extend(index_lines(recipe));
    out.extend(d.requirements.iter().cloned());
    if let Some(f) = &d.requirements_file {
        if f.extension().is_some_and(|e| e == "toml") {
            out.extend(pylock_pins(f)?);
        } else {
            read_requirements_txt(f, &mut out, 0)?;
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|l| seen.insert(l.clone()));
    Ok(out)
}

fn read_requirements_txt(
    path: &Path,
    out: &mut Vec<String>,
    depth: usize,
) -> Result<(), RequirementsError> {
    let text = std::fs::read_to_string(path).map_err(|source| RequirementsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // Join backslash continuations first.
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    for (i, raw) in joined.lines().enumerate() {
        let line = match raw.find(" #") {
            Some(p) => &raw[..p],
            None => raw,
        }
        .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "-r" | "--requirement" | "-c" | "--constraint" => {
                let Some(target) = words.get(1) else {
                    return Err(RequirementsError::Bad {
                        path: path.to_path_buf(),
                        line: i + 1,
                        message: format!("`{}` needs a file name", words[0]),
                    });
                };
                if depth > 10 {
                    return Err(RequirementsError::Bad {
                        path: path.to_path_buf(),
                        line: i + 1,
                        message: "requirement files nest more than 10 deep".into(),
                    });
                }
                if words[0].contains('c') {
                    // Dropping constraints would silently widen what gets installed.
                    return Err(RequirementsError::Bad {
                        path: path.to_path_buf(),
                        line: i + 1,
                        message: format!(
                            "constraint files (`{line}`) are not supported yet; put those pins into the requirements themselves"
                        ),
                    });
                }
                let nested = path.parent().unwrap_or(Path::new(".")).join(target);
                read_requirements_txt(&nested, out, depth + 1)?;
            }
            w if w.starts_with("--hash") => {}
            w if w.starts_with('-') => out.push(line.to_string()),
            _ => {
                let kept: Vec<&str> = words
                    .iter()
                    .copied()
                    .filter(|w| !w.starts_with("--hash"))
                    .collect();
                out.push(kept.join(" "));
            }
        }
    }
    Ok(())
}

fn pylock_pins(path: &Path) -> Result<Vec<String>, RequirementsError> {
    let text = std::fs::read_to_string(path).map_err(|source| RequirementsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| RequirementsError::Bad {
            path: path.to_path_buf(),
            line: e
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .unwrap_or(1),
            message: e.message().to_string(),
        })?;
    let mut out = Vec::new();
    for p in doc
        .get("packages")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        let name = p.get("name").and_then(|v| v.as_str());
        let version = p.get("version").and_then(|v| v.as_str());
        match (name, version) {
            (Some(n), Some(v)) => {
                let marker = p.get("marker").and_then(|m| m.as_str());
                out.push(match marker {
                    Some(m) => format!("{n}=={v}; {m}"),
                    None => format!("{n}=={v}"),
                });
            }
            _ => {
                return Err(RequirementsError::Bad {
                    path: path.to_path_buf(),
                    line: 1,
                    message: "a [[packages]] entry lacks `name` or `version`".into(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_files_are_refused_not_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("requirements.txt");
        std::fs::write(&p, "requests\n-c constraints.txt\n").unwrap();
        let mut out = Vec::new();
        let e = read_requirements_txt(&p, &mut out, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("constraint files") && e.contains(":2"), "{e}");
    }

    #[test]
    fn expands_nested_files_and_drops_hashes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("base.txt"),
            "numpy==2.1.0 \\\n    --hash=sha256:abc\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("req.txt"),
            "# c\n-r base.txt\nrequests>=2.31  # web\n--extra-index-url https://x/simple\n",
        )
        .unwrap();
        let mut out = Vec::new();
        read_requirements_txt(&d.path().join("req.txt"), &mut out, 0).unwrap();
        assert_eq!(
            out,
            vec![
                "numpy==2.1.0",
                "requests>=2.31",
                "--extra-index-url https://x/simple"
            ]
        );
    }
}
