//! The image model between building and publishing: raw manifest and config bytes, and layer
//! blobs on disk. Manifests and configs stay raw JSON so that nothing a base carries
//! (Docker-only fields included) is lost, and so that the bytes pushed are the bytes hashed.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::media::Family;
use super::sha256_digest;
use raypack_pack::cache::{BlobCache, CacheError};

/// A blob on disk, described as in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:` of the bytes.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// Where the bytes are (in the blob cache).
    pub path: PathBuf,
}

impl Blob {
    /// The OCI descriptor (`mediaType`, `digest`, `size`).
    pub fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// A single-platform image ready to publish.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest's raw bytes.
    pub manifest: Vec<u8>,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// The config blob.
    pub config: Blob,
    /// The layer blobs, bottom first.
    pub layers: Vec<Blob>,
}

impl Image {
    /// The manifest digest: the image's identity.
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    /// Every blob the manifest references, config first.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    /// Assembles a manifest of one media-type family around a config and layers.
    pub fn assemble(
        family: Family,
        config_bytes: &[u8],
        layers: Vec<Blob>,
        annotations: Option<&serde_json::Map<String, Value>>,
        cache: &BlobCache,
    ) -> Result<Image, CacheError> {
        for l in &layers {
            debug_assert_eq!(Family::of(&l.media_type), Some(family), "mixed media types");
        }
        let (digest, path) = cache.insert_bytes(config_bytes)?;
        let config = Blob {
            digest,
            size: config_bytes.len() as u64,
            media_type: family.config().to_string(),
            path,
        };
        let mut m = serde_json::Map::new();
        m.insert("schemaVersion".into(), json!(2));
        m.insert("mediaType".into(), json!(family.manifest()));
        m.insert("config".into(), config.descriptor());
        m.insert(
            "layers".into(),
            Value::Array(layers.iter().map(Blob::descriptor).collect()),
        );
        if let Some(a) = annotations.filter(|a| !a.is_empty() && family == Family::Oci) {
            m.insert("annotations".into(), Value::Object(a.clone()));
        }
        let manifest = serde_json::to_vec(&Value::Object(m)).expect("manifest serializes");
        cache.insert_bytes(&manifest)?;
        Ok(Image {
            manifest,
            manifest_media_type: family.manifest().to_string(),
            config,
            layers,
        })
    }
}

/// A multi-platform image: an OCI image index (or a Docker manifest list, for a Docker-typed
/// base) with one entry per platform, in the order given. Its digest is what every node pulls;
/// each node's runtime picks its own platform's manifest.
#[derive(Debug, Clone)]
pub struct ImageIndex {
    /// The index's raw bytes.
    pub manifest: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// The images it lists, with their platforms.
    pub images: Vec<(crate::media::Platform, Image)>,
}

impl ImageIndex {
    /// The index of `images` (all of `family`); OCI indexes carry `annotations`.
    pub fn assemble(
        family: Family,
        images: Vec<(crate::media::Platform, Image)>,
        annotations: Option<&serde_json::Map<String, Value>>,
    ) -> ImageIndex {
        let manifests: Vec<Value> = images
            .iter()
            .map(|(p, i)| {
                let mut platform = json!({ "architecture": p.architecture, "os": p.os });
                if let Some(v) = &p.variant {
                    platform["variant"] = json!(v);
                }
                json!({
                    "mediaType": i.manifest_media_type,
                    "digest": i.digest(),
                    "size": i.manifest.len(),
                    "platform": platform,
                })
            })
            .collect();
        let mut m = serde_json::Map::new();
        m.insert("schemaVersion".into(), json!(2));
        m.insert("mediaType".into(), json!(family.index()));
        m.insert("manifests".into(), Value::Array(manifests));
        if let Some(a) = annotations.filter(|a| !a.is_empty() && family == Family::Oci) {
            m.insert("annotations".into(), Value::Object(a.clone()));
        }
        ImageIndex {
            manifest: serde_json::to_vec(&Value::Object(m)).expect("index serializes"),
            media_type: family.index().to_string(),
            images,
        }
    }

    /// The index digest: the multi-platform image's identity.
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }
}

/// gzip level of layers (the default of gzip, Go and BuildKit).
pub const LAYER_GZIP_LEVEL: u32 = 6;

/// Gzips an uncompressed layer tar deterministically (no name, mtime 0, fixed level) into the
/// cache. Returns the layer blob and its diff_id (sha256 of the uncompressed tar).
pub fn gzip_layer(
    tar: &Path,
    family: Family,
    cache: &BlobCache,
) -> Result<(Blob, String), CacheError> {
    compress_layer(tar, family, crate::media::Compression::Gzip, cache)
        .map(|l| l.expect("every family has a gzip layer type"))
}

/// Compresses an uncompressed layer tar deterministically into the cache: gzip as
/// [`gzip_layer`], or one zstd frame at the given level. Returns the layer blob and its
/// diff_id, or `None` when the family has no media type for the compression (zstd, Docker).
pub fn compress_layer(
    tar: &Path,
    family: Family,
    compression: crate::media::Compression,
    cache: &BlobCache,
) -> Result<Option<(Blob, String)>, CacheError> {
    let Some(media_type) = family.layer(compression) else {
        return Ok(None);
    };
    let io = |e: std::io::Error| CacheError::Io {
        path: tar.to_path_buf(),
        source: e,
    };
    let diff_id = format!(
        "sha256:{}",
        hex::encode(raypack_pack::collect::hash_file(tar).map_err(io)?)
    );
    let tmp = tempfile::NamedTempFile::new().map_err(io)?;
    {
        let out = std::io::BufWriter::new(tmp.as_file().try_clone().map_err(io)?);
        let input = std::fs::File::open(tar).map_err(io)?;
        match compression {
            crate::media::Compression::Gzip => {
                raypack_pack::archive::pgzip::gzip(input, out, LAYER_GZIP_LEVEL)
            }
            crate::media::Compression::Zstd { level } => {
                raypack_pack::archive::zst::compress(input, out, level)
            }
        }
        .map_err(io)?
        .flush()
        .map_err(io)?;
    }
    let (digest, path) = cache.insert_file(tmp.path())?;
    let size = std::fs::metadata(&path).map_err(io)?.len();
    Ok(Some((
        Blob {
            digest,
            size,
            media_type: media_type.to_string(),
            path,
        },
        diff_id,
    )))
}

/// A minimal image config for a set of layers (used by tests and `raypack image push-tar`).
pub fn minimal_config(platform: &super::media::Platform, diff_ids: &[String]) -> Vec<u8> {
    let mut cfg = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": "1970-01-01T00:00:00Z",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": diff_ids.iter().map(|_| json!({"created": "1970-01-01T00:00:00Z", "created_by": "raypack"})).collect::<Vec<_>>(),
    });
    if let Some(v) = &platform.variant {
        cfg["variant"] = json!(v);
    }
    serde_json::to_vec(&cfg).expect("config serializes")
}
