//! zstd frames for image layers.
//!
//! A layer compressed with zstd is one or more frames back to back, which every zstd reader
//! (containerd, CRI-O, containers/image, the `zstd` tool) reads as one stream. That is what
//! makes per-wheel fragments work as they do for gzip: each fragment is a complete frame,
//! built once and cached, and a layer is the frames of its pieces concatenated.
//!
//! Determinism: each frame is compressed by one thread at a fixed level, with no dictionary,
//! a content checksum and no content size (the streaming encoder does not know it), so the
//! same bytes and level give the same frame on every machine; parallelism comes from
//! compressing fragments concurrently, not from zstd's own workers.

use std::io::{self, BufRead, Read, Write};

/// The zstd frame magic number, as the first four bytes of a blob.
pub const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// zstd's own default level.
pub const DEFAULT_LEVEL: i32 = 3;

/// The levels raypack accepts (zstd's 1–19; the "ultra" levels need more memory to read).
pub const LEVELS: std::ops::RangeInclusive<i32> = 1..=19;

/// Compresses all of `input` into one frame written to `out`; returns `out`.
pub fn compress<W: Write>(mut input: impl Read, out: W, level: i32) -> io::Result<W> {
    let mut enc = zstd::stream::write::Encoder::new(out, level)?;
    enc.include_checksum(true)?;
    enc.include_contentsize(false)?;
    enc.include_dictid(false)?;
    io::copy(&mut input, &mut enc)?;
    enc.finish()
}

/// One frame of `bytes`.
pub fn compress_bytes(bytes: &[u8], level: i32) -> io::Result<Vec<u8>> {
    compress(bytes, Vec::new(), level)
}

/// A reader of the concatenated frames in `input`.
pub fn decoder<R: BufRead>(input: R) -> io::Result<impl Read> {
    zstd::stream::read::Decoder::with_buffer(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_concatenate_and_are_deterministic() {
        let a = compress_bytes(b"hello ", 3).unwrap();
        let b = compress_bytes(&vec![b'x'; 100_000], 3).unwrap();
        assert_eq!(a[..4], MAGIC);
        assert_eq!(a, compress_bytes(b"hello ", 3).unwrap());
        let mut both = a.clone();
        both.extend_from_slice(&b);
        let mut out = Vec::new();
        decoder(both.as_slice())
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), 6 + 100_000);
        assert!(out.starts_with(b"hello x"));
    }
}
