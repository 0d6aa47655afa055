//! Deterministic parallel gzip (the pigz idea): the input is cut into fixed 1 MiB chunks, each
//! compressed on its own as raw DEFLATE ending in a sync flush (so the pieces concatenate into
//! one valid DEFLATE stream; the last one finishes it), CRC-32s combined, and the pieces
//! written in order between a fixed gzip header (no name, mtime 0, OS "unknown") and trailer.
//! The output depends only on the input, the level and the chunk size — never on the thread
//! count — and any gzip reader (one member) reads it. Memory: a few chunks per thread.

use std::io::{self, Read, Write};

use flate2::{Compress, Compression, Crc, FlushCompress};
use rayon::prelude::*;

/// Input bytes per independently compressed piece.
pub const CHUNK: usize = 1 << 20;

/// The fixed gzip member header: no name, mtime 0, OS "unknown".
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// The gzip member trailer for uncompressed data with this CRC-32 and length.
pub fn gzip_trailer(crc: u32, len: u64) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&crc.to_le_bytes());
    t[4..].copy_from_slice(&(len as u32).to_le_bytes());
    t
}

/// Compresses everything `input` yields into `out` as one gzip member; returns `out`.
pub fn gzip<R: Read, W: Write>(input: R, mut out: W, level: u32) -> io::Result<W> {
    out.write_all(&GZIP_HEADER)?;
    let (mut out, crc, _) = deflate(input, out, level, true)?;
    out.write_all(&gzip_trailer(crc.sum(), crc.amount() as u64))?;
    Ok(out)
}

/// Raw DEFLATE of everything `input` yields, in [`CHUNK`] pieces compressed in parallel. Every
/// piece ends in a sync flush, so pieces (and whole outputs of this function) concatenate into
/// one valid stream; with `finish` the last piece ends the stream. Returns `out`, the CRC-32
/// (with length) of the input and the compressed length of every piece: each inflates on its
/// own (no piece refers back into another) to [`CHUNK`] bytes, the last one to the rest.
pub fn deflate<R: Read, W: Write>(
    mut input: R,
    mut out: W,
    level: u32,
    finish: bool,
) -> io::Result<(W, Crc, Vec<u64>)> {
    let mut lengths = Vec::new();
    let batch = rayon::current_num_threads().max(1) * 4;
    let mut crc = Crc::new();
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut done = false;
    while !done {
        // Read up to `batch` chunks; one more read tells whether this batch holds the end.
        while pending.len() < batch + 1 {
            let mut buf = vec![0u8; CHUNK];
            let n = read_full(&mut input, &mut buf)?;
            buf.truncate(n);
            if n == 0 {
                done = true;
                break;
            }
            pending.push(buf);
            if n < CHUNK {
                done = true;
                break;
            }
        }
        let take = if done { pending.len() } else { batch };
        let chunks: Vec<Vec<u8>> = pending.drain(..take).collect();
        let last = chunks.len().saturating_sub(1);
        let pieces: Vec<io::Result<(Vec<u8>, Crc)>> = chunks
            .par_iter()
            .enumerate()
            .map(|(i, c)| {
                let mut cr = Crc::new();
                cr.update(c);
                Ok((deflate_piece(c, level, finish && done && i == last)?, cr))
            })
            .collect();
        for p in pieces {
            let (bytes, c) = p?;
            out.write_all(&bytes)?;
            lengths.push(bytes.len() as u64);
            crc.combine(&c);
        }
        if finish && done && take == 0 {
            // Empty input: an empty final block.
            out.write_all(&deflate_piece(&[], level, true)?)?;
        }
    }
    Ok((out, crc, lengths))
}

/// [`deflate`] of bytes in memory, as one piece.
pub fn deflate_bytes(data: &[u8], level: u32, finish: bool) -> io::Result<Vec<u8>> {
    if data.is_empty() && !finish {
        return Ok(Vec::new());
    }
    deflate_piece(data, level, finish)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Raw DEFLATE of `data`, ending with a sync flush (or the final block when `last`).
fn deflate_piece(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(256 * 1024);
        }
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        match status {
            flate2::Status::StreamEnd => break,
            // A sync flush is complete once all input is in and output space was left over.
            _ if !last && all_in && out.capacity() > out.len() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn round_trips_and_is_stable() {
        for size in [0usize, 10, CHUNK - 1, CHUNK, CHUNK + 1, 9 * CHUNK + 12345] {
            let data: Vec<u8> = (0..size)
                .map(|i| ((i * 7) % 251) as u8 ^ (i >> 12) as u8)
                .collect();
            let a = gzip(&data[..], Vec::new(), 6).unwrap();
            assert_eq!(gunzip(&a), data, "size {size}");
            let b = gzip(&data[..], Vec::new(), 6).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn output_does_not_depend_on_the_thread_count() {
        let data: Vec<u8> = (0..(5 * CHUNK + 77)).map(|i| (i % 97) as u8).collect();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| gzip(&data[..], Vec::new(), 6).unwrap());
        let many = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| gzip(&data[..], Vec::new(), 6).unwrap());
        assert_eq!(one, many);
    }
}
