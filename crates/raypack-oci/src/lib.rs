//! Image I/O: references, media types, registry auth, a registry client (pull, push,
//! retries), and OCI layout / docker-loadable tar writers. Blobs live in
//! [`raypack_pack::cache::BlobCache`].
//!
//! The image model between "build" and "publish" is [`image::Image`]: raw manifest and config
//! bytes plus layer blobs on disk. Publishers ([`client::Registry::push_image`],
//! [`layout::write_oci_layout`], [`layout::write_docker_tar`]) take it as is.

pub mod auth;
pub mod client;
pub mod image;
pub mod layout;
pub mod media;
pub mod reference;

pub use raypack_pack::digest::{digest_hex, sha256_digest};
