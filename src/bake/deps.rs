//! The dependency layers of a bake: pinned wheels → what the base already has → layers.
//!
//! 1. Choose one wheel per pinned distribution for the image's target (pylock.toml, or a hashed
//!    requirements.txt resolved against the index).
//! 2. Compare with the base's installed distributions ([`BaseIndex`], built once per base):
//!    the same version is **kept** (not installed again); another version is **replaced**:
//!    installed, plus OCI whiteouts for every file of the old RECORD the new version does not
//!    ship and for the old `.dist-info`, so `importlib.metadata` sees one version.
//! 3. Group: distributions of at least [`HEAVY_BYTES`] unpacked (torch, pyarrow, nvidia-*)
//!    get a layer each, the largest first, within the budget (`[dependencies] max_layers`);
//!    the rest share one layer. Each layer is keyed by its wheels' hashes + target + layout
//!    (+ the base, when it carries whiteouts), so the same wheels give the same blob in any
//!    project, and a cached layer is neither unpacked nor rebuilt.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::json;
use sha2::Digest;

pub use super::shared_cache::InstalledWheel;
use super::shared_cache::{
    FactsRecord, LayerRecord, Pending, PlanRecord, SharedCache, WheelRecord,
};
use super::{BakeError, LAYOUT_VERSION};
use crate::archive::tar::{EntryKind, LayerEntry};
use crate::base::PulledBase;
use crate::cache::BlobCache;
use crate::oci::client::Registry;
use crate::oci::image::Blob;
use crate::oci::media::{Family, Platform};
use crate::oci::reference::Reference;
use crate::python::installed::BaseIndex;
use crate::python::pinned::{self, PinnedWheel};
use crate::python::tags::Target;
use crate::python::{layer, wheel};
use crate::recipe::Recipe;

/// Unpacked size from which a distribution gets a layer of its own.
pub const HEAVY_BYTES: u64 = 64 * 1024 * 1024;
/// Unpacked size from which a wheel's facts (size, license, files) go into the shared cache,
/// so that another machine reusing its layer need not download it.
pub const FACTS_MIN_BYTES: u64 = 16 * 1024 * 1024;
/// Default number of dependency layers at most.
pub const DEFAULT_MAX_LAYERS: usize = 6;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Dist {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Replaced {
    pub name: String,
    /// The base's version.
    pub from: String,
    pub to: String,
    /// Files of the old version removed by whiteouts (dist-info included as one).
    pub whiteouts: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DepLayer {
    pub digest: String,
    pub distributions: Vec<String>,
    /// Unpacked bytes of the wheels in it.
    pub unpacked: u64,
    /// Taken from the layer cache rather than built.
    pub cached: bool,
}

/// What `bake --explain` prints.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DepsReport {
    /// Why the lock was rewritten on the way (requirements changed, no lock yet, …).
    pub relocked: Option<String>,
    pub kept: Vec<Dist>,
    pub installed: Vec<Dist>,
    pub replaced: Vec<Replaced>,
    pub layers: Vec<DepLayer>,
    /// The `.pyc` cache tag the layers were compiled for (`cpython-311`), if they were.
    pub bytecode: Option<String>,
    /// Why the layers have no bytecode although `[image] compile_bytecode` asks for it.
    pub no_bytecode: Option<String>,
    /// The lock (or hashed requirements file) the wheels were chosen from.
    pub lock: Option<LockRef>,
    /// Every wheel installed (new or replacing the base's version), by name: what the SBOM
    /// lists for them.
    #[serde(skip)]
    pub wheels: Vec<InstalledWheel>,
    /// What the shared layer cache did, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_cache: Option<SharedCacheReport>,
    /// Shared-cache entries to write once the image is published.
    #[serde(skip)]
    pub pending: Vec<Pending>,
}

impl DepsReport {
    /// Records a layer's whiteout counts on the distributions it replaces.
    fn count_whiteouts(&mut self, whiteouts: &[(String, usize)]) {
        for (name, n) in whiteouts {
            if let Some(r) = self.replaced.iter_mut().find(|r| &r.name == name) {
                r.whiteouts = *n;
            }
        }
    }

    /// Nothing kept, installed or replaced (no dependencies).
    pub fn is_empty(&self) -> bool {
        self.installed.is_empty() && self.replaced.is_empty() && self.kept.is_empty()
    }
}

/// The file that pinned the wheels, for provenance: an image can be traced to it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LockRef {
    /// Relative to the project root.
    pub file: String,
    /// `sha256:` of its bytes.
    pub sha256: String,
    /// The `[tool.raypack] input-hash` a pylock.toml written by `raypack lock` records.
    pub input_hash: Option<String>,
}

/// `file` (a lock or hashed requirements file) as a [`LockRef`].
fn lock_ref(recipe: &Recipe, file: &std::path::Path) -> Option<LockRef> {
    let bytes = std::fs::read(file).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    Some(LockRef {
        file: file
            .strip_prefix(&recipe.root)
            .unwrap_or(file)
            .to_string_lossy()
            .into_owned(),
        sha256: format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))),
        input_hash: crate::python::pylock::recorded_input_hash(&text),
    })
}

/// What the lock is for: one lock serves every platform of a bake, so its inputs are the same
/// whichever platform's layers are being built.
#[derive(Debug)]
pub struct LockFor<'a> {
    /// Every platform of the bake (`linux/amd64`, …).
    pub platforms: &'a [String],
    /// The base contents the lock prefers: the first platform's (`None`: this platform's own).
    pub base: Option<&'a crate::python::installed::BaseIndex>,
}

/// A built dependency layer: blob, diff_id, history text.
pub type BuiltLayer = (Blob, String, String);

/// Where a layer may be found instead of built.
#[derive(Debug, Default)]
pub struct Reuse<'a> {
    /// The registry and the image this push replaces (its first tag).
    pub previous: Option<(&'a Registry, &'a Reference)>,
    /// The shared layer cache.
    pub shared: Option<&'a SharedCache<'a>>,
}

/// What the shared layer cache did for a bake (`dependencies.shared_cache` in JSON).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SharedCacheReport {
    /// `registry/repository` of the cache.
    pub repository: String,
    /// The whole plan was there: no wheel was downloaded, nothing installed.
    pub plan_hit: bool,
    /// Layers taken from the cache.
    pub layers_reused: usize,
    /// Entries this bake wrote (after publishing).
    pub entries_written: usize,
}

#[allow(clippy::too_many_arguments)]
pub async fn dependency_layers(
    recipe: &Recipe,
    platform: &Platform,
    base: &PulledBase,
    lock_for: &LockFor<'_>,
    cache: &BlobCache,
    mtime: u64,
    reuse: &Reuse<'_>,
    http: &reqwest::Client,
    progress: &mut impl FnMut(&str),
) -> Result<(Vec<BuiltLayer>, DepsReport), BakeError> {
    let remote = reuse.previous;
    let (layout, family) = (&base.layout, base.family);
    let deps = &recipe.dependencies;
    let mut report = DepsReport::default();
    if deps.requirements.is_empty() && deps.requirements_file.is_none() {
        return Ok((Vec::new(), report));
    }
    crate::requirements::remember_recipe_credentials(deps);
    let manylinux = layout
        .manylinux
        .clone()
        .ok_or_else(|| BakeError::UnknownGlibc {
            image: recipe.base.image.clone(),
        })?;
    let target = Target::new(&platform.to_string(), &layout.python_version, &manylinux)
        .ok_or_else(|| BakeError::NoTarget {
            platform: platform.to_string(),
            python: layout.python_version.clone(),
        })?;
    progress("reading what the base has installed");
    let index = base.installed(cache).await?;

    progress("choosing wheels");
    let wheels = if crate::requirements::is_pinned(recipe, &target) {
        let client = crate::python::index::IndexClient::new(http.clone(), cache.root());
        report.lock = deps
            .requirements_file
            .as_ref()
            .and_then(|f| lock_ref(recipe, &recipe.root.join(f)));
        crate::requirements::recipe_wheels(recipe, &target, &client).await?
    } else {
        // Unpinned requirements: the lock (re-locked only when its inputs changed).
        let lock_index = lock_for.base.unwrap_or(index.as_ref());
        let opts = crate::lock::LockOptions {
            platforms: lock_for.platforms.to_vec(),
            python_version: Some(layout.python_version.clone()),
            manylinux: Some(manylinux.clone()),
            base: crate::lock::BaseContents::Known(lock_index.preferences()),
            base_requires: lock_index.requirements(),
            cache_dir: Some(cache.root().to_path_buf()),
            ..Default::default()
        };
        let ensured =
            crate::lock::ensure_locked(recipe, &opts, http, |m| tracing::info!("{m}")).await?;
        if let Some(reason) = &ensured.relocked {
            report.relocked = Some(reason.clone());
        }
        report.lock = lock_ref(recipe, &ensured.path);
        pinned::from_pylock(&ensured.path, &target)?
    };
    if wheels.is_empty() {
        return Ok((Vec::new(), report));
    }

    let mut to_install = Vec::new();
    for w in wheels {
        match index.get(&w.name) {
            Some(d) if index.ships(&w.name, &w.version) => report.kept.push(Dist {
                name: w.name.clone(),
                version: d.version.clone(),
            }),
            Some(d) => {
                report.replaced.push(Replaced {
                    name: w.name.clone(),
                    from: d.version.clone(),
                    to: w.version.clone(),
                    whiteouts: 0,
                });
                to_install.push(w);
            }
            None => {
                report.installed.push(Dist {
                    name: w.name.clone(),
                    version: w.version.clone(),
                });
                to_install.push(w);
            }
        }
    }
    if to_install.is_empty() {
        return Ok((Vec::new(), report));
    }

    let scheme = wheel::Scheme::for_python(
        &layout.python,
        &layout.python_version,
        &layout.site_packages,
    );
    let owner = (layout.uid, layout.gid);
    let media_type = layer_media_type(recipe, family)?;
    let max_layers = recipe
        .dependencies
        .max_layers
        .unwrap_or(DEFAULT_MAX_LAYERS)
        .max(1);
    // The whole plan, keyed by everything its layers depend on: a fresh machine finds its
    // layers in the shared cache without downloading a wheel.
    let plan_key = {
        let mut h = sha2::Sha256::new();
        h.update(format!(
            "raypack dependency plan v1\n{LAYOUT_VERSION}\n{target}\n{scheme:?}\n{}:{}\n{mtime}\n{family:?}\n{media_type}\n{}\ncompile {}\nmax_layers {max_layers}\nbase {}\n",
            owner.0,
            owner.1,
            match recipe.image.compression {
                crate::oci::media::Compression::Gzip => "gzip".to_string(),
                crate::oci::media::Compression::Zstd { level } => format!("zstd {level}"),
            },
            recipe.image.compile_bytecode,
            base.image.config.digest,
        ));
        let mut lines: Vec<String> = to_install
            .iter()
            .map(|w| format!("{} {} {} {}\n", w.name, w.version, w.filename, w.sha256))
            .collect();
        lines.sort();
        for l in lines {
            h.update(l.as_bytes());
        }
        hex::encode(h.finalize())
    };
    if let Some(shared) = reuse.shared {
        report.shared_cache = Some(SharedCacheReport {
            repository: shared.name(),
            ..Default::default()
        });
        progress("looking up the shared layer cache");
        if let Some(plan) = shared.plan(&plan_key, cache).await
            && let Some(built) = from_plan(&plan, &to_install, shared, cache, &mut report).await
        {
            progress(&format!(
                "reusing {} dependency layers from the shared cache {}",
                built.len(),
                shared.name()
            ));
            return Ok((built, report));
        }
    }

    let compiler = if recipe.image.compile_bytecode {
        match crate::python::bytecode::Compiler::find(&layout.python_version) {
            Ok(c) => {
                report.bytecode = Some(c.cache_tag.clone());
                Some(c)
            }
            Err(e) => {
                report.no_bytecode = Some(e);
                None
            }
        }
    } else {
        None
    };
    let flayout = layer::Layout {
        scheme: &scheme,
        owner,
        mtime,
        level: crate::oci::image::LAYER_GZIP_LEVEL,
        zstd: match recipe.image.compression {
            crate::oci::media::Compression::Zstd { level } => Some(level),
            crate::oci::media::Compression::Gzip => None,
        },
        bytecode: compiler.as_ref(),
    };
    // What grouping and overlaps need of each wheel (unpacked size, license, the files it
    // ships): read from the wheel, or, for a heavy wheel this machine does not have, from the
    // shared cache, so that a layer found there by key needs no download.
    let facts_key = |w: &PinnedWheel| {
        let mut h = sha2::Sha256::new();
        h.update(format!(
            "raypack wheel facts v1\n{}\n{scheme:?}\n{}:{}\n",
            w.sha256, owner.0, owner.1
        ));
        hex::encode(h.finalize())
    };
    let mut facts: std::collections::HashMap<String, FactsRecord> = Default::default();
    if let Some(shared) = reuse.shared {
        for w in &to_install {
            if !cache.contains(&format!("sha256:{}", w.sha256))
                && let Some(f) = shared.facts(&facts_key(w), cache).await
                && f.sha256 == w.sha256
            {
                facts.insert(w.sha256.clone(), f);
            }
        }
    }
    let need: Vec<PinnedWheel> = to_install
        .iter()
        .filter(|w| !facts.contains_key(&w.sha256))
        .cloned()
        .collect();
    if !need.is_empty() {
        progress(&format!("downloading {} wheels", need.len()));
    }
    let fetched = pinned::fetch(http, &need, cache).await?;
    let (scheme2, keys): (wheel::Scheme, Vec<String>) =
        (scheme.clone(), need.iter().map(&facts_key).collect());
    let read = tokio::task::spawn_blocking(move || {
        let files: Vec<layer::WheelFile> = fetched
            .iter()
            .map(|(w, p)| layer::WheelFile {
                path: p.clone(),
                filename: w.filename.clone(),
                sha256: w.sha256.clone(),
            })
            .collect();
        let shipped = layer::shipped_files(&files, &scheme2, owner)?;
        fetched
            .into_iter()
            .zip(shipped)
            .zip(keys)
            .map(|(((w, p), shipped), key)| {
                let unpacked = unpacked_size(&p).map_err(|source| BakeError::UnreadableWheel {
                    filename: w.filename.clone(),
                    source,
                })?;
                let license = std::fs::File::open(&p)
                    .ok()
                    .and_then(|f| crate::python::metadata::metadata_from_wheel(f).ok())
                    .and_then(|m| {
                        crate::python::metadata::declared_license(&String::from_utf8_lossy(&m))
                    });
                Ok(FactsRecord {
                    key,
                    sha256: w.sha256.clone(),
                    unpacked,
                    license,
                    shipped,
                })
            })
            .collect::<Result<Vec<_>, BakeError>>()
    })
    .await
    .expect("reading wheels does not panic")?;
    for f in read {
        // Worth recording: a wheel whose download the facts save.
        if reuse.shared.is_some() && f.unpacked >= FACTS_MIN_BYTES {
            report.pending.push(Pending::facts(&f));
        }
        facts.insert(f.sha256.clone(), f);
    }
    let fact = |w: &PinnedWheel| facts.get(&w.sha256).expect("facts for every wheel");
    let mut wheel_entries: Vec<WheelRecord> = to_install
        .iter()
        .map(|w| WheelRecord {
            wheel: InstalledWheel {
                name: w.name.clone(),
                version: w.version.clone(),
                filename: w.filename.clone(),
                url: w.url.clone(),
                sha256: w.sha256.clone(),
                license: fact(w).license.clone(),
            },
            unpacked: fact(w).unpacked,
        })
        .collect();
    wheel_entries.sort_by(|a, b| a.wheel.name.cmp(&b.wheel.name));
    report.wheels = wheel_entries.iter().map(|r| r.wheel.clone()).collect();
    let sized: Vec<Sized> = to_install
        .iter()
        .map(|w| {
            let path = cache.path(&format!("sha256:{}", w.sha256))?;
            Ok((w.clone(), path, fact(w).unpacked))
        })
        .collect::<Result<_, crate::cache::CacheError>>()?;
    let groups = group(sized, max_layers);
    // What the image already at the push target was built with: layers by key, so a layer
    // this bake would build again is fetched from the registry instead.
    let published = match remote {
        Some((registry, target)) => published_layers(registry, target, platform, cache).await,
        None => Default::default(),
    };
    // Which distribution keeps a file that several ship depends on all of them, whichever
    // layers they land in: decided once, before any layer.
    let ordered: Vec<&PinnedWheel> = groups.iter().flatten().map(|(w, _, _)| w).collect();
    let shipped: Vec<layer::ShippedFiles> =
        ordered.iter().map(|w| fact(w).shipped.clone()).collect();
    let all: Vec<layer::WheelFile> = groups
        .iter()
        .flatten()
        .map(|(w, p, _)| layer::WheelFile {
            path: p.clone(),
            filename: w.filename.clone(),
            sha256: w.sha256.clone(),
        })
        .collect();
    let (lost, overlaps) = layer::overlaps_of(&shipped);
    wheel::log_overlaps(&overlaps);
    let mut lost_of: std::collections::HashMap<String, (layer::WheelFile, layer::Lost)> = all
        .into_iter()
        .zip(lost)
        .map(|(w, l)| (w.filename.clone(), (w, l)))
        .collect();
    let mut built = Vec::new();
    let mut entries: Vec<LayerRecord> = Vec::new();
    for g in groups {
        let names: Vec<String> = g.iter().map(|(w, _, _)| w.name.clone()).collect();
        let unpacked: u64 = g.iter().map(|(_, _, n)| n).sum();
        let replaced_here: Vec<&str> = g
            .iter()
            .filter(|(w, _, _)| report.replaced.iter().any(|r| r.name == w.name))
            .map(|(w, _, _)| w.name.as_str())
            .collect();
        let mut key = sha2::Sha256::new();
        key.update(format!(
            "{LAYOUT_VERSION}\n{target}\n{scheme:?}\n{}:{}\n{mtime}\n{family:?}\n",
            layout.uid, layout.gid
        ));
        if !replaced_here.is_empty() {
            // Whiteouts depend on what the base ships.
            key.update(format!("base {}\n", base.image.config.digest));
        }
        let (group_wheels, group_lost): (Vec<layer::WheelFile>, Vec<layer::Lost>) = g
            .iter()
            .map(|(w, _, _)| lost_of.remove(&w.filename).expect("one entry per wheel"))
            .unzip();
        // A fragment's key covers its wheel and the files it loses to another distribution.
        let mut keys: Vec<String> = group_wheels
            .iter()
            .zip(&group_lost)
            .map(|(w, l)| flayout.fragment_key(w, l))
            .collect();
        keys.sort();
        for k in &keys {
            key.update(k.as_bytes());
        }
        let key = hex::encode(key.finalize());
        let index_path = cache
            .path(&format!("sha256:{key}"))?
            .with_extension("deplayer.json");
        let record =
            |path: &std::path::Path, digest: &str, diff_id: &str, wh: &[(String, usize)]| {
                let _ = std::fs::write(
                    path,
                    serde_json::to_vec(
                        &json!({ "digest": digest, "diff_id": diff_id, "whiteouts": wh }),
                    )
                    .expect("json"),
                );
            };
        // Reuse, in order: this machine's cache, the shared cache, the image being replaced.
        let mut found = cached_layer(&index_path, cache, media_type).map(|l| (l, false));
        if found.is_none()
            && let Some(shared) = reuse.shared
            && let Some(entry) = shared.layer(&key, cache).await
        {
            match shared.layer_blob(&entry, cache).await {
                Ok(blob) => {
                    if cache.contains(&blob.digest) {
                        record(&index_path, &entry.digest, &entry.diff_id, &entry.whiteouts);
                    }
                    progress(&format!("reusing the shared layer of {}", names.join(", ")));
                    found = Some(((blob, entry.diff_id, entry.whiteouts), true));
                }
                Err(e) => tracing::debug!("cannot reuse shared layer {}: {e}", entry.digest),
            }
        }
        if found.is_none()
            && let (Some(hit), Some((registry, target))) = (published.get(&key), remote)
        {
            let fetched = registry.fetch_blob(target, &hit.digest, cache).await;
            match fetched.map(|path| (diff_id_of(&path), path)) {
                Ok((Ok(d), _)) if d == hit.diff_id => {
                    progress(&format!(
                        "reusing the published layer of {}",
                        names.join(", ")
                    ));
                    tracing::info!(
                        digest = %hit.digest,
                        "reusing the published layer of {} from {target}",
                        names.join(", ")
                    );
                    record(&index_path, &hit.digest, &hit.diff_id, &hit.whiteouts);
                    found = cached_layer(&index_path, cache, media_type).map(|l| (l, false));
                }
                Ok((d, _)) => tracing::warn!(
                    "not reusing {} from {target}: its config says diff_id {}, its content is {d:?}",
                    hit.digest,
                    hit.diff_id
                ),
                Err(e) => tracing::debug!("cannot reuse {} from {target}: {e}", hit.digest),
            }
        }
        let cached = found.is_some();
        let ((blob, diff_id, whiteouts), from_shared) = match found {
            Some(f) => f,
            None => {
                // Wheels known only by their facts are needed now.
                let missing: Vec<PinnedWheel> = g
                    .iter()
                    .filter(|(_, p, _)| !p.is_file())
                    .map(|(w, _, _)| w.clone())
                    .collect();
                if !missing.is_empty() {
                    progress(&format!("downloading {} wheels", missing.len()));
                    pinned::fetch(http, &missing, cache).await?;
                }
                progress(&format!("installing {}", names.join(", ")));
                let frags = layer::fragments(
                    &cache.root().join("fragments"),
                    &group_wheels,
                    &flayout,
                    &group_lost,
                )?;
                let l =
                    dependency_layer(frags, &flayout, media_type, cache, &index, &replaced_here)?;
                record(&index_path, &l.0.digest, &l.1, &l.2);
                (l, false)
            }
        };
        report.count_whiteouts(&whiteouts);
        let created_by = created_by(&names, &key, &whiteouts);
        let entry = LayerRecord {
            key: key.clone(),
            digest: blob.digest.clone(),
            size: blob.size,
            media_type: blob.media_type.clone(),
            diff_id: diff_id.clone(),
            distributions: names.clone(),
            unpacked,
            whiteouts,
            fragments: keys,
        };
        if from_shared {
            if let Some(r) = report.shared_cache.as_mut() {
                r.layers_reused += 1;
            }
        } else if reuse.shared.is_some() {
            report.pending.push(Pending::layer(&entry, blob.clone()));
        }
        entries.push(entry);
        report.layers.push(DepLayer {
            digest: blob.digest.clone(),
            distributions: names,
            unpacked,
            cached,
        });
        built.push((blob, diff_id, created_by));
    }
    if reuse.shared.is_some() {
        let plan = PlanRecord {
            key: plan_key,
            layers: entries,
            wheels: wheel_entries,
            bytecode: report.bytecode.clone(),
            no_bytecode: report.no_bytecode.clone(),
        };
        let blobs = built.iter().map(|(b, _, _)| b.clone()).collect();
        report.pending.push(Pending::plan(&plan, blobs));
    }
    Ok((built, report))
}

type CachedLayer = (Blob, String, Vec<(String, usize)>);

/// The layers of a plan found in the shared cache, with the report filled in as a build would
/// have filled it; `None` (a miss) when the entry does not describe exactly these wheels or a
/// layer cannot be had.
async fn from_plan(
    plan: &PlanRecord,
    to_install: &[PinnedWheel],
    shared: &SharedCache<'_>,
    cache: &BlobCache,
    report: &mut DepsReport,
) -> Option<Vec<BuiltLayer>> {
    let want: BTreeSet<&str> = to_install.iter().map(|w| w.sha256.as_str()).collect();
    let have: BTreeSet<&str> = plan
        .wheels
        .iter()
        .map(|r| r.wheel.sha256.as_str())
        .collect();
    if want != have || plan.layers.is_empty() {
        tracing::debug!("shared plan {} does not match this bake's wheels", plan.key);
        return None;
    }
    let mut built = Vec::new();
    for l in &plan.layers {
        match shared.layer_blob(l, cache).await {
            Ok(blob) => built.push((
                blob,
                l.diff_id.clone(),
                created_by(&l.distributions, &l.key, &l.whiteouts),
            )),
            Err(e) => {
                tracing::debug!("shared plan {}: layer {}: {e}", plan.key, l.digest);
                return None;
            }
        }
    }
    for l in &plan.layers {
        report.count_whiteouts(&l.whiteouts);
        report.layers.push(DepLayer {
            digest: l.digest.clone(),
            distributions: l.distributions.clone(),
            unpacked: l.unpacked,
            cached: true,
        });
    }
    // Where this bake's lock says the wheels come from (another machine may use a mirror).
    let url_of: std::collections::HashMap<&str, &str> = to_install
        .iter()
        .map(|w| (w.sha256.as_str(), w.url.as_str()))
        .collect();
    report.wheels = plan
        .wheels
        .iter()
        .map(|r| InstalledWheel {
            url: url_of
                .get(r.wheel.sha256.as_str())
                .unwrap_or(&r.wheel.url.as_str())
                .to_string(),
            ..r.wheel.clone()
        })
        .collect();
    report.bytecode = plan.bytecode.clone();
    report.no_bytecode = plan.no_bytecode.clone();
    if let Some(r) = report.shared_cache.as_mut() {
        r.plan_hit = true;
        r.layers_reused = plan.layers.len();
    }
    Some(built)
}

/// The history text of a dependency layer: its distributions, then `[key K]` and the
/// whiteout counts, which a later bake reads back to reuse the layer ([`published_layers`]).
fn created_by(names: &[String], key: &str, whiteouts: &[(String, usize)]) -> String {
    let mut s = format!("raypack bake: {} [key {key}", names.join(", "));
    for (name, n) in whiteouts {
        s.push_str(&format!(" {name}={n}"));
    }
    s.push(']');
    s
}

/// The layer media type of `[image] compression` for the base's family.
pub(super) fn layer_media_type(recipe: &Recipe, family: Family) -> Result<&'static str, BakeError> {
    family
        .layer(recipe.image.compression)
        .ok_or_else(|| BakeError::ZstdNeedsOci {
            image: recipe.base.image.clone(),
        })
}

/// SHA-256 of a gzip or zstd layer's uncompressed content (`sha256:…`).
fn diff_id_of(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::{BufRead, Read};
    let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let zstd = f.fill_buf()?.starts_with(&crate::archive::zst::MAGIC);
    let mut d: Box<dyn Read> = if zstd {
        Box::new(crate::archive::zst::decoder(f)?)
    } else {
        Box::new(flate2::bufread::MultiGzDecoder::new(f))
    };
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        use std::io::Read;
        let n = d.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A dependency layer of a published image, found by its key.
#[derive(Debug, Clone)]
struct Published {
    digest: String,
    diff_id: String,
    whiteouts: Vec<(String, usize)>,
}

/// The dependency layers of the image now at `target` (the previous bake's), by key. Any
/// failure (no such tag yet, no access) is no reuse, not an error.
async fn published_layers(
    registry: &Registry,
    target: &Reference,
    platform: &Platform,
    cache: &BlobCache,
) -> std::collections::HashMap<String, Published> {
    let mut out = std::collections::HashMap::new();
    let found = async {
        let resolved = registry.resolve(target, platform, cache).await?;
        let m: serde_json::Value = serde_json::from_slice(&resolved.manifest).unwrap_or_default();
        let config = m["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let path = registry.fetch_blob(target, &config, cache).await?;
        Ok::<_, crate::oci::client::RegistryError>((m, path))
    }
    .await;
    let (manifest, config_path) = match found {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!("no published layers to reuse at {target}: {e}");
            return out;
        }
    };
    let Some(config) = std::fs::read(config_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return out;
    };
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let history = config["history"].as_array().cloned().unwrap_or_default();
    let non_empty = history
        .iter()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false));
    for (i, h) in non_empty.enumerate() {
        let text = h["created_by"].as_str().unwrap_or_default();
        let Some(tail) = text
            .strip_prefix("raypack bake: ")
            .and_then(|t| t.rsplit_once("[key "))
            .and_then(|(_, t)| t.strip_suffix(']'))
        else {
            continue;
        };
        let mut words = tail.split(' ');
        let key = words.next().unwrap_or_default().to_string();
        let whiteouts = words
            .filter_map(|w| {
                let (n, c) = w.split_once('=')?;
                Some((n.to_string(), c.parse().ok()?))
            })
            .collect();
        if let (Some(digest), Some(diff_id)) = (
            layers.get(i).and_then(|l| l["digest"].as_str()),
            diff_ids.get(i).and_then(|d| d.as_str()),
        ) {
            out.insert(
                key,
                Published {
                    digest: digest.to_string(),
                    diff_id: diff_id.to_string(),
                    whiteouts,
                },
            );
        }
    }
    out
}

/// One gzip layer of per-wheel fragments (built once per layout and cached; see
/// [`crate::python::layer`]), with whiteouts for the files of replaced base distributions that
/// the new versions do not ship.
fn dependency_layer(
    frags: Vec<layer::Fragment>,
    layout: &layer::Layout<'_>,
    media_type: &str,
    cache: &BlobCache,
    index: &BaseIndex,
    replaced_here: &[&str],
) -> Result<CachedLayer, BakeError> {
    let (owner, mtime, level) = (layout.owner, layout.mtime, layout.level);
    let (frags, mut own) = layer::prepare(frags, layout);
    let shipped: BTreeSet<String> = frags
        .iter()
        .flat_map(|f| f.paths.iter().cloned())
        .chain(own.iter().map(|e| e.path.clone()))
        .collect();
    let mut whiteouts = Vec::new();
    for name in replaced_here {
        let old = index.get(name).expect("replaced means present");
        let before = own.len();
        own.extend(whiteouts_for(old, &shipped, owner));
        whiteouts.push((name.to_string(), own.len() - before));
    }
    let tmp = cache.staging().map_err(BakeError::Layer)?;
    let a =
        layer::assemble(&frags, &mut own, mtime, level, tmp.as_file()).map_err(BakeError::Layer)?;
    let path = cache.persist(tmp, &a.digest).map_err(BakeError::Layer)?;
    Ok((
        Blob {
            digest: a.digest,
            size: a.size,
            media_type: media_type.to_string(),
            path,
        },
        a.diff_id,
        whiteouts,
    ))
}

fn cached_layer(
    index_path: &std::path::Path,
    cache: &BlobCache,
    media_type: &str,
) -> Option<CachedLayer> {
    let t = std::fs::read_to_string(index_path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&t).ok()?;
    let digest = v["digest"].as_str()?.to_string();
    if !cache.contains(&digest) {
        return None;
    }
    let path = cache.path(&digest).ok()?;
    let size = std::fs::metadata(&path).ok()?.len();
    let whiteouts = serde_json::from_value(v["whiteouts"].clone()).unwrap_or_default();
    Some((
        Blob {
            digest,
            size,
            media_type: media_type.to_string(),
            path,
        },
        v["diff_id"].as_str()?.to_string(),
        whiteouts,
    ))
}

/// The sum of the uncompressed sizes in a wheel's central directory.
fn unpacked_size(path: &std::path::Path) -> Result<u64, zip::result::ZipError> {
    let z = zip::ZipArchive::new(std::fs::File::open(path)?)?;
    Ok(z.decompressed_size().map(|n| n as u64).unwrap_or(0))
}

type Sized = (PinnedWheel, PathBuf, u64);

/// Heavy distributions first, one layer each (largest first, within the budget), then one
/// layer for the rest; names order every group.
fn group(mut wheels: Vec<Sized>, max_layers: usize) -> Vec<Vec<Sized>> {
    wheels.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.name.cmp(&b.0.name)));
    let heavy = wheels
        .iter()
        .take_while(|w| w.2 >= HEAVY_BYTES)
        .count()
        .min(max_layers.saturating_sub(1));
    let rest = wheels.split_off(heavy);
    let mut groups: Vec<Vec<Sized>> = wheels.into_iter().map(|w| vec![w]).collect();
    if !rest.is_empty() {
        let mut rest = rest;
        rest.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        groups.push(rest);
    }
    groups
}

/// Whiteouts for the files of `old` that the new layer does not ship, and one for its
/// `.dist-info` directory.
fn whiteouts_for(
    old: &crate::python::installed::InstalledDist,
    shipped: &BTreeSet<String>,
    owner: (u32, u32),
) -> Vec<LayerEntry> {
    let wh = |path: String| LayerEntry {
        path,
        kind: EntryKind::Whiteout,
        mode: 0o644,
        uid: owner.0,
        gid: owner.1,
    };
    let di = format!("{}/", old.dist_info);
    let mut out: Vec<LayerEntry> = old
        .files
        .iter()
        .filter(|f| !f.starts_with(&di) && !shipped.contains(*f))
        .map(|f| wh(f.clone()))
        .collect();
    if !shipped.contains(&old.dist_info) {
        out.push(wh(old.dist_info.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str, size: u64) -> Sized {
        (
            PinnedWheel {
                name: name.into(),
                version: "1".into(),
                filename: format!("{name}-1-py3-none-any.whl"),
                url: String::new(),
                sha256: String::new(),
                size: None,
            },
            PathBuf::new(),
            size,
        )
    }

    fn names(g: &[Vec<Sized>]) -> Vec<Vec<&str>> {
        g.iter()
            .map(|x| x.iter().map(|w| w.0.name.as_str()).collect())
            .collect()
    }

    #[test]
    fn heavy_distributions_get_their_own_layers_within_the_budget() {
        let m = 1 << 20;
        let set = vec![
            w("torch", 1500 * m),
            w("requests", m),
            w("pyarrow", 120 * m),
            w("nvidia-cudnn", 700 * m),
            w("idna", m),
        ];
        assert_eq!(
            names(&group(set.clone(), 6)),
            vec![
                vec!["torch"],
                vec!["nvidia-cudnn"],
                vec!["pyarrow"],
                vec!["idna", "requests"]
            ]
        );
        assert_eq!(
            names(&group(set.clone(), 2)),
            vec![
                vec!["torch"],
                vec!["idna", "nvidia-cudnn", "pyarrow", "requests"]
            ]
        );
        assert_eq!(names(&group(set, 1)).len(), 1);
    }

    #[test]
    fn whiteouts_cover_what_the_new_version_drops() {
        let old = crate::python::installed::InstalledDist {
            name: "click".into(),
            version: "8.1.7".into(),
            dist_info: "sp/click-8.1.7.dist-info".into(),
            requires_dist: vec![],
            requires_python: None,
            files: vec![
                "sp/click-8.1.7.dist-info/RECORD".into(),
                "sp/click/__init__.py".into(),
                "sp/click/old.py".into(),
            ],
            license: None,
        };
        let shipped: BTreeSet<String> = ["sp/click/__init__.py".to_string()].into();
        let paths: Vec<String> = whiteouts_for(&old, &shipped, (1000, 100))
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, vec!["sp/click/old.py", "sp/click-8.1.7.dist-info"]);
        assert!(
            crate::python::installed::same_version("1.0", "1.0.0")
                && !crate::python::installed::same_version("1.0", "1.1")
        );
    }
}
