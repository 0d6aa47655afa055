//! `raypack init`: write a recipe for an existing project.
//!
//! Detects the project name (pyproject `[project] name`, else the directory name, made a
//! DNS-1035 label), dependencies (`requirements.txt`, else pyproject `dependencies`),
//! py_modules candidates (package directories that the working dir alone would not make
//! importable: `src/<pkg>` and `<dir>/<pkg>` below a non-package directory such as `libs/`),
//! and an entrypoint (`main.py`, `app.py`, …).

use std::path::{Path, PathBuf};

use crate::recipe::{self, suggest_dns1035};

/// What `init` found in a project.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detected {
    pub name: String,
    pub requirements_file: Option<String>,
    pub requirements: Vec<String>,
    pub py_modules: Vec<String>,
    pub entrypoint: Option<String>,
    pub excludes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists; edit it, or pass --force to overwrite")]
    Exists(PathBuf),
    #[error("{0} already has a [tool.raypack] table; edit it instead")]
    InPyproject(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn is_package(dir: &Path) -> bool {
    dir.join("__init__.py").is_file()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            !n.starts_with('.')
                && !matches!(
                    n.as_ref(),
                    "venv" | "__pycache__" | "node_modules" | "build" | "dist" | "tests" | "test"
                )
        })
        .collect();
    v.sort();
    v
}

/// Looks at `dir` and reports what a recipe should say.
pub fn detect(dir: &Path) -> Detected {
    let mut d = Detected::default();
    let pyproject: Option<toml::Table> = std::fs::read_to_string(dir.join("pyproject.toml"))
        .ok()
        .and_then(|t| t.parse().ok());
    let py_name = pyproject
        .as_ref()
        .and_then(|p| p.get("project"))
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string);
    let dir_name = std::path::absolute(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "app".into());
    d.name = suggest_dns1035(&py_name.unwrap_or(dir_name));

    if dir.join("requirements.txt").is_file() {
        d.requirements_file = Some("requirements.txt".into());
    } else if let Some(deps) = pyproject
        .as_ref()
        .and_then(|p| p.get("project"))
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_array())
    {
        d.requirements = deps
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
    }

    for sub in subdirs(dir) {
        if is_package(&sub) {
            continue; // importable from the working dir already
        }
        for inner in subdirs(&sub) {
            if is_package(&inner)
                && let Ok(rel) = inner.strip_prefix(dir)
            {
                d.py_modules.push(rel.display().to_string());
            }
        }
    }
    for candidate in ["main.py", "app.py", "run.py", "train.py", "job.py"] {
        if dir.join(candidate).is_file() {
            d.entrypoint = Some(format!("python {candidate}"));
            break;
        }
    }
    for big in ["data", "checkpoints", "outputs"] {
        if dir.join(big).is_dir() {
            d.excludes.push(format!("{big}/"));
        }
    }
    d
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

/// The recipe text for what was detected.
pub fn render(d: &Detected) -> String {
    let mut s = String::new();
    s.push_str(
        "# raypack recipe: see https://github.com/raypack/raypack/blob/main/recipes/README.md\n\n",
    );
    s.push_str(&format!("[project]\nname = {}\n\n", q(&d.name)));
    s.push_str("[code]\nworking_dir = \".\"\n");
    if !d.py_modules.is_empty() {
        s.push_str(&format!("py_modules = {}\n", list(&d.py_modules)));
    }
    if !d.excludes.is_empty() {
        s.push_str(&format!("excludes = {}\n", list(&d.excludes)));
    }
    s.push_str("\n[dependencies]\n");
    if let Some(f) = &d.requirements_file {
        s.push_str(&format!("requirements_file = {}\n", q(f)));
    } else {
        s.push_str(&format!("requirements = {}\n", list(&d.requirements)));
    }
    s.push_str(&format!("\n[base]\nimage = {}\n", q(recipe::DEFAULT_BASE)));
    if let Some(e) = &d.entrypoint {
        s.push_str(&format!(
            "\n[cluster]\nkind = \"RayJob\"\nentrypoint = {}\nhead = {{ cpu = \"2\", memory = \"4Gi\" }}\nworkers = [{{ group = \"cpu\", replicas = 1, min = 0, max = 4, cpu = \"2\", memory = \"4Gi\" }}]\n",
            q(e)
        ));
    }
    s
}

/// Writes `raypack.toml` in `dir`. Returns its path and what was detected.
pub fn init(dir: &Path, force: bool) -> Result<(PathBuf, Detected), InitError> {
    let path = dir.join(recipe::RECIPE_FILE);
    if path.exists() && !force {
        return Err(InitError::Exists(path));
    }
    let py = dir.join(recipe::PYPROJECT_FILE);
    if let Ok(t) = std::fs::read_to_string(&py)
        && t.parse::<toml::Table>()
            .ok()
            .and_then(|p| p.get("tool").and_then(|t| t.get("raypack")).cloned())
            .is_some()
    {
        return Err(InitError::InPyproject(py));
    }
    let d = detect(dir);
    std::fs::write(&path, render(&d)).map_err(|source| InitError::Write {
        path: path.clone(),
        source,
    })?;
    Ok((path, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_layout() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("libs/common")).unwrap();
        std::fs::write(r.join("libs/common/__init__.py"), "").unwrap();
        std::fs::create_dir_all(r.join("pkg")).unwrap();
        std::fs::write(r.join("pkg/__init__.py"), "").unwrap();
        std::fs::write(r.join("main.py"), "").unwrap();
        std::fs::write(
            r.join("pyproject.toml"),
            "[project]\nname = \"My_Proj\"\ndependencies = [\"requests>=2\"]\n",
        )
        .unwrap();
        let d = detect(r);
        assert_eq!(d.name, "my-proj");
        assert_eq!(d.py_modules, vec!["libs/common"]);
        assert_eq!(d.requirements, vec!["requests>=2"]);
        assert_eq!(d.entrypoint.as_deref(), Some("python main.py"));
        let (p, _) = init(r, false).unwrap();
        crate::recipe::Recipe::load(&p).unwrap();
        assert!(matches!(init(r, false), Err(InitError::Exists(_))));
    }
}
