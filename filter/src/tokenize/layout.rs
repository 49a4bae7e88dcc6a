//! The layout of the generated tables, shared word for word by `build.rs` (which writes them)
//! and the runtime (which reads them), so the two can never disagree.
//!
//! Vocabulary: one open-addressing hash table for both encodings (215,221 distinct tokens; the
//! two share 85,035), linear probing in Robin Hood order, 2^18 slots (load 0.82). A slot is two
//! little-endian `u64`: the token's first 8 bytes (zero-padded) and a meta word with its rank in
//! each encoding, its length, its distance from its home slot and, for tokens longer than 8
//! bytes, where the rest of its bytes is in the tail pool. So a token of up to 8 bytes (most
//! lookups: words, and the short pieces of every merge) is found by reading one 16-byte slot,
//! with no second memory access; a miss stops at the first slot closer to its home than the
//! probe is to ours (Robin Hood). In front of it, a 2-way set-associative table with the most
//! frequent token(s) of each hash value (the same slot format), and a bit per hash value for the
//! lookups of merges, which mostly miss. Per encoding: the rank of every 2-byte string, and a
//! bit per 2-byte string telling whether any token holds those bytes next to each other. For
//! both encodings: a Bloom filter of the up-to-4-byte windows that tokens hold around each of
//! their inner boundaries (`span_hash`), which finds where no token can span a boundary.
//! Unicode: a two-level table (blocks of 128 code points) of character classes, and a
//! two-level bit table of `\p{P}` and `\p{S}` (only DeepSeek's pattern names them).

/// The meta word of a slot that holds no token (no token lacks both ranks).
pub const EMPTY_META: u64 = u64::MAX;

pub const CL100K_RANK_SHIFT: u32 = 0;
pub const CL100K_RANK_BITS: u32 = 17;
pub const O200K_RANK_SHIFT: u32 = 17;
pub const O200K_RANK_BITS: u32 = 18;
pub const LEN_SHIFT: u32 = 35;
pub const LEN_BITS: u32 = 7;
pub const DIST_SHIFT: u32 = 42;
pub const DIST_BITS: u32 = 4;
pub const TAIL_SHIFT: u32 = 46;
pub const TAIL_BITS: u32 = 18;
/// A stored distance of this value means "this far or farther": a lookup never stops on it.
pub const DIST_SATURATED: u64 = (1 << DIST_BITS) - 1;

/// log2 of the front table's slot count.
pub const FRONT_BITS: u32 = 16;

/// log2 of the miss filter's bit count (2^21 bits, 256 KB, about 10 % set): most lookups of a
/// merge are for strings that are no token, and the filter answers them with one bit.
pub const FILTER_BITS: u32 = 21;

/// log2 of the span filter's bit count (2^21 bits, 256 KB). It holds 242,172 keys of both
/// encodings, two bits each (21 % of the bits set), so about 4 % of absent keys test present,
/// which only costs a split point.
pub const SPAN_BITS: u32 = 21;

/// The span filter's two bit indexes for a window of a token around one of its inner
/// boundaries: `window` holds the `left` (1 or 2) bytes before the boundary then the `right`
/// (1 or 2) bytes after it, little-endian; `left == 1` means the token starts one byte before
/// the boundary, `right == 1` that it ends one byte after. (`left == right == 1`, a 2-byte
/// token, is never stored: the pair table answers it.) `o200k` keeps the encodings apart.
#[inline(always)]
pub fn span_hash(o200k: bool, window: u32, left: usize, right: usize) -> (usize, usize) {
    let key = window as u64 | ((left as u64) << 32) | ((right as u64) << 34) | ((o200k as u64) << 36);
    let mut h = key.wrapping_mul(K);
    h ^= h >> 29;
    h = h.wrapping_mul(LEN_K);
    ((h >> (64 - SPAN_BITS)) as usize, ((h >> 8) as usize) & ((1 << SPAN_BITS) - 1))
}

/// Longest token either encoding has (both: 128 bytes); `len - 1` fits in `LEN_BITS`.
pub const MAX_TOKEN_LEN: usize = 1 << LEN_BITS;

/// Character classes (one byte per code point in the Unicode table). Every code point has
/// exactly one: White_Space never overlaps letters, marks or numbers.
pub const C_OTHER: u8 = 0;
/// White_Space other than `\r` and `\n`.
pub const C_SPACE: u8 = 1;
/// `\r` or `\n`.
pub const C_CRLF: u8 = 2;
/// `\p{N}`.
pub const C_NUMBER: u8 = 3;
/// `\p{Lu}` or `\p{Lt}`.
pub const C_UPPER: u8 = 4;
/// `\p{Ll}`.
pub const C_LOWER: u8 = 5;
/// `\p{Lm}` or `\p{Lo}`.
pub const C_LETTER: u8 = 6;
/// `\p{M}`.
pub const C_MARK: u8 = 7;

/// Code points per block of the Unicode table.
pub const UNICODE_BLOCK_BITS: u32 = 7;

/// The punctuation and symbol table covers the code points below this (build.rs checks that
/// none lies above): level 1 is one byte per block of 256 code points, the block's number;
/// level 2 the distinct blocks, 256 bits (32 bytes) each, bit `cp % 256` of byte `cp % 256 / 8`.
pub const PUNCT_LIMIT: u32 = 0x2_0000;
pub const PUNCT_BLOCK_BITS: u32 = 8;

/// The mask of the low `len` bytes of a word, for `1 <= len <= 8` (one shift, no branch).
#[inline(always)]
pub fn mask_of(len: usize) -> u64 {
    u64::MAX.wrapping_shr(64u32.wrapping_sub(8 * len as u32))
}

/// The 8 bytes at `t[i..]` as a little-endian word, zero-padded past the end of `t`.
#[inline(always)]
pub fn load8(t: &[u8], i: usize) -> u64 {
    match t.get(i..i + 8) {
        Some(w) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            u64::from_le_bytes(a)
        }
        None => read_u64_le(t.get(i..).unwrap_or(&[])),
    }
}

/// The first (up to) 8 bytes of `b` as a little-endian word, zero-padded.
#[inline(always)]
pub fn read_u64_le(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = b.len().min(8);
    w[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(w)
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;
const LEN_K: u64 = 0xD6E8_FEB8_6659_FD93;

/// The hash of a token's bytes; the table index is its top bits. One multiply per 8 bytes: the
/// key is compared in full, so the hash only has to spread the slots (build.rs reports the
/// probe lengths it gives).
#[inline(always)]
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut chunks = b.chunks(8);
    let first = chunks.next().map_or(0, read_u64_le);
    let mut h = hash_word(first, b.len());
    for c in chunks {
        h = (h ^ read_u64_le(c)).wrapping_mul(K);
    }
    h
}

/// `hash_bytes` of a token of at most 8 bytes already loaded into `word` (zero-padded,
/// little-endian).
#[inline(always)]
pub fn hash_word(word: u64, len: usize) -> u64 {
    (word ^ (len as u64).wrapping_mul(LEN_K)).wrapping_mul(K)
}

/// `hash_bytes` of 9 to 16 bytes: the first 8 in `w0`, the rest zero-padded in `w1`.
#[inline(always)]
pub fn hash_words2(w0: u64, w1: u64, len: usize) -> u64 {
    (hash_word(w0, len) ^ w1).wrapping_mul(K)
}
