//! The env plan: every package pinned by the content of its files.
//!
//! A package's digest is SHA-256 over a canonical listing of its files — layout version,
//! role (working dir, or py_module and its name), then for each file in byte order of its
//! relative path: the path, the mode (644/755) and the SHA-256 of its bytes. Mtimes, owners
//! and the directory the project sits in play no part, so an unchanged tree gets the same
//! digest on any machine, and any change of content, name or executable bit changes it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::archive::zip::{StoredZip, ZipEntry};
use crate::collect::{CollectError, Collector, FileSet, PackageKind, StatCache};
use crate::recipe::Recipe;

/// Bumped whenever the zip layout or the digest input changes.
pub const LAYOUT_VERSION: &str = "raypack-env-v1";
/// The single top-level directory every zip wraps its content in (Ray strips it).
pub const ZIP_WRAPPER: &str = "pkg";
/// Ray's package limit (GCS_STORAGE_MAX_SIZE, 512 MiB in Ray 2.50/2.60).
pub const RAY_MAX_PACKAGE_SIZE: u64 = 512 * 1024 * 1024;

/// Where py_modules go below the root of an unpacked tree (a baked image's app dir, an NFS
/// snapshot); the working dir never ships `.raypack/`, so nothing clashes.
pub const PY_MODULES_DIR: &str = ".raypack/py_modules";

/// What a package is shipped as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageRole {
    WorkingDir,
    /// A package directory, imported as `name`.
    PyModule {
        name: String,
    },
    /// A single-file module `name.py`, imported as `name`.
    PyFile {
        name: String,
    },
}

impl PackageRole {
    /// The role of a recipe's py_module.
    pub fn of(module: &crate::recipe::PyModule) -> PackageRole {
        let name = module.name.clone();
        if module.file {
            PackageRole::PyFile { name }
        } else {
            PackageRole::PyModule { name }
        }
    }

    /// Where the package's files sit below the root of an unpacked tree: the working dir at
    /// the root, a package in its own directory under [`PY_MODULES_DIR`], a single-file
    /// module directly in it. Empty or ending in `/`.
    pub fn tree_prefix(&self) -> String {
        match self {
            PackageRole::WorkingDir => String::new(),
            PackageRole::PyModule { name } => format!("{PY_MODULES_DIR}/{name}/"),
            PackageRole::PyFile { .. } => format!("{PY_MODULES_DIR}/"),
        }
    }

    /// How reports name it: `working_dir`, `py_module:<name>`.
    pub fn label(&self) -> String {
        match self {
            PackageRole::WorkingDir => "working_dir".into(),
            PackageRole::PyModule { name } | PackageRole::PyFile { name } => {
                format!("py_module:{name}")
            }
        }
    }
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

/// A package zip built while planning (STORED, for a `file://` store): a temp file in the
/// store's directory, removed when dropped unless published.
#[derive(Debug)]
pub struct Built {
    pub tmp: tempfile::NamedTempFile,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error("cannot write the package zip for {dir}: {source}")]
    Zip {
        dir: String,
        #[source]
        source: std::io::Error,
    },
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
        let p = Self::plan_into(
            project,
            project_root,
            dir,
            role,
            excludes,
            cache,
            max_size,
            None,
        )?;
        Ok(p.0)
    }

    /// [`Package::plan`], and with `stage`, also builds the package's STORED zip in a temp file
    /// there, in the same pass: each file is read once, hashed and copied into place. When every
    /// file's hashes are in the stat cache nothing is built (the store may have the package
    /// already; the caller builds it the usual way if not).
    #[allow(clippy::too_many_arguments)]
    pub fn plan_into(
        project: &str,
        project_root: &Path,
        dir: &Path,
        role: PackageRole,
        excludes: &[String],
        cache: Option<&StatCache>,
        max_size: u64,
        stage: Option<&Path>,
    ) -> Result<(Package, Option<Built>), PlanError> {
        let kind = match role {
            PackageRole::WorkingDir => PackageKind::WorkingDir,
            PackageRole::PyModule { .. } | PackageRole::PyFile { .. } => PackageKind::PyModule,
        };
        let mut c = Collector::new(dir, kind)
            .project_root(project_root)
            .excludes(excludes)
            .max_total_size(max_size);
        if let Some(cache) = cache {
            c = c.stat_cache(cache);
        }
        let t = std::time::Instant::now();
        let listing = c.list()?;
        tracing::debug!(dir = %dir.display(), ms = t.elapsed().as_millis() as u64, "listed");
        if listing.names_and_sizes().next().is_none() {
            return Err(PlanError::Empty {
                dir: dir.display().to_string(),
            });
        }
        let (files, built) = match stage {
            Some(stage) if !c.all_cached(&listing) => {
                let err = |source| PlanError::Zip {
                    dir: dir.display().to_string(),
                    source,
                };
                let tmp = tempfile::Builder::new()
                    .prefix(&crate::archive::temp_prefix())
                    .suffix(crate::archive::TEMP_SUFFIX)
                    .tempfile_in(stage)
                    .map_err(err)?;
                let prefix = zip_prefix(&role);
                let zip = StoredZip::new(
                    tmp.as_file().try_clone().map_err(err)?,
                    listing
                        .names_and_sizes()
                        .map(|(rel, size)| (format!("{prefix}{rel}"), size)),
                );
                let files = c.hash(listing, Some(&zip))?;
                tracing::debug!(ms = t.elapsed().as_millis() as u64, "hashed and copied");
                let bytes = zip
                    .finish(files.files.iter().map(|f| (f.mode(), f.crc32)))
                    .map_err(err)?;
                (files, Some(Built { tmp, bytes }))
            }
            _ => (c.hash(listing, None)?, None),
        };
        let digest = package_digest(&role, &files);
        let short = &digest[..32];
        let object_name = match &role {
            PackageRole::WorkingDir => format!("{project}-{short}.zip"),
            PackageRole::PyModule { name } | PackageRole::PyFile { name } => {
                format!("{project}-{}-{short}.zip", name.replace('_', "-"))
            }
        };
        Ok((
            Package {
                role,
                files,
                digest,
                object_name,
            },
            built,
        ))
    }

    /// Zip entries in archive order: `pkg/<rel>` or `pkg/<module>/<rel>`.
    pub fn zip_entries(&self) -> Vec<ZipEntry> {
        let prefix = zip_prefix(&self.role);
        self.files
            .files
            .iter()
            .map(|f| ZipEntry {
                name: format!("{prefix}{}", f.rel),
                source: f.abs.clone(),
                mode: f.mode(),
                size: f.size,
                crc32: Some(f.crc32),
                sha256: Some(f.sha256),
            })
            .collect()
    }
}

/// Where a package's files sit in its zip: `pkg/`, `pkg/<module>/`, or `pkg/` for a
/// single-file module (`pkg/<module>.py`; Ray strips `pkg/` and puts the rest on `sys.path`).
fn zip_prefix(role: &PackageRole) -> String {
    match role {
        PackageRole::WorkingDir | PackageRole::PyFile { .. } => format!("{ZIP_WRAPPER}/"),
        PackageRole::PyModule { name } => format!("{ZIP_WRAPPER}/{name}/"),
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
        PackageRole::PyFile { name } => {
            h.update(b"py_file ");
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
    let planned = plan_packages_into(recipe, cache, max_size, None, &[])?;
    Ok(planned.into_iter().map(|(p, _)| p).collect())
}

/// [`plan_packages`], building each package's STORED zip in `stage` as it is hashed (see
/// [`Package::plan_into`]). Directories in `keep_out` (absolute: a `file://` store inside
/// the project) are never shipped, whichever package they fall in.
pub fn plan_packages_into(
    recipe: &Recipe,
    cache: Option<&StatCache>,
    max_size: u64,
    stage: Option<&Path>,
    keep_out: &[PathBuf],
) -> Result<Vec<(Package, Option<Built>)>, PlanError> {
    let with_kept_out = |root: &Path, mut ex: Vec<String>| {
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        for d in keep_out {
            if let Ok(rel) = d.strip_prefix(&root)
                && !rel.as_os_str().is_empty()
            {
                ex.push(format!("/{}/", rel.display()));
            }
        }
        ex
    };
    let mut out = vec![Package::plan_into(
        &recipe.name,
        &recipe.root,
        &recipe.code.working_dir,
        PackageRole::WorkingDir,
        &with_kept_out(&recipe.code.working_dir, with_py_module_excludes(recipe)),
        cache,
        max_size,
        stage,
    )?];
    for m in &recipe.code.py_modules {
        let role = PackageRole::of(m);
        // A single-file module is its directory with everything else left out.
        let (dir, excludes) = if m.file {
            let dir = m.path.parent().unwrap_or(Path::new("/"));
            let mut ex = vec!["/*".to_string(), format!("!/{}.py", m.name)];
            ex.extend(recipe.code.excludes.iter().cloned());
            (dir, ex)
        } else {
            (m.path.as_path(), recipe.code.excludes.clone())
        };
        out.push(Package::plan_into(
            &recipe.name,
            &recipe.root,
            dir,
            role,
            &with_kept_out(dir, excludes),
            cache,
            max_size,
            stage,
        )?);
    }
    Ok(out)
}

/// The working dir does not ship package py_modules that live inside it a second time, nor
/// raypack's own state directory.
fn with_py_module_excludes(recipe: &Recipe) -> Vec<String> {
    let mut ex = recipe.code.excludes.clone();
    ex.push("/.raypack/".into());
    // A single-file module stays: `python src/app.py` must still find its script.
    for m in recipe.code.py_modules.iter().filter(|m| !m.file) {
        if let Ok(rel) = m.path.strip_prefix(&recipe.code.working_dir)
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

    #[test]
    fn zip_built_while_hashing_matches_the_two_pass_build_and_digest() {
        use std::io::Read;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("proj");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        for i in 0..300 {
            std::fs::write(
                root.join(format!("sub/f{i:03}.py")),
                format!("x = {i}\n").repeat(i),
            )
            .unwrap();
        }
        // Larger than one run buffer: streamed on its own, header written last.
        let big: Vec<u8> = (0..(5u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join("big.bin"), &big).unwrap();
        std::fs::write(root.join("empty"), "").unwrap();
        // Mid-sized files, several to a run buffer (some of them known to the stat cache).
        std::fs::create_dir(root.join("mid")).unwrap();
        for i in 0..12u32 {
            let body: Vec<u8> = (0..(100 << 10) + i * 50_000)
                .map(|j| (j % 241) as u8 ^ i as u8)
                .collect();
            std::fs::write(root.join(format!("mid/m{i:02}.bin")), body).unwrap();
        }
        // A stat cache that knows some files already (copied without hashing).
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        // Old enough for the stat cache to keep (it skips files modified in the last 2 s).
        let age = |p: std::path::PathBuf| {
            let f = std::fs::File::options().write(true).open(p).unwrap();
            f.set_modified(old).unwrap();
        };
        for i in 0..4 {
            age(root.join(format!("mid/m{i:02}.bin")));
        }
        for i in 0..100 {
            age(root.join(format!("sub/f{i:03}.py")));
        }
        let cache = StatCache::load(&d.path().join("stat.bin"));
        let role = || PackageRole::PyModule {
            name: "proj".into(),
        };
        let warm = Package::plan(
            "demo",
            &root,
            &root,
            role(),
            &[],
            Some(&cache),
            RAY_MAX_PACKAGE_SIZE,
        )
        .unwrap();
        assert_eq!(warm.files.hashed, 314);
        cache.save().unwrap();
        let cache = StatCache::load(&d.path().join("stat.bin"));
        for i in 100..300 {
            std::fs::write(root.join(format!("sub/f{i:03}.py")), format!("y = {i}\n")).unwrap();
        }
        let stage = d.path().join("stage");
        std::fs::create_dir(&stage).unwrap();
        let (p, built) = Package::plan_into(
            "demo",
            &root,
            &root,
            role(),
            &[],
            Some(&cache),
            RAY_MAX_PACKAGE_SIZE,
            Some(&stage),
        )
        .unwrap();
        assert_eq!(
            p.files.hashed, 210,
            "the stat cache served the unchanged files"
        );
        let built = built.expect("a zip was built while hashing");
        let two_pass = Package::plan(
            "demo",
            &root,
            &root,
            role(),
            &[],
            None,
            RAY_MAX_PACKAGE_SIZE,
        )
        .unwrap();
        assert_eq!(p.digest, two_pass.digest);
        let mut expected = Vec::new();
        crate::archive::zip::write_zip(&mut expected, &two_pass.zip_entries(), 0).unwrap();
        let got = std::fs::read(built.tmp.path()).unwrap();
        assert_eq!(built.bytes, got.len() as u64);
        assert!(
            got == expected,
            "single-pass zip differs from the streaming writer's"
        );
        let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(got)).unwrap();
        let mut b = Vec::new();
        z.by_name("pkg/proj/big.bin")
            .unwrap()
            .read_to_end(&mut b)
            .unwrap();
        assert!(b == big);
        // Everything known to the stat cache: nothing is built (the store may have it).
        let files = |dir: &str| {
            std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
        };
        for e in files("sub").chain(files("mid")) {
            age(e);
        }
        for name in ["big.bin", "empty"] {
            age(root.join(name));
        }
        let plan = |c| {
            Package::plan_into(
                "demo",
                &root,
                &root,
                role(),
                &[],
                c,
                RAY_MAX_PACKAGE_SIZE,
                Some(&stage),
            )
            .unwrap()
        };
        cache.save().unwrap();
        let cache = StatCache::load(&d.path().join("stat.bin"));
        let (_, built) = plan(Some(&cache));
        assert!(built.is_some(), "new stamps: hashed and built");
        cache.save().unwrap();
        let cache = StatCache::load(&d.path().join("stat.bin"));
        let (p2, built) = plan(Some(&cache));
        assert!(built.is_none(), "all cached: nothing built");
        assert_eq!((p2.files.hashed, p2.digest), (0, p.digest));
    }
}
