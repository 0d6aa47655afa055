//! Writing an image as an OCI image layout directory, or as one tar that both `docker load`
//! paths accept: the OCI layout plus a legacy `manifest.json` (the format Docker 25+ writes).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::image::{Image, ImageIndex};
use super::{digest_hex, sha256_digest};

/// A layout or tar could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct LayoutError {
    /// What was being written.
    pub path: String,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl Fn(std::io::Error) -> LayoutError + '_ {
    move |source| LayoutError {
        path: path.display().to_string(),
        source,
    }
}

/// `index.json` naming one manifest (an image's or an index's) as `ref_name`.
fn index_json(media_type: &str, manifest: &[u8], ref_name: Option<&str>) -> Vec<u8> {
    let mut desc = json!({
        "mediaType": media_type,
        "digest": sha256_digest(manifest),
        "size": manifest.len(),
    });
    if let Some(r) = ref_name {
        desc["annotations"] = json!({ "org.opencontainers.image.ref.name": r });
    }
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": super::media::OCI_INDEX,
        "manifests": [desc],
    }))
    .expect("index serializes")
}

enum BlobSource {
    File(std::path::PathBuf),
    Bytes(Vec<u8>),
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes (or adds to) an OCI layout at `dir`. `ref_name` becomes the
/// `org.opencontainers.image.ref.name` annotation (`skopeo copy oci:DIR:REF`).
pub fn write_oci_layout(
    dir: &Path,
    image: &Image,
    ref_name: Option<&str>,
) -> Result<(), LayoutError> {
    write_layout(
        dir,
        std::slice::from_ref(image),
        (&image.manifest_media_type, &image.manifest),
        ref_name,
    )
}

/// [`write_oci_layout`] for a multi-platform image: every platform's blobs and manifest, then
/// the index, which `index.json` names as `ref_name` (`skopeo copy --all oci:DIR:REF`).
pub(crate) fn write_oci_layout_index(
    dir: &Path,
    index: &ImageIndex,
    ref_name: Option<&str>,
) -> Result<(), LayoutError> {
    let images: Vec<Image> = index.images.iter().map(|(_, i)| i.clone()).collect();
    write_layout(dir, &images, (&index.media_type, &index.manifest), ref_name)
}

fn write_layout(
    dir: &Path,
    images: &[Image],
    (top_type, top): (&str, &[u8]),
    ref_name: Option<&str>,
) -> Result<(), LayoutError> {
    let e = err(dir);
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(&e)?;
    let put =
        |digest: &str, write: &dyn Fn(&Path) -> std::io::Result<()>| -> Result<(), LayoutError> {
            let target = blobs.join(digest_hex(digest).expect("sha256 digest"));
            if target.is_file() {
                return Ok(());
            }
            let tmp = tempfile::NamedTempFile::new_in(&blobs).map_err(&e)?;
            write(tmp.path()).map_err(&e)?;
            tmp.persist(&target).map_err(|x| e(x.error))?;
            Ok(())
        };
    for image in images {
        for b in image.blobs() {
            // A hard link to the cache's blob when both are on one filesystem (blobs are
            // immutable and content-addressed; uv links from its cache the same way), else a
            // copy. Either appears under its name whole.
            let target = blobs.join(digest_hex(&b.digest).expect("sha256 digest"));
            if !target.is_file() && std::fs::hard_link(&b.path, &target).is_err() {
                put(&b.digest, &|p| std::fs::copy(&b.path, p).map(|_| ()))?;
            }
        }
        put(&image.digest(), &|p| std::fs::write(p, &image.manifest))?;
    }
    put(&sha256_digest(top), &|p| std::fs::write(p, top))?;
    std::fs::write(dir.join("oci-layout"), OCI_LAYOUT).map_err(&e)?;
    // Written last: a reader never sees an index whose blobs are missing.
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(&e)?;
    std::fs::write(tmp.path(), index_json(top_type, top, ref_name)).map_err(&e)?;
    tmp.persist(dir.join("index.json"))
        .map_err(|x| e(x.error))?;
    Ok(())
}

/// Writes a tar with the OCI layout and a docker `manifest.json` (`repo_tags` like
/// `registry.example.com/team/app:v1`). Entries are sorted, owned by 0:0, mtime 0.
pub fn write_docker_tar(
    file: &Path,
    image: &Image,
    repo_tags: &[String],
) -> Result<(), LayoutError> {
    let e = err(file);
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(&e)?;
    {
        let mut t = tar::Builder::new(std::io::BufWriter::new(
            tmp.as_file().try_clone().map_err(&e)?,
        ));
        t.mode(tar::HeaderMode::Deterministic);
        let header = |size: u64, mode: u32| {
            let mut h = tar::Header::new_ustar();
            h.set_size(size);
            h.set_mode(mode);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Regular);
            h
        };
        let dir_header = || {
            let mut h = tar::Header::new_ustar();
            h.set_size(0);
            h.set_mode(0o755);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Directory);
            h
        };
        let blob_name = |d: &str| format!("blobs/sha256/{}", digest_hex(d).expect("sha256 digest"));
        let manifest_json = serde_json::to_vec(&json!([{
            "Config": blob_name(&image.config.digest),
            "RepoTags": repo_tags,
            "Layers": image.layers.iter().map(|l| blob_name(&l.digest)).collect::<Vec<_>>(),
        }]))
        .expect("manifest.json serializes");
        let index = index_json(
            &image.manifest_media_type,
            &image.manifest,
            repo_tags.first().map(String::as_str),
        );
        // Blobs, deduplicated and sorted by name.
        let mut blobs: Vec<(String, BlobSource)> = image
            .blobs()
            .map(|b| (blob_name(&b.digest), BlobSource::File(b.path.clone())))
            .collect();
        blobs.push((
            blob_name(&image.digest()),
            BlobSource::Bytes(image.manifest.clone()),
        ));
        blobs.sort_by(|a, b| a.0.cmp(&b.0));
        blobs.dedup_by(|a, b| a.0 == b.0);
        for d in ["blobs/", "blobs/sha256/"] {
            t.append_data(&mut dir_header(), d, std::io::empty())
                .map_err(&e)?;
        }
        for (name, source) in blobs {
            let data = match source {
                BlobSource::File(p) => std::fs::read(p).map_err(&e)?,
                BlobSource::Bytes(b) => b,
            };
            t.append_data(&mut header(data.len() as u64, 0o644), name, data.as_slice())
                .map_err(&e)?;
        }
        for (name, data) in [
            ("index.json", index),
            ("manifest.json", manifest_json),
            ("oci-layout", OCI_LAYOUT.to_vec()),
        ] {
            t.append_data(&mut header(data.len() as u64, 0o644), name, data.as_slice())
                .map_err(&e)?;
        }
        t.into_inner().map_err(&e)?.flush().map_err(&e)?;
    }
    tmp.persist(file).map_err(|x| e(x.error))?;
    Ok(())
}
