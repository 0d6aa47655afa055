//! `raypack.lock`: what raypack pinned for a project, next to the recipe.
//!
//! It holds the base image pins: for each platform, the manifest digest `[base] image` resolved
//! to. Later builds use a pin until `raypack lock --upgrade-base`, or until the recipe names a
//! different base. One pin is written as a `[base]` table, several (a multi-platform recipe) as
//! `[[base]]` tables in platform order; both are read. The file is TOML, written
//! deterministically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LOCK_FILE: &str = "raypack.lock";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Pins::is_empty")]
    pub base: Pins,
}

/// The base pins, one per platform: a table when there is one, an array of tables otherwise
/// (so a single-platform lock reads as it always has).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Pins {
    #[default]
    #[serde(skip)]
    None,
    One(BasePin),
    Many(Vec<BasePin>),
}

impl Pins {
    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Every pin.
    pub fn as_slice(&self) -> &[BasePin] {
        match self {
            Pins::None => &[],
            Pins::One(p) => std::slice::from_ref(p),
            Pins::Many(v) => v,
        }
    }

    fn from_vec(mut v: Vec<BasePin>) -> Pins {
        v.sort_by(|a, b| a.platform.cmp(&b.platform));
        match v.len() {
            0 => Pins::None,
            1 => Pins::One(v.pop().expect("one")),
            _ => Pins::Many(v),
        }
    }
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
    /// The tag resolved, when not the recipe's: the platform's own tag of a base published
    /// one tag per architecture (`2.60.0-py311-cpu-aarch64` for linux/arm64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
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
                base: Pins::None,
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
            .as_slice()
            .iter()
            .find(|b| b.image == image && b.platform == platform)
    }

    /// Records `pin`: it replaces the pin of its platform, and pins of another base go (the
    /// recipe names one base).
    pub fn set_base_pin(&mut self, pin: BasePin) {
        let mut v: Vec<BasePin> = self
            .base
            .as_slice()
            .iter()
            .filter(|b| b.image == pin.image && b.platform != pin.platform)
            .cloned()
            .collect();
        v.push(pin);
        self.base = Pins::from_vec(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(platform: &str, digest: &str) -> BasePin {
        BasePin {
            image: "rayproject/ray:2.60.0-py311-cpu".into(),
            platform: platform.into(),
            digest: digest.into(),
            index_digest: None,
            tag: None,
        }
    }

    /// One pin keeps the `[base]` table; a second platform makes `[[base]]` tables in
    /// platform order; both read back; a pin of another base replaces the old ones.
    #[test]
    fn one_pin_is_a_table_several_are_an_array() {
        let d = tempfile::tempdir().unwrap();
        let mut lock = LockFile::load(d.path()).unwrap();
        lock.set_base_pin(pin("linux/amd64", "sha256:aa"));
        lock.save(d.path()).unwrap();
        let text = std::fs::read_to_string(LockFile::path(d.path())).unwrap();
        assert!(
            text.contains("\n[base]\n") && !text.contains("[[base]]"),
            "{text}"
        );
        assert_eq!(LockFile::load(d.path()).unwrap(), lock);

        let mut arm = pin("linux/arm64", "sha256:bb");
        arm.tag = Some("2.60.0-py311-cpu-aarch64".into());
        lock.set_base_pin(arm);
        lock.set_base_pin(pin("linux/amd64", "sha256:cc"));
        lock.save(d.path()).unwrap();
        let text = std::fs::read_to_string(LockFile::path(d.path())).unwrap();
        assert_eq!(text.matches("[[base]]").count(), 2, "{text}");
        assert!(text.find("linux/amd64").unwrap() < text.find("linux/arm64").unwrap());
        let back = LockFile::load(d.path()).unwrap();
        assert_eq!(
            back.base_pin(&pin("", "").image, "linux/amd64")
                .unwrap()
                .digest,
            "sha256:cc"
        );
        assert_eq!(
            back.base_pin(&pin("", "").image, "linux/arm64")
                .unwrap()
                .tag
                .as_deref(),
            Some("2.60.0-py311-cpu-aarch64")
        );

        let mut other = pin("linux/amd64", "sha256:dd");
        other.image = "rayproject/ray:2.61.0-py311-cpu".into();
        lock.set_base_pin(other);
        assert_eq!(lock.base.as_slice().len(), 1);
    }
}
