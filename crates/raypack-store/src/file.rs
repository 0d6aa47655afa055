//! `file://` stores (local disk, NFS, EFS): temp name in the same directory, fsync, rename.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::StoreError;

use raypack_pack::archive::{TEMP_MARK, TEMP_SUFFIX, temp_prefix};

#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: &Path, create: bool) -> Result<FileStore, StoreError> {
        if create {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Config {
                store: format!("file://{}", dir.display()),
                detail: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        Ok(FileStore {
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn name(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    pub fn check(&self) -> Result<(), StoreError> {
        if self.dir.is_dir() {
            Ok(())
        } else {
            Err(StoreError::NoDirectory {
                store: self.name(),
                path: self.dir.display().to_string(),
            })
        }
    }

    pub fn exists(&self, name: &str) -> Result<bool, StoreError> {
        match std::fs::metadata(self.dir.join(name)) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.failed("stat", name, e)),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Option<super::ObjectStream>, StoreError> {
        use futures::StreamExt;
        match tokio::fs::File::open(self.dir.join(name)).await {
            Ok(f) => Ok(Some(
                tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).boxed(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.failed("open", name, e)),
        }
    }

    fn failed(&self, op: &'static str, name: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            store: self.name(),
            op,
            object: name.to_string(),
            detail: e.to_string(),
        }
    }

    /// Removes raypack's temp files (`.raypack-*.partial`) last modified more than `max_age`
    /// ago, except this process's own: what killed runs left behind. Another live run's temp
    /// file is younger (written continuously, renamed within seconds). Returns how many.
    pub(crate) fn sweep_partials(&self, max_age: std::time::Duration) -> usize {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = std::time::SystemTime::now();
        // This run's own temp files (the zips it is about to publish) are never leftovers.
        let own = temp_prefix();
        let mut removed = 0;
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(name.starts_with(TEMP_MARK) && name.ends_with(TEMP_SUFFIX))
                || name.starts_with(&own)
            {
                continue;
            }
            let old = e
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > max_age);
            if old && std::fs::remove_file(e.path()).is_ok() {
                tracing::info!(path = %e.path().display(), "removed a leftover partial file of a killed run");
                removed += 1;
            }
        }
        removed
    }

    /// Where to build objects so that publishing is a rename (same directory, same filesystem).
    pub fn staging_dir(&self) -> &Path {
        &self.dir
    }

    pub fn put_file(&self, name: &str, src: &Path) -> Result<(), StoreError> {
        self.check()?;
        if src.parent() == Some(self.dir.as_path()) {
            // Built in place by the caller: fsync, make readable, rename.
            let f = std::fs::File::open(src).map_err(|e| self.failed("open", name, e))?;
            f.sync_all().map_err(|e| self.failed("fsync", name, e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(src, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| self.failed("chmod", name, e))?;
            std::fs::rename(src, self.dir.join(name))
                .map_err(|e| self.failed("rename", name, e))?;
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
            return Ok(());
        }
        // A name with directories (`raypack-cache/v1/plan/<key>.json`): the temp file goes
        // in the final directory, so the rename stays on one filesystem.
        let target = self.dir.join(name);
        let parent = target.parent().unwrap_or(&self.dir).to_path_buf();
        if parent != self.dir {
            std::fs::create_dir_all(&parent)
                .map_err(|e| self.failed("create the directory of", name, e))?;
        }
        let base = target
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!("{}{base}.", temp_prefix()))
            .suffix(raypack_pack::archive::TEMP_SUFFIX)
            .tempfile_in(&parent)
            .map_err(|e| self.failed("create temp file for", name, e))?;
        let mut input = std::fs::File::open(src).map_err(|e| self.failed("read", name, e))?;
        std::io::copy(&mut input, tmp.as_file_mut()).map_err(|e| self.failed("write", name, e))?;
        tmp.as_file_mut()
            .flush()
            .map_err(|e| self.failed("write", name, e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| self.failed("fsync", name, e))?;
        // Readable by the Ray nodes that mount the share, like any other file there.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| self.failed("chmod", name, e))?;
        tmp.persist(&target)
            .map_err(|e| self.failed("rename", name, e.error))?;
        if let Ok(d) = std::fs::File::open(&parent) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
