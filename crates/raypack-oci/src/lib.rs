#![deny(missing_docs)]
//! Image I/O: references, media types, registry auth, a registry client (pull, push,
//! retries), and OCI layout / docker-loadable tar writers. Blobs live in
//! [`raypack_pack::cache::BlobCache`].
//!
//! The image model between "build" and "publish" is [`image::Image`]: raw manifest and config
//! bytes plus layer blobs on disk. Publishers ([`client::Registry::push_image`],
//! [`layout::write_oci_layout`], [`layout::write_docker_tar`]) take it as is.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use raypack_oci::{client::Registry, media::Platform, reference::Reference};
//! use raypack_pack::cache::{BlobCache, default_cache_dir};
//! let registry = Registry::new(Default::default())?;
//! let cache = BlobCache::new(&default_cache_dir());
//! let base = Reference::parse("rayproject/ray:2.60.0-py311-cpu")?;
//! let platform = Platform::parse("linux/amd64").unwrap();
//! let (resolved, image) = registry.pull(&base, &platform, &cache).await?;
//! println!("{} with {} layers", resolved.digest, image.layers.len());
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod client;
pub mod cosign;
pub mod image;
pub mod layout;
pub mod media;
pub mod publish;
pub mod reference;
pub mod referrers;

pub use raypack_pack::digest::{digest_hex, sha256_digest};
