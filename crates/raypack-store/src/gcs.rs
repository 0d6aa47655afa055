//! Google Cloud Storage through the JSON API.
//!
//! Hand-written over reqwest because object_store's GCS backend uses the XML API, which the
//! GCS emulators do not implement for uploads (see docs/ARCHITECTURE.md). Small objects use a
//! media upload, large ones a resumable upload in 8 MiB chunks; both carry
//! `ifGenerationMatch=0`, so an object is only ever created whole and never overwritten.
//!
//! Endpoint and credentials follow Google's client libraries: `STORAGE_EMULATOR_HOST` selects
//! an emulator (no credentials); otherwise Application Default Credentials:
//! `GOOGLE_OAUTH_ACCESS_TOKEN`, then the ADC file (`GOOGLE_APPLICATION_CREDENTIALS`, else
//! gcloud's `application_default_credentials.json`) of type `authorized_user`, then the GCE
//! metadata server.

use raypack_pack::chain::error_chain;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use tokio::sync::OnceCell;

use super::StoreError;

const SINGLE_UPLOAD_MAX: u64 = 8 * 1024 * 1024;
const CHUNK: u64 = 8 * 1024 * 1024;
const CREDENTIAL_HINT: &str = "Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud auth application-default login, or the GCE metadata server";

#[derive(Debug)]
pub struct GcsStore {
    http: reqwest::Client,
    base: String,
    emulator: bool,
    bucket: String,
    prefix: String,
    token: OnceCell<Option<String>>,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl GcsStore {
    pub fn connect(bucket: &str, prefix: &str, http: reqwest::Client) -> GcsStore {
        let (base, emulator) = match std::env::var("STORAGE_EMULATOR_HOST") {
            Ok(h) if !h.is_empty() => {
                let h = if h.contains("://") {
                    h
                } else {
                    format!("http://{h}")
                };
                (h.trim_end_matches('/').to_string(), true)
            }
            _ => ("https://storage.googleapis.com".to_string(), false),
        };
        GcsStore {
            http,
            base,
            emulator,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            token: OnceCell::new(),
        }
    }

    pub(crate) fn store(&self) -> String {
        if self.prefix.is_empty() {
            format!("gs://{}", self.bucket)
        } else {
            format!("gs://{}/{}", self.bucket, self.prefix)
        }
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn failed(&self, op: &'static str, object: &str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            store: self.store(),
            op,
            object: object.to_string(),
            detail: detail.to_string(),
        }
    }

    async fn token(&self) -> Result<Option<String>, StoreError> {
        if self.emulator {
            return Ok(None);
        }
        self.token
            .get_or_try_init(|| async { adc_token(&self.http).await.map(Some) })
            .await
            .cloned()
            .map_err(|detail| StoreError::Config {
                store: self.store(),
                detail: format!("no Google credentials: {detail} ({CREDENTIAL_HINT})"),
            })
    }

    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        op: &'static str,
        object: &str,
    ) -> Result<reqwest::Response, StoreError> {
        let rb = match self.token().await? {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        };
        let resp = rb
            .send()
            .await
            .map_err(|e| self.failed(op, object, error_chain(&e)))?;
        match resp.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(StoreError::Denied {
                store: self.store(),
                detail: format!("HTTP {}", resp.status().as_u16()),
                hint: CREDENTIAL_HINT.into(),
            }),
            _ => Ok(resp),
        }
    }

    pub async fn check(&self) -> Result<(), StoreError> {
        let url = format!("{}/storage/v1/b/{}", self.base, enc(&self.bucket));
        let resp = self
            .send(self.http.get(url), "GET bucket", &self.bucket)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(StoreError::NoBucket {
                store: self.store(),
                bucket: self.bucket.clone(),
            }),
            s => Err(self.failed("GET bucket", &self.bucket, format!("HTTP {s}"))),
        }
    }

    pub async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        let key = self.key(name);
        let url = format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            enc(&self.bucket),
            enc(&key)
        );
        let resp = self
            .send(self.http.get(url), "GET metadata of", &key)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(self.failed("GET metadata of", &key, format!("HTTP {s}"))),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Option<super::ObjectStream>, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let key = self.key(name);
        let url = format!(
            "{}/storage/v1/b/{}/o/{}?alt=media",
            self.base,
            enc(&self.bucket),
            enc(&key)
        );
        let resp = self.send(self.http.get(url), "GET", &key).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                resp.bytes_stream().map_err(std::io::Error::other).boxed(),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(self.failed("GET", &key, format!("HTTP {s}"))),
        }
    }

    pub async fn put_file(&self, name: &str, path: &Path) -> Result<(), StoreError> {
        let key = self.key(name);
        let size = std::fs::metadata(path)
            .map_err(|e| self.failed("read", &path.display().to_string(), e))?
            .len();
        let upload = format!("{}/upload/storage/v1/b/{}/o", self.base, enc(&self.bucket));
        if size <= SINGLE_UPLOAD_MAX {
            let body = tokio::fs::read(path)
                .await
                .map_err(|e| self.failed("read", &path.display().to_string(), e))?;
            let rb = self
                .http
                .post(&upload)
                .query(&[
                    ("uploadType", "media"),
                    ("name", key.as_str()),
                    ("ifGenerationMatch", "0"),
                ])
                .header("Content-Type", "application/zip")
                .body(body);
            let resp = self.send(rb, "upload", &key).await?;
            return self.finish(resp, &key).await;
        }
        // Resumable upload: the object is created only when the last chunk arrives.
        let rb = self
            .http
            .post(&upload)
            .query(&[
                ("uploadType", "resumable"),
                ("name", key.as_str()),
                ("ifGenerationMatch", "0"),
            ])
            .header("X-Upload-Content-Type", "application/zip")
            .header("X-Upload-Content-Length", size.to_string())
            .json(&serde_json::json!({ "name": key }));
        let resp = self.send(rb, "start resumable upload of", &key).await?;
        if !resp.status().is_success() {
            return self.finish(resp, &key).await;
        }
        let session = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.failed("start resumable upload of", &key, "no Location header"))?
            .to_string();
        let file = PathBuf::from(path);
        let mut offset = 0;
        loop {
            let len = CHUNK.min(size - offset);
            let chunk = read_range(&file, offset, len)
                .await
                .map_err(|e| self.failed("read", &path.display().to_string(), e))?;
            let end = offset + len - 1;
            let rb = self
                .http
                .put(&session)
                .header("Content-Range", format!("bytes {offset}-{end}/{size}"))
                .body(chunk);
            let resp = self.send(rb, "upload chunk of", &key).await?;
            if resp.status().as_u16() == 308 {
                offset = resp
                    .headers()
                    .get("range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|r| r.rsplit('-').next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .map(|n| n + 1)
                    .unwrap_or(end + 1);
                continue;
            }
            return self.finish(resp, &key).await;
        }
    }

    async fn finish(&self, resp: reqwest::Response, key: &str) -> Result<(), StoreError> {
        match resp.status() {
            s if s.is_success() => Ok(()),
            // Someone else created the same content-addressed object first: same bytes.
            StatusCode::PRECONDITION_FAILED => Ok(()),
            StatusCode::NOT_FOUND => Err(StoreError::NoBucket {
                store: self.store(),
                bucket: self.bucket.clone(),
            }),
            s => {
                let body = resp.text().await.unwrap_or_default();
                Err(self.failed(
                    "upload",
                    key,
                    format!("HTTP {s}: {}", body.chars().take(300).collect::<String>()),
                ))
            }
        }
    }
}

async fn read_range(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf).await?;
    Ok(buf)
}

/// An access token from Application Default Credentials.
async fn adc_token(http: &reqwest::Client) -> Result<String, String> {
    if let Ok(t) = std::env::var("GOOGLE_OAUTH_ACCESS_TOKEN")
        && !t.is_empty()
    {
        return Ok(t);
    }
    let file = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
        .map(PathBuf::from)
        .or_else(|| {
            let base = std::env::var_os("CLOUDSDK_CONFIG")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/gcloud"))
                })?;
            let p = base.join("application_default_credentials.json");
            p.is_file().then_some(p)
        });
    if let Some(file) = file {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
        return match v["type"].as_str() {
            Some("authorized_user") => {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("client_id", v["client_id"].as_str().unwrap_or_default()),
                    (
                        "client_secret",
                        v["client_secret"].as_str().unwrap_or_default(),
                    ),
                    (
                        "refresh_token",
                        v["refresh_token"].as_str().unwrap_or_default(),
                    ),
                ];
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
                let resp = http
                    .post("https://oauth2.googleapis.com/token")
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("token refresh failed: {}", error_chain(&e)))?;
                if !resp.status().is_success() {
                    return Err(format!(
                        "token refresh for {} was refused (HTTP {})",
                        file.display(),
                        resp.status()
                    ));
                }
                let t: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
                t["access_token"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "token response had no access_token".into())
            }
            Some(other) => Err(format!(
                "{}: credentials of type `{other}` are not supported yet; set GOOGLE_OAUTH_ACCESS_TOKEN=$(gcloud auth print-access-token)",
                file.display()
            )),
            None => Err(format!("{} has no `type`", file.display())),
        };
    }
    let host =
        std::env::var("GCE_METADATA_HOST").unwrap_or_else(|_| "metadata.google.internal".into());
    let resp = http
        .get(format!(
            "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
        ))
        .header("Metadata-Flavor", "Google")
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await
        .map_err(|_| "no ADC file and no GCE metadata server".to_string())?;
    let t: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    t["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "metadata server returned no token".into())
}
