//! `raypack lock`: the recipe's requirements resolved for the image's targets and written to
//! `pylock.raypack.toml` (PEP 751) next to the recipe.
//!
//! Inputs: the recipe's requirement lines (inline and requirements file, via
//! [`crate::requirements::inline_list`]), its indexes, the targets (platforms × the base's
//! Python and glibc) and the distributions the base ships. Their hash is recorded in the lock,
//! so [`check`] (`--locked`) and [`ensure_locked`] know a stale lock without resolving.
//! Re-locking keeps the previous lock's versions where they still fit (unless `--upgrade` /
//! `--upgrade-package`), and writes the file only when its bytes change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pep508_rs::pep440_rs::Version;
use sha2::{Digest, Sha256};

use crate::cache::{BlobCache, default_cache_dir};
use crate::python::index::IndexClient;
use crate::python::pylock::{self, LockTarget, PYLOCK_FILE, ToolInfo};
use crate::python::resolve::{self, IndexConfig, Resolution, ResolveError, ResolveRequest};
use crate::python::tags::Target;
use crate::python::wheel::normalize;
use crate::recipe::{DEFAULT_INDEX, Recipe};

/// How to lock.
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    /// Image platforms (`linux/amd64`, `linux/arm64`); empty: the recipe's `[base] platform`.
    pub platforms: Vec<String>,
    /// The base's Python `3.X` (default: `[base] python_version`, else the base image).
    pub python_version: Option<String>,
    /// The base's glibc level `2_N` (default: `[base] manylinux`, else the base image).
    pub manylinux: Option<String>,
    /// Ignore the previous lock's versions.
    pub upgrade: bool,
    /// Ignore the previous lock's versions of these projects.
    pub upgrade_packages: Vec<String>,
    /// Make replacing a distribution the base ships an error.
    pub no_replace_base: bool,
    /// The distributions the base ships, `(normalized name, version)`; see [`BaseContents`].
    pub base: BaseContents,
    /// The `Requires-Dist` of the base's distributions (normalized name → requirements), when
    /// known: a base distribution the lock leaves alone must still have what it requires
    /// after the lock replaces others.
    pub base_requires: BTreeMap<String, Vec<String>>,
    /// raypack's cache root (default: [`default_cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// How to reach the registry when the base image itself must say what its Python is.
    pub registry: crate::oci::client::ClientOptions,
}

/// What is known about the base image's installed distributions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BaseContents {
    /// Not known: nothing is preferred or protected.
    #[default]
    Unknown,
    /// `(normalized name, version)` pairs.
    Known(Vec<(String, String)>),
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Requirements(#[from] crate::requirements::RequirementsError),
    #[error("{0}")]
    Input(String),
    #[error("cannot tell the target: {0}")]
    Target(String),
    #[error("cannot tell the target: {0}")]
    Python(#[from] crate::recipe::PythonMismatch),
    #[error("locking for {target}: {source}")]
    Resolve {
        target: String,
        #[source]
        source: ResolveError,
    },
    #[error("{path} is stale: {reason}; run `raypack lock`")]
    Stale { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error(
        "base image: {0}; lock reads the target's Python and glibc from it: set [base] python_version and manylinux, or pass --python-version 3.X --manylinux 2_N, to lock without the registry"
    )]
    Base(#[from] crate::base::BaseError),
}

/// What a lock run did.
#[derive(Debug, Clone)]
pub struct LockOutcome {
    pub path: PathBuf,
    /// The file's bytes changed.
    pub changed: bool,
    pub targets: Vec<LockTarget>,
    pub resolutions: Vec<Resolution>,
    /// Whether the base's installed distributions were known.
    pub base_known: bool,
}

/// The recipe's inputs to a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInputs {
    pub requirements: Vec<String>,
    pub indexes: IndexConfig,
}

/// Reads requirements and index options from the recipe (and its requirements file).
pub fn inputs(recipe: &Recipe) -> Result<LockInputs, LockError> {
    let mut requirements = Vec::new();
    let mut indexes = IndexConfig {
        default: DEFAULT_INDEX.into(),
        extra: Vec::new(),
        per_package: recipe
            .dependencies
            .package_indexes
            .iter()
            .map(|(n, u)| (normalize(n), u.trim_end_matches('/').into()))
            .collect(),
        find_links: Vec::new(),
    };
    for line in crate::requirements::inline_list(recipe)? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["--index-url" | "-i", url] => indexes.default = url.trim_end_matches('/').into(),
            ["--extra-index-url", url] => indexes.extra.push(url.trim_end_matches('/').into()),
            ["--find-links" | "-f", location] => indexes.find_links.push((*location).into()),
            [w, ..] if w.starts_with('-') => {
                tracing::warn!("raypack lock ignores the option `{line}`");
            }
            _ => requirements.push(line),
        }
    }
    Ok(LockInputs {
        requirements,
        indexes,
    })
}

/// The hash of everything a lock depends on (recorded as `input-hash`).
pub fn input_hash(
    inputs: &LockInputs,
    targets: &[LockTarget],
    base: &BaseContents,
    no_replace_base: bool,
    replace_ray: bool,
) -> String {
    let mut s = String::from("raypack lock inputs v1\n");
    let mut reqs = inputs.requirements.clone();
    reqs.sort();
    for r in reqs {
        s.push_str(&format!("requirement {r}\n"));
    }
    // As written (the input hash is unchanged by the IndexUrl type; it is a digest).
    s.push_str(&format!("index {}\n", inputs.indexes.default.expose()));
    for e in &inputs.indexes.extra {
        s.push_str(&format!("extra-index {}\n", e.expose()));
    }
    for (n, u) in &inputs.indexes.per_package {
        s.push_str(&format!("package-index {n} {}\n", u.expose()));
    }
    for l in &inputs.indexes.find_links {
        s.push_str(&format!("find-links {}\n", l.expose()));
    }
    for t in targets {
        s.push_str(&format!("target {} {}\n", t.platform, t.environment()));
        s.push_str(&format!("glibc 2.{}\n", t.target.glibc_minor));
    }
    match base {
        BaseContents::Unknown => s.push_str("base unknown\n"),
        BaseContents::Known(list) => {
            let mut l = list.clone();
            l.sort();
            for (n, v) in l {
                s.push_str(&format!("installed {n}=={v}\n"));
            }
        }
    }
    s.push_str(&format!("no-replace-base {no_replace_base}\n"));
    if replace_ray {
        s.push_str("replace-ray true\n");
    }
    format!("sha256:{}", hex::encode(Sha256::digest(s.as_bytes())))
}

/// The targets: each platform with the base's Python and glibc level, from the options, the
/// recipe's `[base]`, or else the base image's config and raypack's catalog.
pub async fn targets(recipe: &Recipe, opts: &LockOptions) -> Result<Vec<LockTarget>, LockError> {
    let mut platforms = opts.platforms.clone();
    if platforms.is_empty() {
        platforms = recipe.base.platforms.clone();
    }
    platforms.dedup();
    let mut out = Vec::new();
    for platform in platforms {
        let mut py = opts
            .python_version
            .clone()
            .or_else(|| recipe.base.python_version.clone());
        let mut ml = opts
            .manylinux
            .clone()
            .or_else(|| recipe.base.manylinux.clone());
        if py.is_none() || ml.is_none() {
            let layout = base_layout(recipe, &platform, opts).await?;
            py = py.or(Some(layout.python_version));
            ml = ml.or(layout.manylinux);
        }
        if let Some(py) = &py {
            recipe.check_python(py)?;
        }
        let (Some(py), Some(ml)) = (py, ml) else {
            return Err(LockError::Target(format!(
                "the base {} does not say its glibc level; set [base] manylinux = \"2_35\" or pass --manylinux",
                recipe.base.image
            )));
        };
        let target = Target::new(&platform, &py, &ml).ok_or_else(|| {
            LockError::Target(format!(
                "platform {platform}, Python {py}, manylinux {ml}: expected linux/amd64 or linux/arm64, 3.X and 2_N"
            ))
        })?;
        out.push(LockTarget { platform, target });
    }
    Ok(out)
}

/// The base's layout from its config (pinned digest from raypack.lock, else resolved and pinned
/// the way bake does); no layer is pulled.
async fn base_layout(
    recipe: &Recipe,
    platform: &str,
    opts: &LockOptions,
) -> Result<crate::base::BaseLayout, LockError> {
    let p = crate::oci::media::Platform::parse(platform)
        .ok_or_else(|| LockError::Target(format!("platform {platform}")))?;
    let registry = crate::oci::client::Registry::new(opts.registry.clone())
        .map_err(|e| LockError::Base(e.into()))?;
    let cache = BlobCache::new(&cache_dir(opts));
    let base = crate::base::PinnedBase::pin(recipe, p, &registry, &cache, false).await?;
    Ok(base.layout().await?)
}

fn cache_dir(opts: &LockOptions) -> PathBuf {
    opts.cache_dir.clone().unwrap_or_else(default_cache_dir)
}

/// Where the lock of `recipe` lives.
pub fn lock_path(recipe: &Recipe) -> PathBuf {
    recipe.root.join(PYLOCK_FILE)
}

fn installed_map(base: &BaseContents) -> Result<BTreeMap<String, Version>, LockError> {
    match base {
        BaseContents::Unknown => Ok(BTreeMap::new()),
        BaseContents::Known(list) => list
            .iter()
            .map(|(n, v)| {
                Version::from_str(v)
                    .map(|v| (normalize(n), v))
                    .map_err(|e| LockError::Input(format!("base distribution {n}=={v}: {e}")))
            })
            .collect(),
    }
}

/// Resolves and writes the lock.
pub async fn lock(
    recipe: &Recipe,
    opts: &LockOptions,
    http: &reqwest::Client,
    progress: impl Fn(&str),
) -> Result<LockOutcome, LockError> {
    let inputs = inputs(recipe)?;
    let requirements =
        resolve::parse_requirements(&inputs.requirements).map_err(|source| LockError::Resolve {
            target: "the recipe".into(),
            source,
        })?;
    let targets = targets(recipe, opts).await?;
    let installed = installed_map(&opts.base)?;
    let path = lock_path(recipe);
    let previous = std::fs::read_to_string(&path).ok();
    let upgrade: Vec<String> = opts.upgrade_packages.iter().map(|n| normalize(n)).collect();
    let client = IndexClient::new(http.clone(), &cache_dir(opts));
    let mut resolutions = Vec::new();
    for t in &targets {
        progress(&format!("resolving for {}", t.target));
        let mut preferences = match (&previous, opts.upgrade) {
            (Some(text), false) => pylock::locked_versions(text, &t.target),
            _ => BTreeMap::new(),
        };
        preferences.retain(|n, _| !upgrade.contains(n));
        // A version the previous lock chose over the base's is decided again: its cause may be
        // gone, and then the base's version is preferred.
        preferences.retain(|n, v| installed.get(n).is_none_or(|b| b == v));
        // A replacement can break a base distribution the requirements never reach (the
        // base's virtualenv needs packaging>=26.3, the lock moves packaging to 25.0 for
        // mlflow): such a distribution joins the resolution, preferring its base version, and
        // the set is resolved again until every base distribution left alone is satisfied.
        let mut roots = requirements.clone();
        let mut rounds = 0;
        let r = loop {
            let req = ResolveRequest {
                requirements: roots.clone(),
                target: t.target.clone(),
                indexes: inputs.indexes.clone(),
                preferences: preferences.clone(),
                installed: installed.clone(),
                no_replace_base: opts.no_replace_base,
                pinned_to_base: if recipe.dependencies.replace_ray {
                    Default::default()
                } else {
                    ["ray".to_string()].into()
                },
            };
            let r = resolve::resolve(&client, req)
                .await
                .map_err(|source| LockError::Resolve {
                    target: format!("{} ({})", t.platform, t.target),
                    source,
                })?;
            let broken = broken_base_distributions(&r, &installed, &opts.base_requires);
            rounds += 1;
            if broken.is_empty() || rounds > 8 {
                break r;
            }
            for name in broken {
                progress(&format!(
                    "the base's {name} {} needs what the lock replaces: resolving it too",
                    installed[&name]
                ));
                roots.push(
                    crate::python::requirement::parse(&name)
                        .map_err(|e| LockError::Input(format!("base distribution {name}: {e}")))?,
                );
            }
        };
        resolutions.push(r);
    }
    let base_digest = crate::lockfile::LockFile::load(&recipe.root)
        .ok()
        .and_then(|l| {
            let pins = l.base.as_slice();
            let first = targets.first().map(|t| t.platform.as_str());
            pins.iter()
                .find(|b| b.image == recipe.base.image && Some(b.platform.as_str()) == first)
                .or_else(|| pins.iter().find(|b| b.image == recipe.base.image))
                .map(|b| b.digest.clone())
        });
    let tool = ToolInfo {
        input_hash: input_hash(
            &inputs,
            &targets,
            &opts.base,
            opts.no_replace_base,
            recipe.dependencies.replace_ray,
        ),
        base_image: Some(recipe.base.image.clone()),
        base_digest,
        base_distributions: match &opts.base {
            BaseContents::Unknown => 0,
            BaseContents::Known(l) => l.len(),
        },
    };
    let text = pylock::render(&targets, &resolutions, &tool);
    let changed = previous.as_deref() != Some(text.as_str());
    if changed {
        write_atomic(&path, &text)?;
    }
    Ok(LockOutcome {
        path,
        changed,
        targets,
        resolutions,
        base_known: opts.base != BaseContents::Unknown,
    })
}

/// Base distributions outside the resolution whose requirements a replacement breaks: a
/// requirement on a distribution the resolution holds at another version than the base's, for
/// this target (markers evaluated, no extras), that the resolution's version does not meet.
fn broken_base_distributions(
    r: &resolve::Resolution,
    installed: &BTreeMap<String, pep508_rs::pep440_rs::Version>,
    requires: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let locked: BTreeMap<String, &pep508_rs::pep440_rs::Version> = r
        .packages
        .iter()
        .map(|p| (normalize(&p.name), &p.version))
        .collect();
    let env = crate::python::tags::marker_env(&r.target);
    let mut broken = Vec::new();
    for (name, reqs) in requires {
        if locked.contains_key(name) || !installed.contains_key(name) {
            continue;
        }
        let breaks = reqs.iter().any(|text| {
            let Ok(req) = crate::python::requirement::parse(text) else {
                return false;
            };
            if !req.evaluate_markers(&env, &[]) {
                return false;
            }
            let dep = normalize(req.name.as_ref());
            let (Some(v), Some(base_v)) = (locked.get(&dep), installed.get(&dep)) else {
                return false;
            };
            if *v == base_v {
                return false;
            }
            match &req.version_or_url {
                Some(pep508_rs::VersionOrUrl::VersionSpecifier(spec)) => !spec.contains(v),
                _ => false,
            }
        });
        if breaks {
            broken.push(name.clone());
        }
    }
    broken
}

/// The lock is committed by users like any source file: 0644, written whole.
fn write_atomic(path: &Path, text: &str) -> Result<(), LockError> {
    crate::archive::write_file_atomically(path, text.as_bytes()).map_err(|source| {
        LockError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The staleness reason of a lock that was never written (a first lock is not news).
pub const NO_LOCK_YET: &str = "it does not exist";

/// `--locked`: fails when the lock is missing or was written for other inputs.
pub async fn check(recipe: &Recipe, opts: &LockOptions) -> Result<PathBuf, LockError> {
    let path = lock_path(recipe);
    let inputs = inputs(recipe)?;
    let targets = targets(recipe, opts).await?;
    let want = input_hash(
        &inputs,
        &targets,
        &opts.base,
        opts.no_replace_base,
        recipe.dependencies.replace_ray,
    );
    let text = std::fs::read_to_string(&path).map_err(|_| LockError::Stale {
        path: path.clone(),
        reason: NO_LOCK_YET.into(),
    })?;
    match pylock::recorded_input_hash(&text) {
        Some(h) if h == want => Ok(path),
        Some(_) => Err(LockError::Stale {
            path,
            reason: "the requirements, indexes, targets or base changed since it was written"
                .into(),
        }),
        None => Err(LockError::Stale {
            path,
            reason: "it has no [tool.raypack] input-hash (not written by raypack lock)".into(),
        }),
    }
}

/// What [`ensure_locked`] did.
#[derive(Debug, Clone)]
pub struct Ensured {
    pub path: PathBuf,
    /// `Some(reason)` when it re-locked.
    pub relocked: Option<String>,
}

/// For `env` and `bake`: uses the lock when it matches the recipe's inputs, else re-locks
/// (saying why through `progress`).
pub async fn ensure_locked(
    recipe: &Recipe,
    opts: &LockOptions,
    http: &reqwest::Client,
    progress: impl Fn(&str),
) -> Result<Ensured, LockError> {
    match check(recipe, opts).await {
        Ok(path) => Ok(Ensured {
            path,
            relocked: None,
        }),
        Err(LockError::Stale { reason, .. }) => {
            progress(&if reason == NO_LOCK_YET {
                format!("locking the requirements into {PYLOCK_FILE}")
            } else {
                format!("re-locking {PYLOCK_FILE}: {reason}")
            });
            let out = lock(recipe, opts, http, &progress).await?;
            Ok(Ensured {
                path: out.path,
                relocked: Some(reason),
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: &str) -> LockTarget {
        LockTarget {
            platform: p.into(),
            target: Target::new(p, "3.11", "2_36").unwrap(),
        }
    }

    #[test]
    fn input_hash_follows_inputs_not_order() {
        let i = LockInputs {
            requirements: vec!["requests>=2.31".into(), "numpy".into()],
            indexes: IndexConfig {
                default: DEFAULT_INDEX.into(),
                extra: vec![],
                per_package: BTreeMap::new(),
                find_links: Vec::new(),
            },
        };
        let base = BaseContents::Unknown;
        let h = input_hash(&i, &[t("linux/amd64")], &base, false, false);
        let mut j = i.clone();
        j.requirements.reverse();
        assert_eq!(h, input_hash(&j, &[t("linux/amd64")], &base, false, false));
        j.requirements.push("pandas".into());
        assert_ne!(h, input_hash(&j, &[t("linux/amd64")], &base, false, false));
        assert_ne!(h, input_hash(&i, &[t("linux/arm64")], &base, false, false));
        assert_ne!(h, input_hash(&i, &[t("linux/amd64")], &base, true, false));
        assert_ne!(h, input_hash(&i, &[t("linux/amd64")], &base, false, true));
        let known = BaseContents::Known(vec![("numpy".into(), "1.26.4".into())]);
        assert_ne!(h, input_hash(&i, &[t("linux/amd64")], &known, false, false));
    }
}
