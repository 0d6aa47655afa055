//! Where an image goes: one interface over the three publishers, as `raypack_store::Store`
//! is over object stores. Every destination takes the same [`Image`] and never shows a
//! half-written image under its final name: a registry gets blobs first, then the manifest by
//! digest, then tags; a layout or tar is written to a temp name and renamed.

use std::path::Path;

use crate::client::{PushStats, Registry, RegistryError};
use crate::image::{Image, ImageIndex};
use crate::layout::{LayoutError, write_docker_tar, write_oci_layout, write_oci_layout_index};
use crate::reference::Reference;

/// A place to publish an image.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// A registry repository, with the tags to point at the image (blobs may be mounted from
    /// `mount_from`, repositories of the same registry that have them).
    Registry {
        /// The client.
        registry: &'a Registry,
        /// The repository (its tag, if any, is ignored: `tags` name the image).
        target: &'a Reference,
        /// Tags to set after the manifest is pushed.
        tags: &'a [String],
        /// Where blobs may be mounted from (the base's repository, the shared layer cache).
        mount_from: &'a [&'a Reference],
    },
    /// An OCI image layout directory (`index.json`, `blobs/`), the image named `ref_name`.
    OciLayout {
        /// The directory.
        dir: &'a Path,
        /// `org.opencontainers.image.ref.name` of the image in `index.json`.
        ref_name: Option<&'a str>,
    },
    /// A `docker load`-able tar.
    DockerTar {
        /// The file.
        file: &'a Path,
        /// `RepoTags` of the image.
        repo_tags: &'a [String],
    },
}

/// What publishing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Pushed: blobs uploaded, mounted or already there.
    Pushed(PushStats),
    /// Written to a file or directory.
    Written,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A layout or tar could not be written.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A docker tar holds one platform's image; a multi-platform image cannot be one.
    #[error(
        "a docker tar holds one platform's image, not {0}; write an OCI layout or push instead"
    )]
    TarIsSinglePlatform(String),
}

impl Destination<'_> {
    /// Publishes `image` here.
    pub async fn publish(&self, image: &Image) -> Result<Published, PublishError> {
        match *self {
            Destination::Registry {
                registry,
                target,
                tags,
                mount_from,
            } => {
                let (_, stats) = registry.push_image(target, image, tags, mount_from).await?;
                Ok(Published::Pushed(stats))
            }
            Destination::OciLayout { dir, ref_name } => {
                write_oci_layout(dir, image, ref_name)?;
                Ok(Published::Written)
            }
            Destination::DockerTar { file, repo_tags } => {
                write_docker_tar(file, image, repo_tags)?;
                Ok(Published::Written)
            }
        }
    }

    /// Publishes a multi-platform image: each platform's image as [`Destination::publish`]
    /// would (to a registry: blobs, then its manifest by digest, untagged), then the index,
    /// which alone gets the tags.
    pub async fn publish_index(&self, index: &ImageIndex) -> Result<Published, PublishError> {
        match *self {
            Destination::Registry {
                registry,
                target,
                tags,
                mount_from,
            } => {
                let mut total = PushStats::default();
                for (_, image) in &index.images {
                    let (_, stats) = registry.push_image(target, image, &[], mount_from).await?;
                    total.add(&stats);
                }
                registry.push_index(target, &index.manifest, tags).await?;
                Ok(Published::Pushed(total))
            }
            Destination::OciLayout { dir, ref_name } => {
                write_oci_layout_index(dir, index, ref_name)?;
                Ok(Published::Written)
            }
            Destination::DockerTar { .. } => Err(PublishError::TarIsSinglePlatform(
                index
                    .images
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect::<Vec<_>>()
                    .join(" + "),
            )),
        }
    }
}
