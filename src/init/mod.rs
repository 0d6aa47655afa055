//! `raypack init`: write a recipe for an existing project.
//!
//! Looks at the project as a new user's would be read, and writes what it finds, with what it
//! is less sure of as comments:
//! - the name: pyproject `[project] name` (or poetry's), else the directory's real name, made a
//!   DNS-1035 label;
//! - the dependencies: `requirements.txt`, else pyproject `dependencies` (PEP 621 or
//!   `[tool.poetry.dependencies]`), each pinned to the version in `poetry.lock` / `uv.lock`
//!   when one is there (Ray excepted: it comes from the base image). At a repository root
//!   with no Python project of its own, the one in a subdirectory (`python/`, `app/`, …);
//! - py_modules: package directories the working dir alone would not make importable
//!   (`src/<pkg>`, `<dir>/<pkg>` below a non-package directory such as `libs/` or `python/`);
//! - the base: the default Ray image for the Python that `.python-version` or
//!   `requires-python` asks for;
//! - what runs: Ray Serve applications (`name = X.bind(...)` at module level) become a
//!   RayService, else a script (`main.py`, …) or a `__main__` module a RayJob, and the other
//!   candidates are listed as comments;
//! - excludes: known data directories, and large non-code files (images, notebooks, data,
//!   model weights) with their sizes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::recipe::{self, suggest_dns1035};

mod local;

/// Python versions Ray publishes images for, the default first.
const BASE_PYTHONS: &[&str] = &["3.11", "3.12", "3.10", "3.13"];
/// Files read when looking for Serve applications and `__main__` modules.
const MAX_SCANNED: usize = 20_000;
/// Non-code files of one kind smaller than this in total are not worth an exclude.
const EXCLUDE_AT: u64 = 256 << 10;

/// What `init` found in a project.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Detected {
    pub name: String,
    pub requirements_file: Option<String>,
    pub requirements: Vec<String>,
    /// Where pins came from (`poetry.lock`, `uv.lock`), when they did.
    pub pins_from: Option<String>,
    /// Dependencies init could not write as requirements (git / path), with why.
    pub skipped: Vec<String>,
    pub py_modules: Vec<String>,
    pub entrypoint: Option<String>,
    /// Other commands that could run the project (`python -m pkg`, other scripts).
    pub other_entrypoints: Vec<String>,
    /// Ray Serve applications, as `module:attribute` import paths.
    pub serve_apps: Vec<String>,
    pub excludes: Vec<String>,
    /// Excludes proposed for large non-code files: pattern, bytes, files.
    pub large: Vec<(String, u64, usize)>,
    /// The Python the project asks for (X.Y), and the base chosen for it.
    pub python: Option<String>,
    pub base: String,
    /// The requirement that pins Ray, when the base was chosen to match it.
    pub base_pinned_by: Option<String>,
    /// Dependencies that are other projects of the repository, shipped as py_modules: the
    /// requirement's name and the project's directory (relative).
    pub local: Vec<(String, String)>,
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

fn skipped_dir(name: &str) -> bool {
    name.starts_with('.')
        || matches!(
            name,
            "venv"
                | "env"
                | "__pycache__"
                | "node_modules"
                | "build"
                | "dist"
                | "tests"
                | "test"
                | "site-packages"
        )
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| !skipped_dir(&p.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    v.sort();
    v
}

fn read_toml(path: &Path) -> Option<toml::Table> {
    std::fs::read_to_string(path).ok()?.parse().ok()
}

/// The directory holding the Python project: `dir` itself when it has a pyproject or a
/// requirements file, else the first subdirectory (two levels down at most) that does.
fn project_dir(dir: &Path) -> PathBuf {
    let has = |d: &Path| d.join("pyproject.toml").is_file() || d.join("requirements.txt").is_file();
    if has(dir) {
        return dir.to_path_buf();
    }
    for sub in subdirs(dir) {
        if has(&sub) {
            return sub;
        }
    }
    for sub in subdirs(dir) {
        for inner in subdirs(&sub) {
            if has(&inner) {
                return inner;
            }
        }
    }
    dir.to_path_buf()
}

/// Looks at `dir` and reports what a recipe should say.
pub fn detect(dir: &Path) -> Detected {
    let mut d = Detected::default();
    let pdir = project_dir(dir);
    let rel = |p: &Path| {
        p.strip_prefix(dir)
            .unwrap_or(p)
            .to_string_lossy()
            .to_string()
    };
    let prefix = if pdir == dir {
        String::new()
    } else {
        format!("{}/", rel(&pdir))
    };
    let pyproject = read_toml(&pdir.join("pyproject.toml"));
    let py_name = pyproject.as_ref().and_then(project_name);
    // The directory's real name: `.` and symlinks resolved.
    let dir_name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "app".into());
    d.name = suggest_dns1035(&py_name.unwrap_or(dir_name));

    // Dependencies.
    if pdir.join("requirements.txt").is_file() {
        d.requirements_file = Some(format!("{prefix}requirements.txt"));
    } else if let Some(p) = &pyproject {
        let (reqs, skipped) = pyproject_dependencies(p);
        d.skipped = skipped;
        let pins = locked_versions(&pdir);
        if let Some((file, versions)) = pins {
            d.requirements = reqs.iter().map(|r| pin(r, &versions)).collect::<Vec<_>>();
            if d.requirements != reqs {
                d.pins_from = Some(format!("{prefix}{file}"));
            }
        } else {
            d.requirements = reqs;
        }
    }

    // py_modules: a src layout's contents, package directories below non-package ones.
    for sub in subdirs(dir) {
        if is_package(&sub) {
            continue; // importable from the working dir already
        }
        if sub.file_name().is_some_and(|n| n == "src")
            && recipe::py_modules::expand(dir, "src/*").is_ok()
        {
            d.py_modules.push("src/*".into());
            continue;
        }
        for inner in subdirs(&sub) {
            if is_package(&inner) {
                d.py_modules.push(rel(&inner));
            }
        }
    }
    // Dependencies on other projects of the repository ship as py_modules.
    if d.requirements_file.is_none() {
        with_local_projects(&mut d, dir, &pdir);
    }

    // Python and the base: the project's Python, and the Ray it pins.
    d.python = wanted_python(&pdir, pyproject.as_ref());
    let python = d.python.clone().unwrap_or_else(|| BASE_PYTHONS[0].into());
    d.base = recipe::DEFAULT_BASE.replace("-py311-", &format!("-py{}-", python.replace('.', "")));
    if let Some((req, version)) = d
        .requirements
        .iter()
        .find_map(|r| ray_pin(r).map(|v| (r, v)))
    {
        let default = d.base.clone();
        let default_version = recipe::DEFAULT_BASE
            .split_once(':')
            .and_then(|(_, tag)| tag.split_once('-'))
            .map_or("", |(v, _)| v);
        d.base = default.replace(
            &format!("ray:{default_version}-"),
            &format!("ray:{version}-"),
        );
        if d.base != default {
            d.base_pinned_by = Some(req.clone());
        }
    }

    // What runs.
    let scan = scan(dir, &d.py_modules);
    d.serve_apps = scan.serve_apps;
    for candidate in ["main.py", "app.py", "run.py", "train.py", "job.py"] {
        if dir.join(candidate).is_file() {
            d.entrypoint = Some(format!("python {candidate}"));
            break;
        }
    }
    let mut others = scan.mains;
    if d.entrypoint.is_none() && !others.is_empty() {
        d.entrypoint = Some(others.remove(0));
    }
    d.other_entrypoints = others;

    // Excludes.
    for big in ["data", "checkpoints", "outputs"] {
        if dir.join(big).is_dir() {
            d.excludes.push(format!("{big}/"));
        }
    }
    d.large = scan
        .non_code
        .into_iter()
        .filter(|(_, (bytes, _))| *bytes >= EXCLUDE_AT)
        .map(|(ext, (bytes, n))| (format!("*.{ext}"), bytes, n))
        .collect();
    d.large.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    d
}

/// A pyproject's project name: PEP 621 `[project] name`, else poetry's.
fn project_name(doc: &toml::Table) -> Option<String> {
    let poetry = doc.get("tool").and_then(|t| t.get("poetry"));
    doc.get("project")
        .or(poetry)
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
}

/// The Ray version a requirement pins exactly (`ray==2.36.1`, `ray[default]==2.36.1`).
fn ray_pin(req: &str) -> Option<String> {
    let r = crate::python::requirement::parse(req).ok()?;
    if crate::python::wheel::normalize(r.name.as_ref()) != "ray" {
        return None;
    }
    let Some(pep508_rs::VersionOrUrl::VersionSpecifier(specs)) = &r.version_or_url else {
        return None;
    };
    match specs.iter().collect::<Vec<_>>()[..] {
        [s] if *s.operator() == pep508_rs::pep440_rs::Operator::Equal => {
            Some(s.version().to_string())
        }
        _ => None,
    }
}

/// Replaces requirements naming another project of the repository by that project's modules
/// (py_modules, relative to `dir`) and its own requirements, transitively.
fn with_local_projects(d: &mut Detected, dir: &Path, pdir: &Path) {
    let projects = local::find(dir);
    if projects.is_empty() {
        return;
    }
    let own = pdir.canonicalize().unwrap_or_else(|_| pdir.to_path_buf());
    let mut queue: std::collections::VecDeque<String> = std::mem::take(&mut d.requirements).into();
    let mut shipped = std::collections::BTreeSet::new();
    while let Some(req) = queue.pop_front() {
        let name = crate::python::requirement::parse(&req)
            .map(|r| crate::python::wheel::normalize(r.name.as_ref()))
            .ok();
        let project = name.as_ref().and_then(|n| projects.get(n).map(|p| (n, p)));
        match project {
            Some((name, p)) if p.dir != own => {
                if shipped.insert(name.clone()) {
                    let rel_dir = local::relative(dir, &p.dir);
                    for m in &p.modules {
                        d.py_modules.push(format!("{rel_dir}/{m}"));
                    }
                    d.local.push((name.clone(), rel_dir));
                    queue.extend(p.requirements.iter().cloned());
                }
            }
            _ => {
                if !d.requirements.contains(&req) {
                    d.requirements.push(req);
                }
            }
        }
    }
}

/// Dependencies from pyproject: PEP 621 `dependencies`, else `[tool.poetry.dependencies]`
/// (constraints written as PEP 508). Returns the requirements and what was skipped, with why.
fn pyproject_dependencies(p: &toml::Table) -> (Vec<String>, Vec<String>) {
    if let Some(deps) = p
        .get("project")
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_array())
    {
        let reqs = deps
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        return (reqs, Vec::new());
    }
    let Some(deps) = p
        .get("tool")
        .and_then(|t| t.get("poetry"))
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_table())
    else {
        return (Vec::new(), Vec::new());
    };
    let mut reqs = Vec::new();
    let mut skipped = Vec::new();
    for (name, spec) in deps {
        if name == "python" {
            continue;
        }
        let (version, extras, markers) = match spec {
            toml::Value::String(s) => (s.clone(), Vec::new(), None),
            toml::Value::Table(t) => {
                if let Some(kind) = ["git", "path", "url"].iter().find(|k| t.contains_key(**k)) {
                    skipped.push(format!(
                        "{name}: a {kind} dependency; build it into a wheel and list the wheel, or add it as a py_module"
                    ));
                    continue;
                }
                let extras = t
                    .get("extras")
                    .and_then(|e| e.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    t.get("version")
                        .and_then(|v| v.as_str())
                        .unwrap_or("*")
                        .to_string(),
                    extras,
                    t.get("markers")
                        .and_then(|m| m.as_str())
                        .map(str::to_string),
                )
            }
            _ => {
                skipped.push(format!("{name}: a list of alternatives; write it by hand"));
                continue;
            }
        };
        let mut r = name.clone();
        if !extras.is_empty() {
            r.push_str(&format!("[{}]", extras.join(",")));
        }
        let version = version.trim();
        if !version.is_empty() && version != "*" {
            r.push_str(&poetry_specifier(version));
        }
        if let Some(m) = markers {
            r.push_str(&format!("; {m}"));
        }
        reqs.push(r);
    }
    (reqs, skipped)
}

/// A poetry constraint as PEP 440 specifiers: `^1.2.3` → `>=1.2.3,<2.0.0`, `^0.124.2` →
/// `>=0.124.2,<0.125.0`, `~1.2` → `>=1.2,<1.3`, a bare `1.2.3` → `==1.2.3`.
pub fn poetry_specifier(spec: &str) -> String {
    let parts: Vec<String> = spec
        .split(',')
        .map(|p| {
            let p = p.trim();
            let nums =
                |v: &str| -> Option<Vec<u64>> { v.split('.').map(|n| n.parse().ok()).collect() };
            let upper = |v: &str, at: usize| -> Option<String> {
                let mut n = nums(v)?;
                n.truncate(at + 1);
                *n.get_mut(at)? += 1;
                Some(n.iter().map(u64::to_string).collect::<Vec<_>>().join("."))
            };
            if let Some(v) = p.strip_prefix('^') {
                let at = nums(v)
                    .map(|n| n.iter().position(|x| *x != 0).unwrap_or(n.len() - 1))
                    .unwrap_or(0);
                match upper(v, at) {
                    Some(up) => format!(">={v},<{up}"),
                    None => p.to_string(),
                }
            } else if let Some(v) = p.strip_prefix('~').filter(|v| !v.starts_with('=')) {
                let at = if v.split('.').count() > 1 { 1 } else { 0 };
                match upper(v, at) {
                    Some(up) => format!(">={v},<{up}"),
                    None => p.to_string(),
                }
            } else if p.starts_with(|c: char| c.is_ascii_digit()) {
                format!("=={p}")
            } else {
                p.to_string()
            }
        })
        .collect();
    parts.join(",")
}

/// Versions from `poetry.lock` or `uv.lock` in `dir`: the file's name and name → version.
fn locked_versions(dir: &Path) -> Option<(String, BTreeMap<String, String>)> {
    for file in ["poetry.lock", "uv.lock"] {
        let Some(doc) = read_toml(&dir.join(file)) else {
            continue;
        };
        let versions: BTreeMap<String, String> = doc
            .get("package")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    crate::python::wheel::normalize(p.get("name")?.as_str()?),
                    p.get("version")?.as_str()?.to_string(),
                ))
            })
            .collect();
        if !versions.is_empty() {
            return Some((file.to_string(), versions));
        }
    }
    None
}

/// `req` pinned to its locked version (extras and markers kept), unless it is Ray (the base
/// image's) or not in the lock, or not a plain requirement.
fn pin(req: &str, versions: &BTreeMap<String, String>) -> String {
    let Ok(r) = crate::python::requirement::parse(req) else {
        return req.to_string();
    };
    let name = crate::python::wheel::normalize(r.name.as_ref());
    if name == "ray"
        || r.version_or_url
            .is_some_and(|v| matches!(v, pep508_rs::VersionOrUrl::Url(_)))
    {
        return req.to_string();
    }
    let Some(version) = versions.get(&name) else {
        return req.to_string();
    };
    let mut s = r.name.to_string();
    if !r.extras.is_empty() {
        let extras: Vec<String> = r.extras.iter().map(|e| e.to_string()).collect();
        s.push_str(&format!("[{}]", extras.join(",")));
    }
    s.push_str(&format!("=={version}"));
    if let Some((_, marker)) = req.split_once(';') {
        s.push_str(&format!("; {}", marker.trim()));
    }
    s
}

/// The Python the project asks for: `.python-version` (X.Y), else the first of
/// [`BASE_PYTHONS`] that `requires-python` allows (`None` when nothing narrows it).
fn wanted_python(dir: &Path, pyproject: Option<&toml::Table>) -> Option<String> {
    if let Ok(t) = std::fs::read_to_string(dir.join(".python-version")) {
        let v: Vec<&str> = t.trim().split('.').collect();
        if v.len() >= 2 && v[0] == "3" && v[1].parse::<u32>().is_ok() {
            let xy = format!("3.{}", v[1]);
            if BASE_PYTHONS.contains(&xy.as_str()) {
                return Some(xy);
            }
        }
    }
    let p = pyproject?;
    let spec = p
        .get("project")
        .and_then(|p| p.get("requires-python"))
        .or_else(|| {
            p.get("tool")
                .and_then(|t| t.get("poetry"))
                .and_then(|p| p.get("dependencies"))
                .and_then(|d| d.get("python"))
        })
        .and_then(|v| v.as_str())?;
    use std::str::FromStr;
    let specs = pep508_rs::pep440_rs::VersionSpecifiers::from_str(&poetry_specifier(spec)).ok()?;
    let fits =
        |v: &str| pep508_rs::pep440_rs::Version::from_str(v).is_ok_and(|v| specs.contains(&v));
    if fits(BASE_PYTHONS[0]) {
        return None;
    }
    BASE_PYTHONS.iter().find(|v| fits(v)).map(|v| v.to_string())
}

#[derive(Default)]
struct Scan {
    serve_apps: Vec<String>,
    mains: Vec<String>,
    /// Non-code files by extension: total bytes, count.
    non_code: BTreeMap<String, (u64, usize)>,
}

/// Non-code files that a job seldom reads: images, notebooks, media, documents.
const SELDOM_READ: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "tiff", "ico", "ipynb", "pdf", "mp4", "mov",
    "avi", "mp3", "wav",
];

/// Extensions of files a Ray job rarely needs shipped: images, notebooks, media, documents,
/// data and model weights, archives.
const NON_CODE: &[&str] = &[
    "png",
    "jpg",
    "jpeg",
    "gif",
    "svg",
    "webp",
    "bmp",
    "tiff",
    "ico",
    "ipynb",
    "pdf",
    "mp4",
    "mov",
    "avi",
    "mp3",
    "wav",
    "csv",
    "tsv",
    "parquet",
    "feather",
    "arrow",
    "h5",
    "hdf5",
    "npy",
    "npz",
    "pkl",
    "pickle",
    "pt",
    "pth",
    "ckpt",
    "safetensors",
    "onnx",
    "bin",
    "joblib",
    "zip",
    "tar",
    "gz",
    "tgz",
    "xz",
    "bz2",
    "7z",
    "db",
    "sqlite",
];

/// Walks the project (honouring .gitignore, at most [`MAX_SCANNED`] files) for Serve
/// applications, `__main__` modules and large non-code files.
fn scan(dir: &Path, py_modules: &[String]) -> Scan {
    let mut out = Scan::default();
    let walk = ignore::WalkBuilder::new(dir)
        .hidden(true)
        .filter_entry(|e| {
            !(e.depth() > 0
                && e.file_type().is_some_and(|t| t.is_dir())
                && skipped_dir(&e.file_name().to_string_lossy()))
        })
        .sort_by_file_path(|a, b| a.cmp(b))
        .build();
    let bind = regex::Regex::new(
        r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::[^=]*)?=\s*[A-Za-z_][\w.]*(?:\.options\(.*\))?\.bind\(",
    )
    .expect("regex");
    for entry in walk.flatten().take(MAX_SCANNED) {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(dir) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        let ext = rel.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        if let Some(ext) = ext.as_deref().filter(|e| NON_CODE.contains(e)) {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let slot = out.non_code.entry(ext.to_string()).or_default();
            slot.0 += size;
            slot.1 += 1;
            continue;
        }
        if ext.as_deref() != Some("py") || recipe_file(&rel) {
            continue;
        }
        let Some(module) = module_of(&rel, py_modules) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        if text.len() > 1 << 20 {
            continue;
        }
        // A module that calls serve.run itself at import is a script (its entrypoint is
        // `python -m`), not an import path for a RayService.
        let runs_serve = text
            .lines()
            .any(|l| !l.starts_with([' ', '\t', '#']) && l.contains("serve.run("));
        if !runs_serve {
            for line in text.lines() {
                if let Some(c) = bind.captures(line) {
                    out.serve_apps.push(format!("{module}:{}", &c[1]));
                }
            }
        }
        if let Some(pkg) = module.strip_suffix(".__main__") {
            out.mains.push(format!("python -m {pkg}"));
        } else if text.lines().any(|l| {
            l.starts_with("if __name__ == \"__main__\"")
                || l.starts_with("if __name__ == '__main__'")
        }) {
            if module.contains('.') {
                out.mains.push(format!("python -m {module}"));
            } else {
                out.mains.push(format!("python {rel}"));
            }
        }
    }
    // The likeliest entrypoint first: main, train, run, app, job, then the rest by path.
    let rank = |cmd: &String| {
        let last = cmd
            .trim_end_matches(".py")
            .rsplit(['.', '/', ' '])
            .next()
            .unwrap_or("")
            .to_string();
        ["main", "__main__", "train", "run", "app", "job"]
            .iter()
            .position(|n| *n == last)
            .unwrap_or(usize::MAX)
    };
    out.mains.sort_by_key(|m| (rank(m), m.clone()));
    out
}

fn recipe_file(rel: &str) -> bool {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    rel == "setup.py"
        || file == "conftest.py"
        || file == "tests.py"
        || file.starts_with("test_")
        || file.ends_with("_test.py")
        || rel.starts_with("tests/")
        || rel.contains("/tests/")
}

/// The module a file is importable as from the working dir or a py_module (`None` when a
/// path part is not an identifier).
fn module_of(rel: &str, py_modules: &[String]) -> Option<String> {
    let stem = rel.strip_suffix(".py")?;
    let from_root = py_modules
        .iter()
        .find_map(|m| {
            // A source root (`src/*`): its contents are top-level modules.
            if let Some(root) = m.strip_suffix("/*") {
                return stem.strip_prefix(&format!("{root}/"));
            }
            let parent = m.rsplit_once('/').map_or("", |(p, _)| p);
            stem.strip_prefix(&format!("{m}/"))
                .map(|_| stem.strip_prefix(&format!("{parent}/")).unwrap_or(stem))
        })
        .unwrap_or(stem);
    let mut parts: Vec<&str> = from_root.split('/').collect();
    if parts.last() == Some(&"__init__") {
        parts.pop();
    }
    let ident = |p: &&str| {
        !p.is_empty()
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !p.starts_with(|c: char| c.is_ascii_digit())
    };
    (!parts.is_empty() && parts.iter().all(ident)).then(|| parts.join("."))
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
    if !d.local.is_empty() {
        s.push_str("# Dependencies that are projects of this repository, shipped from source:\n");
        for (name, dir) in &d.local {
            s.push_str(&format!("#   {name}: {dir}\n"));
        }
    }
    if !d.py_modules.is_empty() {
        s.push_str(&format!("py_modules = {}\n", list(&d.py_modules)));
    }
    if !d.excludes.is_empty() || !d.large.is_empty() {
        s.push_str(
            "# Not shipped to the cluster (sizes as found by `raypack init`):\nexcludes = [\n",
        );
        for e in &d.excludes {
            s.push_str(&format!("  {},\n", q(e)));
        }
        // Images, notebooks, media and documents are left out; data, weights and archives
        // only suggested (a job may read them: uncomment what it does not).
        for (pattern, bytes, n) in &d.large {
            let ext = pattern.trim_start_matches("*.");
            let suggest = !SELDOM_READ.contains(&ext);
            s.push_str(&format!(
                "  {}{},  # {} in {n} file{}{}\n",
                if suggest { "# " } else { "" },
                q(pattern),
                crate::units::human_bytes(*bytes),
                if *n == 1 { "" } else { "s" },
                if suggest {
                    "; keep it if the job reads them"
                } else {
                    ""
                }
            ));
        }
        s.push_str("]\n");
    }
    s.push_str("\n[dependencies]\n");
    if let Some(f) = &d.pins_from {
        s.push_str(&format!(
            "# Pinned to the versions in {f} (Ray comes from the base image).\n"
        ));
    }
    for skipped in &d.skipped {
        s.push_str(&format!("# Not listed: {skipped}\n"));
    }
    if let Some(f) = &d.requirements_file {
        s.push_str(&format!("requirements_file = {}\n", q(f)));
    } else {
        s.push_str(&format!("requirements = {}\n", list(&d.requirements)));
    }
    s.push_str("\n[base]\n");
    if let Some(py) = &d.python {
        s.push_str(&format!("# Python {py}, as the project asks.\n"));
    }
    if let Some(req) = &d.base_pinned_by {
        s.push_str(&format!(
            "# The Ray that `{req}` pins (the image's Ray is what runs; change both together).\n"
        ));
    }
    s.push_str(&format!("image = {}\n", q(&d.base)));
    let resources = "head = { cpu = \"2\", memory = \"4Gi\" }\nworkers = [{ group = \"cpu\", replicas = 1, min = 0, max = 4, cpu = \"2\", memory = \"4Gi\" }]\n";
    if let Some(app) = d.serve_apps.first() {
        s.push_str(&format!(
            "\n[cluster]\nkind = \"RayService\"\nserve = {{ import_path = {} }}\n{resources}",
            q(app)
        ));
        for other in &d.serve_apps[1..] {
            s.push_str(&format!(
                "# another Serve application: serve = {{ import_path = {} }}\n",
                q(other)
            ));
        }
        if let Some(e) = &d.entrypoint {
            s.push_str(&format!(
                "# or a RayJob: kind = \"RayJob\" with entrypoint = {}\n",
                q(e)
            ));
        }
    } else if let Some(e) = &d.entrypoint {
        s.push_str(&format!(
            "\n[cluster]\nkind = \"RayJob\"\nentrypoint = {}\n{resources}",
            q(e)
        ));
    } else {
        s.push_str("\n# What runs on the cluster, for `--emit rayjob` / `--submit`:\n# [cluster]\n# kind = \"RayJob\"\n# entrypoint = \"python main.py\"\n");
    }
    for other in &d.other_entrypoints {
        s.push_str(&format!(
            "# another entrypoint: entrypoint = {}\n",
            q(other)
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
        assert_eq!(d.base, recipe::DEFAULT_BASE);
        let (p, _) = init(r, false).unwrap();
        crate::recipe::Recipe::load(&p).unwrap();
        assert!(matches!(init(r, false), Err(InitError::Exists(_))));
    }

    /// Issue 23 #6 and 14 #7: a poetry project below the repository root, with a lock, a Serve
    /// app, a `__main__` module, notebooks and images.
    #[test]
    fn a_poetry_project_below_the_root_with_serve_and_large_files() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("kuberay-mlflow");
        let py = r.join("python");
        std::fs::create_dir_all(py.join("kuberay_mlflow/train")).unwrap();
        std::fs::write(py.join("kuberay_mlflow/__init__.py"), "").unwrap();
        std::fs::write(
            py.join("kuberay_mlflow/serve.py"),
            "from ray import serve\n\n@serve.deployment\nclass D:\n    pass\n\ndeployment = D.bind()\n",
        )
        .unwrap();
        std::fs::write(py.join("kuberay_mlflow/train/__init__.py"), "").unwrap();
        std::fs::write(py.join("kuberay_mlflow/train/__main__.py"), "print(1)\n").unwrap();
        std::fs::write(
            py.join("pyproject.toml"),
            "[tool.poetry]\nname = \"kuberay-mlflow\"\n\n[tool.poetry.dependencies]\npython = \"^3.12\"\nray = {version = \">=2.52.1,<3\", extras = [\"serve\", \"train\"]}\nfastapi = \"^0.124.2\"\nmlflow = \"^3.1\"\nlocal = {path = \"../local\"}\n",
        )
        .unwrap();
        std::fs::write(
            py.join("poetry.lock"),
            "[[package]]\nname = \"fastapi\"\nversion = \"0.124.4\"\n\n[[package]]\nname = \"mlflow\"\nversion = \"3.1.4\"\n\n[[package]]\nname = \"ray\"\nversion = \"2.52.1\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(r.join("docs")).unwrap();
        std::fs::write(r.join("docs/arch.png"), vec![0u8; 300 << 10]).unwrap();
        std::fs::write(r.join("explore.ipynb"), vec![b'x'; 100]).unwrap();
        std::fs::write(r.join("python/lookup.csv"), vec![b'1'; 400 << 10]).unwrap();
        let d = detect(&r);
        assert_eq!(d.name, "kuberay-mlflow");
        assert_eq!(
            d.requirements,
            [
                "fastapi==0.124.4",
                "mlflow==3.1.4",
                "ray[serve,train]>=2.52.1,<3"
            ]
        );
        assert_eq!(d.pins_from.as_deref(), Some("python/poetry.lock"));
        assert!(
            d.skipped[0].starts_with("local: a path dependency"),
            "{:?}",
            d.skipped
        );
        assert_eq!(d.python.as_deref(), Some("3.12"));
        assert_eq!(d.base, "rayproject/ray:2.60.0-py312-cpu");
        assert_eq!(d.py_modules, ["python/kuberay_mlflow"]);
        assert_eq!(d.serve_apps, ["kuberay_mlflow.serve:deployment"]);
        assert_eq!(
            d.entrypoint.as_deref(),
            Some("python -m kuberay_mlflow.train")
        );
        assert_eq!(
            d.large,
            [
                ("*.csv".to_string(), 400 << 10, 1),
                ("*.png".to_string(), 300 << 10, 1)
            ]
        );
        let text = render(&d);
        assert!(
            text.contains("\n  \"*.png\",  # 300.0 KiB in 1 file\n"),
            "{text}"
        );
        // Data may be read by the job: only suggested.
        assert!(
            text.contains(
                "\n  # \"*.csv\",  # 400.0 KiB in 1 file; keep it if the job reads them\n"
            ),
            "{text}"
        );
        assert!(text.contains("kind = \"RayService\""), "{text}");
        let path = r.join("raypack.toml");
        std::fs::write(&path, &text).unwrap();
        let recipe = crate::recipe::Recipe::load(&path).unwrap();
        assert_eq!(
            recipe.cluster.unwrap().serve.unwrap().import_path,
            "kuberay_mlflow.serve:deployment"
        );
    }

    #[test]
    fn poetry_constraints() {
        assert_eq!(poetry_specifier("^0.124.2"), ">=0.124.2,<0.125");
        assert_eq!(poetry_specifier("^1.2.3"), ">=1.2.3,<2");
        assert_eq!(poetry_specifier("^0.0.3"), ">=0.0.3,<0.0.4");
        assert_eq!(poetry_specifier("~1.2"), ">=1.2,<1.3");
        assert_eq!(poetry_specifier("1.2.3"), "==1.2.3");
        assert_eq!(poetry_specifier(">=1,<2"), ">=1,<2");
    }
}
