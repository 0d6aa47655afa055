//! The stat cache: what identifies an unchanged file ([`Stamp`]: size, mtime, ctime, inode)
//! and its hashes from an earlier run, in one compact binary file (`stat.bin`) read once and
//! written whole.

use super::*;

/// What identifies an unchanged file: size, mtime, ctime (changes on chmod) and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status-change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// Inode number.
    pub ino: u64,
}

impl Stamp {
    /// The stamp of a file's metadata.
    pub fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp::new(
            m.len(),
            (m.mtime(), m.mtime_nsec()),
            (m.ctime(), m.ctime_nsec()),
            m.ino(),
        )
    }

    /// From the raw `stat` fields: size, mtime and ctime as (seconds, nanoseconds), inode.
    pub(super) fn new(size: u64, mtime: (i64, i64), ctime: (i64, i64), ino: u64) -> Stamp {
        let ns = |(s, n): (i64, i64)| s as i128 * 1_000_000_000 + n as i128;
        Stamp {
            size,
            mtime_ns: ns(mtime),
            ctime_ns: ns(ctime),
            ino,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct CacheRecord {
    pub(super) stamp: Stamp,
    sha256: [u8; 32],
    crc32: u32,
}

/// A persistent (path, stamp) → SHA-256 cache that makes unchanged re-runs cheap.
///
/// Entries whose mtime is within two seconds of the time they were hashed are not stored
/// ("racy" files, as git calls them): a write in the same timestamp tick could go unseen.
#[derive(Debug, Default)]
pub struct StatCache {
    pub(super) path: Option<PathBuf>,
    /// What the file held, as it was read: looked up through `index` without locking by every
    /// walker thread.
    pub(super) data: Vec<u8>,
    /// Where each record's path starts in `data`, and its length, sorted by path: a lookup is a
    /// binary search over one contiguous buffer. (A hash map of 10,000 boxed paths took a warm
    /// re-run ~4 ms to build and missed the cache on every lookup.)
    pub(super) index: Vec<(u32, u32)>,
    /// Entries hashed in this run.
    pub(super) fresh: Mutex<HashMap<Box<[u8]>, CacheRecord>>,
}

pub(super) fn key(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

/// A compact binary file: this magic, then per entry, sorted by path: path length (u32 LE),
/// path bytes, size (u64), mtime_ns (i128), ctime_ns (i128), inode (u64), SHA-256 (32 bytes),
/// CRC-32 (u32). (JSON took most of a warm re-run's time on 10,000 files.) Files written
/// before records were sorted read the same, sorted on load.
pub(super) const STAT_CACHE_MAGIC: &[u8] = b"raypack-statcache-v3\n";

/// Bytes of a record after its path.
pub(super) const RECORD_LEN: usize = 8 + 16 + 16 + 8 + 32 + 4;

pub(super) fn encode<'a>(e: impl Iterator<Item = (&'a [u8], CacheRecord)>) -> Vec<u8> {
    let mut records: Vec<_> = e.collect();
    records.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(
        STAT_CACHE_MAGIC.len()
            + records
                .iter()
                .map(|r| 4 + r.0.len() + RECORD_LEN)
                .sum::<usize>(),
    );
    out.extend_from_slice(STAT_CACHE_MAGIC);
    for (b, r) in records {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
        out.extend_from_slice(&r.stamp.size.to_le_bytes());
        out.extend_from_slice(&r.stamp.mtime_ns.to_le_bytes());
        out.extend_from_slice(&r.stamp.ctime_ns.to_le_bytes());
        out.extend_from_slice(&r.stamp.ino.to_le_bytes());
        out.extend_from_slice(&r.sha256);
        out.extend_from_slice(&r.crc32.to_le_bytes());
    }
    out
}

/// The record whose fixed part starts at `b[0]` (the caller checked its length).
pub(super) fn record(b: &[u8]) -> CacheRecord {
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let i128_at = |i: usize| i128::from_le_bytes(b[i..i + 16].try_into().expect("16 bytes"));
    CacheRecord {
        stamp: Stamp {
            size: u64_at(0),
            mtime_ns: i128_at(8),
            ctime_ns: i128_at(24),
            ino: u64_at(40),
        },
        sha256: b[48..80].try_into().expect("32 bytes"),
        crc32: u32::from_le_bytes(b[80..84].try_into().expect("4 bytes")),
    }
}

/// The path bytes an index entry `(start, len)` names in `b`.
pub(super) fn span(b: &[u8], (s, l): (u32, u32)) -> &[u8] {
    &b[s as usize..(s + l) as usize]
}

/// Indexes the records of a cache file (`None`: not one, or cut short), sorted by path.
pub(super) fn index(b: &[u8]) -> Option<Vec<(u32, u32)>> {
    if b.len() > u32::MAX as usize {
        return None;
    }
    let mut at = STAT_CACHE_MAGIC.len();
    if !b.starts_with(STAT_CACHE_MAGIC) {
        return None;
    }
    // Records are ~90 bytes plus the path.
    let mut out = Vec::with_capacity(b.len() / 150);
    let mut sorted = true;
    while at < b.len() {
        let len = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
        let start = at + 4;
        if b.len() < start + len + RECORD_LEN {
            return None;
        }
        if let Some(&prev) = out.last() {
            sorted &= span(b, prev) < &b[start..start + len];
        }
        out.push((start as u32, len as u32));
        at = start + len + RECORD_LEN;
    }
    if !sorted {
        out.sort_by(|&x, &y| span(b, x).cmp(span(b, y)));
        out.dedup_by(|x, y| span(b, *x) == span(b, *y));
    }
    Some(out)
}

impl StatCache {
    /// Loads the cache file (a missing, unreadable or foreign file is an empty cache).
    pub fn load(path: &Path) -> StatCache {
        let data = std::fs::read(path).unwrap_or_default();
        let (data, index) = match index(&data) {
            Some(i) => (data, i),
            None => (Vec::new(), Vec::new()),
        };
        StatCache {
            path: Some(path.to_path_buf()),
            data,
            index,
            fresh: Mutex::default(),
        }
    }

    /// The path of the `i`th indexed record.
    pub(super) fn path_at(&self, i: usize) -> &[u8] {
        span(&self.data, self.index[i])
    }

    pub(super) fn record_at(&self, i: usize) -> CacheRecord {
        let (s, l) = self.index[i];
        record(&self.data[(s + l) as usize..])
    }

    /// The SHA-256 and CRC-32 recorded for `path` if its stamp is unchanged.
    pub fn get(&self, path: &Path, stamp: &Stamp) -> Option<([u8; 32], u32)> {
        let k = key(path);
        let i = (self.index)
            .binary_search_by(|&e| span(&self.data, e).cmp(k))
            .ok()?;
        let r = self.record_at(i);
        (r.stamp == *stamp).then_some((r.sha256, r.crc32))
    }

    /// Records the hash and CRC-32 of `path` at `stamp`.
    pub fn put(&self, path: &Path, stamp: Stamp, sha256: [u8; 32], crc32: u32) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        if now - stamp.mtime_ns < 2_000_000_000 {
            return;
        }
        self.fresh.lock().unwrap().insert(
            key(path).into(),
            CacheRecord {
                stamp,
                sha256,
                crc32,
            },
        );
    }

    /// Writes the cache back if anything changed (atomically: temp file + rename).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let fresh = self.fresh.lock().unwrap();
        if fresh.is_empty() {
            return Ok(());
        }
        let kept = (0..self.index.len())
            .map(|i| (self.path_at(i), self.record_at(i)))
            .filter(|(k, _)| !fresh.contains_key(*k));
        let data = encode(kept.chain(fresh.iter().map(|(k, r)| (&**k, r.clone()))));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(Path::new(".")))?;
        std::fs::write(tmp.path(), data)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}
