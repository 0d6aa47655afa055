//! `raypack env`: plan the packages, zip and upload what the store lacks, build the
//! runtime_env.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::zip::{write_stored_file, write_zip};
use crate::collect::StatCache;
use crate::plan::{Built, Package, PlanError, plan_packages_into};
use crate::recipe::Recipe;
use crate::requirements::{RequirementsError, inline_list};
use crate::spec::runtime_env::{DepsMode, RuntimeEnv, RuntimeEnvConfig};
use crate::store::{Store, StoreError, StoreUrl};
use crate::units::human_bytes;

/// DEFLATE level for package zips bound for object stores: level 1 compresses source text well
/// at several times the speed of the default level 6; raise it with `--compression-level`.
pub const DEFAULT_REMOTE_COMPRESSION: u32 = 1;

/// The zip compression a store gets unless told otherwise: STORED for `file://` stores (local
/// disk or NFS: copying is cheaper than compressing, and Ray's own packages are stored too),
/// DEFLATE level 1 for S3 and GCS, where every byte crosses the network twice.
pub fn default_compression(url: &StoreUrl) -> u32 {
    match url {
        StoreUrl::File { .. } => 0,
        StoreUrl::S3 { .. } | StoreUrl::Gcs { .. } => DEFAULT_REMOTE_COMPRESSION,
    }
}

#[derive(Debug, Clone)]
pub struct EnvOptions {
    pub store: Option<StoreUrl>,
    pub deps: DepsMode,
    /// `None`: [`default_compression`] for the store.
    pub compression_level: Option<u32>,
    /// A hard limit on each package's size; `None`: none, with a warning over Ray's GCS
    /// limit ([`crate::plan::RAY_MAX_PACKAGE_SIZE`]) that names the largest directories.
    pub max_package_size: Option<u64>,
    /// Plan and print only: no zip, no upload.
    pub dry_run: bool,
    /// The command's HTTP client (GCS stores go through it).
    pub http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Requirements(#[from] RequirementsError),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error("cannot write the package zip for {dir}: {source}")]
    Zip {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

/// What happened to one package.
#[derive(Debug, Clone, Serialize)]
pub struct PackageReport {
    pub role: String,
    pub dir: PathBuf,
    pub uri: String,
    pub digest: String,
    pub files: usize,
    pub bytes: u64,
    /// Files hashed this run (the rest came from the stat cache).
    pub hashed: usize,
    pub uploaded: bool,
    pub zip_bytes: Option<u64>,
    /// For the dependency bundle: how many wheels it installs (`files` and `bytes` count
    /// the installed files, known once the bundle is built this run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wheels: Option<usize>,
    /// For the dependency bundle: locked distributions the base image ships at that version
    /// (not bundled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<usize>,
}

/// What the dependency bundle holds and leaves to the base image (`--explain`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BundleSummary {
    /// `name==version` of each bundled distribution.
    pub bundled: Vec<String>,
    /// `name==version` the base image ships, not bundled.
    pub kept: Vec<String>,
    /// `name base-version -> bundled-version`, bundled and shadowing the base's.
    pub replaced: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvOutcome {
    pub store: String,
    pub packages: Vec<PackageReport>,
    pub runtime_env: serde_json::Value,
    /// With `--deps bundle`: what is bundled and what the base ships.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleSummary>,
    #[serde(skip)]
    pub env: RuntimeEnv,
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// The store a recipe uses: `--store`, else `[env] store`, else `.raypack/store`.
pub fn resolve_store(recipe: &Recipe, flag: Option<&StoreUrl>) -> (StoreUrl, bool) {
    match flag.or(recipe.env.store.as_ref()) {
        Some(u) => (u.clone(), false),
        None => (StoreUrl::file(recipe.state_dir().join("store")), true),
    }
}

pub async fn run(
    recipe: &Recipe,
    opts: &EnvOptions,
    mut progress: impl FnMut(&str),
) -> Result<EnvOutcome, EnvError> {
    let started = std::time::Instant::now();
    let (url, is_default) = resolve_store(recipe, opts.store.as_ref());
    let cache_path = recipe.state_dir().join("cache").join("stat.bin");
    let level = opts
        .compression_level
        .unwrap_or_else(|| default_compression(&url));
    // A `file://` store taking STORED zips gets each zip built while its files are hashed, in
    // the store's own directory: one read per file, and publishing is a rename.
    let early_store = if !opts.dry_run && level == 0 && matches!(url, StoreUrl::File { .. }) {
        let store = Store::connect(&url, is_default, &opts.http).await?;
        store.check().await?;
        Some(store)
    } else {
        None
    };
    let stage = early_store
        .as_ref()
        .and_then(Store::staging_dir)
        .map(Path::to_path_buf);
    let r = recipe.clone();
    let max = opts.max_package_size.unwrap_or(u64::MAX);
    // A file store inside the project must not ship its own zips in every new zip.
    let keep_out: Vec<PathBuf> = match &url {
        StoreUrl::File { path } => std::path::absolute(path)
            .ok()
            .map(|p| p.canonicalize().unwrap_or(p))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    let (planned, cache) = tokio::task::spawn_blocking(move || {
        let cache = StatCache::load(&cache_path);
        let p = plan_packages_into(&r, Some(&cache), max, stage.as_deref(), &keep_out);
        (p, cache)
    })
    .await
    .expect("planning does not panic");
    let (packages, mut built): (Vec<Package>, Vec<Option<Built>>) = planned?.into_iter().unzip();
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        zipped = built.iter().flatten().count(),
        "planned"
    );
    if let Err(e) = cache.save() {
        tracing::warn!("cannot save the stat cache: {e}");
    }
    let mut warnings = Vec::new();
    for p in &packages {
        let size = p.files.total_size();
        let largest =
            || crate::collect::largest_dirs(p.files.files.iter().map(|f| (f.rel.as_str(), f.size)));
        match opts.max_package_size {
            Some(limit) if size > limit / 2 => warnings.push(format!(
                "{}: package is {}, more than half of the limit ({}); consider excluding large files (largest directories: {})",
                p.files.root.display(),
                human_bytes(size),
                human_bytes(limit),
                largest()
            )),
            None if size > crate::plan::RAY_MAX_PACKAGE_SIZE => warnings.push(format!(
                "{}: package is {}, over the {} Ray accepts for packages uploaded through its GCS; {} URIs have no such limit, but every node downloads and unpacks it (largest directories: {}); exclude what the job does not need",
                p.files.root.display(),
                human_bytes(size),
                human_bytes(crate::plan::RAY_MAX_PACKAGE_SIZE),
                match &url {
                    StoreUrl::File { .. } => "file://",
                    StoreUrl::S3 { .. } => "s3://",
                    StoreUrl::Gcs { .. } => "gs://",
                },
                largest()
            )),
            _ => {}
        }
    }
    let requirements = if opts.deps == DepsMode::Bundle {
        Vec::new()
    } else if let Some(pins) = locked_pins(recipe, &mut warnings, &opts.http).await? {
        pins
    } else {
        inline_list(recipe)?
    };
    let mut bundle = if opts.deps == DepsMode::Bundle {
        progress("choosing wheels for the dependency bundle");
        crate::bundle::plan(recipe, &opts.http).await?
    } else {
        None
    };
    let summary = bundle.as_ref().map(|b| {
        let pin = |w: &crate::python::pinned::PinnedWheel| format!("{}=={}", w.name, w.version);
        BundleSummary {
            bundled: b.wheels.iter().map(pin).collect(),
            kept: b.kept.iter().map(pin).collect(),
            replaced: b
                .replaced
                .iter()
                .map(|(w, from)| format!("{} {from} -> {}", w.name, w.version))
                .collect(),
        }
    });
    if let Some(b) = &bundle {
        if let Some(e) = &b.base_unknown {
            warnings.push(format!(
                "cannot read what the base image has installed ({e}); the dependency bundle holds every locked distribution, the base's included"
            ));
        }
        if b.wheels.is_empty() {
            warnings.push(format!(
                "the base image ships all {} locked distributions at their locked versions: no dependency bundle",
                b.kept.len()
            ));
            bundle = None;
        }
    }

    let mut reports: Vec<PackageReport> = packages
        .iter()
        .map(|p| PackageReport {
            role: p.role.label(),
            dir: p.files.root.clone(),
            uri: url.uri_for(&p.object_name),
            digest: p.digest.clone(),
            files: p.files.files.len(),
            bytes: p.files.total_size(),
            wheels: None,
            hashed: p.files.hashed,
            uploaded: false,
            zip_bytes: None,
            kept: None,
        })
        .collect();

    if let Some(b) = &bundle {
        reports.push(PackageReport {
            role: "py_module:dependencies".into(),
            dir: recipe.root.clone(),
            uri: url.uri_for(&b.object_name),
            digest: b.digest.clone(),
            files: 0,
            bytes: 0,
            hashed: 0,
            uploaded: false,
            zip_bytes: None,
            wheels: Some(b.wheels.len()),
            kept: Some(b.kept.len()),
        });
    }

    if !opts.dry_run {
        // A store connected before planning was checked then.
        let checked = early_store.is_some();
        let store = match early_store {
            Some(s) => s,
            None => Store::connect(&url, is_default, &opts.http).await?,
        };
        let exists =
            futures::future::try_join_all(packages.iter().map(|p| store.exists(&p.object_name)))
                .await?;
        if !checked && exists.iter().any(|e| !e) {
            store.check().await?;
        }
        // Something will be written: first clear what killed runs left (never on a warm run).
        if exists.iter().any(|e| !e) || bundle.is_some() {
            store.sweep_leftovers().await;
        }
        let own_tmp = recipe.state_dir().join("tmp");
        let tmp_root = store
            .staging_dir()
            .map(Path::to_path_buf)
            .unwrap_or(own_tmp);
        // The bundle is built before anything is uploaded: a bad wheel publishes nothing.
        let mut bundle_zip = None;
        if let Some(b) = &bundle {
            if store.exists(&b.object_name).await? {
                tracing::debug!(object = %b.object_name, "dependency bundle already in the store");
            } else {
                store.check().await?;
                progress(&format!(
                    "installing {} wheels into the bundle",
                    b.wheels.len()
                ));
                let scratch = tempfile::tempdir().map_err(|source| EnvError::Zip {
                    dir: "dependency bundle".into(),
                    source,
                })?;
                let cache = crate::cache::BlobCache::new(&crate::cache::default_cache_dir());
                let entries = crate::bundle::entries(b, &cache, scratch.path(), &opts.http).await?;
                if let Some(r) = reports.last_mut() {
                    r.files = entries.len();
                    r.bytes = entries.iter().map(|e| e.size).sum();
                }
                let (tmp, zip_bytes) =
                    zip_entries(entries, "dependency bundle".into(), &tmp_root, level).await?;
                bundle_zip = Some((b, tmp, zip_bytes));
            }
        }
        for (((p, report), present), built) in packages
            .iter()
            .zip(reports.iter_mut())
            .zip(exists)
            .zip(built.iter_mut())
        {
            if present {
                // A zip built while hashing is dropped, and its temp file with it.
                tracing::debug!(uri = %report.uri, "already in the store");
                continue;
            }
            let (tmp, zip_bytes) = match built.take() {
                Some(b) => (b.tmp, b.bytes),
                None => {
                    progress(&format!("zipping {} ({} files)", report.role, report.files));
                    let t = std::time::Instant::now();
                    let z = build_zip(p, &tmp_root, level).await?;
                    tracing::debug!(role = %report.role, level, ms = t.elapsed().as_millis() as u64, "zip built");
                    z
                }
            };
            progress(&format!(
                "uploading {} ({})",
                report.uri,
                human_bytes(zip_bytes)
            ));
            let t = std::time::Instant::now();
            store.put_file(&p.object_name, tmp.path()).await?;
            tracing::debug!(uri = %report.uri, ms = t.elapsed().as_millis() as u64, "published");
            report.uploaded = true;
            report.zip_bytes = Some(zip_bytes);
        }
        if let Some((b, tmp, zip_bytes)) = bundle_zip {
            let report = reports.last_mut().expect("bundle report");
            progress(&format!(
                "uploading {} ({})",
                report.uri,
                human_bytes(zip_bytes)
            ));
            store.put_file(&b.object_name, tmp.path()).await?;
            report.uploaded = true;
            report.zip_bytes = Some(zip_bytes);
        }
    }

    let mut env = RuntimeEnv {
        working_dir: Some(reports[0].uri.clone()),
        py_modules: reports[1..].iter().map(|r| r.uri.clone()).collect(),
        env_vars: recipe.env.env_vars.clone(),
        config: recipe.env.setup_timeout_seconds.map(|s| RuntimeEnvConfig {
            setup_timeout_seconds: s,
        }),
        ..Default::default()
    };
    env = env.with_deps(opts.deps, requirements);
    Ok(EnvOutcome {
        store: url.to_string(),
        packages: reports,
        runtime_env: env.to_json(),
        bundle: summary,
        env,
        warnings,
    })
}

/// With a `pylock.raypack.toml` next to the recipe: its `name==version` pins for the cluster's
/// target (after re-locking when the requirements changed, if the base can be read to check);
/// `None` without a lock (the recipe's own list is used, and Ray's pip resolves it).
async fn locked_pins(
    recipe: &Recipe,
    notes: &mut Vec<String>,
    http: &reqwest::Client,
) -> Result<Option<Vec<String>>, EnvError> {
    use crate::bundle::BundleError;
    let path = crate::lock::lock_path(recipe);
    if !path.is_file() {
        return Ok(None);
    }
    let target = crate::base::target_without_pull(&recipe.base).map_err(BundleError::from)?;
    match crate::base::read_installed(recipe, &recipe.base.platform, Default::default()).await {
        Ok((index, layout)) => {
            let opts = crate::lock::LockOptions {
                platforms: vec![recipe.base.platform.clone()],
                python_version: Some(layout.python_version.clone()),
                manylinux: layout.manylinux.clone(),
                base: crate::lock::BaseContents::Known(index.preferences()),
                base_requires: index.requirements(),
                ..Default::default()
            };
            let messages = std::sync::Mutex::new(Vec::new());
            crate::lock::ensure_locked(recipe, &opts, http, |m| {
                messages.lock().unwrap().push(m.to_string())
            })
            .await
            .map_err(BundleError::from)?;
            notes.extend(messages.into_inner().unwrap());
        }
        Err(e) => notes.push(format!(
            "cannot check {} against the base ({e}); using it as it is",
            crate::recipe::display_path(&path)
        )),
    }
    let wheels = crate::python::pinned::from_pylock(&path, &target).map_err(BundleError::Pinned)?;
    let mut out = crate::requirements::index_lines(recipe);
    out.extend(wheels.iter().map(|w| format!("{}=={}", w.name, w.version)));
    Ok(Some(out))
}

/// Writes the package's zip to a temp file (removed when dropped).
pub async fn build_zip(
    p: &Package,
    tmp_root: &std::path::Path,
    level: u32,
) -> Result<(tempfile::NamedTempFile, u64), EnvError> {
    zip_entries(
        p.zip_entries(),
        p.files.root.display().to_string(),
        tmp_root,
        level,
    )
    .await
}

/// Writes `entries` as a zip into a temp file under `tmp_root` (removed when dropped).
async fn zip_entries(
    entries: Vec<crate::archive::zip::ZipEntry>,
    dir: String,
    tmp_root: &std::path::Path,
    level: u32,
) -> Result<(tempfile::NamedTempFile, u64), EnvError> {
    let tmp_root = tmp_root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let err = |source| EnvError::Zip {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&tmp_root).map_err(err)?;
        let tmp = tempfile::Builder::new()
            .prefix(&crate::archive::temp_prefix())
            .suffix(crate::archive::TEMP_SUFFIX)
            .tempfile_in(&tmp_root)
            .map_err(err)?;
        let n = if level == 0 && entries.iter().all(|e| e.crc32.is_some()) {
            write_stored_file(tmp.path(), &entries).map_err(err)?
        } else {
            let out =
                std::io::BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone().map_err(err)?);
            write_zip(out, &entries, level).map_err(err)?
        };
        Ok((tmp, n))
    })
    .await
    .expect("zipping does not panic")
}
