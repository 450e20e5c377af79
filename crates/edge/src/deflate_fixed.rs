//! A one-pass deflate (RFC 1951) of a whole small buffer: one block with
//! the fixed Huffman codes, greedy matches found through a hash of the
//! next four bytes, no lazy matching. The libslz idea, written for how
//! Rampart gzips Odoo's pages: the body is whole in memory and small.
//!
//! Why hand-written: zlib-rs's level 1 (deflate_quick) is the same kind of
//! encoder, but each call resets a 128 KB hash table and goes through its
//! streaming window and pending buffer. Under the bench's login-h1 load
//! (perf, release build) zlib-rs took 23% of Rampart's CPU (3% of it the
//! table reset), this encoder 18%, for output within 0.5% of the same
//! size; on the 12.5 KB login page alone it is 1.7-2x faster. libdeflate
//! was slower still (see stage::compress). No crate offers a stateless
//! whole-buffer fixed-code deflate.
//!
//! Why the hash table needs no reset between calls: a candidate position
//! left by an earlier buffer is only used when it is behind the current
//! position, within the 32 KB window, and its four bytes equal the current
//! four, so a stale entry is at worst a match in this buffer that a fresh
//! table would not have pointed to, never a wrong one.
//!
//! Checked against the world's inflater: the tests feed Python's zlib (the
//! reference implementation browsers' inflaters follow) hundreds of
//! generated buffers, window edges and every match length included.

use bytes::Bytes;

/// gzip (RFC 1952) of the whole of `input`, with the thread's encoder.
pub(crate) fn gzip(input: &[u8]) -> Bytes {
    thread_local! {
        static ENCODER: std::cell::RefCell<FixedDeflate> =
            std::cell::RefCell::new(FixedDeflate::new());
    }
    ENCODER.with(|e| {
        let mut e = e.borrow_mut();
        let deflated = e.deflate(input);
        // Exactly the stream's size: an answer waiting for its client
        // holds 4 KB for the login page, not the worst case's 16 KB.
        let mut out = Vec::with_capacity(10 + deflated.len() + 8);
        // ID1 ID2, CM = deflate, no flags, no mtime, XFL 0, OS unknown.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        out.extend_from_slice(deflated);
        let mut crc = flate2::Crc::new();
        crc.update(input);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE is the length modulo 2^32 (deflate() refuses 4 GiB anyway).
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        Bytes::from(out)
    })
}

/// log2 of the hash table's entries: 8,192 positions, 32 KB a thread.
const HASH_BITS: u32 = 13;
/// The farthest back a match may point (RFC 1951 §2.2).
const WINDOW: usize = 32 * 1024;
/// The longest match deflate can say.
const MAX_MATCH: usize = 258;

/// Where each thread's encoder keeps its hash table.
pub(crate) struct FixedDeflate {
    /// For each hash of four bytes, the last position they were seen at.
    last_seen: Box<[u32]>,
    /// What deflate() writes into: room for the largest input so far,
    /// zeroed only when it grows (the thread's, warm in cache; zeroing and
    /// writing a fresh worst-case buffer per answer was 5% of the misses
    /// of the last-level cache under login-h2, cachegrind).
    scratch: Vec<u8>,
}

impl FixedDeflate {
    pub(crate) fn new() -> FixedDeflate {
        FixedDeflate {
            last_seen: vec![0; 1 << HASH_BITS].into_boxed_slice(),
            scratch: Vec::new(),
        }
    }

    /// The raw deflate stream of `input`, in the encoder's own buffer (every
    /// store overwrites, so what an earlier call left there never leaks
    /// into this one's bytes). `input` must be
    /// shorter than 4 GiB (positions are kept as u32); Rampart's one-shot
    /// bodies are at most 256 KB.
    pub(crate) fn deflate(&mut self, input: &[u8]) -> &[u8] {
        assert!(u32::try_from(input.len()).is_ok(), "input past 4 GiB");
        let n = input.len();
        if self.scratch.len() < room(n) {
            self.scratch.resize(room(n), 0);
        }
        let mut bits = BitWriter {
            acc: 0,
            count: 0,
            at: 0,
            out: &mut self.scratch[..],
        };
        bits.put(0b011, 3); // BFINAL = 1, BTYPE = 01 (fixed codes)
        let word4 = |i: usize| u32::from_le_bytes(input[i..i + 4].try_into().expect("4 bytes"));
        let mut pos = 0;
        while pos + 4 <= n {
            let here = word4(pos);
            let slot = (here.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize;
            let cand = self.last_seen[slot] as usize;
            self.last_seen[slot] = pos as u32;
            if cand < pos && pos - cand <= WINDOW && word4(cand) == here {
                let len = 4 + common_prefix(&input[cand + 4..], &input[pos + 4..], MAX_MATCH - 4);
                bits.put_match(LENGTH[len], (pos - cand) as u32);
                pos += len;
            } else {
                bits.put_packed(LITERAL[input[pos] as usize]);
                pos += 1;
            }
        }
        for &b in &input[pos..] {
            bits.put_packed(LITERAL[b as usize]);
        }
        bits.put(0, 7); // end of block: symbol 256, seven zero bits
        let end = bits.finish();
        &self.scratch[..end]
    }
}

/// The bytes deflate() writes into for `n` bytes of input. Worst case:
/// every byte a 9-bit literal (a match of four or more bytes never takes
/// more bits than its literals would), the block's 10 bits, and 8 bytes of
/// room for the writer's last store.
fn room(n: usize) -> usize {
    n + n / 8 + 16
}

/// How many leading bytes `a` and `b` share, up to `max`; eight at a time.
fn common_prefix(a: &[u8], b: &[u8], max: usize) -> usize {
    let max = max.min(a.len()).min(b.len());
    let mut len = 0;
    while len + 8 <= max {
        let x = u64::from_le_bytes(a[len..len + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[len..len + 8].try_into().expect("8 bytes"));
        if x != y {
            return len + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    while len < max && a[len] == b[len] {
        len += 1;
    }
    len
}

/// Deflate's bits, least significant first. A put only adds to the
/// accumulator; whole 32 bits are stored when it holds that many, so the
/// next put does not wait on a store and a shift every time (a chain of
/// dependent steps per symbol: 15% of the encoder's time on the login page,
/// measured against storing after every put).
struct BitWriter<'a> {
    acc: u64,
    /// Bits in `acc` not yet stored (0..=31 between puts).
    count: u32,
    /// Where `acc`'s lowest byte goes.
    at: usize,
    out: &'a mut [u8],
}

impl BitWriter<'_> {
    /// `n` (at most 32) low bits of `bits`.
    #[inline(always)]
    fn put(&mut self, bits: u64, n: u32) {
        self.acc |= bits << self.count;
        self.count += n;
        if self.count >= 32 {
            self.out[self.at..self.at + 4].copy_from_slice(&(self.acc as u32).to_le_bytes());
            self.at += 4;
            self.acc >>= 32;
            self.count -= 32;
        }
    }

    /// A table entry: the bits in the low 24, their count in the high 8.
    #[inline(always)]
    fn put_packed(&mut self, code: u32) {
        self.put(u64::from(code & 0x00ff_ffff), code >> 24);
    }

    /// A match: its length's packed code (at most 13 bits), then distance
    /// `d` (1..=32768) as its 5-bit fixed code and extra bits (at most 18),
    /// in one put.
    #[inline(always)]
    fn put_match(&mut self, length: u32, d: u32) {
        let x = d - 1;
        let (code, extra_bits, extra) = if x < 4 {
            (x, 0, 0)
        } else {
            // Codes go in pairs per power of two: the top bit picks the
            // pair, the bit below it the member, the rest are extra bits.
            let top = 31 - x.leading_zeros();
            (
                2 * top + ((x >> (top - 1)) & 1),
                top - 1,
                x & ((1 << (top - 1)) - 1),
            )
        };
        let length_bits = length >> 24;
        let distance = u64::from(reversed(code, 5) | extra << 5);
        self.put(
            u64::from(length & 0x00ff_ffff) | distance << length_bits,
            length_bits + 5 + extra_bits,
        );
    }

    /// The end of the stream: the last bits, padded to a byte.
    fn finish(self) -> usize {
        self.out[self.at..self.at + 8].copy_from_slice(&self.acc.to_le_bytes());
        self.at + self.count.div_ceil(8) as usize
    }
}

/// Huffman codes are sent most significant bit first, the stream least
/// significant first: each code is stored reversed.
const fn reversed(code: u32, len: u32) -> u32 {
    code.reverse_bits() >> (32 - len)
}

/// The fixed literal/length code of symbol `s` (RFC 1951 §3.2.6), packed.
const fn fixed_code(s: u32) -> u32 {
    let (code, len) = match s {
        0..=143 => (0x30 + s, 8),
        144..=255 => (0x190 + s - 144, 9),
        256..=279 => (s - 256, 7),
        _ => (0xC0 + s - 280, 8),
    };
    reversed(code, len) | len << 24
}

const LITERAL: [u32; 256] = {
    let mut t = [0; 256];
    let mut s = 0;
    while s < 256 {
        t[s] = fixed_code(s as u32);
        s += 1;
    }
    t
};

/// Symbols 257..=285: the shortest length each stands for, and how many
/// extra bits follow it (RFC 1951 §3.2.5).
const LENGTH_BASE: [u32; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];

/// Match length 3..=258 to its symbol's code followed by its extra bits,
/// packed like `fixed_code`.
const LENGTH: [u32; MAX_MATCH + 1] = {
    let mut t = [0; MAX_MATCH + 1];
    let mut len = 3;
    while len <= MAX_MATCH {
        let mut i = LENGTH_BASE.len() - 1;
        while LENGTH_BASE[i] > len as u32 {
            i -= 1;
        }
        let code = fixed_code(257 + i as u32);
        let code_len = code >> 24;
        let extra = len as u32 - LENGTH_BASE[i];
        t[len] = (code & 0x00ff_ffff | extra << code_len) | (code_len + LENGTH_EXTRA[i]) << 24;
        len += 1;
    }
    t
};

#[cfg(test)]
mod tests;
