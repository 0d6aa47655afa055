//! Resumable, verified wheel downloads into the shared content-addressed cache.
//!
//! A download streams into `<cache>/partial/<sha256>.part` (held with an exclusive `flock`, so
//! two raypack runs never append to the same file). When the connection breaks, the next try —
//! in this run (3 tries) or a later one — asks for the rest with `Range: bytes=N-`; a server
//! that answers 200 instead restarts the file. The whole file's SHA-256 is checked before it is
//! renamed into `blobs/sha256/`; a mismatch deletes the partial file and is fatal.

use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why a download failed (the caller adds which wheel).
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server answered with an error (after retries).
    #[error("{0}")]
    Http(String),
    #[error("sha256 {actual}, expected {expected}")]
    /// The downloaded bytes are not the pinned ones.
    Mismatch {
        /// The pinned SHA-256.
        expected: String,
        /// The downloaded SHA-256.
        actual: String,
    },
    #[error(
        "the server sent more than the {declared} bytes the lock declares; stopped there and discarded the download"
    )]
    /// The server sent more than the declared size.
    TooLong {
        /// The declared size.
        declared: u64,
    },
    /// The partial or final file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

const ATTEMPTS: u32 = 3;

/// Downloads `url` whose SHA-256 is `sha256` (hex) into `blob` (its final cache path), using
/// `partial_dir` for the resumable partial file. `on_bytes` hears of every chunk written.
/// With `size` (what the lock declares), a server that sends more is cut off there: the
/// download fails and nothing past the declared size is read or kept.
pub async fn download(
    http: &reqwest::Client,
    url: &str,
    sha256: &str,
    size: Option<u64>,
    blob: &Path,
    partial_dir: &Path,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(), DownloadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DownloadError::Io {
            path: path.clone(),
            source,
        }
    };
    std::fs::create_dir_all(partial_dir).map_err(io(partial_dir))?;
    let part_path = partial_dir.join(format!("{sha256}.part"));
    let mut part = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&part_path)
        .map_err(io(&part_path))?;
    // SAFETY: flock on a descriptor this function owns for its whole life.
    let locked = unsafe { libc::flock(part.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        // Another run is downloading the same file: use a private partial file instead.
        let private = tempfile::Builder::new()
            .prefix(&format!("{sha256}."))
            .suffix(".part")
            .tempfile_in(partial_dir)
            .map_err(io(partial_dir))?;
        let (f, p) = private.keep().map_err(|e| DownloadError::Io {
            path: partial_dir.to_path_buf(),
            source: e.error,
        })?;
        let r = download_into(http, url, sha256, size, blob, f, &p, on_bytes).await;
        let _ = std::fs::remove_file(&p);
        return r;
    }
    part.seek(std::io::SeekFrom::End(0))
        .map_err(io(&part_path))?;
    let r = download_into(http, url, sha256, size, blob, part, &part_path, on_bytes).await;
    if matches!(
        r,
        Err(DownloadError::Mismatch { .. } | DownloadError::TooLong { .. })
    ) {
        let _ = std::fs::remove_file(&part_path);
    }
    r
}

#[allow(clippy::too_many_arguments)]
async fn download_into(
    http: &reqwest::Client,
    url: &str,
    sha256: &str,
    size: Option<u64>,
    blob: &Path,
    mut part: std::fs::File,
    part_path: &Path,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(), DownloadError> {
    use futures::StreamExt;
    let io = |source| DownloadError::Io {
        path: part_path.to_path_buf(),
        source,
    };
    let mut last_err = String::new();
    for attempt in 1..=ATTEMPTS {
        let have = part.metadata().map_err(io)?.len();
        let mut req = super::netrc::authed_get(http, url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                last_err = e.without_url().to_string();
                tokio::time::sleep(std::time::Duration::from_millis(300 * attempt as u64)).await;
                continue;
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            // Probably complete already: verify below.
        } else if status == reqwest::StatusCode::PARTIAL_CONTENT && have > 0 {
            // Resuming.
        } else if status.is_success() {
            // A full body: start the file over.
            part.set_len(0).map_err(io)?;
            part.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        } else if status.is_server_error() && attempt < ATTEMPTS {
            last_err = format!("HTTP {status}");
            tokio::time::sleep(std::time::Duration::from_millis(300 * attempt as u64)).await;
            continue;
        } else {
            return Err(DownloadError::Http(format!("HTTP {status}")));
        }
        if status != reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            let mut at = part.metadata().map_err(io)?.len();
            let mut body = resp.bytes_stream();
            let mut broken = None;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(c) => {
                        at += c.len() as u64;
                        if let Some(max) = size
                            && at > max
                        {
                            return Err(DownloadError::TooLong { declared: max });
                        }
                        part.write_all(&c).map_err(io)?;
                        on_bytes(c.len() as u64);
                    }
                    Err(e) => {
                        broken = Some(e.without_url().to_string());
                        break;
                    }
                }
            }
            part.flush().map_err(io)?;
            if let Some(e) = broken {
                last_err = format!(
                    "connection broken after {} bytes: {e}",
                    part.metadata().map_err(io)?.len()
                );
                continue;
            }
        }
        // Verify the whole file, then publish it under its digest.
        let actual = hex::encode(raypack_pack::collect::hash_file(part_path).map_err(io)?);
        if actual != sha256 {
            return Err(DownloadError::Mismatch {
                expected: format!("sha256:{sha256}"),
                actual: format!("sha256:{actual}"),
            });
        }
        if let Some(d) = blob.parent() {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        std::fs::rename(part_path, blob).map_err(io)?;
        return Ok(());
    }
    Err(DownloadError::Http(format!(
        "{last_err} (after {ATTEMPTS} tries; the partial file is kept and resumed next time)"
    )))
}
