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

use std::io::{self, Write};
use std::path::PathBuf;

use rayon::prelude::*;

/// One file to put in the archive.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// Name inside the archive ('/'-separated, no leading '/').
    pub name: String,
    /// Where the bytes come from.
    pub source: PathBuf,
    /// Unix permission bits (e.g. 0o644).
    pub mode: u32,
    pub size: u64,
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
    if raw.len() as u64 >= MAX32 {
        return Err(io::Error::other(format!(
            "{}: files of 4 GiB or more are not supported in runtime_env packages",
            e.source.display()
        )));
    }
    let mut crc = flate2::Crc::new();
    crc.update(&raw);
    let crc = crc.sum();
    let uncompressed = raw.len() as u64;
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
    let mut h = Vec::with_capacity(30 + e.name.len());
    h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    h.extend_from_slice(&20u16.to_le_bytes()); // version needed
    h.extend_from_slice(&FLAG_UTF8.to_le_bytes());
    h.extend_from_slice(&c.method.to_le_bytes());
    h.extend_from_slice(&DOS_TIME.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&c.crc.to_le_bytes());
    h.extend_from_slice(&(c.data.len() as u32).to_le_bytes());
    h.extend_from_slice(&(c.uncompressed as u32).to_le_bytes());
    h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // extra length
    h.extend_from_slice(e.name.as_bytes());
    w.write_all(&h)
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
            })
            .collect();
        let mut buf = Vec::new();
        write_zip(&mut buf, &es, 1).unwrap();
        let z = ::zip::ZipArchive::new(std::io::Cursor::new(buf)).unwrap();
        assert_eq!(z.len(), 70_000);
    }
}
