//! The env plan: every package pinned by the content of its files.
//!
//! A package's digest is SHA-256 over a canonical listing of its files — layout version,
//! role (working dir, or py_module and its name), then for each file in byte order of its
//! relative path: the path, the mode (644/755) and the SHA-256 of its bytes. Mtimes, owners
//! and the directory the project sits in play no part, so an unchanged tree gets the same
//! digest on any machine, and any change of content, name or executable bit changes it.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::archive::zip::ZipEntry;
use crate::collect::{CollectError, Collector, FileSet, PackageKind, StatCache};
use crate::recipe::Recipe;

/// Bumped whenever the zip layout or the digest input changes.
pub const LAYOUT_VERSION: &str = "raypack-env-v1";
/// The single top-level directory every zip wraps its content in (Ray strips it).
pub const ZIP_WRAPPER: &str = "pkg";
/// Ray's package limit (GCS_STORAGE_MAX_SIZE, 512 MiB in Ray 2.50/2.60).
pub const RAY_MAX_PACKAGE_SIZE: u64 = 512 * 1024 * 1024;

/// What a package is shipped as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageRole {
    WorkingDir,
    PyModule { name: String },
}

/// One content-addressed package.
#[derive(Debug, Clone)]
pub struct Package {
    pub role: PackageRole,
    pub files: FileSet,
    /// Hex SHA-256 of the canonical listing.
    pub digest: String,
    /// Object name in the store: `<project>-<hash>.zip` or `<project>-<module>-<hash>.zip`.
    pub object_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error("{dir}: nothing to ship (every file is excluded or the directory is empty)")]
    Empty { dir: String },
}

impl Package {
    /// Collects and hashes `dir` as `role`.
    pub fn plan(
        project: &str,
        project_root: &Path,
        dir: &Path,
        role: PackageRole,
        excludes: &[String],
        cache: Option<&StatCache>,
        max_size: u64,
    ) -> Result<Package, PlanError> {
        let kind = match role {
            PackageRole::WorkingDir => PackageKind::WorkingDir,
            PackageRole::PyModule { .. } => PackageKind::PyModule,
        };
        let mut c = Collector::new(dir, kind)
            .project_root(project_root)
            .excludes(excludes)
            .max_total_size(max_size);
        if let Some(cache) = cache {
            c = c.stat_cache(cache);
        }
        let files = c.collect()?;
        if files.files.is_empty() {
            return Err(PlanError::Empty {
                dir: dir.display().to_string(),
            });
        }
        let digest = package_digest(&role, &files);
        let short = &digest[..32];
        let object_name = match &role {
            PackageRole::WorkingDir => format!("{project}-{short}.zip"),
            PackageRole::PyModule { name } => {
                format!("{project}-{}-{short}.zip", name.replace('_', "-"))
            }
        };
        Ok(Package {
            role,
            files,
            digest,
            object_name,
        })
    }

    /// Zip entries in archive order: `pkg/<rel>` or `pkg/<module>/<rel>`.
    pub fn zip_entries(&self) -> Vec<ZipEntry> {
        let prefix = match &self.role {
            PackageRole::WorkingDir => format!("{ZIP_WRAPPER}/"),
            PackageRole::PyModule { name } => format!("{ZIP_WRAPPER}/{name}/"),
        };
        self.files
            .files
            .iter()
            .map(|f| ZipEntry {
                name: format!("{prefix}{}", f.rel),
                source: f.abs.clone(),
                mode: f.mode(),
                size: f.size,
                crc32: Some(f.crc32),
            })
            .collect()
    }
}

/// The content digest of a package (see the module docs).
pub fn package_digest(role: &PackageRole, files: &FileSet) -> String {
    let mut h = Sha256::new();
    h.update(LAYOUT_VERSION.as_bytes());
    h.update(b"\n");
    match role {
        PackageRole::WorkingDir => h.update(b"working_dir\n"),
        PackageRole::PyModule { name } => {
            h.update(b"py_module ");
            h.update(name.as_bytes());
            h.update(b"\n");
        }
    }
    for f in &files.files {
        h.update(f.rel.as_bytes());
        h.update(b"\0");
        h.update(format!("{:o}", f.mode()).as_bytes());
        h.update(b"\0");
        h.update(f.sha256);
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The packages of a recipe: working dir first, then py_modules in recipe order.
pub fn plan_packages(
    recipe: &Recipe,
    cache: Option<&StatCache>,
    max_size: u64,
) -> Result<Vec<Package>, PlanError> {
    let mut out = vec![Package::plan(
        &recipe.name,
        &recipe.root,
        &recipe.code.working_dir,
        PackageRole::WorkingDir,
        &with_py_module_excludes(recipe),
        cache,
        max_size,
    )?];
    for m in &recipe.code.py_modules {
        let name = m
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        out.push(Package::plan(
            &recipe.name,
            &recipe.root,
            m,
            PackageRole::PyModule { name },
            &recipe.code.excludes,
            cache,
            max_size,
        )?);
    }
    Ok(out)
}

/// The working dir does not ship py_modules that live inside it a second time, nor raypack's
/// own state directory.
fn with_py_module_excludes(recipe: &Recipe) -> Vec<String> {
    let mut ex = recipe.code.excludes.clone();
    ex.push("/.raypack/".into());
    for m in &recipe.code.py_modules {
        if let Ok(rel) = m.strip_prefix(&recipe.code.working_dir)
            && !rel.as_os_str().is_empty()
        {
            ex.push(format!("/{}/", rel.display()));
        }
    }
    ex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path) -> Package {
        Package::plan(
            "demo",
            dir,
            dir,
            PackageRole::WorkingDir,
            &[],
            None,
            RAY_MAX_PACKAGE_SIZE,
        )
        .unwrap()
    }

    #[test]
    fn digest_tracks_content_and_mode_not_mtime() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.py"), "a").unwrap();
        let p1 = plan(d.path());
        assert!(p1.object_name.starts_with("demo-") && p1.object_name.ends_with(".zip"));
        let f = std::fs::File::options()
            .write(true)
            .open(d.path().join("a.py"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000))
            .unwrap();
        assert_eq!(plan(d.path()).digest, p1.digest);
        std::fs::set_permissions(
            d.path().join("a.py"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let p2 = plan(d.path());
        assert_ne!(p2.digest, p1.digest);
        std::fs::set_permissions(
            d.path().join("a.py"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::write(d.path().join("a.py"), "b").unwrap();
        assert_ne!(plan(d.path()).digest, p1.digest);
    }

    #[test]
    fn too_large_is_refused_before_anything_else() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.bin"), vec![0u8; 2048]).unwrap();
        let e = Package::plan(
            "demo",
            d.path(),
            d.path(),
            PackageRole::WorkingDir,
            &[],
            None,
            1024,
        )
        .unwrap_err();
        assert!(e.to_string().contains("limit 1.0 KiB"), "{e}");
    }
}
