//! Image I/O: references, a registry client (pull, push, auth, retries), a content-addressed
//! blob cache, and OCI layout / docker-loadable tar writers.
//!
//! The image model between "build" and "publish" is [`image::Image`]: raw manifest and config
//! bytes plus layer blobs on disk. Publishers ([`client::Registry::push_image`],
//! [`layout::write_oci_layout`], [`layout::write_docker_tar`]) take it as is.

pub mod auth;
pub mod cache;
pub mod client;
pub mod image;
pub mod layout;
pub mod media;
pub mod reference;

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest, if it is one.
pub fn digest_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}
