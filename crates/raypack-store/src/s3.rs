//! S3 (and S3-compatible: MinIO, R2, …) through aws-sdk-s3 and the standard credential chain.
//!
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` are honoured by aws-config; with a custom
//! endpoint raypack switches to path-style addressing, which every S3-compatible server
//! understands. Objects up to 16 MiB go up in one PUT, larger ones as a multipart upload
//! (aborted on failure), so nothing is visible under the final key until it is complete.

use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::StoreError;

const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
const PART_SIZE: u64 = 16 * 1024 * 1024;
const CREDENTIAL_HINT: &str =
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, web identity or the instance role";

#[derive(Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    pub async fn connect(bucket: &str, prefix: &str) -> Result<S3Store, StoreError> {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let mut b = aws_sdk_s3::config::Builder::from(&conf);
        let custom_endpoint = conf.endpoint_url().is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        if custom_endpoint {
            b = b.force_path_style(true);
        }
        if conf.region().is_none() {
            b = b.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        // Throttling and 503 bursts: 5 attempts instead of the SDK's 3 (unless AWS_MAX_ATTEMPTS
        // or AWS_RETRY_MODE say otherwise), and a server's `Retry-After` is honoured (the SDK
        // reads only `x-amz-retry-after`).
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none()
            && std::env::var_os("AWS_RETRY_MODE").is_none()
        {
            b = b.retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(5),
            );
        }
        b = b.retry_classifier(RetryAfter);
        Ok(S3Store {
            client: Client::from_conf(b.build()),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    pub(crate) fn store(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn classify<E, R>(&self, op: &'static str, object: &str, e: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + HttpStatus,
    {
        let status = e.raw_response().map(|r| r.status());
        let code = e.code().map(str::to_string);
        match (status, code.as_deref()) {
            (_, Some("NoSuchBucket")) => StoreError::NoBucket {
                store: self.store(),
                bucket: self.bucket.clone(),
            },
            (Some(403), c)
            | (_, c @ Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied")) => {
                StoreError::Denied {
                    store: self.store(),
                    detail: c.unwrap_or("HTTP 403").to_string(),
                    hint: CREDENTIAL_HINT.into(),
                }
            }
            _ => StoreError::Failed {
                store: self.store(),
                op,
                object: object.to_string(),
                detail: describe(&e),
            },
        }
    }

    pub async fn check(&self) -> Result<(), StoreError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => {
                Err(StoreError::NoBucket {
                    store: self.store(),
                    bucket: self.bucket.clone(),
                })
            }
            Err(e) => Err(self.classify("HEAD bucket", &self.bucket, e)),
        }
    }

    pub async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        let key = self.key(name);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(false),
            Err(e) => Err(self.classify("HEAD", &key, e)),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Option<super::ObjectStream>, StoreError> {
        use futures::StreamExt;
        let key = self.key(name);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => {
                return Ok(None);
            }
            Err(e) => return Err(self.classify("GET", &key, e)),
        };
        let body = futures::stream::try_unfold(out.body, |mut b| async move {
            match b.try_next().await {
                Ok(Some(chunk)) => Ok(Some((chunk, b))),
                Ok(None) => Ok(None),
                Err(e) => Err(std::io::Error::other(e)),
            }
        });
        Ok(Some(body.boxed()))
    }

    pub async fn put_file(&self, name: &str, path: &Path) -> Result<(), StoreError> {
        let key = self.key(name);
        let size = std::fs::metadata(path)
            .map_err(|e| StoreError::Failed {
                store: self.store(),
                op: "read",
                object: path.display().to_string(),
                detail: e.to_string(),
            })?
            .len();
        if size <= SINGLE_PUT_MAX {
            let body = ByteStream::from_path(path)
                .await
                .map_err(|e| self.local(path, e))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/zip")
                .body(body)
                .send()
                .await
                .map_err(|e| self.classify("PUT", &key, e))?;
            return Ok(());
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/zip")
            .send()
            .await
            .map_err(|e| self.classify("start multipart upload of", &key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        match self.upload_parts(&key, &upload_id, path, size).await {
            Ok(parts) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| self.classify("complete multipart upload of", &key, e))?;
                Ok(())
            }
            Err(err) => {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(err)
            }
        }
    }

    /// Aborts multipart uploads of raypack objects (`*.zip` directly under the prefix) that
    /// were started more than `max_age` ago and never completed (a killed run); returns how
    /// many. Failures only skip the clean-up.
    pub(crate) async fn abort_stale_uploads(&self, max_age: std::time::Duration) -> usize {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let Ok(list) = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .send()
            .await
        else {
            return 0;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut aborted = 0;
        for u in list.uploads() {
            let (Some(key), Some(id), Some(at)) = (u.key(), u.upload_id(), u.initiated()) else {
                continue;
            };
            let name = &key[prefix.len().min(key.len())..];
            if name.contains('/')
                || !name.ends_with(".zip")
                || now - at.secs() < max_age.as_secs() as i64
            {
                continue;
            }
            if self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(id)
                .send()
                .await
                .is_ok()
            {
                tracing::info!(key, "aborted a stale multipart upload of a killed run");
                aborted += 1;
            }
        }
        aborted
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        path: &Path,
        size: u64,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        use futures::stream::{StreamExt, TryStreamExt};
        let count = size.div_ceil(PART_SIZE);
        let parts: Vec<CompletedPart> = futures::stream::iter(0..count)
            .map(|i| async move {
                let offset = i * PART_SIZE;
                let len = PART_SIZE.min(size - offset);
                let body = ByteStream::read_from()
                    .path(path)
                    .offset(offset)
                    .length(Length::Exact(len))
                    .build()
                    .await
                    .map_err(|e| self.local(path, e))?;
                let number = (i + 1) as i32;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| self.classify("upload part of", key, e))?;
                Ok::<_, StoreError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                )
            })
            .buffered(4)
            .try_collect()
            .await?;
        Ok(parts)
    }

    fn local(&self, path: &Path, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            store: self.store(),
            op: "read",
            object: path.display().to_string(),
            detail: e.to_string(),
        }
    }
}

/// The HTTP status of a raw SDK response.
/// One line a user can act on: the service's code and message with the HTTP status, or what
/// went wrong on the way (never the SDK's `Debug` dump of the request and response).
fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let status = e
        .raw_response()
        .map(|r| format!(" (HTTP {})", r.status()))
        .unwrap_or_default();
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}{status}"),
        (Some(code), None) => format!("{code}{status}"),
        _ => {
            let what = match e {
                SdkError::ConstructionFailure(_) => "the request could not be built",
                SdkError::TimeoutError(_) => "timed out",
                SdkError::DispatchFailure(_) => "could not connect",
                SdkError::ResponseError(_) => "the response could not be read",
                SdkError::ServiceError(_) => "the service refused the request",
                _ => "failed",
            };
            // The innermost cause says why (connection refused, DNS, TLS, ...).
            let mut cause: &dyn std::error::Error = e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            let why = cause.to_string();
            if why.is_empty() || why == e.to_string() {
                format!("{what}{status}")
            } else {
                format!("{what}: {why}{status}")
            }
        }
    }
}

/// Attaches a server's `Retry-After: SECONDS` (capped at 60 s) to a response the SDK's own
/// classifiers already found retryable; it never makes a response retryable by itself.
#[derive(Debug)]
struct RetryAfter;

impl aws_sdk_s3::config::retry::ClassifyRetry for RetryAfter {
    fn classify_retry(
        &self,
        _: &aws_sdk_s3::config::interceptors::InterceptorContext,
    ) -> aws_sdk_s3::config::retry::RetryAction {
        aws_sdk_s3::config::retry::RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(
        &self,
        ctx: &aws_sdk_s3::config::interceptors::InterceptorContext,
        previous: &aws_sdk_s3::config::retry::RetryAction,
    ) -> aws_sdk_s3::config::retry::RetryAction {
        use aws_sdk_s3::config::retry::RetryAction;
        use aws_smithy_runtime_api::client::retries::classifiers::RetryReason;
        let RetryAction::RetryIndicated(RetryReason::RetryableError {
            kind,
            retry_after: None,
        }) = previous
        else {
            return RetryAction::NoActionIndicated;
        };
        let secs = ctx
            .response()
            .and_then(|r| r.headers().get("retry-after"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        match secs {
            Some(s) => RetryAction::retryable_error_with_explicit_delay(
                *kind,
                std::time::Duration::from_secs(s.min(60)),
            ),
            None => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "Retry-After"
    }

    fn priority(
        &self,
    ) -> aws_smithy_runtime_api::client::retries::classifiers::RetryClassifierPriority {
        use aws_smithy_runtime_api::client::retries::classifiers::RetryClassifierPriority;
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

pub(crate) trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        aws_sdk_s3::config::http::HttpResponse::status(self).as_u16()
    }
}
