//! `raypack env --deps bundle`: the recipe's pinned wheels installed the way bake installs
//! them, but into one content-addressed `py_modules` zip, so Ray workers import the
//! dependencies without running pip at start-up.
//!
//! Base-aware, as bake is: a distribution the cluster's image already ships at the locked
//! version is not bundled (Ray itself, and most of what Ray needs); one it ships at another
//! version is, and shadows it (Ray puts py_modules ahead of site-packages on `sys.path`).
//! When the base cannot be read, everything is bundled, with a warning.
//!
//! Layout: everything under the zip's single wrapper directory (`pkg/`), which Ray strips and
//! puts on `sys.path` (see docs on py_modules): `pkg/requests/…`, `pkg/requests-2.x.dist-info/…`.
//! Scripts land in `pkg/bin` (not on the workers' PATH); `.data` data and headers under
//! `pkg/.raypack-data`. The digest covers the layout version, the target and the wheels'
//! hashes, so the same wheels give the same URI on any machine and an unchanged set uploads
//! nothing.

use sha2::Digest;

use crate::archive::tar::EntryKind;
use crate::archive::zip::ZipEntry;
use crate::cache::BlobCache;
use crate::python::pinned::{self, PinnedError, PinnedWheel};
use crate::python::tags::Target;
use crate::python::wheel::{self, Scheme, WheelError};
use crate::recipe::Recipe;

/// Bumped when the bundle layout changes.
pub const BUNDLE_LAYOUT: &str = "raypack-bundle-v1";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Pinned(#[from] PinnedError),
    #[error(transparent)]
    Wheel(#[from] WheelError),
    #[error("dependency bundle: {0}")]
    Base(#[from] crate::base::BaseError),
    #[error("dependency bundle: {0}")]
    Python(#[from] crate::recipe::PythonMismatch),
    #[error("dependency bundle: {0}")]
    Lock(#[from] crate::lock::LockError),
    #[error("dependency bundle: {0}")]
    Http(#[from] reqwest::Error),
    #[error("dependency bundle: {0}")]
    Io(#[from] std::io::Error),
}

/// The wheels of a bundle and its name in the store.
#[derive(Debug, Clone)]
pub struct BundlePlan {
    pub target: Target,
    /// The wheels bundled.
    pub wheels: Vec<PinnedWheel>,
    /// Locked distributions the base ships at the same version: not bundled.
    pub kept: Vec<PinnedWheel>,
    /// Locked distributions the base ships at another version, bundled: (wheel, base version).
    pub replaced: Vec<(PinnedWheel, String)>,
    /// Why the base could not be read (then everything is bundled).
    pub base_unknown: Option<std::sync::Arc<crate::base::BaseError>>,
    pub digest: String,
    pub object_name: String,
    /// The base's Python interpreter, when the base could be read.
    pub interpreter: Option<String>,
}

/// Chooses the wheels (no download). `None` when the recipe has no dependencies; a plan with
/// no `wheels` when the base ships them all.
pub async fn plan(
    recipe: &Recipe,
    http: &reqwest::Client,
) -> Result<Option<BundlePlan>, BundleError> {
    // The wheels' downloads carry the recipe's index credentials (files are often listed
    // without userinfo on the index's host).
    crate::requirements::remember_recipe_credentials(&recipe.dependencies);
    let target = crate::base::target_without_pull(&recipe.base)?;
    recipe.check_python(&format!("3.{}", target.python_minor))?;
    let read = crate::base::read_installed(recipe, &recipe.base.platform, Default::default())
        .await
        .map_err(std::sync::Arc::new);
    let interpreter = read.as_ref().ok().map(|(_, layout)| layout.python.clone());
    let base = read.map(|(index, _)| index);
    let locked_wheels = if crate::requirements::is_pinned(recipe, &target) {
        let client = crate::python::index::IndexClient::new(
            http.clone(),
            &crate::cache::default_cache_dir(),
        );
        crate::requirements::recipe_wheels(recipe, &target, &client).await?
    } else {
        pinned::from_pylock(
            &locked(recipe, &target, base.as_ref(), http).await?,
            &target,
        )?
    };
    let (mut wheels, mut kept, mut replaced) = (Vec::new(), Vec::new(), Vec::new());
    for w in locked_wheels {
        match base
            .as_ref()
            .ok()
            .and_then(|i| i.get(&w.name).map(|d| (i, d)))
        {
            Some((i, _)) if i.ships(&w.name, &w.version) => kept.push(w),
            Some((_, d)) => {
                let from = d.version.clone();
                replaced.push((w.clone(), from));
                wheels.push(w);
            }
            None => wheels.push(w),
        }
    }
    if wheels.is_empty() && kept.is_empty() {
        return Ok(None);
    }
    let mut h = sha2::Sha256::new();
    h.update(format!("{BUNDLE_LAYOUT}\n{target}\n"));
    let mut shas: Vec<&str> = wheels.iter().map(|w| w.sha256.as_str()).collect();
    shas.sort();
    for s in shas {
        h.update(s.as_bytes());
        h.update(b"\n");
    }
    let digest = hex::encode(h.finalize());
    let object_name = format!("{}-deps-{}.zip", recipe.name, &digest[..32]);
    Ok(Some(BundlePlan {
        target,
        wheels,
        kept,
        replaced,
        base_unknown: base.err(),
        digest,
        object_name,
        interpreter,
    }))
}

/// The lock for unpinned requirements: checked against the base's installed distributions
/// when the base can be read (as bake and `raypack lock` do); otherwise an existing lock is
/// used as it is (with a warning), and a missing one is written without base knowledge.
async fn locked(
    recipe: &Recipe,
    target: &Target,
    base: Result<&crate::python::installed::BaseIndex, &std::sync::Arc<crate::base::BaseError>>,
    http: &reqwest::Client,
) -> Result<std::path::PathBuf, BundleError> {
    use crate::lock::{BaseContents, LockOptions};
    let base_requires = base.map(|i| i.requirements()).unwrap_or_default();
    let base = match base {
        Ok(index) => BaseContents::Known(index.preferences()),
        Err(e) => {
            let path = crate::lock::lock_path(recipe);
            if path.is_file() {
                tracing::warn!(
                    "cannot read what the base has installed ({e}); using {} as it is",
                    path.display()
                );
                return Ok(path);
            }
            tracing::warn!("cannot read what the base has installed ({e}); locking without it");
            BaseContents::Unknown
        }
    };
    let opts = LockOptions {
        platforms: vec![recipe.base.platform.clone()],
        python_version: Some(format!("3.{}", target.python_minor)),
        manylinux: Some(format!("2_{}", target.glibc_minor)),
        base,
        base_requires,
        ..Default::default()
    };
    let ensured =
        crate::lock::ensure_locked(recipe, &opts, http, |m| tracing::warn!("{m}")).await?;
    Ok(ensured.path)
}

fn scheme(target: &Target) -> Scheme {
    Scheme {
        site_packages: "/pkg".into(),
        scripts: "/pkg/bin".into(),
        data: "/pkg/.raypack-data".into(),
        headers: format!("/pkg/.raypack-data/include/python3.{}", target.python_minor),
        // Scripts are not on the workers' PATH; launchers still need an absolute interpreter.
        python: "/usr/bin/python3".into(),
    }
}

/// Downloads (into the shared wheel cache) and installs the wheels under `scratch`; returns
/// the zip entries, sorted, ready for [`crate::archive::zip::write_zip`].
pub async fn entries(
    plan: &BundlePlan,
    cache: &BlobCache,
    scratch: &std::path::Path,
    http: &reqwest::Client,
) -> Result<Vec<ZipEntry>, BundleError> {
    let fetched = pinned::fetch(http, &plan.wheels, cache).await?;
    let scheme = scheme(&plan.target);
    let scratch = scratch.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<Vec<ZipEntry>, BundleError> {
        let files: Vec<(std::path::PathBuf, String)> = fetched
            .iter()
            .map(|(w, p)| (p.clone(), w.filename.clone()))
            .collect();
        let installed = wheel::install_all(&files, &scheme, (0, 0), true, &scratch.join("w"))?;
        let merged = wheel::merge(&installed, &[], (0, 0))?;
        let generated = scratch.join("generated");
        let mut zips = crate::archive::tar::ZipReaders::default();
        let mut out = Vec::new();
        for (i, e) in merged.into_iter().enumerate() {
            let source = match e.kind {
                EntryKind::File { source } => source,
                EntryKind::ZipMember { archive, index, .. } => {
                    std::fs::create_dir_all(&generated)?;
                    let p = generated.join(i.to_string());
                    zips.extract(&archive, index, &p)?;
                    p
                }
                EntryKind::Bytes(b) => {
                    std::fs::create_dir_all(&generated)?;
                    let p = generated.join(i.to_string());
                    std::fs::write(&p, b)?;
                    p
                }
                EntryKind::Dir | EntryKind::Whiteout => continue,
            };
            let size = std::fs::metadata(&source)?.len();
            out.push(ZipEntry {
                name: e.path,
                source,
                mode: e.mode,
                size,
                crc32: None,
                sha256: None,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    })
    .await
    .expect("installing does not panic")
}
