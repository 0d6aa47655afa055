//! What a base image already has installed: for each distribution in its site-packages, the
//! name, version, dependencies and the files its RECORD lists.
//!
//! Built once per base manifest digest by streaming the base's layers (in order, honouring
//! OCI whiteouts and opaque directories) and keeping only `*.dist-info/METADATA` and
//! `*.dist-info/RECORD` below site-packages — a few hundred KB for a Ray image, cached as JSON
//! next to the blob cache. Used by bake (skip what the base satisfies, whiteout what a new
//! version replaces) and by lock (the base's versions are preferences).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::wheel::normalize;

/// Bumped when the index format or its extraction rules change.
const INDEX_VERSION: &str = "raypack-base-index-v2";

/// One distribution installed in the base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledDist {
    /// As METADATA spells it.
    pub name: String,
    /// The version, as METADATA spells it.
    pub version: String,
    /// The `.dist-info` directory, image path without a leading '/'.
    pub dist_info: String,
    /// Its `Requires-Dist` lines.
    pub requires_dist: Vec<String>,
    /// Its `Requires-Python`.
    pub requires_python: Option<String>,
    /// Files from RECORD as image paths (no leading '/'), `..` resolved; paths that would leave
    /// the image root are dropped.
    pub files: Vec<String>,
    /// The license its METADATA declares.
    #[serde(default)]
    pub license: Option<super::metadata::DeclaredLicense>,
}

/// The distributions of one base image, by normalized name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseIndex {
    /// The index file's format version.
    pub format: String,
    /// The base's site-packages directory (image path).
    pub site_packages: String,
    /// Distributions by normalized name.
    pub dists: BTreeMap<String, InstalledDist>,
}

/// Why the base's layers could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A layer could not be read.
    #[error("base layer {path}: {source}")]
    Layer {
        /// The layer blob.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl BaseIndex {
    /// The installed version of `name` (any spelling), if the base has it.
    pub fn get(&self, name: &str) -> Option<&InstalledDist> {
        self.dists.get(&normalize(name))
    }

    /// Whether the base ships `name` at `version` (PEP 440 equality: `1.0` is `1.0.0`).
    pub fn ships(&self, name: &str, version: &str) -> bool {
        self.get(name)
            .is_some_and(|d| same_version(&d.version, version))
    }

    /// The `Requires-Dist` of every distribution, by normalized name.
    pub fn requirements(&self) -> BTreeMap<String, Vec<String>> {
        self.dists
            .iter()
            .map(|(k, d)| (k.clone(), d.requires_dist.clone()))
            .collect()
    }

    /// `(normalized name, version)` of every distribution: preferences for a resolver.
    pub fn preferences(&self) -> Vec<(String, String)> {
        self.dists
            .iter()
            .map(|(k, d)| (k.clone(), d.version.clone()))
            .collect()
    }

    /// Loads the index for `key` (the base's manifest digest) from `cache_dir`, or builds it
    /// from the layers (gzip or plain tar, bottom first) and stores it there.
    pub fn load_or_build(
        cache_dir: &Path,
        key: &str,
        layers: &[PathBuf],
        site_packages: &str,
    ) -> Result<BaseIndex, IndexError> {
        let file = cache_dir.join(format!(
            "{}-{}.json",
            key.replace(':', "-"),
            &hex::encode(sha2::Sha256::digest(site_packages.as_bytes()))[..12]
        ));
        if let Ok(bytes) = std::fs::read(&file)
            && let Ok(idx) = serde_json::from_slice::<BaseIndex>(&bytes)
            && idx.format == INDEX_VERSION
        {
            return Ok(idx);
        }
        let idx = BaseIndex::build(layers, site_packages)?;
        if std::fs::create_dir_all(cache_dir).is_ok()
            && let Ok(tmp) = tempfile::NamedTempFile::new_in(cache_dir)
            && std::fs::write(tmp.path(), serde_json::to_vec(&idx).expect("serializes")).is_ok()
        {
            let _ = tmp.persist(&file);
        }
        Ok(idx)
    }

    /// Streams the layers and keeps METADATA and RECORD of every `.dist-info` directly below
    /// `site_packages`.
    pub fn build(layers: &[PathBuf], site_packages: &str) -> Result<BaseIndex, IndexError> {
        let sp = site_packages.trim_matches('/').to_string();
        // dist-info dir → (METADATA, RECORD)
        let mut found: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        for layer in layers {
            let err = |source| IndexError::Layer {
                path: layer.clone(),
                source,
            };
            let mut f = std::fs::File::open(layer).map_err(err)?;
            let mut magic = [0u8; 4];
            let n = f.read(&mut magic).map_err(err)?;
            drop(f);
            let f = std::fs::File::open(layer).map_err(err)?;
            let reader: Box<dyn Read> = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
                Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
                    f,
                )))
            } else if n == 4 && magic == raypack_pack::archive::zst::MAGIC {
                Box::new(
                    raypack_pack::archive::zst::decoder(std::io::BufReader::new(f)).map_err(err)?,
                )
            } else {
                Box::new(std::io::BufReader::new(f))
            };
            let mut ar = tar::Archive::new(reader);
            for entry in ar.entries().map_err(err)? {
                let mut entry = entry.map_err(err)?;
                let raw = entry.path_bytes();
                let path = clean(&String::from_utf8_lossy(&raw));
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
                if name == ".wh..wh..opq" {
                    let prefix = format!("{dir}/");
                    found.retain(|k, _| !k.starts_with(&prefix));
                    continue;
                }
                if let Some(gone) = name.strip_prefix(".wh.") {
                    let gone = if dir.is_empty() {
                        gone.to_string()
                    } else {
                        format!("{dir}/{gone}")
                    };
                    let prefix = format!("{gone}/");
                    found.retain(|k, _| k != &gone && !k.starts_with(&prefix));
                    continue;
                }
                let Some(parent) = dir.strip_prefix(&sp).and_then(|r| r.strip_prefix('/')) else {
                    continue;
                };
                if parent.contains('/') || !parent.ends_with(".dist-info") {
                    continue;
                }
                if !matches!(name, "METADATA" | "RECORD") {
                    continue;
                }
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let mut text = String::new();
                if entry.read_to_string(&mut text).is_err() {
                    continue; // not UTF-8: not a usable record
                }
                let slot = found.entry(dir.to_string()).or_default();
                if name == "METADATA" {
                    slot.0 = Some(text);
                } else {
                    slot.1 = Some(text);
                }
            }
        }
        let mut dists = BTreeMap::new();
        for (dir, (metadata, record)) in found {
            let Some(metadata) = metadata else { continue };
            let Some(d) = parse_dist(&dir, &sp, &metadata, record.as_deref()) else {
                continue;
            };
            dists.insert(normalize(&d.name), d);
        }
        Ok(BaseIndex {
            format: INDEX_VERSION.into(),
            site_packages: sp,
            dists,
        })
    }
}

use sha2::Digest;

/// A tar path without `./` or a leading '/', and without a trailing '/'.
fn clean(p: &str) -> String {
    let p = p.trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_string()
}

/// `base/rel` with `.` and `..` resolved; `None` if it leaves the root.
pub(crate) fn join_normalized(base: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn parse_dist(dir: &str, sp: &str, metadata: &str, record: Option<&str>) -> Option<InstalledDist> {
    let mut name = None;
    let mut version = None;
    let mut requires_dist = Vec::new();
    let mut requires_python = None;
    // Headers end at the first blank line (the body is the description).
    for line in metadata.lines() {
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.to_ascii_lowercase().as_str() {
            "name" => name = Some(v),
            "version" => version = Some(v),
            "requires-dist" => requires_dist.push(v),
            "requires-python" => requires_python = Some(v),
            _ => {}
        }
    }
    let mut files = Vec::new();
    for line in record.unwrap_or_default().lines() {
        let path = super::wheel::csv_fields(line).swap_remove(0);
        if path.is_empty() {
            continue;
        }
        if let Some(p) = join_normalized(sp, &path) {
            files.push(p);
        }
    }
    files.sort();
    files.dedup();
    Some(InstalledDist {
        name: name?,
        version: version?,
        dist_info: dir.to_string(),
        requires_dist,
        requires_python,
        files,
        license: super::metadata::declared_license(metadata),
    })
}

/// PEP 440 equality (`1.0` == `1.0.0`), falling back to string equality.
pub fn same_version(a: &str, b: &str) -> bool {
    use std::str::FromStr;
    match (
        pep508_rs::pep440_rs::Version::from_str(a),
        pep508_rs::pep440_rs::Version::from_str(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let p = dir.join(name);
        let f = std::fs::File::create(&p).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (path, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, body.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        p
    }

    const SP: &str = "home/ray/anaconda3/lib/python3.11/site-packages";

    #[test]
    fn reads_dists_and_honours_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let meta = |n: &str, v: &str| {
            format!(
                "Metadata-Version: 2.1\nName: {n}\nVersion: {v}\nRequires-Dist: idna>=2\nRequires-Dist: colorama; platform_system == \"Windows\"\n\nBody: not a header\n"
            )
        };
        let l1 = layer(
            d.path(),
            "l1.tgz",
            &[
                (
                    &format!("./{SP}/Click-8.1.7.dist-info/METADATA"),
                    &meta("Click", "8.1.7"),
                ),
                (
                    &format!("{SP}/Click-8.1.7.dist-info/RECORD"),
                    "click/__init__.py,sha256=x,10\n\"click/we,ird.py\",,\n../../../bin/click,sha256=y,5\n../../../../../../../etc/passwd,,\nClick-8.1.7.dist-info/RECORD,,\n",
                ),
                (
                    &format!("{SP}/gone-1.0.dist-info/METADATA"),
                    &meta("gone", "1.0"),
                ),
                (
                    &format!("{SP}/pkg/sub.dist-info/METADATA"),
                    &meta("nested", "1"),
                ),
            ],
        );
        let l2 = layer(
            d.path(),
            "l2.tgz",
            &[(&format!("{SP}/.wh.gone-1.0.dist-info"), "")],
        );
        let idx = BaseIndex::build(&[l1, l2], &format!("/{SP}/")).unwrap();
        assert_eq!(idx.dists.keys().collect::<Vec<_>>(), vec!["click"]);
        let c = idx.get("click").unwrap();
        assert_eq!((c.name.as_str(), c.version.as_str()), ("Click", "8.1.7"));
        assert_eq!(c.requires_dist.len(), 2);
        assert_eq!(
            c.files,
            vec![
                "home/ray/anaconda3/bin/click".to_string(),
                format!("{SP}/Click-8.1.7.dist-info/RECORD"),
                format!("{SP}/click/__init__.py"),
                format!("{SP}/click/we,ird.py"),
            ]
        );
        assert_eq!(idx.preferences(), vec![("click".into(), "8.1.7".into())]);
    }

    #[test]
    fn opaque_directories_hide_lower_layers() {
        let d = tempfile::tempdir().unwrap();
        let l1 = layer(
            d.path(),
            "l1.tgz",
            &[(
                &format!("{SP}/a-1.dist-info/METADATA"),
                "Name: a\nVersion: 1\n",
            )],
        );
        let l2 = layer(
            d.path(),
            "l2.tgz",
            &[
                (&format!("{SP}/.wh..wh..opq"), ""),
                (
                    &format!("{SP}/b-2.dist-info/METADATA"),
                    "Name: b\nVersion: 2\n",
                ),
            ],
        );
        let idx = BaseIndex::build(&[l1, l2], SP).unwrap();
        assert_eq!(idx.dists.keys().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn normalized_joins_stay_inside() {
        assert_eq!(join_normalized("a/b/c", "../../x").as_deref(), Some("a/x"));
        assert_eq!(join_normalized("a", "../../x"), None);
    }
}
