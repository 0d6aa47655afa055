//! A registry client (distribution spec v1.1) for pulling bases and pushing images.
//!
//! Hand-written over reqwest (see docs/ARCHITECTURE.md for why not oci-client). What it does:
//! - resolve a tag with a manifest HEAD, GET with the full Accept list, pick a platform from an
//!   index (skipping attestations), verify every digest it downloads;
//! - pull blobs streaming into the shared [`BlobCache`];
//! - push: per blob HEAD → cross-repo mount (same registry; any failure falls back) → upload as
//!   one streamed PATCH + `PUT ?digest` (or one monolithic PUT, or PATCH chunks of a configured
//!   size); blobs in parallel (bounded); the manifest by digest only after every blob is there,
//!   then tags; `Docker-Content-Digest` checked against the local digest;
//! - auth: anonymous or credentialed bearer tokens (scopes merged on a new 401 challenge),
//!   basic auth, identity tokens via the OAuth2 refresh-token flow;
//! - retries with exponential backoff and jitter on connection errors, 429 (Retry-After
//!   honoured) and 5xx, within a total time budget.
//!
//! Nothing logs credentials or Authorization headers.

use raypack_pack::chain::error_chain as chain;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::auth::{AuthError, Challenge, Credential, find_credential, parse_challenge};
use super::image::{Blob, Image};
use super::media::{self, MANIFEST_ACCEPT, Platform};
use super::reference::Reference;
use super::sha256_digest;
use raypack_pack::cache::{BlobCache, CacheError};

mod push;

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadMode {
    /// POST, one streamed PATCH with the whole blob, PUT ?digest (docker, ggcr).
    #[default]
    Streamed,
    /// POST, then one PUT ?digest carrying the whole blob.
    Monolithic,
    /// POST, PATCHes of at most this many bytes with Content-Range, PUT ?digest.
    Chunked(u64),
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries that may be reached over plain HTTP (localhost always may, as in docker).
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM) trusted in addition to the system store.
    pub ca_files: Vec<PathBuf>,
    /// How blobs are uploaded.
    pub upload: UploadMode,
    /// Attempts per request (1 = no retry).
    pub attempts: u32,
    /// Total time one operation may spend retrying.
    pub retry_budget: Duration,
    /// Blobs pushed at once.
    pub parallel: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: Vec::new(),
            ca_files: Vec::new(),
            upload: UploadMode::Streamed,
            attempts: 6,
            retry_budget: Duration::from_secs(300),
            parallel: 4,
        }
    }
}

/// Errors name the registry, repository and step.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A request failed (after retries).
    #[error("{registry}/{repository}: {step}: {message}")]
    Failed {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// What raypack was doing (`pull manifest`, `upload blob`, …).
        step: String,
        /// Why, one line.
        message: String,
    },
    #[error(
        "{registry}/{repository}: {step}: not authorized (HTTP {status}); run `raypack login {registry}` or check the credentials configured for it"
    )]
    /// The registry refused the credentials (or none were found).
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// What raypack was doing.
        step: String,
        /// The HTTP status (401 or 403).
        status: u16,
    },
    /// The manifest or blob does not exist.
    #[error("{registry}/{repository}: {step}: not found")]
    NotFound {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// What raypack was looking for.
        step: String,
    },
    /// The reference names an index without a manifest for the platform.
    #[error("{reference}: no manifest for platform {platform} (the index has: {available})")]
    NoPlatform {
        /// The reference.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index has.
        available: String,
    },
    /// The blob cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Credentials could not be read.
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("cannot read CA file {path}: {message}")]
    /// A `--registry-ca` file could not be used.
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// A manifest resolved for one platform.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The platform manifest's digest.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest's raw bytes (its digest is `digest`).
    pub manifest: Vec<u8>,
    /// The index the manifest was selected from, when the reference named an index.
    pub index_digest: Option<String>,
}

/// Per-operation counters (tests and `-v` output).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushStats {
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository of the same registry.
    pub mounted: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
}

impl PushStats {
    /// Adds another push's counts (the images of one index).
    pub fn add(&mut self, other: &PushStats) {
        self.uploaded += other.uploaded;
        self.mounted += other.mounted;
        self.skipped += other.skipped;
    }
}

/// A registry client: pull, push, resolve, with auth and retries; one per command.
#[derive(Debug)]
pub struct Registry {
    pub(crate) http: reqwest::Client,
    opts: ClientOptions,
    bases: Mutex<HashMap<String, String>>,
    /// Authorization header per (registry, scope set).
    tokens: Mutex<HashMap<String, String>>,
    creds: Mutex<HashMap<String, Option<Credential>>>,
}

fn is_local(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(registry);
    host == "localhost" || host.starts_with("127.") || host == "[::1]" || host == "::1"
}

pub(crate) struct Ctx<'a> {
    registry: &'a str,
    repository: &'a str,
    step: String,
}

impl Ctx<'_> {
    pub(crate) fn failed(&self, message: impl std::fmt::Display) -> RegistryError {
        RegistryError::Failed {
            registry: self.registry.into(),
            repository: self.repository.into(),
            step: self.step.clone(),
            message: message.to_string(),
        }
    }

    /// The one place a registry answer becomes a typed error: a 2xx answer is passed on; a
    /// 404 is [`RegistryError::NotFound`] naming `missing` when the caller says what may be
    /// absent; anything else is [`RegistryError::Failed`] with `doing` (if given), the status
    /// and, with `body`, the start of what the registry said.
    pub(crate) async fn check(
        &self,
        resp: Response,
        missing: Option<String>,
        doing: Option<&str>,
        body: bool,
    ) -> Result<Response, RegistryError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::NOT_FOUND
            && let Some(step) = missing
        {
            return Err(RegistryError::NotFound {
                registry: self.registry.into(),
                repository: self.repository.into(),
                step,
            });
        }
        let mut message = match doing {
            Some(d) => format!("{d}: HTTP {status}"),
            None => format!("HTTP {status}"),
        };
        if body {
            let text = resp.text().await.unwrap_or_default();
            message.push_str(": ");
            message.extend(text.chars().take(300));
        }
        Err(self.failed(message))
    }
}

impl Registry {
    /// A client with these options (TLS roots, insecure registries, upload mode).
    pub fn new(opts: ClientOptions) -> Result<Registry, RegistryError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("raypack/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120));
        let mut certs = Vec::new();
        for f in &opts.ca_files {
            let pem = std::fs::read(f).map_err(|e| RegistryError::Ca {
                path: f.clone(),
                message: e.to_string(),
            })?;
            let c = reqwest::Certificate::from_pem(&pem).map_err(|e| RegistryError::Ca {
                path: f.clone(),
                message: e.to_string(),
            })?;
            certs.push(c);
        }
        if !certs.is_empty() {
            b = b.tls_certs_merge(certs);
        }
        let http = b.build().map_err(|e| RegistryError::Failed {
            registry: String::new(),
            repository: String::new(),
            step: "set up HTTP".into(),
            message: chain(&e),
        })?;
        Ok(Registry {
            http,
            opts,
            bases: Mutex::default(),
            tokens: Mutex::default(),
            creds: Mutex::default(),
        })
    }

    /// `https://host` or, for localhost and `--insecure-registry` hosts that do not speak TLS,
    /// `http://host`.
    async fn base(&self, registry: &str) -> String {
        if let Some(b) = self.bases.lock().unwrap().get(registry) {
            return b.clone();
        }
        let host = super::reference::api_host(registry);
        let https = format!("https://{host}");
        let base = if is_local(registry) || self.opts.insecure.iter().any(|h| h == registry) {
            match self
                .http
                .get(format!("{https}/v2/"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(_) => https,
                Err(_) => format!("http://{host}"),
            }
        } else {
            https
        };
        self.bases
            .lock()
            .unwrap()
            .insert(registry.to_string(), base.clone());
        base
    }

    fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        if let Some(c) = self.creds.lock().unwrap().get(registry) {
            return Ok(c.clone());
        }
        let c = find_credential(registry)?;
        self.creds
            .lock()
            .unwrap()
            .insert(registry.to_string(), c.clone());
        Ok(c)
    }

    fn token_key(registry: &str, scopes: &BTreeSet<String>) -> String {
        format!(
            "{registry} {}",
            scopes.iter().cloned().collect::<Vec<_>>().join(" ")
        )
    }

    /// Answers a 401 challenge: returns the Authorization header to use.
    async fn authenticate(
        &self,
        ctx: &Ctx<'_>,
        challenge: &Challenge,
        scopes: &BTreeSet<String>,
    ) -> Result<String, RegistryError> {
        let cred = self.credential(ctx.registry)?;
        match challenge {
            Challenge::Basic => match cred {
                Some(Credential::Basic { username, password }) => Ok(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                )),
                _ => Err(RegistryError::Unauthorized {
                    registry: ctx.registry.into(),
                    repository: ctx.repository.into(),
                    step: ctx.step.clone(),
                    status: 401,
                }),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let mut all = scopes.clone();
                if let Some(s) = scope {
                    all.extend(s.split(' ').map(str::to_string));
                }
                let resp = match &cred {
                    Some(Credential::IdentityToken { token, .. }) => {
                        let mut form = vec![
                            ("grant_type", "refresh_token".to_string()),
                            ("client_id", "raypack".into()),
                            ("refresh_token", token.clone()),
                        ];
                        if let Some(s) = service {
                            form.push(("service", s.clone()));
                        }
                        form.push(("scope", all.iter().cloned().collect::<Vec<_>>().join(" ")));
                        let body = url::form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(form)
                            .finish();
                        self.http
                            .post(realm)
                            .header("Content-Type", "application/x-www-form-urlencoded")
                            .body(body)
                            .send()
                            .await
                    }
                    other => {
                        let mut q: Vec<(&str, String)> = Vec::new();
                        if let Some(s) = service {
                            q.push(("service", s.clone()));
                        }
                        for s in &all {
                            q.push(("scope", s.clone()));
                        }
                        let mut rb = self.http.get(realm).query(&q);
                        if let Some(Credential::Basic { username, password }) = other {
                            rb = rb.basic_auth(username, Some(password));
                        }
                        rb.send().await
                    }
                }
                .map_err(|e| ctx.failed(format!("token request: {}", chain(&e.without_url()))))?;
                if resp.status() == StatusCode::UNAUTHORIZED
                    || resp.status() == StatusCode::FORBIDDEN
                {
                    return Err(RegistryError::Unauthorized {
                        registry: ctx.registry.into(),
                        repository: ctx.repository.into(),
                        step: format!("{} (token)", ctx.step),
                        status: resp.status().as_u16(),
                    });
                }
                if !resp.status().is_success() {
                    return Err(
                        ctx.failed(format!("token endpoint answered HTTP {}", resp.status()))
                    );
                }
                let v: Value = resp
                    .json()
                    .await
                    .map_err(|e| ctx.failed(format!("token response: {e}")))?;
                let t = v["token"]
                    .as_str()
                    .or(v["access_token"].as_str())
                    .ok_or_else(|| ctx.failed("token response has no token"))?;
                Ok(format!("Bearer {t}"))
            }
        }
    }

    /// Sends a request built by `make(base)`, with auth and (if `retry`) retries.
    pub(crate) async fn send(
        &self,
        ctx: &Ctx<'_>,
        scopes: &[String],
        retry: bool,
        make: &(dyn Fn(&str) -> RequestBuilder + Sync),
    ) -> Result<Response, RegistryError> {
        let base = self.base(ctx.registry).await;
        let mut scopes: BTreeSet<String> = scopes.iter().cloned().collect();
        let start = Instant::now();
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            attempt += 1;
            let key = Self::token_key(ctx.registry, &scopes);
            let auth = self.tokens.lock().unwrap().get(&key).cloned();
            let mut rb = make(&base);
            if let Some(a) = &auth {
                rb = rb.header("Authorization", a);
            }
            let result = rb.send().await;
            let can_retry =
                retry && attempt < self.opts.attempts && start.elapsed() < self.opts.retry_budget;
            let resp = match result {
                Ok(r) => r,
                Err(e) if can_retry => {
                    tracing::debug!(step = %ctx.step, attempt, "connection error, retrying: {}", chain(&e.without_url()));
                    tokio::time::sleep(backoff(attempt, None)).await;
                    continue;
                }
                Err(e) => return Err(ctx.failed(chain(&e.without_url()))),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !reauthed {
                reauthed = true;
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|h| h.to_str().ok())
                    .and_then(parse_challenge)
                    .ok_or_else(|| RegistryError::Unauthorized {
                        registry: ctx.registry.into(),
                        repository: ctx.repository.into(),
                        step: ctx.step.clone(),
                        status: 401,
                    })?;
                if let Challenge::Bearer { scope: Some(s), .. } = &challenge {
                    scopes.extend(s.split(' ').map(str::to_string));
                }
                let header = self.authenticate(ctx, &challenge, &scopes).await?;
                let key = Self::token_key(ctx.registry, &scopes);
                self.tokens.lock().unwrap().insert(key, header);
                attempt -= 1; // answering a challenge is not a failed attempt
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(RegistryError::Unauthorized {
                    registry: ctx.registry.into(),
                    repository: ctx.repository.into(),
                    step: ctx.step.clone(),
                    status: status.as_u16(),
                });
            }
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) && can_retry {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|h| h.to_str().ok())
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                tracing::debug!(step = %ctx.step, attempt, %status, "retrying");
                tokio::time::sleep(backoff(attempt, retry_after)).await;
                continue;
            }
            return Ok(resp);
        }
    }

    pub(crate) fn ctx<'a>(&self, r: &'a Reference, step: impl Into<String>) -> Ctx<'a> {
        Ctx {
            registry: &r.registry,
            repository: &r.repository,
            step: step.into(),
        }
    }

    /// Resolves `reference` to the manifest for `platform` (verified), caching manifests.
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
        cache: &BlobCache,
    ) -> Result<Resolved, RegistryError> {
        let pull = vec![format!("repository:{}:pull", reference.repository)];
        let digest = match &reference.digest {
            Some(d) => d.clone(),
            None => {
                let tag = reference.tag.clone().unwrap_or_else(|| "latest".into());
                let ctx = self.ctx(reference, format!("HEAD manifest {tag}"));
                let url_tag = tag.clone();
                let resp = self
                    .send(&ctx, &pull, true, &|base| {
                        self.http
                            .request(
                                Method::HEAD,
                                format!("{base}/v2/{}/manifests/{url_tag}", reference.repository),
                            )
                            .header("Accept", MANIFEST_ACCEPT)
                    })
                    .await?;
                let resp = ctx
                    .check(resp, Some(format!("tag {tag}")), None, false)
                    .await?;
                match resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|h| h.to_str().ok())
                {
                    Some(d) => d.to_string(),
                    None => {
                        // No digest header: GET by tag and hash the bytes.
                        let (bytes, _) = self.get_manifest(reference, &tag, None).await?;
                        let d = sha256_digest(&bytes);
                        cache.insert_bytes(&bytes)?;
                        d
                    }
                }
            }
        };
        let (bytes, media_type) = self.manifest_by_digest(reference, &digest, cache).await?;
        if media::is_index(&media_type) {
            let index: Value = serde_json::from_slice(&bytes)
                .map_err(|e| self.ctx(reference, "parse index").failed(e))?;
            let desc = media::select_platform(&index, platform).ok_or_else(|| {
                RegistryError::NoPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available: media::platforms_in(&index).join(", "),
                }
            })?;
            let child = desc["digest"].as_str().unwrap_or_default().to_string();
            let (m, mt) = self.manifest_by_digest(reference, &child, cache).await?;
            return Ok(Resolved {
                digest: child,
                media_type: mt,
                manifest: m,
                index_digest: Some(digest),
            });
        }
        Ok(Resolved {
            digest,
            media_type,
            manifest: bytes,
            index_digest: None,
        })
    }

    async fn manifest_by_digest(
        &self,
        r: &Reference,
        digest: &str,
        cache: &BlobCache,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        if let Ok(p) = cache.path(digest)
            && let Ok(bytes) = std::fs::read(&p)
        {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Ok((bytes, media::manifest_media_type(&v, None)));
        }
        let (bytes, header) = self.get_manifest(r, digest, Some(digest)).await?;
        cache.insert_bytes(&bytes)?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.ctx(r, format!("parse manifest {digest}")).failed(e))?;
        Ok((bytes, media::manifest_media_type(&v, header.as_deref())))
    }

    /// GET a manifest by tag or digest, as stored (bytes and `Content-Type`); with `expect`,
    /// its digest is verified. A missing one is [`RegistryError::NotFound`].
    pub async fn get_manifest(
        &self,
        r: &Reference,
        reference: &str,
        expect: Option<&str>,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let pull = vec![format!("repository:{}:pull", r.repository)];
        let ctx = self.ctx(r, format!("GET manifest {reference}"));
        let resp = self
            .send(&ctx, &pull, true, &|base| {
                self.http
                    .get(format!("{base}/v2/{}/manifests/{reference}", r.repository))
                    .header("Accept", MANIFEST_ACCEPT)
            })
            .await?;
        let resp = ctx
            .check(resp, Some(format!("manifest {reference}")), None, false)
            .await?;
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ctx.failed(chain(&e.without_url())))?
            .to_vec();
        if let Some(d) = expect {
            let actual = sha256_digest(&bytes);
            if actual != d {
                return Err(CacheError::Mismatch {
                    what: format!("{}/{} manifest", r.registry, r.repository),
                    expected: d.into(),
                    actual,
                }
                .into());
            }
        }
        Ok((bytes, ct))
    }

    /// Downloads a blob into the cache (verified); returns its cached path.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        digest: &str,
        cache: &BlobCache,
    ) -> Result<PathBuf, RegistryError> {
        if cache.contains(digest) {
            return cache.path(digest).map_err(Into::into);
        }
        let pull = vec![format!("repository:{}:pull", r.repository)];
        let ctx = self.ctx(r, format!("GET blob {digest}"));
        let mut last = None;
        for attempt in 1..=self.opts.attempts {
            let resp = self
                .send(&ctx, &pull, true, &|base| {
                    self.http
                        .get(format!("{base}/v2/{}/blobs/{digest}", r.repository))
                })
                .await?;
            let resp = ctx
                .check(resp, Some(format!("blob {digest}")), None, false)
                .await?;
            let what = format!("{}/{}@{digest}", r.registry, r.repository);
            match cache
                .insert_stream(digest, &what, resp.bytes_stream())
                .await
            {
                Ok(p) => return Ok(p),
                // A connection dropped mid-body: fetch again.
                Err(CacheError::Io { source, .. }) if attempt < self.opts.attempts => {
                    tracing::debug!("blob download interrupted, retrying: {source}");
                    last = Some(source);
                    tokio::time::sleep(backoff(attempt, None)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ctx.failed(last.map(|e| e.to_string()).unwrap_or_default()))
    }

    /// Pulls the image for `platform`: manifest, config and layers into the cache.
    pub async fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        cache: &BlobCache,
    ) -> Result<(Resolved, Image), RegistryError> {
        let resolved = self.resolve(reference, platform, cache).await?;
        let m: Value = serde_json::from_slice(&resolved.manifest)
            .map_err(|e| self.ctx(reference, "parse manifest").failed(e))?;
        let blob = |d: &Value| -> Result<(String, u64, String), RegistryError> {
            let digest = d["digest"].as_str().ok_or_else(|| {
                self.ctx(reference, "parse manifest")
                    .failed("descriptor without digest")
            })?;
            Ok((
                digest.to_string(),
                d["size"].as_u64().unwrap_or(0),
                d["mediaType"].as_str().unwrap_or_default().to_string(),
            ))
        };
        let (cd, cs, cm) = blob(&m["config"])?;
        let config_path = self.fetch_blob(reference, &cd, cache).await?;
        let mut layers = Vec::new();
        let descs: Vec<(String, u64, String)> = m["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(&blob)
            .collect::<Result<_, _>>()?;
        let paths = futures::future::try_join_all(
            descs
                .iter()
                .map(|(d, _, _)| self.fetch_blob(reference, d, cache)),
        )
        .await?;
        for ((digest, size, media_type), path) in descs.into_iter().zip(paths) {
            layers.push(Blob {
                digest,
                size,
                media_type,
                path,
            });
        }
        let image = Image {
            manifest: resolved.manifest.clone(),
            manifest_media_type: resolved.media_type.clone(),
            config: Blob {
                digest: cd,
                size: cs,
                media_type: cm,
                path: config_path,
            },
            layers,
        };
        Ok((resolved, image))
    }

    /// Checks that credentials work for `registry` (GET /v2/ with auth); used by `login`.
    pub async fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        let r = Reference {
            registry: registry.into(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        let ctx = self.ctx(&r, "GET /v2/");
        let resp = self
            .send(&ctx, &[], true, &|base| {
                self.http.get(format!("{base}/v2/"))
            })
            .await?;
        ctx.check(resp, None, None, false).await.map(drop)
    }

    /// Replaces the credential used for `registry` (login checks new credentials with it).
    pub fn set_credential(&self, registry: &str, cred: Option<Credential>) {
        self.creds
            .lock()
            .unwrap()
            .insert(registry.to_string(), cred);
    }
}

/// Exponential backoff with full jitter (base 200 ms, cap 10 s), or the server's Retry-After.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(r) = retry_after {
        return r.min(Duration::from_secs(60));
    }
    let cap = Duration::from_millis((200u64 << attempt.min(6)).min(10_000));
    let jitter: f64 = rand::random::<f64>();
    cap.mul_f64(0.5 + jitter / 2.0)
}
