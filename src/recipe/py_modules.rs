//! `[code] py_modules` entries: what each one ships and under which import name.
//!
//! An entry is a path relative to the recipe, and names one of:
//! - a package directory (`libs/common`): imported by its directory name, `__init__.py` or not
//!   (a namespace package);
//! - a single-file module (`tools/helpers.py`): imported by its stem, `helpers`;
//! - a glob over either (`libs/core/src/*`, `data-lib/*/src/*`): `*`, `?` and `[…]` within a
//!   path component. A source root — a `src/` directory whose *contents* are importable — is
//!   written `src/*`. A glob keeps only what Python can import: directories and `.py` files
//!   whose names are identifiers (`__pycache__`, `*.egg-info`, `__init__.py`, data files are
//!   left out); a glob that keeps nothing is an error.
//!
//! Ray ships each module as its own package and puts it on `sys.path`, so two entries with
//! one import name would shadow each other: that is an error too.

use std::path::{Component, Path, PathBuf};

/// One shipped py_module.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PyModule {
    /// The directory or `.py` file (absolute, normalized).
    pub path: PathBuf,
    /// The import name: the directory's name, or the file's stem.
    pub name: String,
    /// A single-file module (`name.py`) rather than a package directory.
    pub file: bool,
}

/// A Python identifier as the import system needs it (ASCII, as raypack has always required).
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn has_glob(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// Whether `entry` is a glob (some component has `*`, `?` or `[`).
pub fn is_glob(entry: &str) -> bool {
    Path::new(entry)
        .components()
        .any(|c| has_glob(&c.as_os_str().to_string_lossy()))
}

/// What a path is as a py_module, or why it is none.
pub fn classify(path: &Path) -> Result<PyModule, String> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if path.is_dir() {
        if !is_identifier(&file_name) {
            return Err(format!(
                "py_module directory name `{file_name}` is not an importable Python name"
            ));
        }
        return Ok(PyModule {
            path: path.to_path_buf(),
            name: file_name,
            file: false,
        });
    }
    match file_name.strip_suffix(".py") {
        Some(stem) if path.is_file() => {
            if !is_identifier(stem) || stem == "__init__" || stem == "__main__" {
                return Err(format!(
                    "py_module file `{file_name}` is not an importable module name"
                ));
            }
            Ok(PyModule {
                path: path.to_path_buf(),
                name: stem.to_string(),
                file: true,
            })
        }
        _ => Err(format!(
            "`{file_name}` is a file but not a `.py` module; a py_module is a package directory, a `.py` file, or a glob over them (`src/*`)"
        )),
    }
}

/// Why a glob entry yields nothing.
#[derive(Debug, thiserror::Error)]
#[error("matches nothing importable ({looked})")]
pub struct NoMatch {
    /// What was looked at, for the message.
    pub looked: String,
}

/// The paths a glob entry names, relative to `root`, in byte order of their paths: only
/// directories for inner components, and importable modules for the last one.
pub fn expand(root: &Path, entry: &str) -> Result<Vec<PathBuf>, NoMatch> {
    let comps: Vec<String> = Path::new(entry)
        .components()
        .map(|c| match c {
            Component::RootDir => "/".to_string(),
            c => c.as_os_str().to_string_lossy().to_string(),
        })
        .collect();
    let mut current: Vec<PathBuf> = vec![root.to_path_buf()];
    let mut seen_dirs = 0usize;
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for base in &current {
            if comp == "/" {
                next.push(PathBuf::from("/"));
                continue;
            }
            if !has_glob(comp) {
                let p = base.join(comp);
                if p.exists() {
                    next.push(p);
                }
                continue;
            }
            let Ok(matcher) = globset::GlobBuilder::new(comp)
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher())
            else {
                continue;
            };
            let Ok(rd) = std::fs::read_dir(base) else {
                continue;
            };
            seen_dirs += 1;
            let mut names: Vec<_> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| !n.starts_with('.') || comp.starts_with('.'))
                .filter(|n| matcher.is_match(n))
                .collect();
            names.sort();
            for n in names {
                let p = base.join(&n);
                let keep = if last {
                    n != "__pycache__" && classify(&p).is_ok()
                } else {
                    p.is_dir()
                };
                if keep {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    if current.is_empty() {
        return Err(NoMatch {
            looked: if seen_dirs == 0 {
                "no directory on the way exists".into()
            } else {
                format!(
                    "{seen_dirs} director{} searched; it keeps package directories and .py files with importable names",
                    if seen_dirs == 1 { "y" } else { "ies" }
                )
            },
        });
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }

    #[test]
    fn classifies_directories_files_and_refuses_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        touch(&r.join("pkg/__init__.py"));
        touch(&r.join("ns/mod.py"));
        touch(&r.join("one.py"));
        touch(&r.join("data.csv"));
        touch(&r.join("my-pkg/__init__.py"));
        let m = classify(&r.join("pkg")).unwrap();
        assert_eq!((m.name.as_str(), m.file), ("pkg", false));
        assert_eq!(classify(&r.join("ns")).unwrap().name, "ns");
        let m = classify(&r.join("one.py")).unwrap();
        assert_eq!((m.name.as_str(), m.file), ("one", true));
        assert!(
            classify(&r.join("data.csv"))
                .unwrap_err()
                .contains("not a `.py` module")
        );
        assert!(classify(&r.join("my-pkg")).unwrap_err().contains("my-pkg"));
        assert!(classify(&r.join("pkg/__init__.py")).is_err());
    }

    #[test]
    fn globs_keep_importable_modules_in_order() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for f in [
            "lib/python/src/data_processing/__init__.py",
            "lib/ray/src/data_processing_ray/runtime/ray/__init__.py",
            "lib/ray/src/data_processing_ray.egg-info/PKG-INFO",
            "lib/ray/src/__pycache__/x.pyc",
            "lib/ray/src/launch.py",
            "lib/ray/src/README.md",
            "lib/ray/src/.hidden/__init__.py",
            "lib/docs/readme.txt",
        ] {
            touch(&r.join(f));
        }
        let got: Vec<String> = expand(r, "lib/*/src/*")
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().display().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "lib/python/src/data_processing",
                "lib/ray/src/data_processing_ray",
                "lib/ray/src/launch.py",
            ]
        );
        assert_eq!(expand(r, "lib/ray/src/*.py").unwrap().len(), 1);
        let e = expand(r, "lib/docs/*").unwrap_err();
        assert!(e.to_string().contains("1 directory searched"), "{e}");
        let e = expand(r, "nowhere/*").unwrap_err();
        assert!(e.to_string().contains("no directory"), "{e}");
        assert!(is_glob("src/*") && is_glob("a/[ab]c") && !is_glob("src/pkg"));
    }
}
