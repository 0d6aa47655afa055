//! Media types (OCI image spec v1.1 and Docker v2 schema 2) and platform selection.

use serde_json::Value;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer.
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer (containerd >= 1.5, CRI-O, Podman; Docker Engine >= 23 with containerd).
pub(crate) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker v2s2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker v2s2 image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker v2s2 gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest type raypack reads. Distribution answers 404 for an OCI manifest when the
/// OCI types are missing from Accept.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Which family a manifest belongs to; raypack never mixes them in one manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// OCI media types.
    Oci,
    /// Docker v2s2 media types.
    Docker,
}

impl Family {
    /// The family a manifest media type belongs to.
    pub fn of(media_type: &str) -> Option<Family> {
        if media_type.starts_with("application/vnd.oci.") {
            Some(Family::Oci)
        } else if media_type.starts_with("application/vnd.docker.") {
            Some(Family::Docker)
        } else {
            None
        }
    }
    /// This family's manifest media type.
    pub fn manifest(self) -> &'static str {
        match self {
            Family::Oci => OCI_MANIFEST,
            Family::Docker => DOCKER_MANIFEST,
        }
    }
    /// This family's multi-platform type: an OCI image index or a Docker manifest list.
    pub fn index(self) -> &'static str {
        match self {
            Family::Oci => OCI_INDEX,
            Family::Docker => DOCKER_LIST,
        }
    }
    /// This family's config media type.
    pub fn config(self) -> &'static str {
        match self {
            Family::Oci => OCI_CONFIG,
            Family::Docker => DOCKER_CONFIG,
        }
    }
    /// This family's gzip layer media type.
    pub(crate) fn layer_gzip(self) -> &'static str {
        match self {
            Family::Oci => OCI_LAYER_GZIP,
            Family::Docker => DOCKER_LAYER_GZIP,
        }
    }
    /// This family's layer media type for `compression`; `None` for zstd in the Docker
    /// family, which has no zstd layer type.
    pub fn layer(self, compression: Compression) -> Option<&'static str> {
        match (self, compression) {
            (_, Compression::Gzip) => Some(self.layer_gzip()),
            (Family::Oci, Compression::Zstd { .. }) => Some(OCI_LAYER_ZSTD),
            (Family::Docker, Compression::Zstd { .. }) => None,
        }
    }
}

/// How the layers raypack writes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(tag = "codec", rename_all = "lowercase")]
pub enum Compression {
    /// gzip (every runtime reads it).
    #[default]
    Gzip,
    /// zstd at `level` (1–19): faster to unpack; needs containerd >= 1.5 or CRI-O.
    Zstd {
        /// The zstd level.
        level: i32,
    },
}

pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// The media type of a manifest document: its `mediaType` field, else guessed from shape.
pub fn manifest_media_type(doc: &Value, header: Option<&str>) -> String {
    if let Some(m) = doc["mediaType"].as_str() {
        return m.to_string();
    }
    if let Some(h) = header {
        let h = h.split(';').next().unwrap_or(h).trim();
        if !h.is_empty() && h != "application/json" {
            return h.to_string();
        }
    }
    if doc.get("manifests").is_some() {
        OCI_INDEX.into()
    } else {
        OCI_MANIFEST.into()
    }
}

/// A target platform like `linux/amd64` or `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v8` and the like, when the index says.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut it = s.split('/');
        let os = it.next()?.to_string();
        let architecture = it.next()?.to_string();
        let variant = it.next().map(str::to_string);
        if os.is_empty() || architecture.is_empty() || it.next().is_some() {
            return None;
        }
        Some(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// Whether an index entry's `platform` object matches. An arm64 entry without a variant
    /// matches `v8` (the only arm64 variant), as containerd does.
    pub fn matches(&self, p: &Value) -> bool {
        let os = p["os"].as_str().unwrap_or_default();
        let arch = p["architecture"].as_str().unwrap_or_default();
        if os != self.os || arch != self.architecture {
            return false;
        }
        match (&self.variant, p["variant"].as_str()) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the manifest descriptor for `platform` from an index, skipping attestation entries
/// (`unknown/unknown`, or `vnd.docker.reference.type` annotations).
pub(crate) fn select_platform<'a>(index: &'a Value, platform: &Platform) -> Option<&'a Value> {
    index["manifests"].as_array()?.iter().find(|m| {
        let attestation = m["annotations"]["vnd.docker.reference.type"].is_string()
            || m["platform"]["os"].as_str() == Some("unknown");
        !attestation && platform.matches(&m["platform"])
    })
}

/// The platforms an index offers (for error messages).
pub(crate) fn platforms_in(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    let p = &m["platform"];
                    let os = p["os"].as_str()?;
                    let arch = p["architecture"].as_str()?;
                    Some(match p["variant"].as_str() {
                        Some(v) => format!("{os}/{arch}/{v}"),
                        None => format!("{os}/{arch}"),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_platform_and_skips_attestations() {
        let idx = json!({"manifests": [
            {"digest": "a", "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": "b", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "c", "platform": {"os": "linux", "architecture": "arm64"}},
        ]});
        let amd = Platform::parse("linux/amd64").unwrap();
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(select_platform(&idx, &amd).unwrap()["digest"], "b");
        assert_eq!(select_platform(&idx, &arm).unwrap()["digest"], "c");
        assert!(select_platform(&idx, &Platform::parse("linux/s390x").unwrap()).is_none());
        assert_eq!(platforms_in(&idx).len(), 3);
    }
}
