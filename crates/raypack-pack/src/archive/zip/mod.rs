//! A deterministic zip writer with parallel per-entry DEFLATE.
//!
//! Written by hand because the `zip` crate compresses inside its writer, one entry at a time;
//! it cannot take entries compressed elsewhere, so it cannot compress in parallel. The format
//! needed here is small: local headers, data, central directory, end record (+ zip64 end
//! records when there are more than 65,535 entries).
//!
//! Determinism: entries are written in the order given (callers sort them), every timestamp is
//! 1980-01-01 00:00, the Unix mode is stored in the external attributes (0644/0755), names are
//! flagged UTF-8, and no extra fields are written. The same entries and compression level
//! give the same bytes.
//!
//! Level 0 (STORED, what Ray itself writes) has a faster path, [`StoredZip`]: with the sizes
//! known from the walk, every entry's offset is known up front, so entries are written in
//! large aligned pieces from several threads (directly to the disk where the filesystem does
//! that well), hashed as they are copied or with CRCs known from the hashing pass
//! ([`write_stored_file`]). Both paths give the same bytes for the same entries.

use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::collect::{CopyRun, CopySink, Hashes};
use crate::sha256_lanes;

mod stored;
use stored::*;
pub use stored::{StoredZip, write_stored_file};

/// One file to put in the archive.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// Name inside the archive ('/'-separated, no leading '/').
    pub name: String,
    /// Where the bytes come from.
    pub source: PathBuf,
    /// Unix permission bits (e.g. 0o644).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 of the bytes when already known (required by [`write_stored_file`]).
    pub crc32: Option<u32>,
    /// SHA-256 of the bytes when the package's name was derived from it: [`write_zip`] checks
    /// that what it read and compressed is exactly those bytes (else "changed while being
    /// packed"), so a content-addressed name never holds other content.
    pub sha256: Option<[u8; 32]>,
}

/// Writes entries to `out`, compressing batches of them in parallel. Returns the bytes written.
///
/// Entries are read, compressed and written in batches of at most `BATCH_BYTES` of input, so
/// memory stays bounded for large packages.
pub fn write_zip<W: Write>(out: W, entries: &[ZipEntry], level: u32) -> io::Result<u64> {
    const BATCH_BYTES: u64 = 64 * 1024 * 1024;
    let mut w = CountingWriter {
        inner: out,
        count: 0,
    };
    let mut central = Vec::with_capacity(entries.len());
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < entries.len() && (end == start || bytes + entries[end].size <= BATCH_BYTES) {
            bytes += entries[end].size;
            end += 1;
        }
        let compressed: Vec<io::Result<Compressed>> = entries[start..end]
            .par_iter()
            .map(|e| compress_entry(e, level))
            .collect();
        for (e, c) in entries[start..end].iter().zip(compressed) {
            let c = c?;
            let offset = w.count;
            write_local_header(&mut w, e, &c)?;
            w.write_all(&c.data)?;
            central.push(Central {
                name: e.name.clone(),
                mode: e.mode,
                crc: c.crc,
                method: c.method,
                compressed: c.data.len() as u64,
                uncompressed: c.uncompressed,
                offset,
            });
        }
        start = end;
    }
    let cd_start = w.count;
    for c in &central {
        write_central_header(&mut w, c)?;
    }
    let cd_size = w.count - cd_start;
    write_end(&mut w, central.len() as u64, cd_size, cd_start)?;
    w.flush()?;
    Ok(w.count)
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Compressed {
    data: Vec<u8>,
    crc: u32,
    method: u16,
    uncompressed: u64,
}

struct Central {
    name: String,
    mode: u32,
    crc: u32,
    method: u16,
    compressed: u64,
    uncompressed: u64,
    offset: u64,
}

const STORED: u16 = 0;
const DEFLATED: u16 = 8;
/// DOS date for 1980-01-01, time 00:00:00.
const DOS_DATE: u16 = (1 << 5) | 1;
const DOS_TIME: u16 = 0;
const FLAG_UTF8: u16 = 1 << 11;
const MAX32: u64 = 0xFFFF_FFFF;

fn compress_entry(e: &ZipEntry, level: u32) -> io::Result<Compressed> {
    let raw = std::fs::read(&e.source)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", e.source.display())))?;
    too_large(raw.len() as u64, &e.source)?;
    let crc = crc32fast::hash(&raw);
    let uncompressed = raw.len() as u64;
    // Exactly the bytes that were hashed, or nothing: the archive's name is their digest.
    if uncompressed != e.size
        || e.crc32.is_some_and(|c| c != crc)
        || e.sha256
            .is_some_and(|h| h != <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&raw)))
    {
        return Err(io::Error::other(format!(
            "{}: changed while being packed ({uncompressed} bytes, {} expected, content differs from what was hashed); run again",
            e.source.display(),
            e.size
        )));
    }
    if level > 0 && raw.len() > 64 && !looks_incompressible(&raw) {
        let mut enc = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(raw.len() / 2),
            flate2::Compression::new(level),
        );
        enc.write_all(&raw)?;
        let data = enc.finish()?;
        // Incompressible data (already-compressed files, random bytes) is stored as-is.
        if data.len() < raw.len() {
            return Ok(Compressed {
                data,
                crc,
                method: DEFLATED,
                uncompressed,
            });
        }
    }
    Ok(Compressed {
        data: raw,
        crc,
        method: STORED,
        uncompressed,
    })
}

/// Already-compressed or random data: a 64 KiB sample from the middle of a large file that
/// DEFLATE (fastest level) cannot shrink by 10 %. Such entries are stored, saving the time of
/// compressing them for nothing.
fn looks_incompressible(raw: &[u8]) -> bool {
    const SAMPLE: usize = 64 * 1024;
    if raw.len() < 4 * SAMPLE {
        return false;
    }
    let mid = raw.len() / 2;
    let sample = &raw[mid - SAMPLE / 2..mid + SAMPLE / 2];
    let mut enc =
        flate2::write::DeflateEncoder::new(Vec::with_capacity(SAMPLE), flate2::Compression::fast());
    if enc.write_all(sample).is_err() {
        return false;
    }
    enc.finish()
        .map(|c| c.len() * 10 > SAMPLE * 9)
        .unwrap_or(false)
}

fn write_local_header<W: Write>(w: &mut W, e: &ZipEntry, c: &Compressed) -> io::Result<()> {
    w.write_all(&local_header(
        &e.name,
        c.method,
        c.crc,
        c.data.len() as u64,
        c.uncompressed,
    ))
}

/// Bytes of a local header for `name` (no extra fields are ever written).
fn local_header_len(name: &str) -> usize {
    30 + name.len()
}

fn local_header(name: &str, method: u16, crc: u32, compressed: u64, uncompressed: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(local_header_len(name));
    h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    h.extend_from_slice(&20u16.to_le_bytes()); // version needed
    h.extend_from_slice(&FLAG_UTF8.to_le_bytes());
    h.extend_from_slice(&method.to_le_bytes());
    h.extend_from_slice(&DOS_TIME.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&(compressed as u32).to_le_bytes());
    h.extend_from_slice(&(uncompressed as u32).to_le_bytes());
    h.extend_from_slice(&(name.len() as u16).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // extra length
    h.extend_from_slice(name.as_bytes());
    h
}

fn write_central_header<W: Write>(w: &mut W, c: &Central) -> io::Result<()> {
    let zip64_offset = c.offset >= MAX32;
    let mut extra = Vec::new();
    if zip64_offset {
        extra.extend_from_slice(&1u16.to_le_bytes());
        extra.extend_from_slice(&8u16.to_le_bytes());
        extra.extend_from_slice(&c.offset.to_le_bytes());
    }
    let mut h = Vec::with_capacity(46 + c.name.len() + extra.len());
    h.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    h.extend_from_slice(&((3u16 << 8) | if zip64_offset { 45 } else { 20 }).to_le_bytes()); // made by: Unix
    h.extend_from_slice(&(if zip64_offset { 45u16 } else { 20 }).to_le_bytes());
    h.extend_from_slice(&FLAG_UTF8.to_le_bytes());
    h.extend_from_slice(&c.method.to_le_bytes());
    h.extend_from_slice(&DOS_TIME.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&c.crc.to_le_bytes());
    h.extend_from_slice(&(c.compressed as u32).to_le_bytes());
    h.extend_from_slice(&(c.uncompressed as u32).to_le_bytes());
    h.extend_from_slice(&(c.name.len() as u16).to_le_bytes());
    h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // comment
    h.extend_from_slice(&0u16.to_le_bytes()); // disk
    h.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
    let external = (0o100000 | (c.mode & 0o7777)) << 16;
    h.extend_from_slice(&external.to_le_bytes());
    h.extend_from_slice(
        &(if zip64_offset {
            MAX32 as u32
        } else {
            c.offset as u32
        })
        .to_le_bytes(),
    );
    h.extend_from_slice(c.name.as_bytes());
    h.extend_from_slice(&extra);
    w.write_all(&h)
}

fn write_end<W: Write>(
    w: &mut CountingWriter<W>,
    count: u64,
    cd_size: u64,
    cd_start: u64,
) -> io::Result<()> {
    let needs64 = count >= 0xFFFF || cd_size >= MAX32 || cd_start >= MAX32;
    if needs64 {
        let eocd64_at = w.count;
        let mut r = Vec::with_capacity(56 + 20);
        r.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
        r.extend_from_slice(&44u64.to_le_bytes());
        r.extend_from_slice(&((3u16 << 8) | 45).to_le_bytes());
        r.extend_from_slice(&45u16.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&count.to_le_bytes());
        r.extend_from_slice(&count.to_le_bytes());
        r.extend_from_slice(&cd_size.to_le_bytes());
        r.extend_from_slice(&cd_start.to_le_bytes());
        // locator
        r.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&eocd64_at.to_le_bytes());
        r.extend_from_slice(&1u32.to_le_bytes());
        w.write_all(&r)?;
    }
    let mut r = Vec::with_capacity(22);
    r.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes());
    let n16 = count.min(0xFFFF) as u16;
    r.extend_from_slice(&n16.to_le_bytes());
    r.extend_from_slice(&n16.to_le_bytes());
    r.extend_from_slice(&(cd_size.min(MAX32) as u32).to_le_bytes());
    r.extend_from_slice(&(cd_start.min(MAX32) as u32).to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes());
    w.write_all(&r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(dir: &std::path::Path, n: usize) -> Vec<ZipEntry> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("f{i}"));
                let body = format!("file {i} ").repeat(i * 10 + 1);
                std::fs::write(&p, &body).unwrap();
                ZipEntry {
                    name: format!("pkg/dir/f{i}.txt"),
                    source: p,
                    mode: if i % 2 == 0 { 0o644 } else { 0o755 },
                    size: body.len() as u64,
                    crc32: Some({
                        let mut c = flate2::Crc::new();
                        c.update(body.as_bytes());
                        c.sum()
                    }),
                    sha256: Some(<sha2::Sha256 as sha2::Digest>::digest(&body).into()),
                }
            })
            .collect()
    }

    #[test]
    fn readable_by_zip_crate_with_modes_and_content() {
        let d = tempfile::tempdir().unwrap();
        let es = entries(d.path(), 5);
        let mut buf = Vec::new();
        write_zip(&mut buf, &es, 6).unwrap();
        let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(buf)).unwrap();
        assert_eq!(z.len(), 5);
        for (i, e) in es.iter().enumerate() {
            let mut f = z.by_index(i).unwrap();
            assert_eq!(f.name().unwrap(), e.name);
            assert_eq!(f.unix_mode().unwrap() & 0o777, e.mode);
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            assert_eq!(s, std::fs::read_to_string(&e.source).unwrap());
        }
    }

    #[test]
    fn write_zip_refuses_bytes_other_than_those_hashed() {
        use sha2::Digest;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(
            &p,
            "hashed content, long enough to be compressed: ".repeat(4),
        )
        .unwrap();
        let hashed = std::fs::read(&p).unwrap();
        let entry = ZipEntry {
            name: "pkg/f".into(),
            source: p.clone(),
            mode: 0o644,
            size: hashed.len() as u64,
            crc32: None,
            sha256: Some(sha2::Sha256::digest(&hashed).into()),
        };
        for level in [0, 1, 6] {
            assert!(write_zip(Vec::new(), std::slice::from_ref(&entry), level).is_ok());
        }
        // Changed after hashing, same size: its bytes must not go out under the old hash.
        let mut other = hashed.clone();
        other[0] ^= 1;
        std::fs::write(&p, &other).unwrap();
        for level in [0, 1, 6] {
            let e = write_zip(Vec::new(), std::slice::from_ref(&entry), level)
                .unwrap_err()
                .to_string();
            assert!(e.contains("changed while being packed"), "{level}: {e}");
        }
    }

    #[test]
    fn same_entries_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        let es = entries(d.path(), 20);
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_zip(&mut a, &es, 6).unwrap();
        write_zip(&mut b, &es, 6).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn stored_fast_path_gives_the_same_bytes_as_the_streaming_writer() {
        let d = tempfile::tempdir().unwrap();
        let es = entries(d.path(), 40);
        let mut a = Vec::new();
        write_zip(&mut a, &es, 0).unwrap();
        let out = d.path().join("out.zip");
        std::fs::File::create(&out).unwrap();
        let n = write_stored_file(&out, &es).unwrap();
        let b = std::fs::read(&out).unwrap();
        assert_eq!(n, b.len() as u64);
        assert!(a == b, "stored fast path differs from write_zip(level 0)");
        let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(b)).unwrap();
        let mut s = String::new();
        z.by_index(7).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, std::fs::read_to_string(&es[7].source).unwrap());
    }

    /// Entries whose offsets fall everywhere relative to 4 KiB blocks: empty, tiny, one byte
    /// either side of a block, mid-sized, and larger than a run buffer.
    fn awkward_entries(dir: &std::path::Path) -> Vec<ZipEntry> {
        let sizes = [
            0usize,
            1,
            4095,
            4096,
            4097,
            10_000,
            (100 << 10) + 3,
            RUN_BUFFER - 7,
            RUN_BUFFER + BLOCK + 5,
            3,
            (9 << 20) + 1,
            777,
        ];
        let mut es = Vec::new();
        for (i, size) in sizes.iter().chain(&[1500; 40]).enumerate() {
            let body: Vec<u8> = (0..*size).map(|j| (j * 7 + i) as u8).collect();
            let p = dir.join(format!("a{i}"));
            std::fs::write(&p, &body).unwrap();
            es.push(ZipEntry {
                name: format!("pkg/{}/a{i}", "d".repeat(i % 13)),
                source: p,
                mode: 0o644,
                size: *size as u64,
                crc32: Some(crc32fast::hash(&body)),
                sha256: None,
            });
        }
        es
    }

    /// Builds a STORED zip of `es` through [`StoredZip`] the way the hashing pass does: runs
    /// of neighbours on several threads, out of order, half of them without a known CRC.
    fn build_stored(out: &std::path::Path, es: &[ZipEntry], try_direct: bool) -> (u64, bool) {
        let f = std::fs::File::create(out).unwrap();
        let zip = StoredZip::with(f, es.iter().map(|e| (e.name.clone(), e.size)), try_direct);
        let direct = zip.direct.is_some();
        let runs: Vec<Vec<usize>> = (0..es.len())
            .collect::<Vec<_>>()
            .chunks(5)
            .map(<[usize]>::to_vec)
            .collect();
        let crcs: Vec<u32> = es.iter().map(|e| e.crc32.unwrap()).collect();
        std::thread::scope(|s| {
            for run in runs.iter().rev() {
                let (zip, crcs) = (&zip, &crcs);
                s.spawn(move || {
                    let mut r = zip.run();
                    for &i in run {
                        let src = std::fs::File::open(&es[i].source).unwrap();
                        let known = (i % 2 == 0).then_some(crcs[i]);
                        r.add(i, &src, es[i].size, known).unwrap();
                    }
                    for (i, (_, crc)) in r.finish().unwrap() {
                        assert_eq!(crc, crcs[i], "CRC of entry {i}");
                    }
                });
            }
        });
        let n = zip
            .finish(es.iter().map(|e| e.mode).zip(crcs.iter().copied()))
            .unwrap();
        (n, direct)
    }

    #[test]
    fn stored_zip_gives_the_streaming_writers_bytes_written_directly_or_buffered() {
        let d = tempfile::tempdir().unwrap();
        let es = awkward_entries(d.path());
        let mut expected = Vec::new();
        write_zip(&mut expected, &es, 0).unwrap();
        for try_direct in [true, false] {
            let out = d.path().join(format!("out-{try_direct}.zip"));
            let (n, direct) = build_stored(&out, &es, try_direct);
            let got = std::fs::read(&out).unwrap();
            assert_eq!(n, got.len() as u64);
            assert!(
                got == expected,
                "direct={direct}: bytes differ from write_zip(level 0)"
            );
            // Written directly exactly where the filesystem is one that does that well.
            let f = std::fs::File::open(&out).unwrap();
            use std::os::fd::AsRawFd;
            let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::fstatfs(f.as_raw_fd(), &mut fs) }, 0);
            let capable = matches!(fs.f_type as i64, 0xEF53 | 0x5846_5342);
            assert_eq!(direct, try_direct && capable, "f_type {:#x}", fs.f_type);
            // Readable afterwards with plain (unaligned) I/O: O_DIRECT is off again.
            let mut z = ::zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
            let mut b = Vec::new();
            z.by_index(10).unwrap().read_to_end(&mut b).unwrap();
            assert!(b == std::fs::read(&es[10].source).unwrap());
        }
    }

    #[test]
    fn stored_fast_path_notices_a_file_that_shrank() {
        let d = tempfile::tempdir().unwrap();
        let es = entries(d.path(), 3);
        std::fs::write(&es[1].source, "").unwrap();
        let out = d.path().join("out.zip");
        std::fs::File::create(&out).unwrap();
        let e = write_stored_file(&out, &es).unwrap_err();
        assert!(e.to_string().contains("changed while being packed"), "{e}");
    }

    #[test]
    fn many_entries_use_zip64_end_records() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        std::fs::write(&p, "x").unwrap();
        let es: Vec<ZipEntry> = (0..70_000)
            .map(|i| ZipEntry {
                name: format!("w/{i:06}"),
                source: p.clone(),
                mode: 0o644,
                size: 1,
                crc32: None,
                sha256: None,
            })
            .collect();
        let mut buf = Vec::new();
        write_zip(&mut buf, &es, 1).unwrap();
        let z = ::zip::ZipArchive::new(std::io::Cursor::new(buf)).unwrap();
        assert_eq!(z.len(), 70_000);
    }
}
