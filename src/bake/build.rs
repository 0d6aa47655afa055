//! One platform's image: its base pinned and pulled, the code layer, the dependency layers for
//! its wheels, the config edited, the manifest assembled, and its SBOMs rendered. A
//! multi-platform bake runs this once per platform ([`super::run`] publishes the results).

use serde_json::{Map, json};

use super::{
    BakeError, BakeOptions, SbomReport, code_entries, deps, edit_config, layer_blob, sbom,
    write_atomic,
};
use crate::base::PinnedBase;
use crate::cache::BlobCache;
use crate::collect::StatCache;
use crate::lockfile::BasePin;
use crate::oci::client::Registry;
use crate::oci::image::Image;
use crate::oci::media::Platform;
use crate::oci::reference::Reference;
use crate::python::installed::BaseIndex;
use crate::recipe::Recipe;

/// What every platform's image shares: the time, the provenance, the lock's platforms.
pub(super) struct Shared<'a> {
    pub mtime: u64,
    pub created: String,
    pub revision: Option<String>,
    pub source: Option<String>,
    /// The image this push replaces (its first tag), whose dependency layers are reused.
    pub previous: Option<Reference>,
    /// Every platform of the bake: one lock serves them all.
    pub platforms: &'a [String],
    /// `repository` of the target (or the project's name).
    pub image_name: String,
    /// The shared layer cache, when there is one.
    pub layer_cache: Option<&'a super::shared_cache::SharedCache<'a>>,
}

/// One platform's image.
pub(super) struct PlatformImage {
    pub platform: Platform,
    pub pin: BasePin,
    pub pinned_now: bool,
    /// The base as pulled (`repository@digest`): blobs may be mounted from its repository.
    pub base_reference: Reference,
    pub image: Image,
    pub code_layer: String,
    pub ray_version: Option<String>,
    pub dependencies: deps::DepsReport,
    /// Rendered SBOMs (not yet attached or written).
    pub sboms: Vec<(SbomReport, Vec<u8>)>,
}

/// One platform's base pulled and its dependency layers built (the code layer comes after
/// every platform's lock and pins are written, so it is the same for all).
pub(super) struct Prepared {
    pub platform: Platform,
    pub pin: BasePin,
    pub pinned_now: bool,
    pub base_reference: Reference,
    pub pulled: crate::base::PulledBase,
    pub layers: Vec<deps::BuiltLayer>,
    pub dependencies: deps::DepsReport,
}

/// Pulls the pinned base and builds the platform's dependency layers.
#[allow(clippy::too_many_arguments)]
pub(super) async fn prepare(
    recipe: &Recipe,
    opts: &BakeOptions,
    base: PinnedBase<'_>,
    shared: &Shared<'_>,
    lock_base: Option<&BaseIndex>,
    registry: &Registry,
    cache: &BlobCache,
    http: &reqwest::Client,
    progress: &mut impl FnMut(&str),
) -> Result<Prepared, BakeError> {
    let platform = base.platform.clone();
    let say = |m: &str| say(shared, &platform, m);
    progress(&say("pulling the base image"));
    let pulled = base.pull().await?;
    recipe
        .check_python(&pulled.layout.python_version)
        .map_err(|source| BakeError::Python {
            image: recipe.base.image.clone(),
            source,
        })?;
    let mut layers = Vec::new();
    let mut dependencies = deps::DepsReport::default();
    if !opts.skip_deps {
        let lock_for = deps::LockFor {
            platforms: shared.platforms,
            base: lock_base,
        };
        let (built, report) = deps::dependency_layers(
            recipe,
            &platform,
            &pulled,
            &lock_for,
            cache,
            shared.mtime,
            &deps::Reuse {
                previous: shared.previous.as_ref().map(|t| (registry, t)),
                shared: shared.layer_cache,
            },
            http,
            progress,
        )
        .await?;
        layers = built;
        dependencies = report;
    }
    Ok(Prepared {
        platform,
        pin: base.pin.clone(),
        pinned_now: base.pinned_now,
        base_reference: base.reference.clone(),
        pulled,
        layers,
        dependencies,
    })
}

/// A progress message, naming the platform when there are several.
pub(super) fn say(shared: &Shared<'_>, platform: &Platform, m: &str) -> String {
    if shared.platforms.len() > 1 {
        format!("{m} ({platform})")
    } else {
        m.to_string()
    }
}

/// The code layer for a base's layout: blob and diff_id.
pub(super) fn code_layer(
    recipe: &Recipe,
    layout: &crate::base::BaseLayout,
    family: crate::oci::media::Family,
    mtime: u64,
    cache: &BlobCache,
) -> Result<(crate::oci::image::Blob, String), BakeError> {
    let stat_cache = StatCache::load(&recipe.state_dir().join("cache").join("stat.bin"));
    let mut entries = code_entries(recipe, layout, Some(&stat_cache))?;
    let _ = stat_cache.save();
    layer_blob(recipe, &mut entries, mtime, family, cache)
}

/// The platform's image: base + dependency layers + `code`, the config edited, the manifest
/// assembled, its SBOMs rendered.
pub(super) async fn assemble(
    recipe: &Recipe,
    opts: &BakeOptions,
    prepared: Prepared,
    (code_blob, code_diff): (crate::oci::image::Blob, String),
    shared: &Shared<'_>,
    cache: &BlobCache,
    progress: &mut impl FnMut(&str),
) -> Result<PlatformImage, BakeError> {
    let Prepared {
        platform,
        pin,
        pinned_now,
        base_reference,
        pulled,
        layers: dep_layers,
        dependencies,
    } = prepared;
    let multi = shared.platforms.len() > 1;
    let layout = pulled.layout.clone();
    let family = pulled.family;
    let base_image = &pulled.image;
    let created = &shared.created;
    let mut labels = Map::new();
    let mut ann = Map::new();
    let base_name = format!("{}", recipe.base.reference);
    for (k, v) in [
        ("org.opencontainers.image.created", Some(created.clone())),
        (
            "org.opencontainers.image.base.name",
            Some(base_name.clone()),
        ),
        (
            "org.opencontainers.image.base.digest",
            Some(pin.digest.clone()),
        ),
        ("org.opencontainers.image.source", shared.source.clone()),
        ("org.opencontainers.image.revision", shared.revision.clone()),
        ("org.opencontainers.image.title", Some(recipe.name.clone())),
    ] {
        if let Some(v) = v {
            labels.insert(k.into(), json!(v));
            ann.insert(k.into(), json!(v));
        }
    }
    for (k, v) in &recipe.image.labels {
        labels.insert(k.clone(), json!(v));
    }
    let mut new_layers = Vec::new();
    let mut layers = base_image.layers.clone();
    for (blob, diff_id, created_by) in dep_layers {
        new_layers.push((diff_id, created_by));
        layers.push(blob);
    }
    // With `replace_ray`, the image runs the locked Ray, not the base's: the label and the
    // printed rayVersion say so.
    let ray_version = match dependencies.replaced.iter().find(|r| r.name == "ray") {
        Some(r) => {
            labels.insert("io.ray.ray-version".into(), json!(r.to));
            Some(r.to.clone())
        }
        None => layout.ray_version.clone(),
    };
    // Provenance: the lock the wheels were chosen from.
    if let Some(lock) = &dependencies.lock {
        let mut pairs = vec![
            ("dev.raypack.lock.file", lock.file.clone()),
            ("dev.raypack.lock.sha256", lock.sha256.clone()),
        ];
        if let Some(h) = &lock.input_hash {
            pairs.push(("dev.raypack.lock.input-hash", h.clone()));
        }
        for (k, v) in pairs {
            labels.insert(k.into(), json!(v));
            ann.insert(k.into(), json!(v));
        }
    }
    new_layers.push((
        code_diff,
        format!("raypack bake: code layer ({})", recipe.image.app_dir),
    ));
    let cfg = edit_config(
        &pulled.config,
        recipe,
        &layout,
        &new_layers,
        &labels,
        created,
    );
    let cfg_bytes = serde_json::to_vec(&cfg).expect("config serializes");
    layers.push(code_blob.clone());
    let image = Image::assemble(family, &cfg_bytes, layers, Some(&ann), cache)?;
    let digest = image.digest();

    // The SBOMs: what is in the image and where it came from (see `sbom`).
    let mut sboms: Vec<(SbomReport, Vec<u8>)> = Vec::new();
    if !recipe.image.sbom.is_empty() {
        progress(&say(shared, &platform, "writing the SBOM"));
        let index = pulled.installed(cache).await?;
        let input = sbom::SbomInput {
            image: &shared.image_name,
            image_digest: &digest,
            base: &base_name,
            base_digest: &pin.digest,
            project: &recipe.name,
            code_layer: &code_blob.digest,
            revision: shared.revision.as_deref(),
            source: shared.source.as_deref(),
            created,
            installed: &index,
            deps: &dependencies,
        };
        for (n, format) in recipe.image.sbom.iter().enumerate() {
            let bytes = sbom::render(*format, &input);
            let mut files = Vec::new();
            if let Some(f) = &opts.sbom_file {
                let path = if n == 0 {
                    f.clone()
                } else {
                    super::with_suffix(f, format.suffix())
                };
                let path = if multi {
                    super::for_platform(&path, &platform)
                } else {
                    path
                };
                write_atomic(&path, &bytes)?;
                files.push(path);
            }
            sboms.push((
                SbomReport {
                    format: *format,
                    media_type: format.media_type().into(),
                    sha256: crate::oci::sha256_digest(&bytes),
                    referrer: None,
                    attached: None,
                    files,
                },
                bytes,
            ));
        }
    }
    Ok(PlatformImage {
        platform,
        pin,
        pinned_now,
        base_reference,
        image,
        code_layer: code_blob.digest.clone(),
        ray_version,
        dependencies,
        sboms,
    })
}
