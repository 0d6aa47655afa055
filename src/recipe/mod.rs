//! The project recipe: `raypack.toml`, or `[tool.raypack]` in `pyproject.toml`.
//!
//! [`Recipe::discover`] finds and loads the recipe for a directory; [`Recipe::load`] reads one
//! file. Loading parses strictly (unknown keys are errors) and then validates every value, so a
//! [`Recipe`] in hand is known good: names are DNS-1035 labels, paths exist and are resolved
//! against the recipe's directory, requirements are valid PEP 508, URLs parse.
//!
//! ```no_run
//! let recipe = raypack::recipe::Recipe::discover(std::path::Path::new("examples/hello")).unwrap();
//! println!("{} ships {}", recipe.name, recipe.code.working_dir.display());
//! ```

mod diag;
pub mod py_modules;
pub mod schema;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use diag::{Problem, display_path};
use diag::{Reporter, explain_toml_error};
pub use py_modules::PyModule;
pub use schema::ClusterKind;
use schema::*;
use toml::Spanned;
use validate::*;

use crate::oci::reference::{Reference, is_valid_tag};
use crate::store::StoreUrl;

pub const RECIPE_FILE: &str = "raypack.toml";
pub const PYPROJECT_FILE: &str = "pyproject.toml";
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";
pub const DEFAULT_APP_DIR: &str = "/home/ray/app";
pub const DEFAULT_BASE: &str = "rayproject/ray:2.60.0-py311-cpu";

/// Errors from finding or reading a recipe.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error(
        "no recipe in {dir}: expected {RECIPE_FILE} or a [tool.raypack] table in {PYPROJECT_FILE}"
    )]
    NotFound { dir: PathBuf },
    #[error("{path}:{line}:{col}: not valid UTF-8 (byte 0x{byte:02x}); save the file as UTF-8")]
    Encoding {
        path: PathBuf,
        line: usize,
        col: usize,
        byte: u8,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {} problem{} in the recipe", problems.len(), if problems.len() == 1 { "" } else { "s" })]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

/// A validated recipe. Paths are absolute.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The file the recipe came from.
    pub path: PathBuf,
    /// The directory relative paths resolve against.
    pub root: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub code: Code,
    pub dependencies: Dependencies,
    pub base: Base,
    pub image: Image,
    pub env: EnvSettings,
    pub cluster: Option<Cluster>,
    /// `[nfs]`: the shared volume `raypack env --nfs` publishes to.
    pub nfs: Option<Nfs>,
}

/// `[nfs]`: where a shared volume is mounted (on the build host and in every Ray pod, at the
/// same path) and the Kubernetes volume behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nfs {
    /// The mount path (absolute); `env --nfs PATH` overrides it.
    pub path: Option<PathBuf>,
    /// The volume's source, for `--emit`.
    pub volume: Option<NfsVolume>,
}

/// The Kubernetes volume behind `[nfs] path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NfsVolume {
    /// An existing PersistentVolumeClaim.
    Claim(String),
    /// An NFS export.
    Server {
        /// The NFS server.
        server: String,
        /// The exported path.
        export: String,
    },
}

#[derive(Debug, Clone)]
pub struct Code {
    pub working_dir: PathBuf,
    /// Shipped modules, globs expanded, in recipe order.
    pub py_modules: Vec<PyModule>,
    pub excludes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Dependencies {
    /// PEP 508 requirement strings, as written (validated).
    pub requirements: Vec<String>,
    pub requirements_file: Option<PathBuf>,
    pub index_url: String,
    pub extra_index_urls: Vec<String>,
    pub find_links: Vec<String>,
    pub package_indexes: BTreeMap<String, String>,
    /// `None`: the bake default (6 dependency layers).
    pub max_layers: Option<usize>,
    /// The lock may replace the base's Ray (by default a hard pin: the cluster runs it).
    pub replace_ray: bool,
}

#[derive(Debug, Clone)]
pub struct Base {
    pub image: String,
    pub reference: Reference,
    /// The first of [`Base::platforms`]: the one single-platform commands (`env`) use.
    pub platform: String,
    /// Every platform bake builds for (`[base] platforms`, else `[base] platform`); bake makes
    /// a multi-platform image when there are several.
    pub platforms: Vec<String>,
    pub python: Option<String>,
    pub python_version: Option<String>,
    pub site_packages: Option<String>,
    pub user: Option<String>,
    pub manylinux: Option<String>,
}

/// An SBOM document format (`[image] sbom`); the documents are written by `bake::sbom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    Spdx,
    /// CycloneDX 1.6 JSON.
    CycloneDx,
}

impl SbomFormat {
    /// `spdx` or `cyclonedx` (as the recipe and the CLI spell them).
    pub fn parse(s: &str) -> Option<SbomFormat> {
        match s.to_ascii_lowercase().as_str() {
            "spdx" => Some(SbomFormat::Spdx),
            "cyclonedx" | "cdx" => Some(SbomFormat::CycloneDx),
            _ => None,
        }
    }

    /// The media type: the referrer's `artifactType` and its layer's media type.
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "application/spdx+json",
            SbomFormat::CycloneDx => "application/vnd.cyclonedx+json",
        }
    }

    /// The file suffix (`.spdx.json`, `.cdx.json`).
    pub fn suffix(self) -> &'static str {
        match self {
            SbomFormat::Spdx => ".spdx.json",
            SbomFormat::CycloneDx => ".cdx.json",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Image {
    pub repository: Option<String>,
    pub tags: Vec<String>,
    pub app_dir: String,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Compile `.pyc` files into the dependency layers (default: yes).
    pub compile_bytecode: bool,
    /// The SBOM formats every bake writes (default: SPDX; empty: none).
    pub sbom: Vec<SbomFormat>,
    /// How bake compresses the layers it adds (default: gzip).
    pub compression: crate::oci::media::Compression,
    /// Where bake's shared layer cache is (default: the repository it pushes to).
    pub cache: LayerCache,
}

/// Where `bake` finds and records dependency layers by content key (`[image] cache`,
/// `bake --cache`); see `bake::shared_cache`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum LayerCache {
    /// The repository the image is pushed to (none when it is not pushed).
    #[default]
    Target,
    /// No shared cache.
    Off,
    /// This registry repository (`REGISTRY/REPO`, no tag).
    Registry(crate::oci::reference::Reference),
    /// This object-store prefix (`s3://`, `gs://`, `file://`).
    Store(raypack_store::StoreUrl),
}

impl LayerCache {
    /// `none`, a registry repository or an object-store URL; the error says what is wrong.
    pub fn parse(s: &str) -> Result<LayerCache, String> {
        if s == "none" {
            return Ok(LayerCache::Off);
        }
        if s.contains("://") {
            return raypack_store::StoreUrl::parse(s)
                .map(LayerCache::Store)
                .map_err(|e| format!("`{s}`: {e}"));
        }
        match crate::oci::reference::Reference::parse(s) {
            Ok(r) if r.tag.is_some() || r.digest.is_some() => Err(format!(
                "`{s}` carries a tag or digest; the cache's entries are tagged by key, so write the repository alone"
            )),
            Ok(r) => Ok(LayerCache::Registry(r)),
            Err(e) => Err(format!("`{s}`: {e}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EnvSettings {
    pub store: Option<StoreUrl>,
    pub env_vars: BTreeMap<String, String>,
    pub python_version: Option<String>,
    pub setup_timeout_seconds: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub kind: ClusterKind,
    /// The Kubernetes metadata.name (defaults to the project name).
    pub name: String,
    pub namespace: Option<String>,
    pub entrypoint: Option<String>,
    pub ray_version: Option<String>,
    pub image: Option<String>,
    pub head: Resources,
    pub workers: Vec<WorkerGroup>,
    pub serve: Option<Serve>,
    pub shutdown_after_job_finishes: bool,
    pub ttl_seconds_after_finished: Option<i64>,
    pub active_deadline_seconds: Option<i64>,
    pub service_account: Option<String>,
    pub image_pull_secrets: Vec<String>,
    pub autoscaling: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub gpu: Option<u32>,
    pub ray_start_params: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct WorkerGroup {
    pub group: String,
    pub replicas: i64,
    pub min: i64,
    pub max: i64,
    pub resources: Resources,
}

#[derive(Debug, Clone)]
pub struct Serve {
    pub import_path: String,
    pub name: String,
    pub route_prefix: String,
}

/// The project's `requires-python` excludes the base's Python.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{}: the project requires Python {requires}, but the base {base} has Python {python}; pick a base with a matching Python (e.g. a -py3XX tag) or relax requires-python",
    file.display()
)]
pub struct PythonMismatch {
    /// The file that says `requires-python`.
    pub file: PathBuf,
    pub requires: String,
    pub base: String,
    pub python: String,
}

impl Recipe {
    /// Finds the recipe for `dir`: `raypack.toml` wins over `pyproject.toml`'s `[tool.raypack]`.
    pub fn discover(dir: &Path) -> Result<Recipe, RecipeError> {
        let own = dir.join(RECIPE_FILE);
        if own.is_file() {
            return Recipe::load(&own);
        }
        let py = dir.join(PYPROJECT_FILE);
        if py.is_file() {
            let text = read(&py)?;
            if has_tool_raypack(&text) {
                return Recipe::from_text(&py, &text);
            }
        }
        Err(RecipeError::NotFound {
            dir: dir.to_path_buf(),
        })
    }

    /// Loads one recipe file (`*.toml`; a file named `pyproject.toml` is read for `[tool.raypack]`).
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = read(path)?;
        Recipe::from_text(path, &text)
    }

    /// Parses and validates recipe text that was read from `path`.
    pub fn from_text(path: &Path, text: &str) -> Result<Recipe, RecipeError> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut rep = Reporter::new(&path, text);
        let is_pyproject = path.file_name().is_some_and(|n| n == PYPROJECT_FILE);
        let raw = if is_pyproject {
            match toml::from_str::<RawPyproject>(text) {
                Ok(p) => match p.tool.and_then(|t| t.raypack) {
                    Some(r) => Some(r),
                    None => {
                        rep.error(0..0, "pyproject.toml has no [tool.raypack] table", Some("add [tool.raypack.project] with name = \"…\", or run `raypack init`".into()));
                        None
                    }
                },
                Err(e) => {
                    toml_problem(&mut rep, &e);
                    None
                }
            }
        } else {
            match toml::from_str::<RawRecipe>(text) {
                Ok(r) => Some(r),
                Err(e) => {
                    toml_problem(&mut rep, &e);
                    None
                }
            }
        };
        let recipe = raw.map(|raw| validate(&path, raw, &mut rep));
        match recipe {
            Some(r) if rep.is_clean() => Ok(r),
            _ => Err(RecipeError::Invalid {
                file: display_path(&path),
                problems: rep.problems,
            }),
        }
    }

    /// The project's `requires-python` (PEP 621 `[project]`, else poetry's
    /// `[tool.poetry.dependencies] python`) from `pyproject.toml` next to the recipe, with the
    /// file it came from.
    pub fn requires_python(&self) -> Option<(String, PathBuf)> {
        let file = self.root.join(PYPROJECT_FILE);
        let doc: toml::Table = std::fs::read_to_string(&file).ok()?.parse().ok()?;
        let pep621 = doc
            .get("project")
            .and_then(|p| p.get("requires-python"))
            .and_then(|v| v.as_str());
        let poetry = doc
            .get("tool")
            .and_then(|t| t.get("poetry"))
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.get("python"))
            .and_then(|v| v.as_str());
        pep621.or(poetry).map(|s| (s.trim().to_string(), file))
    }

    /// Whether the base's Python `3.X` satisfies the project's `requires-python`; the error
    /// names both and where the requirement is written.
    pub fn check_python(&self, python_version: &str) -> Result<(), PythonMismatch> {
        let Some((spec, file)) = self.requires_python() else {
            return Ok(());
        };
        let specifiers = poetry_to_pep440(&spec);
        let parsed = <pep508_rs::pep440_rs::VersionSpecifiers as FromStr>::from_str(&specifiers);
        let version = <pep508_rs::pep440_rs::Version as FromStr>::from_str(python_version);
        match (parsed, version) {
            (Ok(s), Ok(v)) if !s.contains(&v) => Err(PythonMismatch {
                file,
                requires: spec,
                base: self.base.image.clone(),
                python: python_version.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The directory raypack keeps its state in (`.raypack/` next to the recipe).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".raypack")
    }
}

fn read(path: &Path) -> Result<String, RecipeError> {
    let bytes = std::fs::read(path).map_err(|source| RecipeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        // Where the bad byte is, as line:column (TOML files are UTF-8 only).
        let ok = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = ok.iter().filter(|b| **b == b'\n').count() + 1;
        let col = std::str::from_utf8(ok)
            .map(|t| t.rsplit('\n').next().unwrap_or("").chars().count() + 1)
            .unwrap_or(1);
        RecipeError::Encoding {
            path: path.to_path_buf(),
            line,
            col,
            byte: e.as_bytes()[ok.len()],
        }
    })
}

fn has_tool_raypack(text: &str) -> bool {
    toml::from_str::<RawPyproject>(text)
        .map(|p| p.tool.is_some_and(|t| t.raypack.is_some()))
        .unwrap_or_else(|_| text.contains("[tool.raypack"))
}

fn toml_problem(rep: &mut Reporter, e: &toml::de::Error) {
    let (msg, help) = explain_toml_error(e.message());
    rep.error(e.span().unwrap_or(0..0), msg, help);
}

/// A span that points inside a quoted string value rather than at its opening quote.
fn inner(s: &Spanned<String>) -> std::ops::Range<usize> {
    let r = s.span();
    if r.end > r.start + 1 {
        r.start + 1..r.end - 1
    } else {
        r
    }
}

fn is_dns1035(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn is_dns1123(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Suggests a DNS-1035 label close to `s`.
pub fn suggest_dns1035(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out
        .trim_matches('-')
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start_matches('-');
    let out = if out.is_empty() {
        "app".to_string()
    } else {
        out.to_string()
    };
    out.chars()
        .take(47)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

static QUANTITY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$").unwrap()
});

fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Lexically removes `.` and `..` components (paths need not exist).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Poetry's `^3.12` / `~3.12` constraints as PEP 440 specifiers (others unchanged).
fn poetry_to_pep440(spec: &str) -> String {
    spec.split(',')
        .map(|part| {
            let p = part.trim();
            let bump = |v: &str, at: usize| -> Option<String> {
                let mut nums: Vec<u64> = v
                    .split('.')
                    .map(|n| n.parse().ok())
                    .collect::<Option<_>>()?;
                nums.truncate(at + 1);
                *nums.get_mut(at)? += 1;
                Some(
                    nums.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join("."),
                )
            };
            if let Some(v) = p.strip_prefix('^') {
                match bump(v, 0) {
                    Some(up) => format!(">={v}, <{up}"),
                    None => p.to_string(),
                }
            } else if let Some(v) = p.strip_prefix('~').filter(|v| !v.starts_with('=')) {
                match bump(v, 1.min(v.split('.').count().saturating_sub(1))) {
                    Some(up) => format!(">={v}, <{up}"),
                    None => p.to_string(),
                }
            } else {
                p.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `/`, a home directory (`$HOME`, `/root`, `/home/NAME`), or the directory of homes.
fn is_broad_dir(dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let home = std::env::var_os("HOME").map(PathBuf::from);
    dir == Path::new("/")
        || dir == Path::new("/root")
        || dir == Path::new("/home")
        || dir.parent() == Some(Path::new("/home"))
        || home.is_some_and(|h| h.canonicalize().unwrap_or(h) == dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Recipe, RecipeError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("raypack.toml");
        std::fs::write(&p, text).unwrap();
        Recipe::load(&p)
    }

    #[test]
    fn poetry_constraints_become_pep440() {
        assert_eq!(poetry_to_pep440("^3.12"), ">=3.12, <4");
        assert_eq!(poetry_to_pep440("~3.12"), ">=3.12, <3.13");
        assert_eq!(poetry_to_pep440(">=3.10,<3.13"), ">=3.10, <3.13");
    }

    #[test]
    fn minimal_recipe_defaults() {
        let r = load("[project]\nname = \"demo\"\n").unwrap();
        assert_eq!(r.name, "demo");
        assert_eq!(r.dependencies.index_url, DEFAULT_INDEX);
        assert_eq!(r.image.app_dir, DEFAULT_APP_DIR);
        assert_eq!(r.code.working_dir, r.root);
    }

    #[test]
    fn problems_carry_line_and_column() {
        let err = load("[project]\nname = \"Demo_App\"\n").unwrap_err();
        let RecipeError::Invalid { problems, .. } = err else {
            panic!()
        };
        assert_eq!(problems.len(), 1);
        assert_eq!((problems[0].line, problems[0].column), (2, 9));
        assert!(problems[0].help.as_deref().unwrap().contains("demo-app"));
    }

    #[test]
    fn suggestions_are_valid_labels() {
        for s in ["Demo_App", "9lives", "--x--", "ÄÖ"] {
            assert!(is_dns1035(&suggest_dns1035(s)), "{s}");
        }
    }
}
