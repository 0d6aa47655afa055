#![deny(missing_docs)]
//! Object stores for runtime_env packages: S3, GCS and file/NFS paths.
//!
//! One [`Store`] per URL; every backend offers the same two operations: `exists` (a HEAD) and
//! `put_file` (an upload that is never visible under its final name until complete: S3 and GCS
//! objects appear atomically, file stores write a temp name, fsync and rename).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use raypack_store::{Store, StoreUrl};
//! let url = StoreUrl::parse("file:///mnt/nfs/raypack")?;
//! let store = Store::connect(&url, false, &reqwest::Client::new()).await?;
//! if !store.exists("demo-0123.zip").await? {
//!     store.put_file("demo-0123.zip", "/tmp/demo.zip".as_ref()).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod file;
mod gcs;
pub mod location;
mod s3;

use std::path::Path;

pub use location::{StoreUrl, StoreUrlError};

/// An object's bytes as they arrive.
pub type ObjectStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// Errors from a store; messages name the store and object and never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{store}: bucket `{bucket}` does not exist (create it, or check the name and endpoint)"
    )]
    /// The bucket does not exist.
    NoBucket {
        /// The store, as `s3://bucket/prefix`.
        store: String,
        /// The bucket.
        bucket: String,
    },
    /// The credentials were refused.
    #[error("{store}: access denied ({detail}); check the credentials raypack found ({hint})")]
    Denied {
        /// The store, as `s3://bucket/prefix`.
        store: String,
        /// What the service said.
        detail: String,
        /// Where raypack found the credentials it used.
        hint: String,
    },
    #[error(
        "{store}: directory {path} does not exist; create it or check that the share is mounted"
    )]
    /// A file store's directory does not exist.
    NoDirectory {
        /// The store.
        store: String,
        /// The directory.
        path: String,
    },
    /// An operation on an object failed (after retries).
    #[error("{store}: {op} {object} failed: {detail}")]
    Failed {
        /// The store.
        store: String,
        /// What was attempted (`HEAD`, `PUT`, …).
        op: &'static str,
        /// The object.
        object: String,
        /// Why, one line.
        detail: String,
    },
    #[error("{store}: {detail}")]
    /// The store could not be set up (credentials, endpoint, client).
    Config {
        /// The store.
        store: String,
        /// Why.
        detail: String,
    },
}

/// A connected store.
#[derive(Debug)]
pub enum Store {
    /// A directory (local or NFS).
    File(file::FileStore),
    /// An S3 bucket (or an S3-compatible endpoint).
    S3(s3::S3Store),
    /// A Google Cloud Storage bucket.
    Gcs(gcs::GcsStore),
}

impl Store {
    /// Connects to the store at `url` (loads credentials; no request is made yet).
    /// `create` makes a missing file-store directory (used for raypack's local default store);
    /// `http` is the client GCS requests go through.
    pub async fn connect(
        url: &StoreUrl,
        create: bool,
        http: &reqwest::Client,
    ) -> Result<Store, StoreError> {
        Ok(match url {
            StoreUrl::File { path } => Store::File(file::FileStore::new(path, create)?),
            StoreUrl::S3 { bucket, prefix } => {
                Store::S3(s3::S3Store::connect(bucket, prefix).await?)
            }
            StoreUrl::Gcs { bucket, prefix } => {
                Store::Gcs(gcs::GcsStore::connect(bucket, prefix, http.clone()))
            }
        })
    }

    /// Checks that the bucket (or directory) is there and reachable with these credentials.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            Store::File(s) => s.check(),
            Store::S3(s) => s.check().await,
            Store::Gcs(s) => s.check().await,
        }
    }

    /// A directory to build objects in when publishing from there is cheaper (file stores:
    /// a rename instead of a copy). Temp files there never carry a final object name.
    pub fn staging_dir(&self) -> Option<&Path> {
        match self {
            Store::File(s) => Some(s.staging_dir()),
            _ => None,
        }
    }

    /// Whether an object named `name` already exists.
    pub async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        match self {
            Store::File(s) => s.exists(name),
            Store::S3(s) => s.exists(name).await,
            Store::Gcs(s) => s.exists(name).await,
        }
    }

    /// Uploads the file at `path` as `name`; the object appears only when complete.
    /// Cleans up what killed raypack runs left in the store (only raypack's own, only what is
    /// older than an hour, or `RAYPACK_LEFTOVER_AGE` seconds): partial files in a `file://`
    /// store, unfinished multipart uploads in S3 (GCS discards unfinished uploads by itself).
    /// Best effort; returns how many.
    pub async fn sweep_leftovers(&self) -> usize {
        let max_age = std::time::Duration::from_secs(
            std::env::var("RAYPACK_LEFTOVER_AGE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3600),
        );
        match self {
            Store::File(s) => s.sweep_partials(max_age),
            Store::S3(s) => s.abort_stale_uploads(max_age).await,
            Store::Gcs(_) => 0,
        }
    }

    /// Reads object `name` as a stream of its bytes; `None` when there is no such object.
    pub async fn get(&self, name: &str) -> Result<Option<ObjectStream>, StoreError> {
        match self {
            Store::File(s) => s.get(name).await,
            Store::S3(s) => s.get(name).await,
            Store::Gcs(s) => s.get(name).await,
        }
    }

    /// Reads a small object `name` whole; `None` when there is no such object.
    pub async fn get_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        use futures::TryStreamExt;
        let Some(stream) = self.get(name).await? else {
            return Ok(None);
        };
        let chunks: Vec<bytes::Bytes> =
            stream.try_collect().await.map_err(|e| StoreError::Failed {
                store: self.describe(),
                op: "read",
                object: name.to_string(),
                detail: e.to_string(),
            })?;
        Ok(Some(chunks.concat()))
    }

    fn describe(&self) -> String {
        match self {
            Store::File(s) => s.name(),
            Store::S3(s) => s.store(),
            Store::Gcs(s) => s.store(),
        }
    }

    /// Publishes the file at `path` as object `name`; never visible under that name until complete.
    pub async fn put_file(&self, name: &str, path: &Path) -> Result<(), StoreError> {
        match self {
            Store::File(s) => s.put_file(name, path),
            Store::S3(s) => s.put_file(name, path).await,
            Store::Gcs(s) => s.put_file(name, path).await,
        }
    }
}
