//! The one Python index client, for resolving (`raypack lock`) and for mapping pins to wheels
//! (`bake`, the bundle): every file of a project with the fields a lock needs (sha256, size,
//! upload-time, requires-python, yanked, PEP 658 core metadata) from a PEP 691 JSON or a PEP 503
//! HTML simple index, and the wheels of `--find-links` locations (a local directory or an HTML
//! page of links). Pages are cached on disk and revalidated the way HTTP says
//! (`Cache-Control: max-age`, `ETag`); `file://` URLs are read from disk.
//!
//! Credentials come from the URL's userinfo or `.netrc` ([`crate::netrc`]) and never appear in
//! what the client returns: file URLs are given without userinfo (requests to their host
//! carry the remembered credentials). Network errors and 5xx/429 answers are retried (3 tries,
//! growing backoff), at most [`MAX_CONCURRENT_REQUESTS`] at once. A 404 (or the 403 some
//! indexes send) means the project is not on that index.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::requirement::normalize;

/// How many requests run at once against indexes and file hosts.
pub(crate) const MAX_CONCURRENT_REQUESTS: usize = 24;
/// How often a request is tried before its error is reported.
pub(crate) const ATTEMPTS: u32 = 3;
/// Freshness of a cached project page when the index sends no `max-age` (PyPI sends 600).
const DEFAULT_MAX_AGE: u64 = 600;

/// Why an index request failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The index could not be reached (after retries).
    #[error("{}: {detail} (after {attempts} tries)", crate::netrc::redact(url))]
    Network {
        /// The URL (printed without credentials).
        url: String,
        /// Why, with its causes.
        detail: String,
        /// How many tries were made.
        attempts: u32,
    },
    #[error("{}: HTTP {status}", crate::netrc::redact(url))]
    /// The index answered with an HTTP error.
    Status {
        /// The URL (printed without credentials).
        url: String,
        /// The status.
        status: u16,
    },
    #[error(
        "{}: the index answered neither PEP 691 JSON nor PEP 503 HTML ({detail})",
        crate::netrc::redact(url)
    )]
    /// The page is neither PEP 691 JSON nor PEP 503 HTML.
    NotJson {
        /// The URL (printed without credentials).
        url: String,
        /// The parser's error.
        detail: String,
    },
    /// A local file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One file of a project as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistFile {
    /// The file name as the index lists it.
    pub filename: String,
    /// Absolute URL.
    pub url: String,
    /// SHA-256 (hex), when the index gives it.
    pub sha256: Option<String>,
    /// `Requires-Python`, when the index gives it.
    pub requires_python: Option<String>,
    /// Yanked (PEP 592).
    pub yanked: bool,
    /// PEP 592 reason, when the index gives one.
    #[serde(default)]
    pub yanked_reason: Option<String>,
    /// PEP 658/714 metadata: `None` = not offered; `Some(None)` = offered without a hash.
    pub core_metadata: Option<Option<String>>,
    /// Size in bytes, when the index gives it.
    pub size: Option<u64>,
    /// ISO-8601 as the index wrote it (PEP 700).
    pub upload_time: Option<String>,
}

/// A project's files on one index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPage {
    /// The index URL the page came from (no trailing slash).
    pub index: String,
    /// The project's files.
    pub files: Vec<DistFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedPage {
    fetched_at: u64,
    max_age: u64,
    etag: Option<String>,
    /// `None`: the index does not have the project.
    page: Option<ProjectPage>,
}

/// The HTTP side of locking: index pages and file ranges, with retries and a request limit.
#[derive(Debug, Clone)]
pub struct IndexClient {
    http: reqwest::Client,
    cache_dir: PathBuf,
    permits: Arc<Semaphore>,
    /// Revalidate every page regardless of its age.
    pub refresh: bool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn retryable_status(s: reqwest::StatusCode) -> bool {
    s.is_server_error() || s == reqwest::StatusCode::TOO_MANY_REQUESTS
}

impl IndexClient {
    /// `cache_dir` is raypack's cache root; pages go under `python-index/`.
    pub fn new(http: reqwest::Client, cache_dir: &Path) -> IndexClient {
        IndexClient {
            http,
            cache_dir: cache_dir.to_path_buf(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
            refresh: false,
        }
    }

    /// raypack's cache root the client keeps its pages under.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Sends a request built by `build`, retrying network errors and 5xx/429 answers.
    pub async fn send(
        &self,
        url: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, IndexError> {
        let _permit = self.permits.acquire().await.expect("semaphore open");
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match build().send().await {
                Ok(r) if retryable_status(r.status()) && attempt < ATTEMPTS => {
                    last = format!("HTTP {}", r.status());
                }
                Ok(r) => return Ok(r),
                Err(e) => last = raypack_pack::chain::error_chain(&e.without_url()),
            }
            tracing::debug!("{url}: {last}; retrying (attempt {attempt} of {ATTEMPTS})");
            tokio::time::sleep(Duration::from_millis(300 * 3u64.pow(attempt - 1))).await;
        }
        Err(IndexError::Network {
            url: url.to_string(),
            detail: last,
            attempts: ATTEMPTS,
        })
    }

    /// GETs `url` with a byte range (`bytes=...` syntax without the prefix); returns the status
    /// and body (206 for a range, 200 when the server ignores ranges).
    pub(crate) async fn get_range(
        &self,
        url: &str,
        range: &str,
    ) -> Result<(u16, Vec<u8>), IndexError> {
        if let Some(path) = local_path(url) {
            let bytes = read_local(&path)?;
            return Ok((206, slice_range(&bytes, range).to_vec()));
        }
        let resp = self
            .send(url, || {
                crate::netrc::authed_get(&self.http, url).header("Range", format!("bytes={range}"))
            })
            .await?;
        let status = resp.status().as_u16();
        if !(status == 200 || status == 206) {
            return Err(IndexError::Status {
                url: url.to_string(),
                status,
            });
        }
        let body = resp.bytes().await.map_err(|e| IndexError::Network {
            url: url.to_string(),
            detail: e.without_url().to_string(),
            attempts: 1,
        })?;
        Ok((status, body.to_vec()))
    }

    /// GETs a whole file.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, IndexError> {
        if let Some(path) = local_path(url) {
            return read_local(&path);
        }
        let resp = self
            .send(url, || crate::netrc::authed_get(&self.http, url))
            .await?;
        if !resp.status().is_success() {
            return Err(IndexError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let body = resp.bytes().await.map_err(|e| IndexError::Network {
            url: url.to_string(),
            detail: e.without_url().to_string(),
            attempts: 1,
        })?;
        Ok(body.to_vec())
    }

    fn page_path(&self, index: &str, name: &str) -> PathBuf {
        let key = hex::encode(Sha256::digest(index.trim_end_matches('/').as_bytes()));
        self.cache_dir
            .join("python-index")
            .join(&key[..16])
            .join(format!("{name}.json"))
    }

    /// The project's files on `index`, or `None` when the index does not have it.
    pub async fn project(
        &self,
        index: &str,
        name: &str,
    ) -> Result<Option<ProjectPage>, IndexError> {
        // Files listed without userinfo on the index's host get its credentials.
        crate::netrc::remember(index);
        let name = normalize(name);
        let path = self.page_path(index, &name);
        let cached: Option<CachedPage> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        // Fresh: the page is moved out, not cloned (a large project's page is megabytes of
        // strings, read for every pinned lookup).
        if cached
            .as_ref()
            .is_some_and(|c| !self.refresh && now().saturating_sub(c.fetched_at) < c.max_age)
        {
            return Ok(cached.and_then(|c| c.page));
        }
        let url = format!("{}/{}/", index.trim_end_matches('/'), name);
        let etag = cached.as_ref().and_then(|c| c.etag.clone());
        let resp = self
            .send(&url, || {
                let mut b = crate::netrc::authed_get(&self.http, &url).header(
                    "Accept",
                    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.latest+json;q=0.9, text/html;q=0.01",
                );
                if let Some(e) = &etag {
                    b = b.header("If-None-Match", e);
                }
                b
            })
            .await?;
        let status = resp.status();
        let max_age = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .find_map(|d| d.trim().strip_prefix("max-age=")?.parse().ok())
            })
            .unwrap_or(DEFAULT_MAX_AGE);
        let new_etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let page = if status == reqwest::StatusCode::NOT_MODIFIED
            && let Some(c) = cached
        {
            c.page
        } else if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::FORBIDDEN
        {
            None
        } else if status.is_success() {
            let html = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("text/html"));
            let body = resp.bytes().await.map_err(|e| IndexError::Network {
                url: url.clone(),
                detail: e.without_url().to_string(),
                attempts: 1,
            })?;
            Some(if html {
                parse_html_page(index, &url, &body)?
            } else {
                parse_page(index, &url, &body)?
            })
        } else {
            return Err(IndexError::Status {
                url,
                status: status.as_u16(),
            });
        };
        let entry = CachedPage {
            fetched_at: now(),
            max_age,
            etag: new_etag,
            page,
        };
        if let Some(dir) = path.parent()
            && std::fs::create_dir_all(dir).is_ok()
            && let Ok(tmp) = tempfile::NamedTempFile::new_in(dir)
            && std::fs::write(tmp.path(), serde_json::to_vec(&entry).unwrap_or_default()).is_ok()
        {
            let _ = tmp.persist(&path);
        }
        Ok(entry.page)
    }
}

impl IndexClient {
    /// The wheels of a `--find-links` location: a local directory (each wheel hashed here) or
    /// an HTML page of links (`file://` or http(s)); sorted by filename.
    pub async fn find_links(&self, location: &str) -> Result<Vec<DistFile>, IndexError> {
        let dir = match location.strip_prefix("file://") {
            Some(p) => Some(PathBuf::from(p)),
            None if !location.contains("://") => Some(PathBuf::from(location)),
            None => None,
        };
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            let io = |path: &Path| {
                let path = path.to_path_buf();
                move |source| IndexError::Io { path, source }
            };
            let mut out = Vec::new();
            for e in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
                let p = e.path();
                let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                    continue;
                };
                if !name.ends_with(".whl") {
                    continue;
                }
                let sha = raypack_pack::collect::hash_file(&p).map_err(io(&p))?;
                let size = std::fs::metadata(&p).map(|m| m.len()).ok();
                out.push(DistFile {
                    filename: name,
                    url: url::Url::from_file_path(&p)
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                    sha256: Some(hex::encode(sha)),
                    requires_python: None,
                    yanked: false,
                    yanked_reason: None,
                    core_metadata: None,
                    size,
                    upload_time: None,
                });
            }
            out.sort_by(|a, b| a.filename.cmp(&b.filename));
            return Ok(out);
        }
        let resp = self
            .send(location, || crate::netrc::authed_get(&self.http, location))
            .await?;
        if !resp.status().is_success() {
            return Err(IndexError::Status {
                url: location.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let body = resp.bytes().await.map_err(|e| IndexError::Network {
            url: location.to_string(),
            detail: e.without_url().to_string(),
            attempts: 1,
        })?;
        let mut files = parse_html_page(location, location, &body)?.files;
        files.retain(|f| f.filename.ends_with(".whl"));
        files.sort_by(|a, b| a.filename.cmp(&b.filename));
        Ok(files)
    }
}

/// The local path of a `file://` URL.
fn local_path(url: &str) -> Option<PathBuf> {
    url::Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
}

fn read_local(path: &Path) -> Result<Vec<u8>, IndexError> {
    std::fs::read(path).map_err(|source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes an HTTP range (`a-b`, `a-`, `-n`) selects, clamped to the data.
fn slice_range<'a>(bytes: &'a [u8], range: &str) -> &'a [u8] {
    let len = bytes.len();
    let (a, b) = range.split_once('-').unwrap_or((range, ""));
    let (start, end) = match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
        (Ok(a), Ok(b)) => (a, b.saturating_add(1)),
        (Ok(a), Err(_)) => (a, len),
        (Err(_), Ok(n)) => (len.saturating_sub(n), len),
        _ => (0, len),
    };
    let end = end.min(len);
    &bytes[start.min(end)..end]
}

/// Parses a PEP 503 HTML project page (anchors with `#sha256=`, `data-requires-python`,
/// `data-yanked`, `data-dist-info-metadata` / `data-core-metadata`); relative links resolve
/// against `url`.
pub(crate) fn parse_html_page(
    index: &str,
    url: &str,
    body: &[u8],
) -> Result<ProjectPage, IndexError> {
    let base = url::Url::parse(url).map_err(|e| IndexError::NotJson {
        url: url.to_string(),
        detail: e.to_string(),
    })?;
    let files = crate::html::anchors(&base, &String::from_utf8_lossy(body))
        .into_iter()
        .map(|a| DistFile {
            filename: a.filename,
            url: crate::netrc::redact(&a.url),
            sha256: a.sha256,
            requires_python: a.requires_python.filter(|s| !s.trim().is_empty()),
            yanked: a.yanked.is_some(),
            yanked_reason: a
                .yanked
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty()),
            core_metadata: a.core_metadata,
            size: None,
            upload_time: None,
        })
        .collect();
    Ok(ProjectPage {
        index: index.trim_end_matches('/').to_string(),
        files,
    })
}

#[derive(Deserialize)]
struct JsonPage {
    #[serde(default)]
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
    #[serde(default, rename = "requires-python")]
    requires_python: Option<String>,
    #[serde(default)]
    yanked: serde_json::Value,
    #[serde(default, rename = "core-metadata")]
    core_metadata: serde_json::Value,
    #[serde(default, rename = "dist-info-metadata")]
    dist_info_metadata: serde_json::Value,
    #[serde(default, rename = "data-dist-info-metadata")]
    data_dist_info_metadata: serde_json::Value,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "upload-time")]
    upload_time: Option<String>,
}

/// `true` / `{"sha256": …}` → offered; `false` / absent → not.
fn metadata_field(v: &serde_json::Value) -> Option<Option<String>> {
    match v {
        serde_json::Value::Bool(true) => Some(None),
        serde_json::Value::Object(m) => {
            Some(m.get("sha256").and_then(|s| s.as_str()).map(str::to_string))
        }
        _ => None,
    }
}

/// Parses a PEP 691 project page; relative file URLs resolve against `url`.
pub(crate) fn parse_page(index: &str, url: &str, body: &[u8]) -> Result<ProjectPage, IndexError> {
    let json: JsonPage = serde_json::from_slice(body).map_err(|e| IndexError::NotJson {
        url: url.to_string(),
        detail: e.to_string(),
    })?;
    let base = url::Url::parse(url).map_err(|e| IndexError::NotJson {
        url: url.to_string(),
        detail: e.to_string(),
    })?;
    let files = json
        .files
        .into_iter()
        .filter_map(|f| {
            let abs = base.join(&f.url).ok()?.to_string();
            let core_metadata = metadata_field(&f.core_metadata)
                .or_else(|| metadata_field(&f.dist_info_metadata))
                .or_else(|| metadata_field(&f.data_dist_info_metadata));
            Some(DistFile {
                filename: f.filename,
                url: crate::netrc::redact(&abs),
                sha256: f.hashes.get("sha256").cloned(),
                requires_python: f.requires_python.filter(|s| !s.trim().is_empty()),
                yanked: matches!(
                    f.yanked,
                    serde_json::Value::Bool(true) | serde_json::Value::String(_)
                ),
                yanked_reason: f
                    .yanked
                    .as_str()
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty()),
                core_metadata,
                size: f.size,
                upload_time: f.upload_time,
            })
        })
        .collect();
    Ok(ProjectPage {
        index: index.trim_end_matches('/').to_string(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pep691_fields() {
        let body = br#"{"meta":{"api-version":"1.1"},"name":"x","files":[
          {"filename":"x-1.0-py3-none-any.whl","url":"../../packages/x-1.0-py3-none-any.whl",
           "hashes":{"sha256":"aa"},"requires-python":">=3.8","yanked":false,
           "core-metadata":{"sha256":"bb"},"size":10,"upload-time":"2024-01-01T00:00:00.123456Z"},
          {"filename":"x-0.9.tar.gz","url":"https://files.example/x-0.9.tar.gz","hashes":{},
           "yanked":"broken","dist-info-metadata":true},
          {"filename":"x-0.8-py3-none-any.whl","url":"x-0.8-py3-none-any.whl","hashes":{"sha256":"cc"},
           "requires-python":""}
        ]}"#;
        let p = parse_page(
            "https://i.example/simple/",
            "https://i.example/simple/x/",
            body,
        )
        .unwrap();
        assert_eq!(p.index, "https://i.example/simple");
        assert_eq!(p.files.len(), 3);
        let a = &p.files[0];
        assert_eq!(a.url, "https://i.example/packages/x-1.0-py3-none-any.whl");
        assert_eq!(a.sha256.as_deref(), Some("aa"));
        assert_eq!(a.core_metadata, Some(Some("bb".into())));
        assert_eq!(a.size, Some(10));
        assert!(!a.yanked);
        assert!(p.files[1].yanked);
        assert_eq!(p.files[1].core_metadata, Some(None));
        assert_eq!(p.files[2].requires_python, None);
        assert_eq!(p.files[2].core_metadata, None);
        assert_eq!(
            p.files[2].url,
            "https://i.example/simple/x/x-0.8-py3-none-any.whl"
        );
    }
}
