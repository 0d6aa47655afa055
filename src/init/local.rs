//! Local projects: in a monorepo, the other Python projects of the repository that a project
//! depends on by name (`data-prep-toolkit-ray==0.2.2.dev1` where
//! `data-processing-lib/ray/pyproject.toml` is `name = "data_prep_toolkit_ray"`).
//!
//! Such a dependency is usually not on any index at that version (the monorepo's CI builds it),
//! so `init` ships its source as py_modules instead — `src/*` for a src layout, else its
//! package directories — and lists *its* dependencies in the project's place, transitively.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// How far up `init` looks for the repository root (`.git`).
const MAX_UP: usize = 8;
/// How deep below the root it looks for `pyproject.toml` files.
const MAX_DEPTH: usize = 7;
/// At most this many directory entries are looked at.
const MAX_ENTRIES: usize = 50_000;

/// Another Python project of the repository.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalProject {
    /// Its directory (absolute).
    pub dir: PathBuf,
    /// Its importable modules, relative to `dir` (`src/*`, or package directories).
    pub modules: Vec<String>,
    /// Its PEP 621 dependencies (poetry's too), as written.
    pub requirements: Vec<String>,
}

/// The repository root above `dir`: the nearest ancestor (itself included) holding `.git`.
fn repo_root(dir: &Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    dir.ancestors()
        .take(MAX_UP + 1)
        .find(|a| a.join(".git").exists())
        .map(Path::to_path_buf)
}

/// Every Python project of the repository that holds `dir`, by normalized name (the first in
/// path order wins). Empty outside a repository.
pub fn find(dir: &Path) -> BTreeMap<String, LocalProject> {
    let mut out = BTreeMap::new();
    let Some(root) = repo_root(dir) else {
        return out;
    };
    let walk = ignore::WalkBuilder::new(&root)
        .hidden(true)
        .max_depth(Some(MAX_DEPTH))
        .filter_entry(|e| {
            !(e.depth() > 0
                && e.file_type().is_some_and(|t| t.is_dir())
                && super::skipped_dir(&e.file_name().to_string_lossy()))
        })
        .sort_by_file_path(|a, b| a.cmp(b))
        .build();
    for entry in walk.flatten().take(MAX_ENTRIES) {
        if entry.file_name() != crate::recipe::PYPROJECT_FILE
            || !entry.file_type().is_some_and(|t| t.is_file())
        {
            continue;
        }
        let Some(doc) = super::read_toml(entry.path()) else {
            continue;
        };
        let Some(name) = super::project_name(&doc) else {
            continue;
        };
        let pdir = entry.path().parent().unwrap_or(&root).to_path_buf();
        let modules = modules_of(&pdir);
        if modules.is_empty() {
            continue;
        }
        let (requirements, _) = super::pyproject_dependencies(&doc);
        out.entry(crate::python::wheel::normalize(&name))
            .or_insert(LocalProject {
                dir: pdir,
                modules,
                requirements,
            });
    }
    out
}

/// A project directory's importable code: `src/*` for a src layout (when `src/` is not a
/// package itself and holds something importable), else its top-level package directories.
pub fn modules_of(pdir: &Path) -> Vec<String> {
    let src = pdir.join("src");
    if src.is_dir()
        && !src.join("__init__.py").exists()
        && crate::recipe::py_modules::expand(pdir, "src/*").is_ok()
    {
        return vec!["src/*".into()];
    }
    super::subdirs(pdir)
        .into_iter()
        .filter(|d| super::is_package(d))
        .filter_map(|d| {
            let n = d.file_name()?.to_string_lossy().to_string();
            crate::recipe::py_modules::is_identifier(&n).then_some(n)
        })
        .collect()
}

/// `to` relative to `from` (both made absolute and canonical where they exist), with `..`
/// where it must climb: `../../lib/src/*`. `/`-separated.
pub fn relative(from: &Path, to: &Path) -> String {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let (from, to) = (canon(from), canon(to));
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); f.len() - common];
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().to_string()),
    );
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_and_descend() {
        assert_eq!(
            relative(Path::new("/r/t/u/noop/ray"), Path::new("/r/lib/ray")),
            "../../../../lib/ray"
        );
        assert_eq!(relative(Path::new("/r"), Path::new("/r/a/b")), "a/b");
        assert_eq!(relative(Path::new("/r"), Path::new("/r")), ".");
    }
}
