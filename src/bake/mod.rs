//! `raypack bake`: the project's code on a pinned rayproject/ray base, as a reproducible image.
//!
//! Flow: pin the base (raypack.lock) → pull its manifest, config and layers into the blob cache
//! and learn its layout ([`crate::base`]) → collect the code (same rules as `raypack env`) →
//! one code layer under `app_dir` → the base config edited as raw JSON → an [`Image`] →
//! publish (registry push, OCI layout, docker tar).
//!
//! Dependency layers (wheels, [`deps`]) slot in between the base layers and the code layer:
//! each is just another list of [`LayerEntry`]s.

mod build;
pub mod deps;
pub mod sbom;
pub mod shared_cache;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::archive::tar::{EntryKind, LayerEntry, write_layer};
use crate::cache::{BlobCache, CacheError};
use crate::collect::StatCache;
use crate::lockfile::LockError;
use crate::oci::client::{ClientOptions, PushStats, Registry, RegistryError};
use crate::oci::image::{Image, ImageIndex, compress_layer};
use crate::oci::media::{Family, Platform};
use crate::oci::publish::{Destination, PublishError, Published};
use crate::oci::reference::Reference;
use crate::plan::{PlanError, plan_packages};
use crate::recipe::Recipe;

use crate::base::{BaseError, BaseLayout};

/// Bumped when the code layer's layout changes.
pub const LAYOUT_VERSION: &str = "raypack-bake-v1";
pub use crate::plan::PY_MODULES_DIR;

#[derive(Debug, Clone, Default)]
pub struct BakeOptions {
    /// Platforms to build (empty: the recipe's); several make one multi-platform image.
    pub platforms: Vec<String>,
    pub push: bool,
    pub oci_layout: Option<PathBuf>,
    pub tar: Option<PathBuf>,
    /// Re-resolve the base tag even if raypack.lock pins it.
    pub upgrade_base: bool,
    pub registry: ClientOptions,
    pub cache_dir: Option<PathBuf>,
    /// Bake the code only; the dependencies come from the base image.
    pub skip_deps: bool,
    /// Also write the SBOM here (each further format beside it, with its suffix).
    pub sbom_file: Option<PathBuf>,
    /// Sign the pushed image with this key (cosign's format; see [`crate::oci::cosign`]).
    pub sign_key: Option<PathBuf>,
    /// The shared layer cache, instead of the recipe's `[image] cache`.
    pub layer_cache: Option<crate::recipe::LayerCache>,
}

#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Base(#[from] BaseError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Store(#[from] raypack_store::StoreError),
    #[error("--platform {0}: write linux/amd64 or linux/arm64")]
    Platform(String),
    #[error(
        "--push needs `repository` in [image] (e.g. repository = \"registry.example.com/team/app\")"
    )]
    NoRepository,
    #[error("[image] repository `{0}` is not a valid reference")]
    BadRepository(String),
    #[error("base image {image}: {message}")]
    BaseImage { image: String, message: String },
    #[error("cannot write the code layer: {0}")]
    Layer(std::io::Error),
    #[error(transparent)]
    Pinned(#[from] crate::python::pinned::PinnedError),
    #[error(transparent)]
    Wheel(#[from] crate::python::wheel::WheelError),
    #[error("{image}: the glibc level of the base is unknown; set [base] manylinux = \"2_35\"")]
    UnknownGlibc { image: String },
    #[error("cannot install wheels for {platform} / Python {python}")]
    NoTarget { platform: String, python: String },
    #[error("base image {image}: {source}")]
    Python {
        image: String,
        #[source]
        source: crate::recipe::PythonMismatch,
    },
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Locking(#[from] crate::lock::LockError),
    #[error("{filename}: not a readable wheel: {source}")]
    UnreadableWheel {
        filename: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("--sign {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: crate::oci::cosign::KeyError,
    },
    #[error("--sign {0}: cannot read it: {1}")]
    KeyFile(PathBuf, std::io::Error),
    #[error("--sign needs --push: a signature names the image's digest in its repository")]
    SignWithoutPush,
    #[error("cannot write the SBOM {0}: {1}")]
    SbomFile(PathBuf, std::io::Error),
    #[error(
        "[image] compression = \"zstd\" needs OCI media types, and the base {image} uses Docker's (which have no zstd layer type); use gzip, or a base with OCI manifests"
    )]
    ZstdNeedsOci { image: String },
}

/// One SBOM a bake produced.
#[derive(Debug, Clone, Serialize)]
pub struct SbomReport {
    pub format: sbom::SbomFormat,
    pub media_type: String,
    /// `sha256:` of the document's bytes.
    pub sha256: String,
    /// The referrer manifest's digest, when pushed.
    pub referrer: Option<String>,
    /// How the referrer is listed (the referrers API, or the tag of the tag schema).
    pub attached: Option<crate::oci::referrers::Attached>,
    /// Files it was written to.
    pub files: Vec<PathBuf>,
}

/// `path` with `suffix` appended to its file name (`out/app.tar` → `out/app.tar.spdx.json`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes an SBOM file whole (its directory made if need be).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BakeError> {
    let err = |e: std::io::Error| BakeError::SbomFile(path.to_path_buf(), e);
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    crate::archive::write_file_atomically(path, bytes).map_err(err)
}

/// Reads the signing key before anything is built or pushed, so a bad key or a missing
/// password fails first. The password comes from `COSIGN_PASSWORD`, as for cosign.
fn load_key(path: &Path) -> Result<crate::oci::cosign::SigningKey, BakeError> {
    use crate::oci::cosign::SigningKey;
    let text = std::fs::read_to_string(path).map_err(|e| BakeError::KeyFile(path.into(), e))?;
    let password = std::env::var("COSIGN_PASSWORD").ok();
    SigningKey::from_pem(&text, password.as_deref().map(str::as_bytes)).map_err(|source| {
        BakeError::Key {
            path: path.into(),
            source,
        }
    })
}

/// What a bake produced.
#[derive(Debug, Clone, Serialize)]
pub struct BakeOutcome {
    /// The manifest digest.
    pub digest: String,
    /// `repository@digest`, the reference manifests should use.
    pub reference: String,
    pub base: String,
    pub base_digest: String,
    pub ray_version: Option<String>,
    pub code_layer: String,
    pub layers: Vec<String>,
    pub pushed: Option<PushReport>,
    pub oci_layout: Option<PathBuf>,
    pub tar: Option<PathBuf>,
    pub base_pinned_now: bool,
    /// Kept from the base, installed, replaced; the dependency layers.
    pub dependencies: deps::DepsReport,
    /// The SBOMs, one per `[image] sbom` format.
    pub sbom: Vec<SbomReport>,
    /// The tag of the cosign signature (`sha256-<hex>.sig`), when signed.
    pub signature: Option<String>,
    /// Each platform of a multi-platform bake (the fields above name the index and, for
    /// the base, layers and dependencies, the first platform); empty for one platform.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformReport>,
    /// The (first platform's) image.
    #[serde(skip)]
    pub image: Image,
}

/// One platform of a multi-platform bake.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformReport {
    pub platform: String,
    /// The platform's manifest digest (the index lists it).
    pub digest: String,
    pub base_digest: String,
    /// The base's tag for this platform, when not the recipe's (`…-aarch64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_tag: Option<String>,
    pub ray_version: Option<String>,
    pub layers: Vec<String>,
    pub dependencies: deps::DepsReport,
    pub sbom: Vec<SbomReport>,
}

/// The tag an image is pushed under when the recipe names none: `raypack-` and the first 16
/// hex digits of its manifest digest. It names exactly this image (the same inputs give the
/// same tag, any change another), needs no git, and keeps the registry from collecting it.
pub fn default_tag(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("raypack-{}", &hex[..hex.len().min(16)])
}

#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub repository: String,
    pub tags: Vec<String>,
    /// The recipe named no tag: `tags` holds the one derived from the digest ([`default_tag`]).
    pub default_tag: bool,
    pub uploaded: usize,
    pub mounted: usize,
    pub skipped: usize,
}

impl From<(&str, &[String], PushStats)> for PushReport {
    fn from((repo, tags, s): (&str, &[String], PushStats)) -> Self {
        PushReport {
            repository: repo.to_string(),
            tags: tags.to_vec(),
            default_tag: false,
            uploaded: s.uploaded,
            mounted: s.mounted,
            skipped: s.skipped,
        }
    }
}

/// The image timestamp: `SOURCE_DATE_EPOCH` if set, else the Unix epoch (reproducible).
pub fn build_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// RFC 3339 UTC for a Unix time.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The git remote as a public URL: credentials stripped, scp-style turned into https.
fn source_url(root: &Path) -> Option<String> {
    let raw = git(root, &["remote", "get-url", "origin"])?;
    if let Ok(mut u) = url::Url::parse(&raw) {
        let _ = u.set_username("");
        let _ = u.set_password(None);
        return Some(u.to_string());
    }
    // git@host:org/repo.git
    let (_, rest) = raw.split_once('@')?;
    let (host, path) = rest.split_once(':')?;
    Some(format!("https://{host}/{path}"))
}

/// The code layer's entries: the working dir at `app_dir`, each py_module at
/// `app_dir/.raypack/py_modules/<name>`, owned by the base's user; directories below `app_dir`
/// (including it) get entries, its parents (which the base has) do not.
pub fn code_entries(
    recipe: &Recipe,
    layout: &BaseLayout,
    cache: Option<&StatCache>,
) -> Result<Vec<LayerEntry>, PlanError> {
    let packages = plan_packages(recipe, cache, u64::MAX)?;
    let app = recipe.image.app_dir.trim_start_matches('/').to_string();
    let mut entries = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    dirs.insert(app.clone());
    for p in &packages {
        let prefix = format!("{app}/{}", p.role.tree_prefix());
        for f in &p.files.files {
            let path = format!("{prefix}{}", f.rel);
            let mut d = path.as_str();
            while let Some((parent, _)) = d.rsplit_once('/') {
                if parent.len() < app.len() {
                    break;
                }
                dirs.insert(parent.to_string());
                d = parent;
            }
            entries.push(LayerEntry {
                path,
                kind: EntryKind::File {
                    source: f.abs.clone(),
                },
                mode: f.mode(),
                uid: layout.uid,
                gid: layout.gid,
            });
        }
    }
    for d in dirs {
        entries.push(LayerEntry {
            path: d,
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: layout.uid,
            gid: layout.gid,
        });
    }
    Ok(entries)
}

/// Edits the base config (raw JSON, so Docker-only fields survive) for the new layers.
pub fn edit_config(
    base_config: &Value,
    recipe: &Recipe,
    layout: &BaseLayout,
    new_layers: &[(String, String)],
    labels: &Map<String, Value>,
    created: &str,
) -> Value {
    let mut cfg = base_config.clone();
    if !cfg["config"].is_object() {
        cfg["config"] = json!({});
    }
    let app = &recipe.image.app_dir;
    cfg["config"]["WorkingDir"] = json!(app);
    let mut env: Vec<String> = cfg["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut set = |k: &str, v: String| match env
        .iter_mut()
        .find(|e| e.split_once('=').is_some_and(|(ek, _)| ek == k))
    {
        Some(e) => *e = format!("{k}={v}"),
        None => env.push(format!("{k}={v}")),
    };
    // py_modules and the working dir are importable by every Ray worker, whatever its cwd.
    let old_pp = base_config["config"]["Env"].as_array().and_then(|a| {
        a.iter()
            .filter_map(|v| v.as_str())
            .find_map(|e| e.strip_prefix("PYTHONPATH="))
            .map(str::to_string)
    });
    let mut pp = format!("{app}/{PY_MODULES_DIR}:{app}");
    if let Some(o) = old_pp.filter(|o| !o.is_empty()) {
        pp = format!("{pp}:{o}");
    }
    set("PYTHONPATH", pp);
    for (k, v) in &recipe.image.env {
        set(k, v.clone());
    }
    cfg["config"]["Env"] = json!(env);
    if !cfg["config"]["Labels"].is_object() {
        cfg["config"]["Labels"] = json!({});
    }
    for (k, v) in labels {
        cfg["config"]["Labels"][k] = v.clone();
    }
    if cfg["config"]["User"].as_str().is_none_or(str::is_empty) {
        cfg["config"]["User"] = json!(format!("{}:{}", layout.uid, layout.gid));
    }
    if !cfg["rootfs"]["diff_ids"].is_array() {
        cfg["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    if !cfg["history"].is_array() {
        cfg["history"] = json!([]);
    }
    for (diff_id, created_by) in new_layers {
        cfg["rootfs"]["diff_ids"]
            .as_array_mut()
            .expect("array")
            .push(json!(diff_id));
        cfg["history"]
            .as_array_mut()
            .expect("array")
            .push(json!({"created": created, "created_by": created_by, "comment": LAYOUT_VERSION}));
    }
    cfg["created"] = json!(created);
    cfg
}

/// The shared layer cache this bake uses: `--cache`, else `[image] cache`, else the target
/// repository when pushing.
async fn shared_cache_of<'a>(
    recipe: &Recipe,
    opts: &BakeOptions,
    target: Option<&Reference>,
    registry: &'a Registry,
    http: &reqwest::Client,
) -> Result<Option<shared_cache::SharedCache<'a>>, BakeError> {
    use crate::recipe::LayerCache;
    let setting = opts.layer_cache.as_ref().unwrap_or(&recipe.image.cache);
    let location = match setting {
        LayerCache::Off => return Ok(None),
        LayerCache::Target => match target.filter(|_| opts.push) {
            Some(t) => shared_cache::Location::Registry(Reference {
                tag: None,
                digest: None,
                ..t.clone()
            }),
            None => return Ok(None),
        },
        LayerCache::Registry(r) => shared_cache::Location::Registry(r.clone()),
        LayerCache::Store(url) => shared_cache::Location::Store(
            Box::new(raypack_store::Store::connect(url, false, http).await?),
            url.to_string(),
        ),
    };
    // A reused layer need not be downloaded when the push will find it in (or mount it into)
    // the target and no local output needs its bytes.
    let push_target = target
        .filter(|_| opts.push && opts.oci_layout.is_none() && opts.tar.is_none())
        .cloned();
    Ok(Some(shared_cache::SharedCache {
        registry,
        location,
        push_target,
    }))
}

/// Writes every platform's pending shared-cache entries; counts them into the reports.
async fn write_cache_entries(
    lc: &shared_cache::SharedCache<'_>,
    built: &mut [build::PlatformImage],
    mount_from: &[&Reference],
    cache: &BlobCache,
    progress: &mut impl FnMut(&str),
) {
    for b in built.iter_mut() {
        let pending = std::mem::take(&mut b.dependencies.pending);
        if pending.is_empty() {
            continue;
        }
        progress(&format!(
            "recording {} entries in the shared layer cache",
            pending.len()
        ));
        let n = lc.write(&pending, mount_from, cache).await;
        if let Some(r) = b.dependencies.shared_cache.as_mut() {
            r.entries_written += n;
        }
    }
}

fn cache_of(opts: &BakeOptions) -> BlobCache {
    BlobCache::new(
        &opts
            .cache_dir
            .clone()
            .unwrap_or_else(crate::cache::default_cache_dir),
    )
}

/// Writes entries as a tar layer, compresses it into the cache as `[image] compression` asks;
/// returns the blob and its diff_id.
fn layer_blob(
    recipe: &Recipe,
    entries: &mut [LayerEntry],
    mtime: u64,
    family: Family,
    cache: &BlobCache,
) -> Result<(crate::oci::image::Blob, String), BakeError> {
    use std::io::Write;
    let tmp = tempfile::NamedTempFile::new().map_err(BakeError::Layer)?;
    let out = std::io::BufWriter::new(tmp.as_file().try_clone().map_err(BakeError::Layer)?);
    write_layer(out, entries, mtime)
        .map_err(BakeError::Layer)?
        .flush()
        .map_err(BakeError::Layer)?;
    compress_layer(tmp.path(), family, recipe.image.compression, cache)?.ok_or_else(|| {
        BakeError::ZstdNeedsOci {
            image: recipe.base.image.clone(),
        }
    })
}

pub async fn run(
    recipe: &Recipe,
    opts: &BakeOptions,
    http: &reqwest::Client,
    mut progress: impl FnMut(&str),
) -> Result<BakeOutcome, BakeError> {
    let names = if opts.platforms.is_empty() {
        recipe.base.platforms.clone()
    } else {
        opts.platforms.clone()
    };
    let mut platforms: Vec<Platform> = Vec::new();
    for s in &names {
        let p = Platform::parse(s)
            .filter(|p| p.os == "linux" && matches!(p.architecture.as_str(), "amd64" | "arm64"))
            .ok_or_else(|| BakeError::Platform(s.clone()))?;
        if !platforms.contains(&p) {
            platforms.push(p);
        }
    }
    let multi = platforms.len() > 1;
    if multi && opts.tar.is_some() {
        return Err(PublishError::TarIsSinglePlatform(names.join(" + ")).into());
    }
    let target = match &recipe.image.repository {
        Some(r) => Some(Reference::parse(r).map_err(|_| BakeError::BadRepository(r.clone()))?),
        None if opts.push => return Err(BakeError::NoRepository),
        None => None,
    };
    let registry = Registry::new(opts.registry.clone())?;
    let cache = cache_of(opts);
    let key = match &opts.sign_key {
        Some(_) if !opts.push => return Err(BakeError::SignWithoutPush),
        Some(path) => Some(load_key(path)?),
        None => None,
    };

    let layer_cache = shared_cache_of(recipe, opts, target.as_ref(), &registry, http).await?;
    let mtime = build_epoch();
    let created = rfc3339(mtime);
    let platform_names: Vec<String> = platforms.iter().map(ToString::to_string).collect();
    let image_name = target
        .as_ref()
        .map(|t| t.name())
        .unwrap_or_else(|| recipe.name.clone());
    let shared = build::Shared {
        mtime,
        created: created.clone(),
        // Asked of git once: the labels and the SBOMs name them.
        revision: git(&recipe.root, &["rev-parse", "HEAD"]),
        source: source_url(&recipe.root),
        // The image this push replaces (its first tag): dependency layers it already has
        // are fetched rather than built.
        previous: target.as_ref().filter(|_| opts.push).map(|t| Reference {
            tag: recipe
                .image
                .tags
                .first()
                .cloned()
                .or_else(|| t.tag.clone())
                .or_else(|| Some("latest".into())),
            digest: None,
            ..t.clone()
        }),
        platforms: &platform_names,
        image_name: image_name.clone(),
        layer_cache: layer_cache.as_ref(),
    };
    // Every platform's base is pinned first: raypack.lock is in the working dir, so it must
    // be final before the (shared) code layer is built.
    let mut pinned = Vec::new();
    for p in &platforms {
        progress(&build::say(&shared, p, "resolving the base image"));
        pinned.push(
            crate::base::PinnedBase::pin(recipe, p.clone(), &registry, &cache, opts.upgrade_base)
                .await?,
        );
    }
    let mut prepared: Vec<build::Prepared> = Vec::new();
    for base in pinned {
        // One lock for every platform: it prefers the first platform's base contents.
        let lock_base = match prepared.first() {
            Some(first) if !opts.skip_deps => Some(first.pulled.installed(&cache).await?),
            _ => None,
        };
        prepared.push(
            build::prepare(
                recipe,
                opts,
                base,
                &shared,
                lock_base.as_deref(),
                &registry,
                &cache,
                http,
                &mut progress,
            )
            .await?,
        );
    }
    // The code layer, after the pins and the lock are written: the same blob for every
    // platform whose base has the same user and media types (it has no binaries).
    progress("building the code layer");
    let mut code_layers: Vec<(CodeKey, CodeLayer)> = Vec::new();
    let mut built: Vec<build::PlatformImage> = Vec::new();
    for p in prepared {
        let key = (p.pulled.layout.uid, p.pulled.layout.gid, p.pulled.family);
        let code = match code_layers.iter().find(|(k, _)| *k == key) {
            Some((_, c)) => c.clone(),
            None => {
                let c = build::code_layer(recipe, &p.pulled.layout, key.2, mtime, &cache)?;
                code_layers.push((key, c.clone()));
                c
            }
        };
        built.push(build::assemble(recipe, opts, p, code, &shared, &cache, &mut progress).await?);
    }
    // Several platforms: one index over their images, of the bases' media-type family.
    let index = if multi {
        let families: Vec<Option<Family>> = built
            .iter()
            .map(|b| Family::of(&b.image.manifest_media_type))
            .collect();
        if families.iter().any(|f| *f != families[0]) {
            return Err(BakeError::BaseImage {
                image: recipe.base.image.clone(),
                message: "its platforms' manifests mix Docker and OCI media types; one index cannot list both".into(),
            });
        }
        let mut ann = Map::new();
        for (k, v) in [
            ("org.opencontainers.image.created", Some(created.clone())),
            ("org.opencontainers.image.source", shared.source.clone()),
            ("org.opencontainers.image.revision", shared.revision.clone()),
            ("org.opencontainers.image.title", Some(recipe.name.clone())),
        ] {
            if let Some(v) = v {
                ann.insert(k.into(), json!(v));
            }
        }
        Some(ImageIndex::assemble(
            families[0].expect("a pulled base has a known family"),
            built
                .iter()
                .map(|b| (b.platform.clone(), b.image.clone()))
                .collect(),
            Some(&ann),
        ))
    } else {
        None
    };
    let digest = match &index {
        Some(i) => i.digest(),
        None => built[0].image.digest(),
    };

    let mut pushed = None;
    let mut signature = None;
    if opts.push {
        let target = target.clone().expect("checked above");
        progress(&format!("pushing to {}", target.name()));
        // A manifest no tag names is garbage-collected by registries: with no [image] tags
        // (and none in the repository), the image gets one derived from its own digest.
        let tags = match (recipe.image.tags.is_empty(), &target.tag) {
            (true, None) => vec![default_tag(&digest)],
            _ => recipe.image.tags.clone(),
        };
        let mut mount_from = vec![&built[0].base_reference];
        if let Some(repo) = layer_cache.as_ref().and_then(|lc| lc.repository()) {
            mount_from.push(repo);
        }
        let dest = Destination::Registry {
            registry: &registry,
            target: &target,
            tags: &tags,
            mount_from: &mount_from,
        };
        let published = match &index {
            Some(i) => dest.publish_index(i).await?,
            None => dest.publish(&built[0].image).await?,
        };
        let Published::Pushed(stats) = published else {
            unreachable!("a registry destination pushes")
        };
        // The shared cache's entries, now that their layers are in the registry.
        if let Some(lc) = &layer_cache {
            write_cache_entries(lc, &mut built, &[&target], &cache, &mut progress).await;
        }
        let mut report = PushReport::from((target.name().as_str(), tags.as_slice(), stats));
        report.default_tag = recipe.image.tags.is_empty() && target.tag.is_none();
        pushed = Some(report);
        // After the image: a referrer's subject must exist first. Each platform's SBOM
        // describes, and refers to, that platform's manifest.
        for b in &mut built {
            let subject = crate::oci::referrers::Subject::of(&b.image);
            for (report, bytes) in &mut b.sboms {
                progress(&format!("attaching the {:?} SBOM", report.format));
                let artifact = crate::oci::referrers::artifact(
                    &subject,
                    &report.media_type,
                    bytes,
                    &sbom_annotations(&created),
                    &cache,
                )?;
                let (d, how) = registry.attach(&target, &artifact).await?;
                report.referrer = Some(d);
                report.attached = Some(how);
            }
        }
        if let Some(key) = &key {
            progress("signing");
            signature = Some(registry.sign(&target, &digest, key, &cache).await?);
        }
    }
    let name = image_name;
    let ref_name = recipe
        .image
        .tags
        .first()
        .map(String::as_str)
        .unwrap_or("latest");
    let mut oci_layout = opts.oci_layout.clone();
    if !opts.push && opts.oci_layout.is_none() && opts.tar.is_none() {
        oci_layout = Some(recipe.state_dir().join("oci"));
    }
    if let Some(dir) = &oci_layout {
        progress(&format!("writing the OCI layout {}", dir.display()));
        let dest = Destination::OciLayout {
            dir,
            ref_name: Some(ref_name),
        };
        match &index {
            Some(i) => dest.publish_index(i).await?,
            None => dest.publish(&built[0].image).await?,
        };
        for b in &mut built {
            for (report, bytes) in &mut b.sboms {
                let mut path = with_suffix(dir, report.format.suffix());
                if multi {
                    path = for_platform(&path, &b.platform);
                }
                write_atomic(&path, bytes)?;
                report.files.push(path);
            }
        }
    }
    // Not pushed: an explicit cache gets the layers uploaded with its entries.
    if !opts.push
        && let Some(lc) = &layer_cache
    {
        write_cache_entries(lc, &mut built, &[], &cache, &mut progress).await;
    }
    if let Some(t) = &opts.tar {
        progress(&format!("writing {}", t.display()));
        Destination::DockerTar {
            file: t,
            repo_tags: &[format!("{name}:{ref_name}")],
        }
        .publish(&built[0].image)
        .await?;
        for (report, bytes) in &mut built[0].sboms {
            let path = with_suffix(t, report.format.suffix());
            write_atomic(&path, bytes)?;
            report.files.push(path);
        }
    }
    let platform_reports: Vec<PlatformReport> = if multi {
        built
            .iter()
            .map(|b| PlatformReport {
                platform: b.platform.to_string(),
                digest: b.image.digest(),
                base_digest: b.pin.digest.clone(),
                base_tag: b.pin.tag.clone(),
                ray_version: b.ray_version.clone(),
                layers: b.image.layers.iter().map(|l| l.digest.clone()).collect(),
                dependencies: b.dependencies.clone(),
                sbom: b.sboms.iter().map(|(r, _)| r.clone()).collect(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let base_pinned_now = built.iter().any(|b| b.pinned_now);
    let first = built.swap_remove(0);
    Ok(BakeOutcome {
        reference: format!("{name}@{digest}"),
        digest,
        base: recipe.base.image.clone(),
        base_digest: first.pin.digest,
        ray_version: first.ray_version,
        code_layer: first.code_layer,
        layers: first
            .image
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .collect(),
        pushed,
        oci_layout,
        tar: opts.tar.clone(),
        base_pinned_now,
        dependencies: first.dependencies,
        sbom: first.sboms.into_iter().map(|(r, _)| r).collect(),
        signature,
        platforms: platform_reports,
        image: first.image,
    })
}

/// What the code layer's bytes depend on besides the code: the owner and the media types.
type CodeKey = (u32, u32, Family);
/// A code layer: blob and diff_id.
type CodeLayer = (crate::oci::image::Blob, String);

/// `path` with the platform's architecture before its extensions, for the files of one
/// platform of a multi-platform bake (`oci.spdx.json` → `oci.arm64.spdx.json`).
fn for_platform(path: &Path, platform: &Platform) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let cut = name
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '.')
        .map_or(name.len(), |(i, _)| i);
    path.with_file_name(format!(
        "{}.{}{}",
        &name[..cut],
        platform.architecture,
        &name[cut..]
    ))
}

/// The referrer manifest's annotations: its creation time (the image's, so the same image
/// gets the same referrer digest).
fn sbom_annotations(created: &str) -> Map<String, Value> {
    let mut a = Map::new();
    a.insert("org.opencontainers.image.created".into(), json!(created));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
