//! Deterministic tar layers from file entries.
//!
//! A layer is a list of [`LayerEntry`] (paths inside the image, no leading '/'): written sorted
//! by path, each path once, numeric owner with empty user/group names, one fixed mtime, no
//! atime/ctime, PAX `path` records for names that do not fit a ustar header. Directory entries
//! are written only for the directories the caller lists (never for directories the base
//! already has: an entry would replace their owner and mode).

use std::io::{self, Write};
use std::path::PathBuf;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose bytes come from `source`.
    File {
        /// The file on disk.
        source: PathBuf,
    },
    /// A regular file with the given bytes (generated files: launchers, RECORD, .pth).
    Bytes(Vec<u8>),
    /// A regular file read straight from member `index` (of `size` bytes, uncompressed) of
    /// the zip archive `archive` — wheel contents go into a layer without being unpacked.
    ZipMember {
        /// The wheel (or other zip) the member is in.
        archive: std::sync::Arc<PathBuf>,
        /// The member's index in the archive's central directory.
        index: usize,
        /// Its uncompressed size.
        size: u64,
    },
    /// A directory.
    Dir,
    /// An OCI whiteout for `path` (written as `.wh.<name>` in the same directory).
    Whiteout,
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Path inside the image, '/'-separated, without a leading '/'.
    pub path: String,
    /// What the entry is.
    pub kind: EntryKind,
    /// Unix permission bits (e.g. `0o644`).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
}

fn tar_name(e: &LayerEntry) -> String {
    match e.kind {
        EntryKind::Whiteout => match e.path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{}", e.path),
        },
        EntryKind::Dir => format!("{}/", e.path.trim_end_matches('/')),
        _ => e.path.clone(),
    }
}

/// Writes the entries as an uncompressed tar. Entries are sorted by path here; a path given
/// twice is an error.
pub fn write_layer<W: Write>(out: W, entries: &mut [LayerEntry], mtime: u64) -> io::Result<W> {
    let mut zips = ZipReaders::default();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    for w in entries.windows(2) {
        if w[0].path == w[1].path {
            return Err(io::Error::other(format!(
                "layer entry /{} appears twice",
                w[0].path
            )));
        }
    }
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    for e in entries.iter() {
        let name = tar_name(e);
        let mut h = tar::Header::new_ustar();
        h.set_mtime(mtime);
        h.set_uid(e.uid as u64);
        h.set_gid(e.gid as u64);
        h.set_mode(e.mode);
        h.set_username("").ok();
        h.set_groupname("").ok();
        let (size, kind) = match &e.kind {
            EntryKind::File { source } => {
                (std::fs::metadata(source)?.len(), tar::EntryType::Regular)
            }
            EntryKind::Bytes(b) => (b.len() as u64, tar::EntryType::Regular),
            EntryKind::ZipMember { size, .. } => (*size, tar::EntryType::Regular),
            EntryKind::Dir | EntryKind::Whiteout => (
                0,
                if matches!(e.kind, EntryKind::Dir) {
                    tar::EntryType::Directory
                } else {
                    tar::EntryType::Regular
                },
            ),
        };
        h.set_size(size);
        h.set_entry_type(kind);
        if h.set_path(&name).is_err() || name.len() > 100 {
            // PAX extended header carries the full name; the ustar field gets a stand-in.
            b.append_pax_extensions([("path", name.as_bytes())])?;
            let short: String = name
                .chars()
                .rev()
                .take(90)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            h.set_path(short.trim_start_matches('/'))
                .map_err(io::Error::other)?;
        }
        h.set_cksum();
        match &e.kind {
            EntryKind::File { source } => {
                let f = std::fs::File::open(source).map_err(|err| {
                    io::Error::new(err.kind(), format!("{}: {err}", source.display()))
                })?;
                b.append(&h, f)?;
            }
            EntryKind::Bytes(bytes) => b.append(&h, bytes.as_slice())?,
            EntryKind::ZipMember {
                archive,
                index,
                size,
            } => {
                let z = zips.get(archive)?;
                let member = z
                    .by_index(*index)
                    .map_err(|err| io::Error::other(format!("{}: {err}", archive.display())))?;
                let name = member.name().map(|n| n.to_string()).unwrap_or_default();
                // Exactly `size` bytes, or the header written above would lie.
                let mut counted = CountingReader {
                    inner: member,
                    n: 0,
                };
                b.append(&h, &mut counted)?;
                if counted.n != *size {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: member {name} declares {size} bytes but holds {}; refusing a malformed wheel",
                            archive.display(),
                            counted.n
                        ),
                    ));
                }
            }
            EntryKind::Dir | EntryKind::Whiteout => b.append(&h, io::empty())?,
        }
    }
    b.into_inner()
}

/// Open zip archives, by path (entries of several wheels interleave once sorted).
#[derive(Default)]
pub struct ZipReaders {
    open: std::collections::HashMap<PathBuf, zip::ZipArchive<io::BufReader<std::fs::File>>>,
}

impl std::fmt::Debug for ZipReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipReaders")
            .field("open", &self.open.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ZipReaders {
    /// Opens `path` as a zip archive once and keeps it open for later members.
    pub fn get(
        &mut self,
        path: &std::path::Path,
    ) -> io::Result<&mut zip::ZipArchive<io::BufReader<std::fs::File>>> {
        if !self.open.contains_key(path) {
            let f = std::fs::File::open(path)
                .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
            let z = zip::ZipArchive::new(io::BufReader::new(f))
                .map_err(|err| io::Error::other(format!("{}: {err}", path.display())))?;
            self.open.insert(path.to_path_buf(), z);
        }
        Ok(self.open.get_mut(path).expect("inserted"))
    }
}

impl ZipReaders {
    /// Writes member `index` of `archive` to the new file `out`.
    pub fn extract(
        &mut self,
        archive: &std::path::Path,
        index: usize,
        out: &std::path::Path,
    ) -> io::Result<u64> {
        let z = self.get(archive)?;
        let mut member = z
            .by_index(index)
            .map_err(|err| io::Error::other(format!("{}: {err}", archive.display())))?;
        let declared = member.size();
        let name = member.name().map(|n| n.to_string()).unwrap_or_default();
        let mut f = std::fs::File::create(out)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", out.display())))?;
        let n = io::copy(&mut member, &mut f).map_err(|err| {
            io::Error::new(err.kind(), format!("{}: {name}: {err}", archive.display()))
        })?;
        // RECORD and every size raypack writes come from the declared size: a member that
        // holds other than it declares is a malformed (or hostile) wheel.
        if n != declared {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: member {name} declares {declared} bytes but holds {n}; refusing a malformed wheel",
                    archive.display()
                ),
            ));
        }
        Ok(n)
    }
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: io::Read> io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sorted_owned_fixed_mtime_and_long_names() {
        let long = format!("home/ray/app/{}/x.py", "d".repeat(150));
        let mut es = vec![
            LayerEntry {
                path: "home/ray/app/b.py".into(),
                kind: EntryKind::Bytes(b"b".to_vec()),
                mode: 0o644,
                uid: 1000,
                gid: 100,
            },
            LayerEntry {
                path: "home/ray/app".into(),
                kind: EntryKind::Dir,
                mode: 0o755,
                uid: 1000,
                gid: 100,
            },
            LayerEntry {
                path: long.clone(),
                kind: EntryKind::Bytes(b"x".to_vec()),
                mode: 0o755,
                uid: 1000,
                gid: 100,
            },
            LayerEntry {
                path: "usr/lib/old".into(),
                kind: EntryKind::Whiteout,
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        ];
        let buf = write_layer(Vec::new(), &mut es, 1).unwrap();
        let again = write_layer(Vec::new(), &mut es.clone(), 1).unwrap();
        assert_eq!(buf, again);
        let mut a = tar::Archive::new(buf.as_slice());
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().to_string();
            assert_eq!(e.header().mtime().unwrap(), 1);
            if p.ends_with("x.py") {
                assert_eq!(e.header().uid().unwrap(), 1000);
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                assert_eq!(s, "x");
            }
            seen.push(p);
        }
        assert_eq!(
            seen,
            vec![
                "home/ray/app/".to_string(),
                "home/ray/app/b.py".into(),
                long,
                "usr/lib/.wh.old".into()
            ]
        );
    }

    #[test]
    fn duplicate_paths_are_refused() {
        let e = LayerEntry {
            path: "a".into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
        };
        assert!(write_layer(Vec::new(), &mut [e.clone(), e], 0).is_err());
    }
}
