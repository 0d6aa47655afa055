//! Collect the files of a package directory and hash them.
//!
//! The walk honours `.gitignore` and `.rayignore` in every directory (gitwildmatch, as Ray
//! does), the recipe's `excludes` (relative to the package root) and, for a working dir, Ray's
//! default excludes (`.git`, `.venv`, `venv`, `__pycache__`). Symlinks that stay inside the
//! project are followed and stored as the content they point at; symlinks that escape it are
//! an error. Files are hashed with SHA-256 in parallel; a [`StatCache`] skips files whose
//! size, mtime, ctime and inode are unchanged since the last run.
//!
//! ```no_run
//! use raypack_pack::collect::{Collector, PackageKind};
//! let files = Collector::new("/work/proj".as_ref(), PackageKind::WorkingDir)
//!     .project_root("/work/proj".as_ref())
//!     .collect().unwrap();
//! println!("{} files", files.files.len());
//! ```

/// The stat cache's map: paths are not attacker-chosen here, and SipHash was a visible share of
/// an unchanged re-run.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod hash;
pub use hash::hash_file;
use hash::*;
mod stat_cache;
#[cfg(test)]
use stat_cache::*;
pub use stat_cache::{Stamp, StatCache};

/// Ray's default excludes for a working dir (`RAY_RUNTIME_ENV_DEFAULT_EXCLUDES`, Ray 2.60).
pub(crate) const RAY_DEFAULT_EXCLUDES: &[&str] = &[".git", ".venv", "venv", "__pycache__"];

/// Files found by every walk in this process so far (for a progress display on a terminal:
/// a walk of a big tree otherwise shows nothing for seconds).
static FILES_WALKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many files the walks of this process have found so far.
pub fn files_walked() -> usize {
    FILES_WALKED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The most files one walk collects: far beyond a project (the bench tree has 10,000), well
/// short of a whole filesystem, which would otherwise be walked for minutes into memory.
pub(crate) const MAX_WALK_FILES: usize = 1_000_000;

/// The biggest top-level directories (by bytes) among `(rel path, size)`, for messages.
pub fn largest_dirs<'p>(files: impl Iterator<Item = (&'p str, u64)>) -> String {
    let mut by_top: HashMap<&str, (u64, usize)> = HashMap::default();
    for (rel, size) in files {
        let top = rel.split_once('/').map_or(".", |(t, _)| t);
        let e = by_top.entry(top).or_default();
        e.0 += size;
        e.1 += 1;
    }
    let mut v: Vec<_> = by_top.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.iter()
        .take(5)
        .map(|(top, (size, n))| {
            let name = if *top == "." {
                "(top level)".to_string()
            } else {
                format!("{top}/")
            };
            format!("{name} {} in {n} files", crate::units::human_bytes(*size))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a package directory is shipped as; py_modules get only the recipe excludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageKind {
    /// The job's working directory (Ray's default excludes apply).
    WorkingDir,
    /// A Python module shipped as a py_module.
    PyModule,
}

/// One regular file to ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the package root, '/'-separated.
    pub rel: String,
    /// Where to read it (symlinks resolved).
    pub abs: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Whether any execute bit is set (shipped as mode 755, else 644).
    pub executable: bool,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// CRC-32 of the bytes, computed in the same read (a stored zip entry needs nothing else).
    pub crc32: u32,
}

impl FileEntry {
    /// The Unix mode stored in archives: 0755 for executables, 0644 otherwise.
    pub fn mode(&self) -> u32 {
        if self.executable { 0o755 } else { 0o644 }
    }
}

/// The sorted files of one package directory.
#[derive(Debug, Clone)]
pub struct FileSet {
    /// The package directory.
    pub root: PathBuf,
    /// Its files, sorted by relative path (byte order).
    pub files: Vec<FileEntry>,
    /// How many files were hashed (not served from the stat cache).
    pub hashed: usize,
}

impl FileSet {
    /// The sum of the files' sizes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Errors while collecting; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(
        "{path}: symlink points outside the project (to {target}); copy the file in or exclude the link"
    )]
    /// A symlink that points outside the project.
    EscapingSymlink {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    #[error("{path}: symlink is broken (points to {target}); fix or exclude it")]
    /// A symlink whose target does not exist.
    BrokenSymlink {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// A file or directory could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    /// The directory walk failed.
    Walk {
        /// Where.
        path: PathBuf,
        /// What the walker said.
        message: String,
    },
    #[error("{path}: file name is not valid UTF-8; Ray's zip reader needs UTF-8 names")]
    /// A file name that is not UTF-8 (zip names and Ray's URIs are).
    NonUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// The package is over the size limit (the walk stops as soon as it passes it).
    #[error("{dir}: package is {}{} (limit {}); Ray rejects packages this large. Largest directories: {largest}. Exclude large files in .rayignore or [code] excludes, or bake them into the image", if *partial { "at least " } else { "" }, crate::units::human_bytes(*size), crate::units::human_bytes(*limit))]
    TooLarge {
        /// The package directory.
        dir: PathBuf,
        /// Bytes seen when the walk stopped.
        size: u64,
        /// The limit.
        limit: u64,
        /// The walk stopped as soon as the limit was passed.
        partial: bool,
        /// The biggest top-level directories, "name/ 1.2 GiB, …".
        largest: String,
    },
    #[error(
        "{dir}: more than {limit} files found (the walk stopped there); is the working dir the project's directory? Largest directories: {largest}. Exclude them in .rayignore or [code] excludes"
    )]
    /// The package has more files than the walk allows.
    TooManyFiles {
        /// The package directory.
        dir: PathBuf,
        /// The limit.
        limit: usize,
        /// Its largest top-level directories, for the message.
        largest: String,
    },
    #[error("exclude pattern `{pattern}`: {message}")]
    /// An exclude pattern that does not parse.
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
}

/// A file found by the walk: relative name, path as walked, path to read.
/// and the stat cache's hashes for it (looked up in the walker's threads).
/// (Stamp and executable bit stand in for the whole `Metadata`: the listing is sorted, and
/// moving 10,000 fat tuples around showed in profiles.)
type Found = (String, PathBuf, PathBuf, (Stamp, bool), Option<Hashes>);

/// SHA-256 and CRC-32 of a file.
pub(crate) type Hashes = ([u8; 32], u32);

/// Collects one walker thread's results and hands them over in one lock when the thread ends.
struct Batch<'a> {
    local: Vec<Result<Found, CollectError>>,
    shared: &'a Mutex<Vec<Result<Found, CollectError>>>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.shared.lock().unwrap().append(&mut self.local);
    }
}

/// The files of one package directory after the walk: sorted, stat'ed, not read yet.
#[derive(Debug)]
pub struct Listing {
    root: PathBuf,
    found: Vec<Found>,
}

impl Listing {
    /// Relative name and size of every file, in archive order.
    pub fn names_and_sizes(&self) -> impl Iterator<Item = (&str, u64)> {
        self.found
            .iter()
            .map(|(rel, _, _, meta, _)| (rel.as_str(), meta.0.size))
    }
}

/// Where the hashing pass copies every file it reads (a stored zip being built), so the bytes
/// hashed are the bytes shipped and each file is read once. The listing is cut into runs of
/// neighbouring files, each run handled by one thread through its own [`CopyRun`].
pub trait CopySink: Sync {
    /// A new run of files for one thread.
    fn run(&self) -> Box<dyn CopyRun + '_>;
}

/// One thread's run of files, handed over in listing order by their index in the [`Listing`].
pub trait CopyRun {
    /// Copies `size` bytes of `src` into the sink. Without `crc32` (no stat-cache entry), the
    /// file's SHA-256 and CRC-32 are computed from the bytes copied and reported by
    /// [`CopyRun::finish`]. A file whose length is not `size` is an error.
    fn add(
        &mut self,
        index: usize,
        src: &std::fs::File,
        size: u64,
        crc32: Option<u32>,
    ) -> std::io::Result<()>;
    /// Writes out whatever the run still holds. Returns the hashes of the files added without
    /// a CRC-32, by index.
    fn finish(&mut self) -> std::io::Result<Vec<(usize, Hashes)>>;
}

/// Configures and runs one collection.
#[derive(Debug)]
pub struct Collector<'a> {
    dir: PathBuf,
    kind: PackageKind,
    project_root: PathBuf,
    excludes: Vec<String>,
    cache: Option<&'a StatCache>,
    max_total_size: Option<u64>,
    max_files: usize,
}

impl<'a> Collector<'a> {
    /// A collector for the package at `dir` of the given kind (ignore rules per kind).
    pub fn new(dir: &Path, kind: PackageKind) -> Self {
        Collector {
            dir: dir.to_path_buf(),
            kind,
            project_root: dir.to_path_buf(),
            excludes: Vec::new(),
            cache: None,
            max_total_size: None,
            max_files: MAX_WALK_FILES,
        }
    }

    /// Fails with [`CollectError::TooManyFiles`] when the walk finds more files than this
    /// (default [`MAX_WALK_FILES`]); the walk stops there.
    #[cfg(test)]
    pub(crate) fn max_files(mut self, n: usize) -> Self {
        self.max_files = n;
        self
    }

    /// Fails with [`CollectError::TooLarge`] before hashing when the files add up to more.
    pub fn max_total_size(mut self, limit: u64) -> Self {
        self.max_total_size = Some(limit);
        self
    }

    /// Symlinks may point anywhere below this directory (and below the package dir itself).
    pub fn project_root(mut self, root: &Path) -> Self {
        self.project_root = root.to_path_buf();
        self
    }

    /// Patterns to leave out, gitignore syntax, relative to the package root.
    pub fn excludes(mut self, patterns: &[String]) -> Self {
        self.excludes = patterns.to_vec();
        self
    }

    /// Reuse the hashes of files whose stat stamp is unchanged.
    pub fn stat_cache(mut self, cache: &'a StatCache) -> Self {
        self.cache = Some(cache);
        self
    }

    fn exclude_matcher(&self) -> Result<Gitignore, CollectError> {
        let mut b = GitignoreBuilder::new(&self.dir);
        let defaults: &[&str] = match self.kind {
            PackageKind::WorkingDir => RAY_DEFAULT_EXCLUDES,
            PackageKind::PyModule => &[],
        };
        for p in defaults
            .iter()
            .copied()
            .chain(self.excludes.iter().map(String::as_str))
        {
            b.add_line(None, p).map_err(|e| CollectError::Pattern {
                pattern: p.to_string(),
                message: e.to_string(),
            })?;
        }
        b.build().map_err(|e| CollectError::Pattern {
            pattern: String::new(),
            message: e.to_string(),
        })
    }

    /// Walks, filters and hashes. The result is sorted by relative path.
    pub fn collect(&self) -> Result<FileSet, CollectError> {
        self.hash(self.list()?, None)
    }

    /// Walks and filters, and checks the size limit: the sorted files, stat'ed, not read yet.
    pub fn list(&self) -> Result<Listing, CollectError> {
        let dir = self
            .dir
            .canonicalize()
            .map_err(|source| CollectError::Read {
                path: self.dir.clone(),
                source,
            })?;
        let project = self
            .project_root
            .canonicalize()
            .unwrap_or_else(|_| self.project_root.clone());
        let excludes = self.exclude_matcher()?;
        let found: Mutex<Vec<Result<Found, CollectError>>> = Mutex::new(Vec::new());
        // Bounded walk: stop at MAX_WALK_FILES files or once past the size limit.
        let walked = std::sync::atomic::AtomicUsize::new(0);
        let walked_bytes = std::sync::atomic::AtomicU64::new(0);
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let walk_root = self.dir.clone();
        let walker = ignore::WalkBuilder::new(&self.dir)
            .hidden(false)
            .parents(false)
            .git_global(false)
            .git_exclude(false)
            .require_git(false)
            .git_ignore(true)
            .ignore(false)
            .add_custom_ignore_filename(".rayignore")
            .follow_links(true)
            .threads(rayon::current_num_threads().min(4))
            .filter_entry({
                let excludes = excludes.clone();
                let root = walk_root.clone();
                move |e| {
                    let rel = below(e.path(), &root);
                    if rel.as_os_str().is_empty() {
                        return true;
                    }
                    let is_dir = e.file_type().is_some_and(|t| t.is_dir());
                    !excludes.matched(rel, is_dir).is_ignore()
                }
            })
            .build_parallel();
        walker.run(|| {
            let found = &found;
            let root = &walk_root;
            let dir = &dir;
            let project = &project;
            let cache = self.cache;
            let (walked, walked_bytes, stopped) = (&walked, &walked_bytes, &stopped);
            let limit = self.max_total_size;
            let max_files = self.max_files;
            let mut batch = Batch {
                local: Vec::with_capacity(1024),
                shared: found,
            };
            let mut dirs = InDir::default();
            Box::new(move |res| {
                let entry = match res {
                    Ok(e) => e,
                    Err(err) => {
                        let (path, message) = walk_error(&err, root);
                        // A symlink whose target is missing shows up as a walk error (a
                        // symlink loop too, but that one is not broken).
                        if let (false, Ok(target)) = (is_loop(&err), std::fs::read_link(&path)) {
                            found
                                .lock()
                                .unwrap()
                                .push(Err(CollectError::BrokenSymlink { path, target }));
                        } else {
                            found
                                .lock()
                                .unwrap()
                                .push(Err(CollectError::Walk { path, message }));
                        }
                        return ignore::WalkState::Continue;
                    }
                };
                let path = entry.path();
                // A symlink is read through its resolved target (checked to stay inside).
                let mut read_from = path.to_path_buf();
                if entry.path_is_symlink() {
                    match path.canonicalize() {
                        Ok(real) if real.starts_with(project) || real.starts_with(dir) => {
                            read_from = real;
                        }
                        Ok(real) => {
                            found
                                .lock()
                                .unwrap()
                                .push(Err(CollectError::EscapingSymlink {
                                    path: path.to_path_buf(),
                                    target: real,
                                }));
                            return ignore::WalkState::Skip;
                        }
                        Err(_) => {
                            let target = std::fs::read_link(path).unwrap_or_default();
                            found.lock().unwrap().push(Err(CollectError::BrokenSymlink {
                                path: path.to_path_buf(),
                                target,
                            }));
                            return ignore::WalkState::Skip;
                        }
                    }
                }
                if entry.file_type().is_some_and(|t| t.is_file()) {
                    let rel = below(path, root);
                    let Some(rel_str) = rel.to_str() else {
                        found.lock().unwrap().push(Err(CollectError::NonUtf8 {
                            path: path.to_path_buf(),
                        }));
                        return ignore::WalkState::Continue;
                    };
                    // Stat (and ask the stat cache) here, in the walker's threads: one pass.
                    match dirs.stat(&read_from) {
                        Ok(meta) => {
                            use std::sync::atomic::Ordering::Relaxed;
                            let n = walked.fetch_add(1, Relaxed) + 1;
                            FILES_WALKED.fetch_add(1, Relaxed);
                            let bytes = walked_bytes.fetch_add(meta.0.size, Relaxed) + meta.0.size;
                            if n > max_files || limit.is_some_and(|l| bytes > l) {
                                stopped.store(true, Relaxed);
                                return ignore::WalkState::Quit;
                            }
                            let stamp = meta.0;
                            let cached = cache.and_then(|c| c.get(&read_from, &stamp));
                            batch.local.push(Ok((
                                rel_str.replace('\\', "/"),
                                path.to_path_buf(),
                                read_from,
                                meta,
                                cached,
                            )))
                        }
                        Err(source) => batch.local.push(Err(CollectError::Read {
                            path: path.to_path_buf(),
                            source,
                        })),
                    }
                }
                ignore::WalkState::Continue
            })
        });
        let mut paths = Vec::new();
        let mut errors = Vec::new();
        for r in found.into_inner().unwrap() {
            match r {
                Ok(p) => paths.push(p),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.to_string());
            return Err(errors.remove(0));
        }
        paths.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        paths.dedup_by(|a, b| a.0 == b.0);

        let total: u64 = paths.iter().map(|m| m.3.0.size).sum();
        let stopped = stopped.into_inner();
        let size = if stopped {
            walked_bytes.into_inner()
        } else {
            total
        };
        let largest = || largest_dirs(paths.iter().map(|m| (m.0.as_str(), m.3.0.size)));
        if let Some(limit) = self.max_total_size
            && size > limit
        {
            return Err(CollectError::TooLarge {
                dir: self.dir.clone(),
                size,
                limit,
                partial: stopped,
                largest: largest(),
            });
        }
        if stopped {
            return Err(CollectError::TooManyFiles {
                dir: self.dir.clone(),
                limit: self.max_files,
                largest: largest(),
            });
        }
        Ok(Listing {
            root: dir,
            found: paths,
        })
    }

    /// Whether every file of `listing` has its hashes in the stat cache (nothing to read).
    pub fn all_cached(&self, listing: &Listing) -> bool {
        listing.found.iter().all(|f| f.4.is_some())
    }

    /// Hashes the listed files in parallel (or takes their hashes from the stat cache). With a
    /// `sink`, every file is also copied into it, from the very bytes that were hashed: one read
    /// per file builds the package and its digest together.
    pub fn hash(
        &self,
        listing: Listing,
        sink: Option<&dyn CopySink>,
    ) -> Result<FileSet, CollectError> {
        let hashed = std::sync::atomic::AtomicUsize::new(0);
        let remember = |abs: &Path, stamp: Stamp, h: Hashes| {
            if let Some(c) = self.cache {
                c.put(abs, stamp, h.0, h.1);
            }
        };
        let entry = |rel, abs, size, executable, (sha256, crc32): Hashes| FileEntry {
            rel,
            abs,
            size,
            executable,
            sha256,
            crc32,
        };
        let files: Vec<FileEntry> = match sink {
            None => listing
                .found
                .into_par_iter()
                .map(|(rel, shown, abs, (stamp, executable), cached)| {
                    let h = match cached {
                        Some(h) => h,
                        None => {
                            hashed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let h = hash_and_crc(&abs).map_err(|source| CollectError::Read {
                                path: shown,
                                source,
                            })?;
                            remember(&abs, stamp, h);
                            h
                        }
                    };
                    Ok(entry(rel, abs, stamp.size, executable, h))
                })
                .collect::<Result<_, _>>()?,
            Some(sink) => {
                // Runs of neighbouring files go to one thread each, so the sink can write a
                // run's files in one go (small writes cost the kernel far more per byte) and
                // hash them side by side.
                let mut runs: Vec<Vec<(usize, Found)>> = Vec::new();
                let mut bytes = u64::MAX;
                for (i, f) in listing.found.into_iter().enumerate() {
                    if bytes >= RUN_BYTES || runs.last().is_some_and(|r| r.len() >= RUN_FILES) {
                        runs.push(Vec::new());
                        bytes = 0;
                    }
                    bytes += f.3.0.size;
                    runs.last_mut().expect("a run").push((i, f));
                }
                let done: Vec<Vec<FileEntry>> = runs
                    .into_par_iter()
                    .map(|run| {
                        let first = run.first().map_or(0, |r| r.0);
                        let mut w = sink.run();
                        let mut dirs = InDir::default();
                        let mut out = Vec::with_capacity(run.len());
                        let mut stamps = Vec::with_capacity(run.len());
                        for (i, (rel, shown, abs, (stamp, executable), cached)) in run {
                            dirs.open(&abs)
                                .and_then(|f| w.add(i, &f, stamp.size, cached.map(|h| h.1)))
                                .map_err(|source| CollectError::Read {
                                    path: shown,
                                    source,
                                })?;
                            // Files without cached hashes get theirs from `finish`.
                            let h = cached.unwrap_or(([0; 32], 0));
                            out.push(entry(rel, abs, stamp.size, executable, h));
                            stamps.push(stamp);
                        }
                        let fresh = w.finish().map_err(|source| CollectError::Read {
                            path: out.last().map(|f| f.abs.clone()).unwrap_or_default(),
                            source,
                        })?;
                        hashed.fetch_add(fresh.len(), std::sync::atomic::Ordering::Relaxed);
                        for (i, h) in fresh {
                            let e = &mut out[i - first];
                            (e.sha256, e.crc32) = h;
                            remember(&e.abs, stamps[i - first], h);
                        }
                        Ok::<_, CollectError>(out)
                    })
                    .collect::<Result<_, _>>()?;
                done.into_iter().flatten().collect()
            }
        };
        Ok(FileSet {
            root: listing.root,
            files,
            hashed: hashed.into_inner(),
        })
    }
}

/// A run handed to one [`CopySink::run`]: at most this many bytes of files (or one larger
/// file), and at most [`RUN_FILES`] files.
const RUN_BYTES: u64 = 4 << 20;
const RUN_FILES: usize = 1024;

/// `path` relative to `root` when it lies below it (else `path`): a byte comparison, since the
/// walker's paths are `root` joined with names and `Path::strip_prefix` showed in profiles.
fn below<'p>(path: &'p Path, root: &Path) -> &'p Path {
    use std::os::unix::ffi::OsStrExt;
    let (p, r) = (path.as_os_str().as_bytes(), root.as_os_str().as_bytes());
    let r = r.strip_suffix(b"/").unwrap_or(r);
    match p.strip_prefix(r) {
        Some([]) => Path::new(""),
        Some([b'/', rest @ ..]) => Path::new(std::ffi::OsStr::from_bytes(rest)),
        _ => path,
    }
}

fn is_loop(err: &ignore::Error) -> bool {
    match err {
        ignore::Error::Loop { .. } => true,
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => is_loop(err),
        _ => false,
    }
}

fn walk_error(err: &ignore::Error, root: &Path) -> (PathBuf, String) {
    match err {
        ignore::Error::WithPath { path, err } => (path.clone(), err.to_string()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            walk_error(err, root)
        }
        ignore::Error::Loop { ancestor, child } => (
            child.clone(),
            format!(
                "symlink loop: it leads back to {}; exclude the link or point it elsewhere",
                ancestor.display()
            ),
        ),
        ignore::Error::Io(e) => (root.to_path_buf(), e.to_string()),
        other => (root.to_path_buf(), other.to_string()),
    }
}

/// Opens and stats files relative to their directory, keeping the last directory open:
/// neighbours in a walk or listing share it, and the kernel then resolves one name instead of
/// the whole path (path lookups were ~5% of a cold `env`'s CPU in profiles). Whatever fails
/// this way is tried again by path, so errors read as they always did.
#[derive(Default)]
struct InDir {
    dir: PathBuf,
    fd: Option<std::os::fd::OwnedFd>,
}

impl InDir {
    /// The open directory of `path` and its file name.
    fn at(&mut self, path: &Path) -> Option<(std::os::fd::RawFd, std::ffi::CString)> {
        use std::os::fd::{AsRawFd, FromRawFd};
        use std::os::unix::ffi::OsStrExt;
        let (parent, name) = (path.parent()?, path.file_name()?);
        if self.fd.is_none() || self.dir.as_os_str().as_bytes() != parent.as_os_str().as_bytes() {
            self.fd = None;
            let c = std::ffi::CString::new(parent.as_os_str().as_bytes()).ok()?;
            // SAFETY: `c` is a valid C string; the result is checked before use.
            let fd = unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return None;
            }
            // SAFETY: `fd` was just opened and is owned by nothing else.
            self.fd = Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
            self.dir = parent.to_path_buf();
        }
        let name = std::ffi::CString::new(name.as_bytes()).ok()?;
        Some((self.fd.as_ref()?.as_raw_fd(), name))
    }

    fn open(&mut self, path: &Path) -> std::io::Result<std::fs::File> {
        use std::os::fd::FromRawFd;
        if let Some((dir, name)) = self.at(path) {
            // SAFETY: `dir` is open and `name` a valid C string; the result is checked.
            let fd = unsafe { libc::openat(dir, name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd >= 0 {
                // SAFETY: `fd` was just opened and is owned by nothing else.
                return Ok(unsafe { std::fs::File::from_raw_fd(fd) });
            }
        }
        std::fs::File::open(path)
    }

    /// Stamp and executable bit of `path` (following a symlink, like `fs::metadata`).
    fn stat(&mut self, path: &Path) -> std::io::Result<(Stamp, bool)> {
        if let Some((dir, name)) = self.at(path) {
            // SAFETY: a plain `stat` struct, filled in by the kernel on success.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: `dir` is open, `name` a valid C string and `st` writable.
            if unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, 0) } == 0 {
                let stamp = Stamp::new(
                    st.st_size as u64,
                    (st.st_mtime, st.st_mtime_nsec),
                    (st.st_ctime, st.st_ctime_nsec),
                    st.st_ino,
                );
                return Ok((stamp, st.st_mode & 0o111 != 0));
            }
        }
        let m = std::fs::metadata(path)?;
        Ok((Stamp::of(&m), m.permissions().mode() & 0o111 != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }

    fn rels(fs: &FileSet) -> Vec<&str> {
        fs.files.iter().map(|f| f.rel.as_str()).collect()
    }

    #[test]
    fn honours_ignore_files_and_defaults() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "main.py", "x");
        write(r, ".gitignore", "*.log\n");
        write(r, "sub/.rayignore", "secret.txt\n");
        write(r, "sub/secret.txt", "s");
        write(r, "sub/keep.txt", "k");
        write(r, "a.log", "l");
        write(r, ".git/config", "g");
        write(r, "venv/bin/python", "p");
        write(r, "pkg/__pycache__/m.pyc", "c");
        write(r, "data/big.bin", "b");
        write(r, "model.ckpt", "c");
        let set = Collector::new(r, PackageKind::WorkingDir)
            .excludes(&["data/".into(), "*.ckpt".into()])
            .collect()
            .unwrap();
        assert_eq!(
            rels(&set),
            vec![".gitignore", "main.py", "sub/.rayignore", "sub/keep.txt"]
        );
        // py_modules do not get Ray's default excludes
        let set = Collector::new(r, PackageKind::PyModule).collect().unwrap();
        assert!(rels(&set).contains(&".git/config"));
    }

    /// Issue 15 #6: a small tree of symlinks, each level linking twice to the next, has 2^depth
    /// paths; the walk stops at the file cap with an error naming the biggest directories.
    #[test]
    fn a_symlink_explosion_stops_at_the_file_cap() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let depth = 14;
        for i in 0..=depth {
            let l = r.join(format!("l{i}"));
            std::fs::create_dir_all(&l).unwrap();
            std::fs::write(l.join("f.txt"), "x").unwrap();
            if i < depth {
                for name in ["a", "b"] {
                    std::os::unix::fs::symlink(r.join(format!("l{}", i + 1)), l.join(name))
                        .unwrap();
                }
            }
        }
        let e = Collector::new(&r.join("l0"), PackageKind::PyModule)
            .project_root(r)
            .max_files(2000)
            .list()
            .unwrap_err()
            .to_string();
        // The walk is parallel: which of the two symmetric links fills more of the cap
        // varies from run to run, so the largest directory named is a/ or b/.
        assert!(
            e.contains("more than 2000 files")
                && (e.contains("Largest directories: a/") || e.contains("Largest directories: b/")),
            "{e}"
        );
    }

    #[test]
    fn the_size_limit_stops_the_walk_and_names_the_biggest_directories() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for (dir, n) in [("data", 40), ("src", 3)] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
            for i in 0..n {
                std::fs::write(r.join(format!("{dir}/{i}")), vec![0u8; 4096]).unwrap();
            }
        }
        let e = Collector::new(r, PackageKind::WorkingDir)
            .max_total_size(64 * 1024)
            .list()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(limit 64.0 KiB)") && e.contains("Largest directories: data/"),
            "{e}"
        );
    }

    #[test]
    fn a_symlink_loop_is_reported_as_a_loop_not_as_broken() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a")).unwrap();
        std::os::unix::fs::symlink(r.join("a"), r.join("a/back")).unwrap();
        let e = Collector::new(r, PackageKind::WorkingDir)
            .list()
            .unwrap_err()
            .to_string();
        assert!(e.contains("symlink loop") && !e.contains("broken"), "{e}");
    }

    #[test]
    fn symlinks_inside_are_followed_outside_rejected() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "real/a.py", "a");
        std::os::unix::fs::symlink(r.join("real/a.py"), r.join("link.py")).unwrap();
        let set = Collector::new(r, PackageKind::WorkingDir)
            .collect()
            .unwrap();
        assert_eq!(rels(&set), vec!["link.py", "real/a.py"]);
        assert_eq!(set.files[0].sha256, set.files[1].sha256);
        write(outside.path(), "s.txt", "secret");
        std::os::unix::fs::symlink(outside.path().join("s.txt"), r.join("esc.txt")).unwrap();
        let err = Collector::new(r, PackageKind::WorkingDir)
            .collect()
            .unwrap_err();
        assert!(matches!(err, CollectError::EscapingSymlink { .. }), "{err}");
        assert!(err.to_string().contains("esc.txt"));
    }

    #[test]
    fn stat_cache_file_is_sorted_and_reads_older_unsorted_files_but_not_torn_ones() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("stat.bin");
        let old = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128
            - 60_000_000_000;
        let stamp = |i: u64| Stamp {
            size: i,
            mtime_ns: old + i as i128,
            ctime_ns: old,
            ino: 1000 + i,
        };
        let name = |i: u64| PathBuf::from(format!("/p/{}/f{i:03}", i % 7));
        let c = StatCache::load(&file);
        for i in (0..300).rev() {
            c.put(&name(i), stamp(i), [i as u8; 32], i as u32);
        }
        c.save().unwrap();
        let bytes = fs::read(&file).unwrap();
        let check = |c: &StatCache| {
            for i in 0..300 {
                assert_eq!(c.get(&name(i), &stamp(i)), Some(([i as u8; 32], i as u32)));
                assert_eq!(
                    c.get(&name(i), &stamp(i + 1)),
                    None,
                    "a changed stamp misses"
                );
            }
            assert_eq!(c.get(Path::new("/p/0/nope"), &stamp(0)), None);
        };
        let c = StatCache::load(&file);
        let paths: Vec<&[u8]> = (0..c.index.len()).map(|i| c.path_at(i)).collect();
        assert!(
            paths.windows(2).all(|w| w[0] < w[1]),
            "saved sorted by path"
        );
        check(&c);
        // A file from before records were sorted: the same records, in another order.
        let mut recs: Vec<&[u8]> = Vec::new();
        let mut at = STAT_CACHE_MAGIC.len();
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            recs.push(&bytes[at..at + 4 + len + RECORD_LEN]);
            at += 4 + len + RECORD_LEN;
        }
        recs.reverse();
        let unsorted = [STAT_CACHE_MAGIC, &recs.concat()].concat();
        fs::write(&file, unsorted).unwrap();
        check(&StatCache::load(&file));
        // Cut short (a torn write from some other tool): an empty cache, not garbage.
        fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
        let torn = StatCache::load(&file);
        assert_eq!(torn.get(&name(0), &stamp(0)), None);
        assert!(torn.index.is_empty());
    }

    #[test]
    fn stat_cache_serves_unchanged_files() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("p");
        write(&r, "a.py", "a");
        // Make the file old enough to be cached.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(r.join("a.py"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let cpath = d.path().join("cache.json");
        let c = StatCache::load(&cpath);
        let s1 = Collector::new(&r, PackageKind::WorkingDir)
            .stat_cache(&c)
            .collect()
            .unwrap();
        assert_eq!(s1.hashed, 1);
        c.save().unwrap();
        let c = StatCache::load(&cpath);
        let s2 = Collector::new(&r, PackageKind::WorkingDir)
            .stat_cache(&c)
            .collect()
            .unwrap();
        assert_eq!(s2.hashed, 0);
        assert_eq!(s1.files, s2.files);
    }
}
