//! Image signatures in cosign's format, made with a local key, so that
//! `cosign verify --key cosign.pub --insecure-ignore-tlog IMAGE@DIGEST` accepts them.
//!
//! - **Key**: ECDSA P-256, as `cosign generate-key-pair` writes it (`ENCRYPTED SIGSTORE
//!   PRIVATE KEY`: PKCS #8 sealed with NaCl secretbox under a scrypt key from the password,
//!   read from `COSIGN_PASSWORD` as cosign does), or an unencrypted PKCS #8 (`PRIVATE KEY`) or
//!   SEC1 (`EC PRIVATE KEY`) PEM.
//! - **Payload**: the "simple signing" JSON naming the repository and the manifest digest.
//! - **Signature**: ECDSA with SHA-256 over the payload, ASN.1 DER, base64; deterministic
//!   (RFC 6979 nonces), so signing the same digest again gives the same bytes.
//! - **Storage**: an image manifest under the tag `sha256-<hex>.sig` in the image's repository,
//!   one layer per signature (the payload, media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json`) with the signature in the layer's
//!   `dev.cosignproject.cosign/signature` annotation. Signatures already under that tag are
//!   kept.
//!
//! Keyless signing (Fulcio certificates from an OIDC identity, Rekor transparency-log entries)
//! needs those services; raypack does not pretend to do it: a CI pipeline runs
//! `cosign sign IMAGE@DIGEST` on the digest `raypack bake --push --output json` prints.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::client::{Registry, RegistryError};
use crate::image::{Blob, Image};
use crate::media::OCI_MANIFEST;
use crate::reference::Reference;
use raypack_pack::cache::BlobCache;

/// The media type of a signature payload layer.
pub(crate) const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub(crate) const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM file raypack can read.
    #[error("{0}")]
    Format(String),
    /// The key is encrypted and no password was given.
    #[error("the key is encrypted: set COSIGN_PASSWORD to its password")]
    NoPassword,
    /// The password does not open the key.
    #[error("the key could not be decrypted: wrong COSIGN_PASSWORD?")]
    WrongPassword,
}

/// A P-256 signing key.
#[derive(Clone)]
pub struct SigningKey(p256::ecdsa::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(P-256, redacted)")
    }
}

impl SigningKey {
    /// Reads a PEM private key (see the module docs for the formats); `password` opens an
    /// encrypted cosign key.
    pub fn from_pem(text: &str, password: Option<&[u8]>) -> Result<SigningKey, KeyError> {
        use p256::pkcs8::DecodePrivateKey;
        let (label, der) = pem_block(text)?;
        let key = match label.as_str() {
            "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
                let password = password.ok_or(KeyError::NoPassword)?;
                let der = decrypt(&der, password)?;
                p256::ecdsa::SigningKey::from_pkcs8_der(&der)
                    .map_err(|e| KeyError::Format(format!("not a P-256 PKCS #8 key: {e}")))?
            }
            "PRIVATE KEY" => p256::ecdsa::SigningKey::from_pkcs8_der(&der)
                .map_err(|e| KeyError::Format(format!("not a P-256 PKCS #8 key: {e}")))?,
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
                .map(p256::ecdsa::SigningKey::from)
                .map_err(|e| KeyError::Format(format!("not a P-256 SEC1 key: {e}")))?,
            other => {
                return Err(KeyError::Format(format!(
                    "a PEM `{other}` block is not a private key (write a key from `cosign generate-key-pair`, or a PKCS #8 / SEC1 P-256 PEM)"
                )));
            }
        };
        Ok(SigningKey(key))
    }

    /// Whether the PEM is cosign's encrypted format (which needs a password).
    #[cfg(test)]
    pub(crate) fn is_encrypted(text: &str) -> bool {
        text.contains("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
            || text.contains("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----")
    }

    /// The public key as a PEM `PUBLIC KEY` (what `cosign.pub` holds).
    #[cfg(test)]
    pub(crate) fn public_pem(&self) -> String {
        use p256::pkcs8::EncodePublicKey;
        self.0
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("a P-256 public key encodes")
    }

    /// The DER ECDSA-SHA256 signature of `payload`, base64.
    pub fn sign(&self, payload: &[u8]) -> String {
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = self.0.sign(payload);
        B64.encode(sig.to_der().as_bytes())
    }
}

/// The simple-signing payload for `repository` (`registry/path`, no tag) at `digest`.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": { "docker-reference": repository },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .expect("payload serializes")
}

/// The tag cosign stores the signatures of `digest` under.
pub(crate) fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

impl Registry {
    /// Signs `target`'s manifest `digest` with `key` and pushes the signature under
    /// [`signature_tag`], keeping signatures already there. Returns the tag.
    pub async fn sign(
        &self,
        target: &Reference,
        digest: &str,
        key: &SigningKey,
        cache: &BlobCache,
    ) -> Result<String, RegistryError> {
        let repository = format!("{}/{}", target.registry, target.repository);
        let body = payload(&repository, digest);
        let signature = key.sign(&body);
        let tag = signature_tag(digest);
        // Signatures already under the tag (another key, an earlier run) stay.
        let mut layers: Vec<(Blob, String)> = Vec::new();
        match self.get_manifest(target, &tag, None).await {
            Ok((bytes, _)) => {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                for l in v["layers"].as_array().into_iter().flatten() {
                    let (Some(d), Some(sig)) = (
                        l["digest"].as_str(),
                        l["annotations"][SIGNATURE_ANNOTATION].as_str(),
                    ) else {
                        continue;
                    };
                    let path = self.fetch_blob(target, d, cache).await?;
                    layers.push((
                        Blob {
                            digest: d.to_string(),
                            size: l["size"].as_u64().unwrap_or_default(),
                            media_type: SIMPLE_SIGNING.into(),
                            path,
                        },
                        sig.to_string(),
                    ));
                }
            }
            Err(RegistryError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let (d, path) = cache.insert_bytes(&body)?;
        if layers.iter().any(|(b, s)| b.digest == d && s == &signature) {
            return Ok(tag);
        }
        layers.push((
            Blob {
                digest: d,
                size: body.len() as u64,
                media_type: SIMPLE_SIGNING.into(),
                path,
            },
            signature,
        ));
        let image = signature_image(&layers, cache)?;
        self.push_image(target, &image, std::slice::from_ref(&tag), &[])
            .await?;
        Ok(tag)
    }
}

/// The signature manifest: a config whose diff_ids are the payloads, one layer per payload.
fn signature_image(layers: &[(Blob, String)], cache: &BlobCache) -> Result<Image, RegistryError> {
    let config = json!({
        "architecture": "",
        "os": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": layers.iter().map(|_| json!({"created": "0001-01-01T00:00:00Z"})).collect::<Vec<_>>(),
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|(b, _)| json!(b.digest)).collect::<Vec<_>>() },
    });
    let config_bytes = serde_json::to_vec(&config).expect("config serializes");
    let (digest, path) = cache.insert_bytes(&config_bytes)?;
    let config = Blob {
        digest,
        size: config_bytes.len() as u64,
        media_type: "application/vnd.oci.image.config.v1+json".into(),
        path,
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": layers.iter().map(|(b, sig)| {
            let mut d = b.descriptor();
            d["annotations"] = json!({ SIGNATURE_ANNOTATION: sig });
            d
        }).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).expect("manifest serializes");
    cache.insert_bytes(&manifest)?;
    Ok(Image {
        manifest,
        manifest_media_type: OCI_MANIFEST.into(),
        config,
        layers: layers.iter().map(|(b, _)| b.clone()).collect(),
    })
}

/// The first PEM block: its label and decoded body.
fn pem_block(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    let begin = text
        .find("-----BEGIN ")
        .ok_or_else(|| KeyError::Format("not a PEM file (no -----BEGIN line)".into()))?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let (label, rest) = rest
        .split_once("-----")
        .ok_or_else(|| KeyError::Format("a malformed PEM BEGIN line".into()))?;
    let end = format!("-----END {label}-----");
    let body = rest
        .split(&end)
        .next()
        .filter(|_| rest.contains(&end))
        .ok_or_else(|| KeyError::Format(format!("no `{end}` line")))?;
    let b64: String = body
        .lines()
        .filter(|l| !l.contains(':'))
        .flat_map(|l| l.trim().chars())
        .collect();
    let der = B64
        .decode(b64.as_bytes())
        .map_err(|e| KeyError::Format(format!("the PEM body is not base64: {e}")))?;
    Ok((label.to_string(), der))
}

/// Opens cosign's encrypted key: JSON naming scrypt parameters + salt and a NaCl secretbox
/// nonce around the ciphertext.
fn decrypt(sealed: &[u8], password: &[u8]) -> Result<Vec<u8>, KeyError> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let bad = |m: &str| KeyError::Format(format!("an encrypted cosign key with {m}"));
    let v: Value = serde_json::from_slice(sealed).map_err(|_| bad("a body that is not JSON"))?;
    if v["kdf"]["name"] != "scrypt" || v["cipher"]["name"] != "nacl/secretbox" {
        return Err(bad("a KDF or cipher other than scrypt + nacl/secretbox"));
    }
    let field = |v: &Value| -> Result<Vec<u8>, KeyError> {
        v.as_str()
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| bad("a missing or malformed field"))
    };
    let salt = field(&v["kdf"]["salt"])?;
    let nonce = field(&v["cipher"]["nonce"])?;
    let ciphertext = field(&v["ciphertext"])?;
    let n = v["kdf"]["params"]["N"].as_u64().unwrap_or(0);
    let r = v["kdf"]["params"]["r"].as_u64().unwrap_or(0) as u32;
    let p = v["kdf"]["params"]["p"].as_u64().unwrap_or(0) as u32;
    if !n.is_power_of_two() || n < 2 || nonce.len() != 24 {
        return Err(bad("invalid scrypt parameters or nonce"));
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p)
        .map_err(|_| bad("invalid scrypt parameters"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut key).map_err(|_| bad("an unusable key"))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    let nonce = crypto_secretbox::Nonce::from_slice(&nonce);
    cipher
        .decrypt(nonce, ciphertext.as_slice())
        .map_err(|_| KeyError::WrongPassword)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway key (`openssl ecparam -name prime256v1 -genkey -noout`), for these tests only.
    const SEC1: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKfR+5ocxTzRpwRYPxhgiHHoWjwCg7pvz0Xh7SDX4m0QoAoGCCqGSM49\nAwEHoUQDQgAE0kxkxZlW+Sz2Md3/UvYjZQxWi1r/7m7618B/wJ37E6VtPJC+lFby\nPRPhMXdSzcTNo1fYFlMisGU2HeElLe3WyQ==\n-----END EC PRIVATE KEY-----\n";

    #[test]
    fn signs_deterministically_and_verifies() {
        use p256::ecdsa::signature::Verifier;
        let key = SigningKey::from_pem(SEC1, None).unwrap();
        let body = payload("r.example/team/app", "sha256:ab");
        let a = key.sign(&body);
        assert_eq!(a, key.sign(&body), "RFC 6979: same payload, same signature");
        let der = B64.decode(&a).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
        key.0.verifying_key().verify(&body, &sig).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["critical"]["image"]["docker-manifest-digest"],
            "sha256:ab"
        );
        assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(signature_tag("sha256:ab"), "sha256-ab.sig");
    }

    #[test]
    fn bad_keys_say_why() {
        let e = SigningKey::from_pem("hello", None).unwrap_err();
        assert!(e.to_string().contains("not a PEM"), "{e}");
        let pubkey = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let e = SigningKey::from_pem(pubkey, None).unwrap_err();
        assert!(e.to_string().contains("is not a private key"), "{e}");
        let enc = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\ne30=\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n";
        assert!(matches!(
            SigningKey::from_pem(enc, None),
            Err(KeyError::NoPassword)
        ));
        assert!(SigningKey::is_encrypted(enc));
    }
}
