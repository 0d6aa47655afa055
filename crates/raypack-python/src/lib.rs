#![deny(missing_docs)]
//! Python packaging for images, without Python and without a recipe: compatibility tags for a
//! target interpreter and platform ([`tags`]), wheel filenames and installation into layer
//! entries ([`wheel`]), cached per-wheel layer fragments ([`layer`], [`bytecode`]), what a base
//! image already has installed ([`installed`]), the one index client ([`index`]: PEP 691 JSON,
//! PEP 503 HTML, find-links) with its credentials ([`netrc`]), pins from pylock.toml or hashed
//! requirements ([`pinned`]), the resolver ([`resolve`]) and the PEP 751 writer ([`pylock`]).
//!
//! ```no_run
//! use raypack_python::{tags::Target, target_scheme, wheel};
//! let target = Target::new("linux/amd64", "3.11", "2_35").unwrap();
//! let name = wheel::WheelName::parse("six-1.17.0-py2.py3-none-any.whl").unwrap();
//! assert!(name.priority(&target.priorities()).is_some());
//! let scheme = target_scheme("/usr/bin/python3", "3.11");
//! let installed = wheel::install(
//!     "six-1.17.0-py2.py3-none-any.whl".as_ref(),
//!     "six-1.17.0-py2.py3-none-any.whl",
//!     &scheme,
//!     (1000, 100),
//!     true,
//!     "/tmp/unpack".as_ref(),
//! )
//! .unwrap();
//! println!("{} entries", installed.entries.len());
//! ```

pub mod bytecode;
pub mod download;
pub mod html;
pub mod index;
pub mod installed;
pub mod layer;
pub mod metadata;
pub mod netrc;
pub mod pinned;
pub mod pylock;
pub mod requirement;
pub mod requirements_txt;
pub mod resolve;
pub mod tags;
pub mod wheel;

use std::path::{Path, PathBuf};

use raypack_pack::archive::tar::{EntryKind, LayerEntry};

/// The image-side paths used for `raypack install --target DIR` (pip's `--target` layout:
/// purelib at `DIR`, scripts at `DIR/bin`, RECORD paths relative to `<home>/lib/python`).
pub(crate) const TARGET_HOME: &str = "/raypack-target";

/// The scheme `install --target` installs with, before relocation into the directory.
pub fn target_scheme(python: &str, python_version: &str) -> wheel::Scheme {
    wheel::Scheme {
        site_packages: format!("{TARGET_HOME}/lib/python"),
        scripts: format!("{TARGET_HOME}/bin"),
        data: TARGET_HOME.to_string(),
        headers: format!("{TARGET_HOME}/include/site/python{python_version}"),
        python: python.to_string(),
    }
}

/// Writes entries installed with [`target_scheme`] into `dir` (as `pip install --target`).
pub fn materialize_target(entries: &[LayerEntry], dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let lib = format!("{}/lib/python/", TARGET_HOME.trim_start_matches('/'));
    let home = format!("{}/", TARGET_HOME.trim_start_matches('/'));
    let mut written = Vec::new();
    let mut zips = raypack_pack::archive::tar::ZipReaders::default();
    for e in entries {
        let rel = e
            .path
            .strip_prefix(&lib)
            .or_else(|| e.path.strip_prefix(&home))
            .unwrap_or(&e.path);
        let out = dir.join(rel);
        // Every failure names the path it was writing (two wheels can clash on a name).
        let at = |err: std::io::Error| {
            std::io::Error::new(err.kind(), format!("{}: {err}", out.display()))
        };
        match &e.kind {
            EntryKind::Dir => std::fs::create_dir_all(&out).map_err(at)?,
            EntryKind::File { source } => {
                std::fs::create_dir_all(out.parent().unwrap_or(dir)).map_err(at)?;
                std::fs::copy(source, &out).map_err(at)?;
            }
            EntryKind::Bytes(b) => {
                std::fs::create_dir_all(out.parent().unwrap_or(dir)).map_err(at)?;
                std::fs::write(&out, b).map_err(at)?;
            }
            EntryKind::ZipMember { archive, index, .. } => {
                std::fs::create_dir_all(out.parent().unwrap_or(dir)).map_err(at)?;
                zips.extract(archive, *index, &out)?;
            }
            EntryKind::Whiteout => continue,
        }
        if !matches!(e.kind, EntryKind::Dir) {
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(e.mode))?;
            written.push(out);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod fuzz;
