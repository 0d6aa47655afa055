//! OCI 1.1 referrers: artifacts (an SBOM, an attestation) that point at an image through the
//! manifest's `subject`, so that they travel with the image without changing its digest.
//!
//! [`artifact`] builds the artifact manifest (`artifactType`, the empty config, one layer,
//! `subject`); [`Registry::attach`] pushes it and makes it findable: a registry with the
//! referrers API (`GET /v2/<name>/referrers/<digest>`) indexes it by itself; for one without
//! (Distribution 2.8, many mirrors) the client maintains the **referrers tag schema**: an image
//! index under the tag `sha256-<hex of the subject>` listing every referrer. That index is read,
//! extended and written back; two clients attaching to the same subject at the same moment can
//! lose one entry (the spec's known race; the artifact manifest itself is still pushed).

use serde_json::{Value, json};

use crate::client::{Registry, RegistryError};
use crate::image::{Blob, Image};
use crate::media::{OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;
use raypack_pack::cache::{BlobCache, CacheError};

/// The media type of the empty config of an artifact manifest.
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// The empty config's bytes (`{}`).
pub const EMPTY_JSON: &[u8] = b"{}";

/// The manifest being referred to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Subject {
    /// The subject of `image`.
    pub fn of(image: &Image) -> Subject {
        Subject {
            media_type: image.manifest_media_type.clone(),
            digest: image.digest(),
            size: image.manifest.len() as u64,
        }
    }
}

/// An artifact manifest of `artifact_type` holding `bytes` (one layer of `artifact_type`) about
/// `subject`, with `annotations` on the manifest. Config and layer go into `cache`.
pub fn artifact(
    subject: &Subject,
    artifact_type: &str,
    bytes: &[u8],
    annotations: &serde_json::Map<String, Value>,
    cache: &BlobCache,
) -> Result<Image, CacheError> {
    let (config_digest, config_path) = cache.insert_bytes(EMPTY_JSON)?;
    let config = Blob {
        digest: config_digest,
        size: EMPTY_JSON.len() as u64,
        media_type: EMPTY_CONFIG.into(),
        path: config_path,
    };
    let (digest, path) = cache.insert_bytes(bytes)?;
    let layer = Blob {
        digest,
        size: bytes.len() as u64,
        media_type: artifact_type.into(),
        path,
    };
    let mut m = serde_json::Map::new();
    m.insert("schemaVersion".into(), json!(2));
    m.insert("mediaType".into(), json!(OCI_MANIFEST));
    m.insert("artifactType".into(), json!(artifact_type));
    m.insert("config".into(), config.descriptor());
    m.insert("layers".into(), json!([layer.descriptor()]));
    m.insert(
        "subject".into(),
        json!({ "mediaType": subject.media_type, "digest": subject.digest, "size": subject.size }),
    );
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations.clone()));
    }
    let manifest = serde_json::to_vec(&Value::Object(m)).expect("manifest serializes");
    cache.insert_bytes(&manifest)?;
    Ok(Image {
        manifest,
        manifest_media_type: OCI_MANIFEST.into(),
        config,
        layers: vec![layer],
    })
}

/// How a referrer was made findable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attached {
    /// The registry's referrers API lists it.
    ReferrersApi,
    /// Listed in the index under this tag (`sha256-<hex>`).
    TagSchema(String),
}

/// The referrers tag of a subject digest (`sha256:ab…` → `sha256-ab…`).
pub(crate) fn referrers_tag(subject_digest: &str) -> String {
    subject_digest.replacen(':', "-", 1)
}

impl Registry {
    /// Pushes `artifact` (a manifest with a `subject`) to `target`'s repository — its blobs,
    /// then the manifest by digest — and makes it findable from the subject: through the
    /// referrers API where the registry has one, else through the referrers tag schema.
    /// Returns the artifact's digest and how it is listed.
    pub async fn attach(
        &self,
        target: &Reference,
        artifact: &Image,
    ) -> Result<(String, Attached), RegistryError> {
        let doc: Value = serde_json::from_slice(&artifact.manifest)
            .map_err(|e| self.ctx(target, "parse the artifact manifest").failed(e))?;
        let subject = doc["subject"]["digest"]
            .as_str()
            .ok_or_else(|| {
                self.ctx(target, "attach a referrer")
                    .failed("the manifest has no subject")
            })?
            .to_string();
        let (digest, _) = self.push_image(target, artifact, &[], &[]).await?;
        if self.has_referrers_api(target, &subject).await? {
            return Ok((digest, Attached::ReferrersApi));
        }
        let tag = referrers_tag(&subject);
        let mut index = match self.get_manifest(target, &tag, None).await {
            Ok((bytes, _)) => serde_json::from_slice::<Value>(&bytes)
                .ok()
                .filter(|v| v["manifests"].is_array())
                .unwrap_or_else(empty_index),
            Err(RegistryError::NotFound { .. }) => empty_index(),
            Err(e) => return Err(e),
        };
        let manifests = index["manifests"].as_array_mut().expect("checked");
        if !manifests.iter().any(|m| m["digest"] == json!(digest)) {
            let mut desc = json!({
                "mediaType": artifact.manifest_media_type,
                "digest": digest,
                "size": artifact.manifest.len(),
            });
            if let Some(t) = doc.get("artifactType") {
                desc["artifactType"] = t.clone();
            }
            if let Some(a) = doc.get("annotations") {
                desc["annotations"] = a.clone();
            }
            manifests.push(desc);
            let bytes = serde_json::to_vec(&index).expect("index serializes");
            self.put_manifest(target, &tag, &bytes, OCI_INDEX).await?;
        }
        Ok((digest, Attached::TagSchema(tag)))
    }

    /// Whether the registry answers the referrers API for `target`'s repository: a 200 with an
    /// image index. A 404 (no such endpoint) is `false`, as the distribution spec says.
    async fn has_referrers_api(
        &self,
        target: &Reference,
        subject: &str,
    ) -> Result<bool, RegistryError> {
        let scopes = vec![format!("repository:{}:pull", target.repository)];
        let ctx = self.ctx(target, format!("GET referrers of {subject}"));
        let resp = self
            .send(&ctx, &scopes, true, &|base| {
                self.http
                    .get(format!(
                        "{base}/v2/{}/referrers/{subject}",
                        target.repository
                    ))
                    .header("Accept", OCI_INDEX)
            })
            .await?;
        if !resp.status().is_success() {
            return Ok(false);
        }
        let is_index = resp
            .headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|t| t.starts_with(OCI_INDEX));
        Ok(is_index)
    }
}

fn empty_index() -> Value {
    json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_names_its_subject_and_type() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(dir.path());
        let subject = Subject {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", "1".repeat(64)),
            size: 7,
        };
        let a = artifact(
            &subject,
            "application/spdx+json",
            b"{\"spdxVersion\":\"SPDX-2.3\"}",
            &Default::default(),
            &cache,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(v["artifactType"], "application/spdx+json");
        assert_eq!(v["subject"]["digest"], json!(subject.digest));
        assert_eq!(v["config"]["mediaType"], EMPTY_CONFIG);
        assert_eq!(
            v["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(v["layers"][0]["mediaType"], "application/spdx+json");
        assert_eq!(
            referrers_tag(&subject.digest),
            format!("sha256-{}", "1".repeat(64))
        );
    }
}
