//! `raypack.lock`: what raypack pinned for a project, next to the recipe.
//!
//! Today it holds the base image pin (the platform manifest digest `[base] image` resolved to).
//! Later builds use the pin until `raypack lock --upgrade-base`, or until the recipe names a
//! different base or platform. The file is TOML, written deterministically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LOCK_FILE: &str = "raypack.lock";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BasePin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasePin {
    /// The reference as the recipe writes it.
    pub image: String,
    pub platform: String,
    /// The platform manifest's digest.
    pub digest: String,
    /// The index the manifest was selected from, if the tag named an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: {message}; fix it or delete it to re-pin")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LockFile {
    pub fn path(root: &Path) -> PathBuf {
        root.join(LOCK_FILE)
    }

    /// Reads the lock (a missing file is an empty lock).
    pub fn load(root: &Path) -> Result<LockFile, LockError> {
        let path = Self::path(root);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(LockFile {
                version: 1,
                base: None,
            });
        };
        let lock: LockFile = toml::from_str(&text).map_err(|e| LockError::Invalid {
            path: path.clone(),
            message: e.message().to_string(),
        })?;
        if lock.version != 1 {
            return Err(LockError::Invalid {
                path,
                message: format!(
                    "version {} is not supported (this raypack writes version 1)",
                    lock.version
                ),
            });
        }
        Ok(lock)
    }

    /// Writes the lock if its content changed (so unchanged re-runs rewrite nothing).
    pub fn save(&self, root: &Path) -> Result<bool, LockError> {
        let path = Self::path(root);
        let text = format!(
            "# raypack.lock: pins written by raypack; commit it. `raypack lock --upgrade-base` re-resolves the base.\n{}",
            toml::to_string(self).expect("lock serializes")
        );
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Ok(false);
        }
        // Committed by users like any source file: 0644, written whole.
        crate::archive::write_file_atomically(&path, text.as_bytes()).map_err(|source| {
            LockError::Write {
                path: path.clone(),
                source,
            }
        })?;
        Ok(true)
    }

    /// The pin for this base and platform, if the lock has one.
    pub fn base_pin(&self, image: &str, platform: &str) -> Option<&BasePin> {
        self.base
            .as_ref()
            .filter(|b| b.image == image && b.platform == platform)
    }
}
