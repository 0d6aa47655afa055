//! `raypack install`: wheels installed the way `bake` installs them, into a directory (as
//! `pip install --no-deps --target`) or into one gzip layer — a debugging aid for what bake
//! puts into images, and the subject of `bench/wheels.sh`.
//!
//! The wheels are files on disk, or the pins of a pylock.toml / hashed requirements.txt
//! fetched through the index client into the shared blob cache.

use std::path::{Path, PathBuf};

use crate::python::layer::{self, WheelFile};
use crate::python::pinned::{self, PinnedError};
use crate::python::tags::Target;
use crate::python::wheel::{self, WheelError, WheelName};

/// What to install, where, and for which interpreter.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Wheel files.
    pub wheels: Vec<PathBuf>,
    /// A pinned input instead of (or besides) wheel files: pylock.toml, or a requirements.txt
    /// with `==` and `--hash` on every line.
    pub requirements: Option<PathBuf>,
    /// The index for a requirements.txt without `--index-url`.
    pub index_url: String,
    /// Install into this directory (`pip install --target` layout) ...
    pub target_dir: Option<PathBuf>,
    /// ... or write one gzip layer here (paths under the interpreter's prefix).
    pub layer: Option<PathBuf>,
    /// Owner of the layer's entries, `UID:GID`.
    pub user: String,
    /// The interpreter written into script shebangs.
    pub python: String,
    /// `3.X`.
    pub python_version: String,
    /// `linux/amd64` or `linux/arm64`.
    pub platform: String,
    /// The glibc level, `2_N`.
    pub manylinux: String,
}

/// Why an install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("unsupported target {platform} / Python {python_version} / manylinux {manylinux}")]
    Target {
        platform: String,
        python_version: String,
        manylinux: String,
    },
    #[error("{}: not a wheel file name", .0.display())]
    NotAWheel(PathBuf),
    #[error("{filename}: not installable on {target} (its tags: {tags})")]
    NotInstallable {
        filename: String,
        target: String,
        tags: String,
    },
    #[error("--user `{0}` is not UID:GID")]
    User(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pinned(#[from] PinnedError),
    #[error(transparent)]
    Wheel(#[from] WheelError),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Other(#[from] std::io::Error),
}

/// Installs the wheels; returns `(name, version)` of each installed distribution.
pub async fn install(
    opts: &InstallOptions,
    http: &reqwest::Client,
) -> Result<Vec<(String, String)>, InstallError> {
    let t =
        Target::new(&opts.platform, &opts.python_version, &opts.manylinux).ok_or_else(|| {
            InstallError::Target {
                platform: opts.platform.clone(),
                python_version: opts.python_version.clone(),
                manylinux: opts.manylinux.clone(),
            }
        })?;
    let mut files = match &opts.requirements {
        Some(req) => pinned_wheels(req, &opts.index_url, &t, http).await?,
        None => Vec::new(),
    };
    files.extend(local_wheels(&opts.wheels, &t)?);
    let (layer, target_dir) = (opts.layer.clone(), opts.target_dir.clone());
    let opts = opts.clone();
    tokio::task::spawn_blocking(move || match (layer, target_dir) {
        (Some(out), _) => install_layer(&files, &opts, &out),
        (None, Some(dir)) => install_target(&files, &opts, &dir),
        (None, None) => Ok(Vec::new()),
    })
    .await
    .expect("installing does not panic")
}

/// The pins of a pylock.toml or hashed requirements.txt, downloaded into the blob cache.
async fn pinned_wheels(
    req: &Path,
    index_url: &str,
    t: &Target,
    http: &reqwest::Client,
) -> Result<Vec<WheelFile>, InstallError> {
    let cache_dir = crate::cache::default_cache_dir();
    let pins = if req.extension().is_some_and(|e| e == "toml") {
        pinned::from_pylock(req, t)?
    } else {
        let reqs = pinned::parse_hashed(req, t)?;
        let client = crate::python::index::IndexClient::new(http.clone(), &cache_dir);
        pinned::resolve_hashed(&client, &reqs, &pinned::Sources::index(index_url), t).await?
    };
    let cache = crate::cache::BlobCache::new(&cache_dir);
    Ok(pinned::fetch(http, &pins, &cache)
        .await?
        .into_iter()
        .map(|(w, p)| WheelFile {
            path: p,
            filename: w.filename,
            sha256: w.sha256,
        })
        .collect())
}

/// Wheel files given on the command line, checked against the target's tags and hashed.
fn local_wheels(wheels: &[PathBuf], t: &Target) -> Result<Vec<WheelFile>, InstallError> {
    let prio = t.priorities();
    let mut out = Vec::new();
    for w in wheels {
        let fname = w
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let wn = WheelName::parse(&fname).ok_or_else(|| InstallError::NotAWheel(w.clone()))?;
        if wn.priority(&prio).is_none() {
            return Err(InstallError::NotInstallable {
                filename: fname,
                target: t.to_string(),
                tags: wn.tags.join(", "),
            });
        }
        let sha = crate::collect::hash_file(w).map_err(|source| InstallError::Io {
            path: w.clone(),
            source,
        })?;
        out.push(WheelFile {
            path: w.clone(),
            filename: fname,
            sha256: hex::encode(sha),
        });
    }
    Ok(out)
}

/// One gzip layer, assembled from cached per-wheel fragments as bake does.
fn install_layer(
    files: &[WheelFile],
    opts: &InstallOptions,
    out: &Path,
) -> Result<Vec<(String, String)>, InstallError> {
    let (uid, gid) = opts
        .user
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .ok_or_else(|| InstallError::User(opts.user.clone()))?;
    let prefix = opts
        .python
        .rsplit_once('/')
        .and_then(|(bin, _)| bin.rsplit_once('/'))
        .map(|(p, _)| p)
        .unwrap_or("/usr");
    let sp = format!("{prefix}/lib/python{}/site-packages", opts.python_version);
    let scheme = wheel::Scheme::for_python(&opts.python, &opts.python_version, &sp);
    let level = crate::oci::image::LAYER_GZIP_LEVEL;
    let layout = layer::Layout {
        scheme: &scheme,
        owner: (uid, gid),
        mtime: 0,
        level,
        zstd: None,
        bytecode: None,
    };
    let fragments_dir = crate::cache::default_cache_dir().join("fragments");
    let (lost, overlaps) = layer::overlaps(files, &layout)?;
    wheel::log_overlaps(&overlaps);
    let frags = layer::fragments(&fragments_dir, files, &layout, &lost)?;
    let (frags, mut own) = layer::prepare(frags, &layout);
    let f = std::fs::File::create(out).map_err(|source| InstallError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let a = layer::assemble(&frags, &mut own, 0, level, &f)?;
    tracing::debug!(digest = %a.digest, diff_id = %a.diff_id, size = a.size, "layer written");
    Ok(frags.into_iter().map(|f| (f.name, f.version)).collect())
}

/// A `pip install --target` directory.
fn install_target(
    files: &[WheelFile],
    opts: &InstallOptions,
    dir: &Path,
) -> Result<Vec<(String, String)>, InstallError> {
    let scratch = tempfile::tempdir()?;
    let scheme = crate::python::target_scheme(&opts.python, &opts.python_version);
    let pairs: Vec<(PathBuf, String)> = files
        .iter()
        .map(|w| (w.path.clone(), w.filename.clone()))
        .collect();
    let done = wheel::install_all(&pairs, &scheme, (0, 0), true, scratch.path())?;
    let roots = vec![scheme.site_packages.clone(), scheme.scripts.clone()];
    let entries = wheel::merge(&done, &roots, (0, 0))?;
    std::fs::create_dir_all(dir)?;
    crate::python::materialize_target(&entries, dir)?;
    Ok(done.into_iter().map(|i| (i.name, i.version)).collect())
}
