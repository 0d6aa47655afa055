//! The shared layer cache: dependency layers findable by their content key from any machine,
//! branch or tag, so that a CI fleet of empty machines shares one set of built layers (as
//! BuildKit's `--cache-to type=registry` does for Dockerfiles).
//!
//! The cache lives in a registry repository (by default the one bake pushes to; `[image]
//! cache` or `bake --cache` name another) or under an object-store prefix (`s3://`, `gs://`,
//! `file://`). In a registry each entry is a small OCI artifact under its own tag, whose config
//! is the entry (JSON, [`MEDIA_TYPE`]) and whose layers are the layer blobs it describes, so the
//! registry keeps them while the entry exists. In a store, each entry is one object
//! (`raypack-cache/v1/<kind>/<key>.json`) beside the layer blobs
//! (`raypack-cache/v1/blobs/sha256/<hex>`), each uploaded only when complete:
//!
//! - `raypack-cache-plan-<key>`: a whole dependency plan (the wheels to install, the target,
//!   the layout, the base) → its layers, the wheels' unpacked sizes and licenses. A bake whose
//!   plan is there downloads no wheel and installs nothing.
//! - `raypack-cache-layer-<key>`: one layer by the key [`super::deps`] computes from its
//!   wheels and fragments → digest, diff_id, size, whiteouts, fragment keys. A bake whose plan
//!   is new still reuses every layer another project already built.
//! - `raypack-cache-facts-<key>`: what a heavy wheel (≥ [`super::deps::FACTS_MIN_BYTES`]
//!   unpacked) installs, its size and license, keyed by its hash + scheme + owner: enough to
//!   group wheels, resolve overlaps and compute layer keys, so a bake whose lock changed
//!   downloads only the wheels of the layers it has to build (not torch, whose layer is there).
//!
//! One tag per key means there is no shared index to read, merge and write back: writers of
//! different keys never touch the same tag, and writers of the same key write the same layers,
//! so concurrent bakes on many machines cannot lose each other's entries. An entry that cannot
//! be read, does not parse, names another key or points at blobs the repository lacks is a
//! cache miss (and is written again by the bake that rebuilds it).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cache::BlobCache;
use crate::oci::client::{Registry, RegistryError};
use crate::oci::image::{Blob, Image};
use crate::oci::reference::Reference;

/// Why an entry could not be read or written (only ever logged: the cache is an optimisation).
#[derive(Debug, thiserror::Error)]
pub enum SharedCacheError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] raypack_store::StoreError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0} is gone")]
    Gone(String),
    #[error("layer {0} is not in the local cache")]
    NotLocal(String),
}

/// The media type of an entry (the artifact's `artifactType` and its config's media type).
pub const MEDIA_TYPE: &str = "application/vnd.raypack.cache.v1+json";
/// The entry format; another version is a miss.
const VERSION: u32 = 1;

/// What an entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole dependency plan.
    Plan,
    /// One dependency layer.
    Layer,
    /// What a heavy wheel installs, its size and license.
    Facts,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Plan => "plan",
            Kind::Layer => "layer",
            Kind::Facts => "facts",
        }
    }
}

/// The tag of an entry.
pub fn tag(kind: Kind, key: &str) -> String {
    format!("raypack-cache-{}-{key}", kind.word())
}

/// One dependency layer as the cache records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The layer key.
    pub key: String,
    /// The blob's digest, size and media type.
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// SHA-256 of the uncompressed tar.
    pub diff_id: String,
    /// The distributions in it, as named in its history.
    pub distributions: Vec<String>,
    /// Unpacked bytes of its wheels.
    pub unpacked: u64,
    /// Whiteouts per replaced base distribution.
    pub whiteouts: Vec<(String, usize)>,
    /// The keys of the fragments it was assembled from.
    pub fragments: Vec<String>,
}

impl LayerRecord {
    /// The layer as a blob: in the local cache if it is there, else known by descriptor only.
    pub fn blob(&self, cache: &BlobCache) -> Result<Blob, crate::cache::CacheError> {
        Ok(Blob {
            digest: self.digest.clone(),
            size: self.size,
            media_type: self.media_type.clone(),
            path: cache.path(&self.digest)?,
        })
    }
}

/// A wheel a bake installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledWheel {
    /// The distribution's name, as pinned.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The wheel's file name.
    pub filename: String,
    /// Where it came from (no credentials).
    pub url: String,
    /// SHA-256 (hex) of the wheel.
    pub sha256: String,
    /// The license its METADATA declares.
    pub license: Option<crate::python::metadata::DeclaredLicense>,
}

/// A wheel of a plan: what the SBOM and the grouping need without the wheel file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WheelRecord {
    /// The wheel as the report and the SBOM name it.
    #[serde(flatten)]
    pub wheel: InstalledWheel,
    /// Unpacked bytes.
    pub unpacked: u64,
}

/// What grouping and overlap resolution need of a wheel, without the wheel: keyed by its
/// hash and the layout's scheme and owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsRecord {
    /// The facts key.
    pub key: String,
    /// The wheel's SHA-256 (hex).
    pub sha256: String,
    /// Unpacked bytes.
    pub unpacked: u64,
    pub license: Option<crate::python::metadata::DeclaredLicense>,
    /// The files it installs, with their RECORD hashes.
    pub shipped: crate::python::layer::ShippedFiles,
}

/// A whole dependency plan's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// The plan key.
    pub key: String,
    /// Its layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// The wheels installed, by name.
    pub wheels: Vec<WheelRecord>,
    /// The `.pyc` cache tag the layers were compiled for, if they were.
    pub bytecode: Option<String>,
    /// Why they were not, although the recipe asks for it.
    pub no_bytecode: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    kind: String,
    entry: T,
}

/// Where the shared cache is, and how bake talks to it.
#[derive(Debug)]
pub struct SharedCache<'a> {
    pub(crate) registry: &'a Registry,
    /// Where the entries are.
    pub location: Location,
    /// Where the image is pushed, if it is (and only it: no layout or tar needs the bytes):
    /// a reused layer the push will find there, or can mount from the cache, is not
    /// downloaded (the push downloads it from the cache only if it must upload it).
    pub push_target: Option<Reference>,
}

/// Where the entries are.
#[derive(Debug)]
pub enum Location {
    /// A registry repository (no tag).
    Registry(Reference),
    /// An object store, and its URL for messages.
    Store(Box<raypack_store::Store>, String),
}

/// The object names of a store-backed cache.
const STORE_DIR: &str = "raypack-cache/v1";

fn store_entry(kind: Kind, key: &str) -> String {
    format!("{STORE_DIR}/{}/{key}.json", kind.word())
}

fn store_blob(digest: &str) -> String {
    format!(
        "{STORE_DIR}/blobs/sha256/{}",
        digest.trim_start_matches("sha256:")
    )
}

/// What every kind of entry has: its key, and the layer digests it needs.
trait Entry: Serialize + for<'de> Deserialize<'de> {
    const KIND: Kind;
    fn key(&self) -> &str;
    fn digests(&self) -> Vec<&str>;
}

impl Entry for LayerRecord {
    const KIND: Kind = Kind::Layer;
    fn key(&self) -> &str {
        &self.key
    }
    fn digests(&self) -> Vec<&str> {
        vec![self.digest.as_str()]
    }
}

impl Entry for FactsRecord {
    const KIND: Kind = Kind::Facts;
    fn key(&self) -> &str {
        &self.key
    }
    fn digests(&self) -> Vec<&str> {
        Vec::new()
    }
}

impl Entry for PlanRecord {
    const KIND: Kind = Kind::Plan;
    fn key(&self) -> &str {
        &self.key
    }
    fn digests(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.digest.as_str()).collect()
    }
}

/// A cache entry waiting to be written once the image is published (its blobs must be in the
/// registry first).
#[derive(Debug, Clone)]
pub struct Pending {
    kind: Kind,
    key: String,
    config: Vec<u8>,
    layers: Vec<Blob>,
}

impl Pending {
    fn new<T: Entry>(entry: &T, layers: Vec<Blob>) -> Pending {
        let config = serde_json::to_vec(&Envelope {
            version: VERSION,
            kind: T::KIND.word().to_string(),
            entry,
        })
        .expect("entries serialize");
        Pending {
            kind: T::KIND,
            key: entry.key().to_string(),
            config,
            layers,
        }
    }

    /// A plan entry to write.
    pub fn plan(entry: &PlanRecord, layers: Vec<Blob>) -> Pending {
        Pending::new(entry, layers)
    }

    /// A wheel-facts entry to write.
    pub fn facts(entry: &FactsRecord) -> Pending {
        Pending::new(entry, Vec::new())
    }

    /// A layer entry to write.
    pub fn layer(entry: &LayerRecord, blob: Blob) -> Pending {
        Pending::new(entry, vec![blob])
    }
}

impl SharedCache<'_> {
    /// The cache's name in messages and reports (`registry/repository` or the store URL).
    pub fn name(&self) -> String {
        match &self.location {
            Location::Registry(r) => r.name(),
            Location::Store(_, url) => url.clone(),
        }
    }

    /// The registry repository of the cache, if it is one (blobs may be mounted from it).
    pub fn repository(&self) -> Option<&Reference> {
        match &self.location {
            Location::Registry(r) => Some(r),
            Location::Store(..) => None,
        }
    }

    /// The plan entry under `key`, if there is a sound one.
    pub async fn plan(&self, key: &str, cache: &BlobCache) -> Option<PlanRecord> {
        self.read(key, cache).await
    }

    /// The layer entry under `key`, if there is a sound one.
    pub async fn layer(&self, key: &str, cache: &BlobCache) -> Option<LayerRecord> {
        self.read(key, cache).await
    }

    /// The facts entry under `key`, if there is a sound one.
    pub async fn facts(&self, key: &str, cache: &BlobCache) -> Option<FactsRecord> {
        self.read(key, cache).await
    }

    /// Reads and checks an entry; anything wrong (another key included) is a miss (logged at
    /// debug).
    async fn read<T: Entry>(&self, key: &str, cache: &BlobCache) -> Option<T> {
        let kind = T::KIND;
        let tag = tag(kind, key);
        let miss = |why: String| {
            tracing::debug!("shared cache {} {tag}: {why}", self.name());
            None
        };
        let (bytes, manifest_layers) = match &self.location {
            Location::Registry(repo) => {
                let manifest = match self.registry.get_manifest(repo, &tag, None).await {
                    Ok((bytes, _)) => bytes,
                    Err(RegistryError::NotFound { .. }) => return None,
                    Err(e) => return miss(e.to_string()),
                };
                let m: Value = match serde_json::from_slice(&manifest) {
                    Ok(v) => v,
                    Err(e) => return miss(format!("manifest: {e}")),
                };
                let Some(config) = m["config"]["digest"]
                    .as_str()
                    .filter(|_| m["config"]["mediaType"] == MEDIA_TYPE)
                else {
                    return miss("not a raypack cache entry".into());
                };
                let bytes = match self.registry.fetch_blob(repo, config, cache).await {
                    Ok(p) => match std::fs::read(&p) {
                        Ok(b) => b,
                        Err(e) => return miss(e.to_string()),
                    },
                    Err(e) => return miss(e.to_string()),
                };
                let layers: Vec<String> = m["layers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|l| l["mediaType"] != crate::oci::referrers::EMPTY_CONFIG)
                    .filter_map(|l| l["digest"].as_str().map(str::to_string))
                    .collect();
                (bytes, Some(layers))
            }
            Location::Store(store, _) => match store.get_bytes(&store_entry(kind, key)).await {
                Ok(Some(b)) => (b, None),
                Ok(None) => return None,
                Err(e) => return miss(e.to_string()),
            },
        };
        let env: Envelope<T> = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => return miss(format!("entry: {e}")),
        };
        if env.version != VERSION || env.kind != kind.word() || env.entry.key() != key {
            return miss(format!(
                "entry version {} {} {}",
                env.version,
                env.kind,
                env.entry.key()
            ));
        }
        // The layers the entry describes are the manifest's, and they are in the cache (a
        // registry or store that lost them makes the entry useless).
        let digests = env.entry.digests();
        if let Some(ml) = &manifest_layers
            && ml.iter().map(String::as_str).ne(digests.iter().copied())
        {
            return miss("the manifest's layers are not the entry's".into());
        }
        for d in digests {
            if cache.contains(d) {
                continue;
            }
            let there = match &self.location {
                Location::Registry(repo) => {
                    matches!(self.registry.blob_exists(repo, d).await, Ok(true))
                }
                Location::Store(store, _) => matches!(store.exists(&store_blob(d)).await, Ok(true)),
            };
            if !there {
                return miss(format!("layer {d} is missing"));
            }
        }
        Some(env.entry)
    }

    /// A layer entry's blob, ready for the image: known by descriptor when the push will find
    /// it in the target (or mount it from the cache), else downloaded into the local cache.
    pub async fn layer_blob(
        &self,
        entry: &LayerRecord,
        cache: &BlobCache,
    ) -> Result<Blob, SharedCacheError> {
        let blob = entry.blob(cache)?;
        if cache.contains(&entry.digest) {
            return Ok(blob);
        }
        match (&self.location, &self.push_target) {
            // The push finds it in the target, mounts it from the cache's repository, or (another
            // registry, no mounts) downloads it from there only if the target lacks it.
            (Location::Registry(_), Some(_)) => Ok(blob),
            (Location::Registry(repo), None) => {
                self.registry.fetch_blob(repo, &entry.digest, cache).await?;
                Ok(blob)
            }
            (Location::Store(store, _), target) => {
                if let Some(t) = target
                    && matches!(self.registry.blob_exists(t, &entry.digest).await, Ok(true))
                {
                    return Ok(blob);
                }
                let name = store_blob(&entry.digest);
                let stream = store
                    .get(&name)
                    .await?
                    .ok_or_else(|| SharedCacheError::Gone(name.clone()))?;
                cache.insert_stream(&entry.digest, &name, stream).await?;
                Ok(blob)
            }
        }
    }

    /// Writes `pending` entries: in a registry each an artifact (its layers, mounted from
    /// `mount_from` when not in the repository yet; the entry as config) under its own tag; in
    /// a store, the layer blobs it lacks, then the entry. A failure is logged, never the
    /// bake's failure: the image is already published.
    pub async fn write(
        &self,
        pending: &[Pending],
        mount_from: &[&Reference],
        cache: &BlobCache,
    ) -> usize {
        let mut written = 0;
        for p in pending {
            let done = match &self.location {
                Location::Registry(repo) => self.write_registry(repo, p, mount_from, cache).await,
                Location::Store(store, _) => write_store(store, p).await,
            };
            match done {
                Ok(()) => written += 1,
                Err(e) => tracing::warn!(
                    "shared cache {}: cannot write {}: {e}",
                    self.name(),
                    tag(p.kind, &p.key)
                ),
            }
        }
        written
    }

    async fn write_registry(
        &self,
        repo: &Reference,
        p: &Pending,
        mount_from: &[&Reference],
        cache: &BlobCache,
    ) -> Result<(), SharedCacheError> {
        let (digest, path) = cache.insert_bytes(&p.config)?;
        let config = Blob {
            digest,
            size: p.config.len() as u64,
            media_type: MEDIA_TYPE.into(),
            path,
        };
        // An entry without layers carries the empty descriptor, as OCI 1.1 asks of artifacts.
        let mut layers = p.layers.clone();
        if layers.is_empty() {
            let empty = crate::oci::referrers::EMPTY_JSON;
            let (digest, path) = cache.insert_bytes(empty)?;
            layers.push(Blob {
                digest,
                size: empty.len() as u64,
                media_type: crate::oci::referrers::EMPTY_CONFIG.into(),
                path,
            });
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media::Family::Oci.manifest(),
            "artifactType": MEDIA_TYPE,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
            "annotations": { "dev.raypack.cache.key": p.key, "dev.raypack.cache.kind": p.kind.word() },
        });
        let manifest = serde_json::to_vec(&manifest).expect("manifest serializes");
        let image = Image {
            manifest,
            manifest_media_type: crate::oci::media::Family::Oci.manifest().into(),
            config,
            layers,
        };
        self.registry
            .push_image(repo, &image, &[tag(p.kind, &p.key)], mount_from)
            .await?;
        Ok(())
    }
}

/// A store entry: the blobs the store lacks (each complete before it is visible), then the
/// entry object, so an entry never names a blob that is not there.
async fn write_store(store: &raypack_store::Store, p: &Pending) -> Result<(), SharedCacheError> {
    for b in &p.layers {
        let name = store_blob(&b.digest);
        if store.exists(&name).await? {
            continue;
        }
        if !b.path.is_file() {
            return Err(SharedCacheError::NotLocal(b.digest.clone()));
        }
        store.put_file(&name, &b.path).await?;
    }
    let tmp = tempfile::NamedTempFile::new()?;
    std::fs::write(tmp.path(), &p.config)?;
    store
        .put_file(&store_entry(p.kind, &p.key), tmp.path())
        .await?;
    Ok(())
}
