//! Core metadata of a wheel (`*.dist-info/METADATA`): what the resolver needs from it
//! (`Requires-Dist`, `Requires-Python`, `Provides-Extra`), fetched the cheapest way the index
//! allows: the PEP 658 `.metadata` file, else HTTP range requests on the wheel's zip central
//! directory, else the whole wheel. Cached on disk under `python-metadata/`, keyed by the
//! wheel's sha256 (so a cached entry can never belong to another file).

use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::index::{DistFile, IndexClient, IndexError};

/// The largest METADATA read (a wheel's is a few KiB to a few hundred KiB).
const MAX_METADATA: u64 = 64 << 20;

/// The fields of METADATA the resolver reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreMetadata {
    /// The distribution's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `Requires-Dist` lines.
    pub requires_dist: Vec<String>,
    /// `Requires-Python`.
    pub requires_python: Option<String>,
    /// `Provides-Extra` names.
    pub provides_extra: Vec<String>,
}

/// Why METADATA could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The index or file host failed.
    #[error(transparent)]
    Http(#[from] IndexError),
    #[error("{file}: {message}")]
    /// METADATA is missing or malformed.
    Bad {
        /// The wheel.
        file: String,
        /// Why.
        message: String,
    },
}

/// Parses METADATA (RFC 822 style headers; the body after the first blank line is ignored).
pub fn parse(text: &str) -> CoreMetadata {
    let mut m = CoreMetadata::default();
    for (k, v) in headers(text) {
        // Continuation lines of these fields read as one line.
        let v = v.replace('\n', " ");
        match k.as_str() {
            "name" => m.name = v,
            "version" => m.version = v,
            "requires-dist" => m.requires_dist.push(v),
            "requires-python" if !v.is_empty() => m.requires_python = Some(v),
            "provides-extra" => m.provides_extra.push(v),
            _ => {}
        }
    }
    m
}

/// The license a distribution declares in its METADATA, in the order of precedence the core
/// metadata spec gives: `License-Expression` (an SPDX expression, metadata 2.4), else the
/// free-text `License` field (when it is one short line, not a whole licence text and not
/// `UNKNOWN`), else the `License :: …` classifiers' last components joined by ` OR `
/// (`License :: OSI Approved :: MIT License` → `MIT License`). `None` when it declares none.
pub fn declared_license(text: &str) -> Option<DeclaredLicense> {
    let mut expression = None;
    let mut free = None;
    let mut classifiers = Vec::new();
    for (k, v) in headers(text) {
        match k.as_str() {
            "license-expression" if !v.is_empty() => expression = Some(v),
            "license" => free = Some(v),
            "classifier" => {
                if let Some(rest) = v.strip_prefix("License ::") {
                    let last = rest.rsplit("::").next().unwrap_or(rest).trim();
                    if !last.is_empty() && last != "OSI Approved" {
                        classifiers.push(last.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(e) = expression {
        return Some(DeclaredLicense::Expression(e));
    }
    if let Some(f) = free.map(|f| f.trim().to_string()).filter(|f| {
        !f.is_empty() && f.len() <= 120 && !f.contains('\n') && !f.eq_ignore_ascii_case("unknown")
    }) {
        return Some(DeclaredLicense::Text(f));
    }
    classifiers.dedup();
    (!classifiers.is_empty()).then_some(DeclaredLicense::Classifiers(classifiers))
}

/// Where a distribution's license came from in METADATA; see [`declared_license`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeclaredLicense {
    /// `License-Expression`: an SPDX expression, as written.
    Expression(String),
    /// The `License` field's one line, as written.
    Text(String),
    /// The names of the `License ::` classifiers.
    Classifiers(Vec<String>),
}

/// METADATA's headers (lower-case names), continuation lines joined; the body is not read.
fn headers(text: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push('\n');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    headers
}

/// Reads METADATA for index files, caching the text by wheel sha256.
#[derive(Debug, Clone)]
pub struct MetadataFetcher {
    client: IndexClient,
    dir: PathBuf,
}

/// How the METADATA was obtained (tests and `-v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From the disk cache.
    Cache,
    /// From the index's PEP 658 `.metadata` file.
    Pep658,
    /// From range requests on the wheel's zip central directory.
    Range,
    /// From the whole wheel.
    WholeWheel,
}

impl MetadataFetcher {
    /// A fetcher using `client` and its cache directory.
    pub fn new(client: IndexClient) -> MetadataFetcher {
        let dir = client.cache_dir().join("python-metadata");
        MetadataFetcher { client, dir }
    }

    /// METADATA of a wheel listed by an index.
    pub async fn fetch(&self, file: &DistFile) -> Result<(CoreMetadata, Source), MetadataError> {
        let cache_path = file
            .sha256
            .as_ref()
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|h| self.dir.join(&h[..2]).join(format!("{h}.METADATA")));
        if let Some(p) = &cache_path
            && let Ok(text) = std::fs::read_to_string(p)
        {
            return Ok((parse(&text), Source::Cache));
        }
        let (bytes, source) = self.fetch_uncached(file).await?;
        tracing::debug!("{}: METADATA from {source:?}", file.filename);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(p) = &cache_path
            && let Some(dir) = p.parent()
            && std::fs::create_dir_all(dir).is_ok()
            && let Ok(tmp) = tempfile::NamedTempFile::new_in(dir)
            && std::fs::write(tmp.path(), &text).is_ok()
        {
            let _ = tmp.persist(p);
        }
        Ok((parse(&text), source))
    }

    async fn fetch_uncached(&self, file: &DistFile) -> Result<(Vec<u8>, Source), MetadataError> {
        let bad = |message: String| MetadataError::Bad {
            file: file.filename.clone(),
            message,
        };
        if let Some(hash) = &file.core_metadata {
            let url = format!(
                "{}.metadata",
                file.url.split('#').next().unwrap_or(&file.url)
            );
            match self.client.get(&url).await {
                Ok(bytes) => {
                    if let Some(h) = hash {
                        let actual = hex::encode(Sha256::digest(&bytes));
                        if &actual != h {
                            return Err(bad(format!("{url}: sha256 {actual}, the index says {h}")));
                        }
                    }
                    return Ok((bytes, Source::Pep658));
                }
                // The field is advisory (proxies drop or break it): fall through.
                Err(e) => tracing::debug!("{url}: {e}; reading the wheel instead"),
            }
        }
        match self.from_range(file).await {
            Ok(Some(b)) => return Ok((b, Source::Range)),
            Ok(None) => {}
            Err(e) => tracing::debug!("{}: range requests failed ({e}); downloading it", file.url),
        }
        let whole = self.client.get(&file.url).await?;
        if let Some(h) = &file.sha256 {
            let actual = hex::encode(Sha256::digest(&whole));
            if &actual != h {
                return Err(bad(format!("sha256 {actual}, the index says {h}")));
            }
        }
        let b = metadata_from_zip(&whole).map_err(bad)?;
        Ok((b, Source::WholeWheel))
    }

    /// METADATA via range requests: the tail (end of central directory + usually the whole
    /// central directory), then the one member. `None` when the server ignores ranges or the
    /// archive needs zip64.
    pub async fn from_range(&self, file: &DistFile) -> Result<Option<Vec<u8>>, MetadataError> {
        let bad = |message: String| MetadataError::Bad {
            file: file.filename.clone(),
            message,
        };
        const TAIL: u64 = 64 * 1024;
        let (status, tail) = self
            .client
            .get_range(&file.url, &format!("-{TAIL}"))
            .await?;
        if status == 200 {
            return metadata_from_zip(&tail).map(Some).map_err(bad);
        }
        let total = match file.size {
            Some(s) => s,
            None => return Ok(None),
        };
        let tail_start = total.saturating_sub(tail.len() as u64);
        let Some(eocd) = Eocd::find(&tail) else {
            return Ok(None);
        };
        let cd = if eocd.cd_offset >= tail_start {
            let s = (eocd.cd_offset - tail_start) as usize;
            tail.get(s..s + eocd.cd_size as usize)
                .ok_or_else(|| bad("central directory runs past the end".into()))?
                .to_vec()
        } else {
            let (_, b) = self
                .client
                .get_range(
                    &file.url,
                    &format!("{}-{}", eocd.cd_offset, eocd.cd_offset + eocd.cd_size - 1),
                )
                .await?;
            b
        };
        let Some(entry) = find_metadata_entry(&cd) else {
            return Err(bad("no *.dist-info/METADATA in the wheel".into()));
        };
        let want = 30 + entry.name_len + entry.compressed + 1024;
        let end = (entry.local_offset + want).min(total) - 1;
        let (_, local) = self
            .client
            .get_range(&file.url, &format!("{}-{end}", entry.local_offset))
            .await?;
        let data = local_member(&local, &entry).map_err(bad)?;
        Ok(Some(data))
    }
}

pub(crate) struct Eocd {
    pub(crate) cd_size: u64,
    pub(crate) cd_offset: u64,
}

impl Eocd {
    /// The end-of-central-directory record in the tail of a zip (`None` for zip64 archives).
    pub(crate) fn find(tail: &[u8]) -> Option<Eocd> {
        let sig = [0x50, 0x4b, 0x05, 0x06];
        let pos = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| tail[i..i + 4] == sig)?;
        let r = &tail[pos..];
        let cd_size = u32::from_le_bytes(r[12..16].try_into().ok()?);
        let cd_offset = u32::from_le_bytes(r[16..20].try_into().ok()?);
        if cd_size == u32::MAX || cd_offset == u32::MAX {
            return None;
        }
        Some(Eocd {
            cd_size: cd_size.into(),
            cd_offset: cd_offset.into(),
        })
    }
}

#[derive(Debug)]
pub(crate) struct CdEntry {
    method: u16,
    compressed: u64,
    name_len: u64,
    local_offset: u64,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// The central-directory entry of `<top>.dist-info/METADATA`.
pub(crate) fn find_metadata_entry(cd: &[u8]) -> Option<CdEntry> {
    let mut i = 0;
    while u32_at(cd, i)? == 0x0201_4b50 {
        let method = u16_at(cd, i + 10)?;
        let compressed = u32_at(cd, i + 20)?;
        let name_len = u16_at(cd, i + 28)? as usize;
        let extra_len = u16_at(cd, i + 30)? as usize;
        let comment_len = u16_at(cd, i + 32)? as usize;
        let local = u32_at(cd, i + 42)?;
        let name = std::str::from_utf8(cd.get(i + 46..i + 46 + name_len)?).ok()?;
        if is_metadata_path(name) && compressed != u32::MAX && local != u32::MAX {
            return Some(CdEntry {
                method,
                compressed: compressed.into(),
                name_len: name_len as u64,
                local_offset: local.into(),
            });
        }
        i += 46 + name_len + extra_len + comment_len;
    }
    None
}

fn is_metadata_path(name: &str) -> bool {
    name.split_once('/')
        .is_some_and(|(dir, rest)| dir.ends_with(".dist-info") && rest == "METADATA")
}

/// Decompresses a member from bytes starting at its local file header.
pub(crate) fn local_member(local: &[u8], e: &CdEntry) -> Result<Vec<u8>, String> {
    if u32_at(local, 0) != Some(0x0403_4b50) {
        return Err("bad local file header".into());
    }
    let name_len = u16_at(local, 26).ok_or("short local header")? as usize;
    let extra_len = u16_at(local, 28).ok_or("short local header")? as usize;
    let start = 30 + name_len + extra_len;
    let data = local
        .get(start..start + e.compressed as usize)
        .ok_or("member runs past the fetched range")?;
    match e.method {
        0 => Ok(data.to_vec()),
        8 => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(data)
                .take(MAX_METADATA + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("inflating METADATA: {e}"))?;
            if out.len() as u64 > MAX_METADATA {
                return Err(format!(
                    "METADATA inflates to over {} MiB",
                    MAX_METADATA >> 20
                ));
            }
            Ok(out)
        }
        m => Err(format!("METADATA uses zip compression method {m}")),
    }
}

/// METADATA from a whole wheel in memory.
pub fn metadata_from_zip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    metadata_from_wheel(std::io::Cursor::new(bytes))
}

/// METADATA from a wheel file (only its central directory and METADATA are read).
pub fn metadata_from_wheel<R: Read + std::io::Seek>(wheel: R) -> Result<Vec<u8>, String> {
    let mut z = zip::ZipArchive::new(wheel).map_err(|e| format!("not a zip: {e}"))?;
    for i in 0..z.len() {
        let f = z.by_index(i).map_err(|e| e.to_string())?;
        if f.name().is_ok_and(|n| is_metadata_path(&n)) {
            let mut out = Vec::new();
            f.take(MAX_METADATA + 1)
                .read_to_end(&mut out)
                .map_err(|e| e.to_string())?;
            if out.len() as u64 > MAX_METADATA {
                return Err(format!("METADATA is over {} MiB", MAX_METADATA >> 20));
            }
            return Ok(out);
        }
    }
    Err("no *.dist-info/METADATA in the wheel".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const META: &str = "Metadata-Version: 2.1\nName: Foo.Bar\nVersion: 1.0\nRequires-Python: >=3.8\nProvides-Extra: socks\nRequires-Dist: idna<4,>=2.5\nRequires-Dist: PySocks!=1.5.7,>=1.5.6; extra == \"socks\"\nSummary: a\n  continued\n\nRequires-Dist: not-a-header\n";

    #[test]
    fn declared_licenses_in_order_of_precedence() {
        let l = |t: &str| declared_license(t);
        assert_eq!(
            l("Name: a\nLicense-Expression: MIT OR Apache-2.0\nLicense: BSD\n"),
            Some(DeclaredLicense::Expression("MIT OR Apache-2.0".into()))
        );
        assert_eq!(
            l(
                "Name: a\nLicense: BSD-3-Clause\nClassifier: License :: OSI Approved :: MIT License\n"
            ),
            Some(DeclaredLicense::Text("BSD-3-Clause".into()))
        );
        // A whole licence text in `License`, or UNKNOWN, falls through to the classifiers.
        assert_eq!(
            l(
                "Name: a\nLicense: Copyright (c) 2020\n        Permission is hereby granted\nClassifier: License :: OSI Approved :: MIT License\n"
            ),
            Some(DeclaredLicense::Classifiers(vec!["MIT License".into()]))
        );
        assert_eq!(
            l("Name: a\nLicense: UNKNOWN\nClassifier: License :: OSI Approved\n"),
            None
        );
        assert_eq!(
            l("Name: a\n\nLicense: MIT\n"),
            None,
            "the body is not metadata"
        );
    }

    #[test]
    fn parses_headers_until_the_body() {
        let m = parse(META);
        assert_eq!(m.name, "Foo.Bar");
        assert_eq!(m.version, "1.0");
        assert_eq!(m.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(m.provides_extra, vec!["socks"]);
        assert_eq!(
            m.requires_dist,
            vec!["idna<4,>=2.5", "PySocks!=1.5.7,>=1.5.6; extra == \"socks\""]
        );
    }

    fn wheel(compression: zip::CompressionMethod) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default().compression_method(compression);
            z.start_file("foo/__init__.py", o).unwrap();
            z.write_all(&[b'x'; 5000]).unwrap();
            z.start_file("foo_bar-1.0.dist-info/METADATA", o).unwrap();
            z.write_all(META.as_bytes()).unwrap();
            z.start_file("foo_bar-1.0.dist-info/RECORD", o).unwrap();
            z.write_all(b"r").unwrap();
            z.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn central_directory_walk_finds_metadata() {
        for method in [
            zip::CompressionMethod::Stored,
            zip::CompressionMethod::Deflated,
        ] {
            let w = wheel(method);
            let eocd = Eocd::find(&w).expect("eocd");
            let cd = &w[eocd.cd_offset as usize..(eocd.cd_offset + eocd.cd_size) as usize];
            let e = find_metadata_entry(cd).expect("entry");
            let got = local_member(&w[e.local_offset as usize..], &e).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), META);
            assert_eq!(metadata_from_zip(&w).unwrap(), META.as_bytes());
        }
        assert!(!is_metadata_path("a.dist-info/sub/METADATA"));
        assert!(!is_metadata_path("METADATA"));
    }
}
