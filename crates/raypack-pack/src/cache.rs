//! A content-addressed blob cache shared by all projects: `<cache>/blobs/sha256/<hex>`.
//!
//! A blob is written to a unique temp file in the same directory, verified against its digest,
//! then renamed into place, so concurrent raypack runs never see a partial blob and the
//! last rename of identical bytes wins harmlessly.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::digest::digest_hex;

/// Why the blob cache could not read or store a blob.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file of the cache could not be read or written.
    #[error("blob cache {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A digest that is not `sha256:` and 64 lowercase hex digits.
    #[error("`{0}` is not a sha256 digest")]
    BadDigest(String),
    /// Bytes whose digest is not the one they were stored or fetched under.
    #[error("{what}: content has digest {actual}, expected {expected}; the download is discarded")]
    Mismatch {
        /// What the bytes are (a blob, a layer, a download).
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest the bytes have.
        actual: String,
    },
}

/// Blobs by digest under a root directory (`<root>/blobs/sha256/<hex>`), shared by every project; written to a temp file, verified, then renamed into place.
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

/// The default cache root: `$RAYPACK_CACHE_DIR`, else `$XDG_CACHE_HOME/raypack`, else
/// `~/.cache/raypack`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RAYPACK_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("raypack")
}

impl BlobCache {
    /// The cache rooted at `root` (created on first write).
    pub fn new(root: &Path) -> BlobCache {
        BlobCache {
            root: root.to_path_buf(),
        }
    }

    /// The cache a blob path of [`BlobCache::path`] belongs to (`None` for another path).
    pub fn containing(blob: &Path) -> Option<BlobCache> {
        let dir = blob.parent()?;
        let root = dir.parent()?.parent()?;
        (dir.file_name()? == "sha256" && dir.parent()?.file_name()? == "blobs")
            .then(|| BlobCache::new(root))
    }

    /// The cache root (blobs live under `blobs/sha256`; indexes may sit beside them).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where `digest` lives (whether or not it is there yet).
    pub fn path(&self, digest: &str) -> Result<PathBuf, CacheError> {
        let hex = digest_hex(digest).ok_or_else(|| CacheError::BadDigest(digest.to_string()))?;
        Ok(self.dir().join(hex))
    }

    /// Whether the blob is in the cache.
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    fn io(&self, e: std::io::Error) -> CacheError {
        CacheError::Io {
            path: self.dir(),
            source: e,
        }
    }

    /// Streams `chunks` into the cache under `digest`, verifying it. `what` names the blob in
    /// errors (registry, repository, digest).
    pub async fn insert_stream<S, E>(
        &self,
        digest: &str,
        what: &str,
        mut chunks: S,
    ) -> Result<PathBuf, CacheError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures::StreamExt;
        let target = self.path(digest)?;
        let dir = self.dir();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| self.io(e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&dir)
            .map_err(|e| self.io(e))?;
        let (std_file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut h = Sha256::new();
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|e| self.io(std::io::Error::other(format!("{what}: {e}"))))?;
            h.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| self.io(e))?;
        }
        file.flush().await.map_err(|e| self.io(e))?;
        drop(file);
        let actual = format!("sha256:{}", hex::encode(h.finalize()));
        if actual != digest {
            return Err(CacheError::Mismatch {
                what: what.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        tmp_path.persist(&target).map_err(|e| self.io(e.error))?;
        Ok(target)
    }

    /// Copies (or hard-links) a local file into the cache; returns its digest and cached path.
    pub fn insert_file(&self, path: &Path) -> Result<(String, PathBuf), CacheError> {
        let sha = crate::collect::hash_file(path).map_err(|e| self.io(e))?;
        let digest = format!("sha256:{}", hex::encode(sha));
        let target = self.path(&digest)?;
        if !target.is_file() {
            std::fs::create_dir_all(self.dir()).map_err(|e| self.io(e))?;
            let tmp = tempfile::Builder::new()
                .prefix(".partial-")
                .tempfile_in(self.dir())
                .map_err(|e| self.io(e))?;
            std::fs::copy(path, tmp.path()).map_err(|e| self.io(e))?;
            tmp.persist(&target).map_err(|e| self.io(e.error))?;
        }
        Ok((digest, target))
    }

    /// A temp file in the blob directory, to be written and then [`BlobCache::persist`]ed.
    pub fn staging(&self) -> std::io::Result<tempfile::NamedTempFile> {
        std::fs::create_dir_all(self.dir())?;
        tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(self.dir())
    }

    /// Moves a [`BlobCache::staging`] file whose SHA-256 the caller computed while writing
    /// it into place under `digest`.
    pub fn persist(&self, tmp: tempfile::NamedTempFile, digest: &str) -> std::io::Result<PathBuf> {
        let target = self
            .path(digest)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        tmp.persist(&target).map_err(|e| e.error)?;
        Ok(target)
    }

    /// Stores bytes (manifests, configs) under their digest.
    pub fn insert_bytes(&self, bytes: &[u8]) -> Result<(String, PathBuf), CacheError> {
        let digest = crate::digest::sha256_digest(bytes);
        let target = self.path(&digest)?;
        if !target.is_file() {
            std::fs::create_dir_all(self.dir()).map_err(|e| self.io(e))?;
            let tmp = tempfile::Builder::new()
                .prefix(".partial-")
                .tempfile_in(self.dir())
                .map_err(|e| self.io(e))?;
            std::fs::write(tmp.path(), bytes).map_err(|e| self.io(e))?;
            tmp.persist(&target).map_err(|e| self.io(e.error))?;
        }
        Ok((digest, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_streams() {
        let d = tempfile::tempdir().unwrap();
        let c = BlobCache::new(d.path());
        let data = bytes::Bytes::from_static(b"hello");
        let digest = crate::digest::sha256_digest(&data);
        let s = futures::stream::iter(vec![Ok::<_, std::io::Error>(data.clone())]);
        let p = c.insert_stream(&digest, "test", s).await.unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"hello");
        let bad = crate::digest::sha256_digest(b"other");
        let s = futures::stream::iter(vec![Ok::<_, std::io::Error>(data)]);
        let e = c.insert_stream(&bad, "test", s).await.unwrap_err();
        assert!(matches!(e, CacheError::Mismatch { .. }));
        assert!(!c.contains(&bad));
        // no partial files left behind
        assert_eq!(
            std::fs::read_dir(d.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            1
        );
    }
}
