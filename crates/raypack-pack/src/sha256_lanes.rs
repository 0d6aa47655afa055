//! SHA-256 of many messages at once, two at a time on one core.
//!
//! Why by hand: with the x86 SHA extensions a single SHA-256 stream is bound by the latency of
//! `sha256rnds2` (each pair of rounds waits for the last), not by the unit's throughput, so
//! one core hashes ~1.75 GB/s however the code is written (the `sha2` crate and OpenSSL both
//! reach that). Two independent messages interleaved keep the unit busy in the gaps. No
//! maintained crate hashes several messages at once with the SHA extensions; `raypack env`
//! hashes thousands of files whose bytes already sit in memory side by side, which is exactly
//! that shape. The compression function is checked against `sha2` in the tests below, and
//! machines without the extensions use `sha2` for everything.

use sha2::block_api::compress256;

const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The SHA-256 digest of every message, in order.
pub(crate) fn digest_all(messages: &[&[u8]]) -> Vec<[u8; 32]> {
    let mut out = vec![[0u8; 32]; messages.len()];
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        two_lanes(messages, &mut out);
        return out;
    }
    for (m, o) in messages.iter().zip(&mut out) {
        *o = one(m);
    }
    out
}

/// One message on one lane.
fn one(m: &[u8]) -> [u8; 32] {
    Lane::start(0, m).finish_alone()
}

/// A message's last one or two blocks: its bytes after the last whole block, the 0x80 marker,
/// zeros, and the message length in bits.
struct Tail {
    blocks: [[u8; 64]; 2],
    len: usize,
}

fn split(m: &[u8]) -> (&[[u8; 64]], Tail) {
    let (body, rest) = m.as_chunks::<64>();
    let mut tail = Tail {
        blocks: [[0u8; 64]; 2],
        len: if rest.len() < 56 { 1 } else { 2 },
    };
    let flat = tail.blocks.as_flattened_mut();
    flat[..rest.len()].copy_from_slice(rest);
    flat[rest.len()] = 0x80;
    let end = tail.len * 64;
    flat[end - 8..end].copy_from_slice(&(m.len() as u64 * 8).to_be_bytes());
    (body, tail)
}

fn bytes_of(state: &[u32; 8]) -> [u8; 32] {
    let mut d = [0u8; 32];
    for (chunk, w) in d.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
    d
}

/// One lane's place in its message: the whole blocks left of the body, then the tail.
struct Lane<'m> {
    index: usize,
    state: [u32; 8],
    body: &'m [[u8; 64]],
    tail: Tail,
    in_tail: bool,
    at: usize,
}

impl<'m> Lane<'m> {
    fn start(index: usize, m: &'m [u8]) -> Lane<'m> {
        let (body, tail) = split(m);
        Lane {
            index,
            state: INITIAL,
            body,
            tail,
            in_tail: body.is_empty(),
            at: 0,
        }
    }

    /// Its state, and the blocks it still has to hash in its current part (never empty).
    fn state_and_blocks(&mut self) -> (&mut [u32; 8], &[[u8; 64]]) {
        let blocks = if self.in_tail {
            &self.tail.blocks[self.at..self.tail.len]
        } else {
            &self.body[self.at..]
        };
        (&mut self.state, blocks)
    }

    /// Hashes the rest of the message on this lane alone; its digest.
    fn finish_alone(mut self) -> [u8; 32] {
        loop {
            let (state, blocks) = self.state_and_blocks();
            let n = blocks.len();
            compress256(state, blocks);
            if self.advance(n) {
                return bytes_of(&self.state);
            }
        }
    }

    /// Moves on by `n` blocks; true when the message is done.
    fn advance(&mut self, n: usize) -> bool {
        self.at += n;
        if !self.in_tail && self.at == self.body.len() {
            self.in_tail = true;
            self.at = 0;
        }
        self.in_tail && self.at == self.tail.len
    }
}

#[cfg(target_arch = "x86_64")]
fn two_lanes(messages: &[&[u8]], out: &mut [[u8; 32]]) {
    // Longest first: whichever lane frees up takes the next, so the lanes run out of work
    // together, and the stretch where one lane runs alone is as short as the shortest message.
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_unstable_by_key(|&i| std::cmp::Reverse(messages[i].len()));
    let mut next = order.into_iter();
    let take =
        |next: &mut std::vec::IntoIter<usize>| next.next().map(|i| Lane::start(i, messages[i]));
    let mut a = take(&mut next);
    let mut b = take(&mut next);
    loop {
        match (&mut a, &mut b) {
            (Some(la), Some(lb)) => {
                let (sa, xa) = la.state_and_blocks();
                let (sb, xb) = lb.state_and_blocks();
                let n = xa.len().min(xb.len());
                // SAFETY: `available()` found the SHA extensions and SSE4.1 on this CPU.
                unsafe { x86::compress2(sa, sb, &xa[..n], &xb[..n]) };
                if la.advance(n) {
                    out[la.index] = bytes_of(&la.state);
                    a = take(&mut next);
                }
                if lb.advance(n) {
                    out[lb.index] = bytes_of(&lb.state);
                    b = take(&mut next);
                }
            }
            (Some(_), None) | (None, Some(_)) => {
                // Nothing left to pair with: finish this one alone.
                let l = a.or(b).expect("one lane left");
                let index = l.index;
                out[index] = l.finish_alone();
                return;
            }
            (None, None) => return,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        std::is_x86_feature_detected!("sha")
            && std::is_x86_feature_detected!("sse4.1")
            && std::is_x86_feature_detected!("ssse3")
    }

    /// The round constants (FIPS 180-4, 4.2.2).
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The state as the SHA instructions hold it: (A B E F), (C D G H), highest word first.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load(s: &[u32; 8]) -> (__m128i, __m128i) {
        let abef = _mm_set_epi32(s[0] as i32, s[1] as i32, s[4] as i32, s[5] as i32);
        let cdgh = _mm_set_epi32(s[2] as i32, s[3] as i32, s[6] as i32, s[7] as i32);
        (abef, cdgh)
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn store(s: &mut [u32; 8], abef: __m128i, cdgh: __m128i) {
        let mut x = [0u32; 4];
        let mut y = [0u32; 4];
        // SAFETY: both arrays are 16 bytes; unaligned stores.
        unsafe {
            _mm_storeu_si128(x.as_mut_ptr().cast(), abef);
            _mm_storeu_si128(y.as_mut_ptr().cast(), cdgh);
        }
        // x = [F, E, B, A], y = [H, G, D, C] (lowest word first)
        *s = [x[3], x[2], y[3], y[2], x[1], x[0], y[1], y[0]];
    }

    /// Big-endian words of 16 message bytes.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn words(block: &[u8; 64], i: usize) -> __m128i {
        let swap = _mm_set_epi64x(0x0c0d0e0f_08090a0b, 0x04050607_00010203);
        // SAFETY: `i < 4`, so the 16 bytes read lie inside the block.
        _mm_shuffle_epi8(
            unsafe { _mm_loadu_si128(block.as_ptr().add(16 * i).cast()) },
            swap,
        )
    }

    /// The next four schedule words from the last sixteen (held as four groups of four).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(w: &[__m128i; 4]) -> __m128i {
        let w7 = _mm_alignr_epi8(w[3], w[2], 4);
        _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(w[0], w[1]), w7), w[3])
    }

    /// Compresses `a` into `sa` and `b` into `sb`, block by block, interleaved.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(crate) fn compress2(sa: &mut [u32; 8], sb: &mut [u32; 8], a: &[[u8; 64]], b: &[[u8; 64]]) {
        debug_assert_eq!(a.len(), b.len());
        let (mut a0, mut a1) = load(sa);
        let (mut b0, mut b1) = load(sb);
        for (xa, xb) in a.iter().zip(b) {
            let (ka0, ka1, kb0, kb1) = (a0, a1, b0, b1);
            let mut wa = [words(xa, 0), words(xa, 1), words(xa, 2), words(xa, 3)];
            let mut wb = [words(xb, 0), words(xb, 1), words(xb, 2), words(xb, 3)];
            for g in 0..16 {
                let (cur_a, cur_b) = if g < 4 {
                    (wa[g], wb[g])
                } else {
                    let (na, nb) = (schedule(&wa), schedule(&wb));
                    wa = [wa[1], wa[2], wa[3], na];
                    wb = [wb[1], wb[2], wb[3], nb];
                    (na, nb)
                };
                // SAFETY: `g < 16`, so the four constants read lie inside `K`.
                let k = unsafe { _mm_loadu_si128(K.as_ptr().add(4 * g).cast()) };
                let (ma, mb) = (_mm_add_epi32(cur_a, k), _mm_add_epi32(cur_b, k));
                // Two rounds give the new (A B E F); the old one is the new (C D G H).
                a1 = _mm_sha256rnds2_epu32(a1, a0, ma);
                b1 = _mm_sha256rnds2_epu32(b1, b0, mb);
                a0 = _mm_sha256rnds2_epu32(a0, a1, _mm_shuffle_epi32(ma, 0x0e));
                b0 = _mm_sha256rnds2_epu32(b0, b1, _mm_shuffle_epi32(mb, 0x0e));
            }
            a0 = _mm_add_epi32(a0, ka0);
            a1 = _mm_add_epi32(a1, ka1);
            b0 = _mm_add_epi32(b0, kb0);
            b1 = _mm_add_epi32(b1, kb1);
        }
        store(sa, a0, a1);
        store(sb, b0, b1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn expected(ms: &[&[u8]]) -> Vec<[u8; 32]> {
        ms.iter().map(|m| Sha256::digest(m).into()).collect()
    }

    #[test]
    fn every_length_around_block_and_padding_edges() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        // Lengths crossing the 55/56/64-byte padding edges, paired with every other length.
        let lens: Vec<usize> = (0..200)
            .chain([447, 448, 511, 512, 513, 4096, 4999])
            .collect();
        let ms: Vec<&[u8]> = lens.iter().map(|&n| &data[..n]).collect();
        assert_eq!(digest_all(&ms), expected(&ms));
        let rev: Vec<&[u8]> = ms.iter().rev().copied().collect();
        assert_eq!(digest_all(&rev), expected(&rev));
        for m in &ms {
            assert_eq!(one(m), <[u8; 32]>::from(Sha256::digest(m)));
        }
    }

    #[test]
    fn empty_single_and_odd_counts() {
        assert!(digest_all(&[]).is_empty());
        let one_msg: [&[u8]; 1] = [b"abc"];
        assert_eq!(
            hex::encode(digest_all(&one_msg)[0]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let big = vec![7u8; 1 << 20];
        let ms: [&[u8]; 3] = [&big, b"", &big[..100_001]];
        assert_eq!(digest_all(&ms), expected(&ms));
    }
}
