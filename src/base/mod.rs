//! The base image a command builds on, set up once and passed down: pinned in `raypack.lock`
//! ([`PinnedBase::pin`]), its config read for the target's Python and glibc
//! ([`PinnedBase::layout`], no layer is pulled), or pulled whole ([`PinnedBase::pull`]) with
//! what it has installed ([`PulledBase::installed`]).
//!
//! `lock`, `env` (the bundle) and `bake` all go through here, so the base is pinned, described
//! and indexed one way.

pub mod layout;

use std::path::PathBuf;

use serde_json::Value;

use crate::cache::{BlobCache, CacheError};
use crate::lockfile::{BasePin, LockError as LockFileError, LockFile};
use crate::oci::client::{ClientOptions, Registry, RegistryError};
use crate::oci::image::Image;
use crate::oci::media::{Family, Platform};
use crate::oci::reference::Reference;
use crate::python::installed::{BaseIndex, IndexError};
use crate::recipe::Recipe;

pub use layout::{BaseLayout, describe, target_without_pull};

/// Why the base could not be pinned, read or pulled.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error(
        "base image {image} is not in raypack's catalog and its config does not say where its Python is; set them in [base]: python = \"/path/to/bin/python\", python_version = \"3.11\", site_packages = \"/path/to/site-packages\", user = \"UID:GID\""
    )]
    Unknown { image: String },
    #[error("base image {image}: {message}")]
    Inconsistent { image: String, message: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    LockFile(#[from] LockFileError),
    #[error("platform {0}")]
    Platform(String),
    #[error(
        "{image}: not in raypack's catalog; set [base] python_version = \"3.11\" and manylinux = \"2_35\" so wheels can be chosen for the cluster"
    )]
    NotInCatalog { image: String },
    #[error("cannot choose wheels for {platform} / Python {python} / manylinux_{manylinux}")]
    NoTarget {
        platform: String,
        python: String,
        manylinux: String,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The recipe's base pinned to a digest for one platform.
#[derive(Debug)]
pub struct PinnedBase<'a> {
    recipe: &'a Recipe,
    registry: &'a Registry,
    cache: &'a BlobCache,
    /// The platform it was pinned for.
    pub platform: Platform,
    /// `repository@digest` of the platform's manifest.
    pub reference: Reference,
    /// What `raypack.lock` records.
    pub pin: BasePin,
    /// Whether this run wrote the pin (it was missing, or `upgrade`).
    pub pinned_now: bool,
}

/// A pulled base: its layers in the blob cache, its config and layout known.
#[derive(Debug)]
pub struct PulledBase {
    /// Manifest, config and layers as blobs in the cache.
    pub image: Image,
    /// The raw config.
    pub config: Value,
    /// Where its Python is, its user, glibc level and Ray version.
    pub layout: BaseLayout,
    /// Docker v2s2 or OCI media types (the image built on it uses the same).
    pub family: Family,
    /// What it has installed, read once per command ([`PulledBase::installed`]).
    installed: tokio::sync::OnceCell<std::sync::Arc<BaseIndex>>,
}

impl<'a> PinnedBase<'a> {
    /// Pins the recipe's base for `platform`: the digest `raypack.lock` records, else the tag
    /// resolved on the registry and recorded (always resolved when `upgrade`).
    pub async fn pin(
        recipe: &'a Recipe,
        platform: Platform,
        registry: &'a Registry,
        cache: &'a BlobCache,
        upgrade: bool,
    ) -> Result<PinnedBase<'a>, BaseError> {
        let mut lock = LockFile::load(&recipe.root)?;
        let platform_s = platform.to_string();
        let base = &recipe.base.reference;
        let (pin, pinned_now) = match lock.base_pin(&recipe.base.image, &platform_s) {
            Some(pin) if !upgrade => (pin.clone(), false),
            _ => {
                let (resolved, tag) = resolve_for(recipe, registry, cache, &platform).await?;
                let pin = BasePin {
                    image: recipe.base.image.clone(),
                    platform: platform_s,
                    digest: resolved.digest.clone(),
                    index_digest: resolved.index_digest.clone(),
                    tag,
                };
                lock.set_base_pin(pin.clone());
                let changed = lock.save(&recipe.root)?;
                (pin, changed)
            }
        };
        Ok(PinnedBase {
            recipe,
            registry,
            cache,
            platform,
            reference: base.with_digest(&pin.digest),
            pin,
            pinned_now,
        })
    }

    fn bad(&self, message: String) -> BaseError {
        BaseError::Inconsistent {
            image: self.recipe.base.image.clone(),
            message,
        }
    }

    /// The base's layout from its manifest and config alone (no layer is pulled).
    pub async fn layout(&self) -> Result<BaseLayout, BaseError> {
        let resolved = self
            .registry
            .resolve(&self.reference, &self.platform, self.cache)
            .await?;
        let manifest: Value = serde_json::from_slice(&resolved.manifest)
            .map_err(|e| self.bad(format!("manifest: {e}")))?;
        let digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| self.bad("manifest has no config".into()))?;
        let path = self
            .registry
            .fetch_blob(&self.reference, digest, self.cache)
            .await?;
        let config = read_config(&path).ok_or_else(|| self.bad("config is not JSON".into()))?;
        describe(&self.recipe.base, &self.recipe.base.reference, &config)
    }

    /// Pulls every layer into the blob cache and checks that the image is for the platform.
    pub async fn pull(&self) -> Result<PulledBase, BaseError> {
        let (_, image) = self
            .registry
            .pull(&self.reference, &self.platform, self.cache)
            .await?;
        let bytes = std::fs::read(&image.config.path).map_err(|source| CacheError::Io {
            path: image.config.path.clone(),
            source,
        })?;
        let config: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.bad(format!("config is not JSON: {e}")))?;
        // A single-platform base (no index) must itself be for the target platform.
        let arch = config["architecture"].as_str().unwrap_or_default();
        let os = config["os"].as_str().unwrap_or_default();
        let platform = &self.platform;
        if arch != platform.architecture || os != platform.os {
            return Err(self.bad(format!(
                "it is built for {os}/{arch}, not {platform}; pick a base for {platform} or pass --platform {os}/{arch}"
            )));
        }
        let layout = describe(&self.recipe.base, &self.recipe.base.reference, &config)?;
        let family = Family::of(&image.manifest_media_type).ok_or_else(|| {
            self.bad(format!(
                "unsupported manifest type {}",
                image.manifest_media_type
            ))
        })?;
        Ok(PulledBase {
            image,
            config,
            layout,
            family,
            installed: Default::default(),
        })
    }
}

impl PulledBase {
    /// The blob paths of the base's layers, bottom first.
    pub fn layer_paths(&self) -> Vec<PathBuf> {
        self.image.layers.iter().map(|l| l.path.clone()).collect()
    }

    /// What the base has installed: indexed once per base config digest under the cache, and
    /// read once per command (bake's dependency layers and its SBOM share it).
    pub async fn installed(
        &self,
        cache: &BlobCache,
    ) -> Result<std::sync::Arc<BaseIndex>, BaseError> {
        let (key, dir, layers, sp) = (
            self.image.config.digest.clone(),
            cache.root().join("base-index"),
            self.layer_paths(),
            self.layout.site_packages.clone(),
        );
        self.installed
            .get_or_try_init(|| async move {
                let index = tokio::task::spawn_blocking(move || {
                    BaseIndex::load_or_build(&dir, &key, &layers, &sp)
                })
                .await
                .expect("indexing does not panic")?;
                Ok(std::sync::Arc::new(index))
            })
            .await
            .cloned()
    }
}

/// Resolves the recipe's base for `platform`: a multi-platform index gives the platform's
/// manifest; a single-platform tag must be for `platform`, else the platform's own tag of a
/// base published one tag per architecture (`layout::arch_tag`) is tried, and returned.
async fn resolve_for(
    recipe: &Recipe,
    registry: &Registry,
    cache: &BlobCache,
    platform: &Platform,
) -> Result<(crate::oci::client::Resolved, Option<String>), BaseError> {
    let base = &recipe.base.reference;
    let resolved = registry.resolve(base, platform, cache).await?;
    if resolved.index_digest.is_some() {
        return Ok((resolved, None));
    }
    let arch_of = |resolved: &crate::oci::client::Resolved, r: &Reference| {
        let r = r.with_digest(&resolved.digest);
        let manifest: Option<Value> = serde_json::from_slice(&resolved.manifest).ok();
        async move {
            let digest = manifest
                .as_ref()
                .and_then(|m| m["config"]["digest"].as_str().map(str::to_string));
            let Some(digest) = digest else {
                return Ok::<_, BaseError>(None);
            };
            let path = registry.fetch_blob(&r, &digest, cache).await?;
            Ok(read_config(&path).map(|c| {
                format!(
                    "{}/{}",
                    c["os"].as_str().unwrap_or_default(),
                    c["architecture"].as_str().unwrap_or_default()
                )
            }))
        }
    };
    let want = format!("{}/{}", platform.os, platform.architecture);
    let have = arch_of(&resolved, base).await?;
    if have.as_deref().is_none_or(|h| h == want) {
        return Ok((resolved, None));
    }
    if let Some(alt) = layout::arch_tag(base, &platform.architecture) {
        let other = registry.resolve(&alt, platform, cache).await?;
        if other.index_digest.is_some() || arch_of(&other, &alt).await?.as_deref() == Some(&want) {
            return Ok((other, alt.tag.clone()));
        }
    }
    Err(BaseError::Inconsistent {
        image: recipe.base.image.clone(),
        message: format!(
            "it is built for {}, not {platform}, and it is not a multi-platform index; pick a base for {platform} or a multi-platform tag",
            have.unwrap_or_default()
        ),
    })
}

fn read_config(path: &std::path::Path) -> Option<Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// What the recipe's base has installed and its layout, for commands that use it only to
/// decide what to ship (`lock`, `env`): pinned as `bake` pins it, pulled into the default blob
/// cache. Callers fall back to working without the base when this fails.
pub async fn read_installed(
    recipe: &Recipe,
    platform: &str,
    registry: ClientOptions,
) -> Result<(BaseIndex, BaseLayout), BaseError> {
    let p = Platform::parse(platform).ok_or_else(|| BaseError::Platform(platform.to_string()))?;
    let registry = Registry::new(registry)?;
    let cache = BlobCache::new(&crate::cache::default_cache_dir());
    let base = PinnedBase::pin(recipe, p, &registry, &cache, false).await?;
    let pulled = base.pull().await?;
    let index = pulled.installed(&cache).await?;
    Ok((std::sync::Arc::unwrap_or_clone(index), pulled.layout))
}
