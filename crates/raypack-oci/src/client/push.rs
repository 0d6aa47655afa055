//! Pushing: blob existence checks, cross-repository mounts, monolithic and chunked uploads
//! with retries, and publishing an image or an index (blobs first, then the manifest by
//! digest, then tags).

use super::*;

impl Registry {
    /// Whether `repo` already has the blob.
    pub async fn blob_exists(&self, r: &Reference, digest: &str) -> Result<bool, RegistryError> {
        let scopes = vec![format!("repository:{}:pull,push", r.repository)];
        let ctx = self.ctx(r, format!("HEAD blob {digest}"));
        let resp = self
            .send(&ctx, &scopes, true, &|base| {
                self.http
                    .head(format!("{base}/v2/{}/blobs/{digest}", r.repository))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(ctx.failed(format!("HTTP {s}"))),
        }
    }

    /// Cross-repo mount; `false` on any failure (the caller uploads instead).
    pub(super) async fn mount(&self, r: &Reference, digest: &str, from: &str) -> bool {
        // Push scope first: some registries only look at the first scope.
        let scopes = vec![
            format!("repository:{}:pull,push", r.repository),
            format!("repository:{from}:pull"),
        ];
        let ctx = self.ctx(r, format!("mount {digest} from {from}"));
        let res = self
            .send(&ctx, &scopes, true, &|base| {
                self.http
                    .post(format!("{base}/v2/{}/blobs/uploads/", r.repository))
                    .query(&[("mount", digest), ("from", from)])
                    .header("Content-Length", "0")
            })
            .await;
        matches!(res, Ok(r) if r.status() == StatusCode::CREATED)
    }

    pub(super) fn resolve_location(base: &str, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{base}{loc}")
        }
    }

    pub(super) fn with_digest(loc: &str, digest: &str) -> String {
        let enc: String = url::form_urlencoded::byte_serialize(digest.as_bytes()).collect();
        if loc.contains('?') {
            format!("{loc}&digest={enc}")
        } else {
            format!("{loc}?digest={enc}")
        }
    }

    pub(super) fn location(
        resp: &Response,
        base: &str,
        ctx: &Ctx<'_>,
    ) -> Result<String, RegistryError> {
        let loc = resp
            .headers()
            .get("location")
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| ctx.failed(format!("HTTP {} without Location", resp.status())))?;
        Ok(Self::resolve_location(base, loc))
    }

    /// One upload attempt, from POST to the final PUT.
    pub(super) async fn upload_once(
        &self,
        r: &Reference,
        blob: &Blob,
    ) -> Result<(), RegistryError> {
        let scopes = vec![format!("repository:{}:pull,push", r.repository)];
        let base = self.base(&r.registry).await;
        let ctx = self.ctx(r, format!("upload {}", blob.digest));
        let resp = self
            .send(&ctx, &scopes, true, &|base| {
                self.http
                    .post(format!("{base}/v2/{}/blobs/uploads/", r.repository))
                    .header("Content-Length", "0")
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::CREATED {
            return Err(ctx.failed(format!("starting the upload: HTTP {}", resp.status())));
        }
        let mut loc = Self::location(&resp, &base, &ctx)?;
        let body = |offset: u64, len: u64| -> Result<reqwest::Body, RegistryError> {
            use std::io::{Seek, SeekFrom};
            let mut f = std::fs::File::open(&blob.path)
                .map_err(|e| ctx.failed(format!("read {}: {e}", blob.path.display())))?;
            f.seek(SeekFrom::Start(offset)).map_err(|e| ctx.failed(e))?;
            let f = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(f), len);
            Ok(reqwest::Body::wrap_stream(
                tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024),
            ))
        };
        let size = blob.size;
        match self.opts.upload {
            UploadMode::Monolithic => {
                let url = Self::with_digest(&loc, &blob.digest);
                let b = std::sync::Mutex::new(Some(body(0, size)?));
                let resp = self
                    .send(&ctx, &scopes, false, &|_| {
                        let rb = self
                            .http
                            .put(&url)
                            .header("Content-Type", "application/octet-stream")
                            .header("Content-Length", size.to_string());
                        match b.lock().unwrap().take() {
                            Some(body) => rb.body(body),
                            None => rb,
                        }
                    })
                    .await?;
                return expect_created(&ctx, resp).await;
            }
            UploadMode::Streamed | UploadMode::Chunked(_) => {
                let chunk = match self.opts.upload {
                    UploadMode::Chunked(c) => c.max(1),
                    _ => size.max(1),
                };
                let mut offset = 0;
                while offset < size {
                    let len = chunk.min(size - offset);
                    let b = std::sync::Mutex::new(Some(body(offset, len)?));
                    let url = loc.clone();
                    let chunked = matches!(self.opts.upload, UploadMode::Chunked(_));
                    let resp = self
                        .send(&ctx, &scopes, false, &|_| {
                            let mut rb = self
                                .http
                                .patch(&url)
                                .header("Content-Type", "application/octet-stream")
                                .header("Content-Length", len.to_string());
                            if chunked {
                                rb = rb.header(
                                    "Content-Range",
                                    format!("{}-{}", offset, offset + len - 1),
                                );
                            }
                            match b.lock().unwrap().take() {
                                Some(body) => rb.body(body),
                                None => rb,
                            }
                        })
                        .await?;
                    if !resp.status().is_success() {
                        return Err(
                            ctx.failed(format!("PATCH at offset {offset}: HTTP {}", resp.status()))
                        );
                    }
                    loc = Self::location(&resp, &base, &ctx)?;
                    offset += len;
                }
                let url = Self::with_digest(&loc, &blob.digest);
                let resp = self
                    .send(&ctx, &scopes, false, &|_| {
                        self.http.put(&url).header("Content-Length", "0")
                    })
                    .await?;
                expect_created(&ctx, resp).await
            }
        }
    }

    /// Uploads with retries (each retry starts a new upload session).
    pub(super) async fn upload(&self, r: &Reference, blob: &Blob) -> Result<(), RegistryError> {
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.upload_once(r, blob).await {
                Ok(()) => return Ok(()),
                Err(
                    e @ (RegistryError::Unauthorized { .. }
                    | RegistryError::Cache(_)
                    | RegistryError::Auth(_)),
                ) => return Err(e),
                Err(e)
                    if attempt < self.opts.attempts && start.elapsed() < self.opts.retry_budget =>
                {
                    tracing::debug!("upload failed, retrying: {e}");
                    tokio::time::sleep(backoff(attempt, None)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes sure `repo` has the blob: HEAD, then mount from each of `mount_from` (those of
    /// the same registry), then upload.
    pub(super) async fn ensure_blob(
        &self,
        r: &Reference,
        blob: &Blob,
        mount_from: &[&Reference],
    ) -> Result<Outcome, RegistryError> {
        if self.blob_exists(r, &blob.digest).await? {
            return Ok(Outcome::Skipped);
        }
        for from in mount_from
            .iter()
            .filter(|f| f.registry == r.registry && f.repository != r.repository)
        {
            if self.mount(r, &blob.digest, &from.repository).await
                && self.blob_exists(r, &blob.digest).await?
            {
                return Ok(Outcome::Mounted);
            }
        }
        if !blob.path.exists() {
            // A blob raypack knows only by descriptor (a layer of the shared cache) that could
            // not be mounted (another registry, or one without cross-repository mounts):
            // downloaded from a repository that has it into its cache path, then uploaded.
            if let Some(cache) = BlobCache::containing(&blob.path) {
                for from in mount_from {
                    match self.fetch_blob(from, &blob.digest, &cache).await {
                        Ok(_) => break,
                        Err(e) => tracing::debug!("{} from {}: {e}", blob.digest, from.name()),
                    }
                }
            }
        }
        if !blob.path.exists() {
            return Err(self
                .ctx(r, format!("upload {}", blob.digest))
                .failed(format!(
                    "the blob is not in {}, cannot be mounted or downloaded from {}, and is not in the local cache",
                    r.repository,
                    mount_from
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
        }
        self.upload(r, blob).await?;
        Ok(Outcome::Uploaded)
    }

    /// PUTs a manifest under `reference` (a digest or a tag); checks the returned digest.
    pub(crate) async fn put_manifest(
        &self,
        r: &Reference,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let scopes = vec![format!("repository:{}:pull,push", r.repository)];
        let ctx = self.ctx(r, format!("PUT manifest {reference}"));
        let digest = sha256_digest(bytes);
        let body = bytes.to_vec();
        let resp = self
            .send(&ctx, &scopes, true, &|base| {
                self.http
                    .put(format!("{base}/v2/{}/manifests/{reference}", r.repository))
                    .header("Content-Type", media_type)
                    .body(body.clone())
            })
            .await?;
        let resp = ctx.check(resp, None, None, true).await?;
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|h| h.to_str().ok())
            && d != digest
        {
            return Err(ctx.failed(format!(
                "registry stored digest {d}, raypack computed {digest}"
            )));
        }
        Ok(digest)
    }

    /// Pushes an image: blobs (in parallel; each mounted from the first of `mount_from` that
    /// has it, or uploaded), then the manifest by digest, then each tag. The manifest is never
    /// sent before every blob it references is in the repository.
    pub async fn push_image(
        &self,
        target: &Reference,
        image: &Image,
        tags: &[String],
        mount_from: &[&Reference],
    ) -> Result<(String, PushStats), RegistryError> {
        use futures::stream::{StreamExt, TryStreamExt};
        let outcomes: Vec<Outcome> = futures::stream::iter(image.blobs())
            .map(|b| self.ensure_blob(target, b, mount_from))
            .buffer_unordered(self.opts.parallel.max(1))
            .try_collect()
            .await?;
        let mut stats = PushStats::default();
        for o in outcomes {
            match o {
                Outcome::Uploaded => stats.uploaded += 1,
                Outcome::Mounted => stats.mounted += 1,
                Outcome::Skipped => stats.skipped += 1,
            }
        }
        let digest = image.digest();
        self.put_manifest(target, &digest, &image.manifest, &image.manifest_media_type)
            .await?;
        for t in tags {
            self.put_manifest(target, t, &image.manifest, &image.manifest_media_type)
                .await?;
        }
        Ok((digest, stats))
    }

    /// Pushes an index whose manifests are already in the repository; returns its digest.
    pub(crate) async fn push_index(
        &self,
        target: &Reference,
        index: &[u8],
        tags: &[String],
    ) -> Result<String, RegistryError> {
        let v: Value =
            serde_json::from_slice(index).map_err(|e| self.ctx(target, "parse index").failed(e))?;
        let mt = media::manifest_media_type(&v, None);
        let digest = self
            .put_manifest(target, &sha256_digest(index), index, &mt)
            .await?;
        for t in tags {
            self.put_manifest(target, t, index, &mt).await?;
        }
        Ok(digest)
    }
}

pub(super) enum Outcome {
    Uploaded,
    Mounted,
    Skipped,
}

pub(super) async fn expect_created(ctx: &Ctx<'_>, resp: Response) -> Result<(), RegistryError> {
    ctx.check(resp, None, Some("finishing the upload"), true)
        .await
        .map(drop)
}
