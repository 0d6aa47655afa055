//! Whole-file hashing: SHA-256 (and CRC-32) in one read through a per-thread buffer.

use super::*;

/// SHA-256 of a whole file.
pub fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    read_chunks(path, |_| {}).map(|(h, _)| h)
}

/// SHA-256 and CRC-32 of a whole file, in one read.
pub(crate) fn hash_and_crc(path: &Path) -> std::io::Result<([u8; 32], u32)> {
    let mut crc = crc32fast::Hasher::new();
    let (h, _) = read_chunks(path, |b| crc.update(b))?;
    Ok((h, crc.finalize()))
}

/// Reads `path` through a per-thread buffer (allocating and zeroing one per file cost more
/// than the reads on trees of small files), hashing it and handing every chunk to `also`.
pub(super) fn read_chunks(
    path: &Path,
    mut also: impl FnMut(&[u8]),
) -> std::io::Result<([u8; 32], u64)> {
    use std::io::Read;
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut total = 0u64;
    BUF.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(256 * 1024, 0);
        }
        loop {
            let n = match f.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            h.update(&buf[..n]);
            also(&buf[..n]);
            total += n as u64;
        }
        Ok(())
    })?;
    Ok((h.finalize().into(), total))
}
