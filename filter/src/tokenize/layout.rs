//! The layout of the generated tables, shared word for word by `build.rs` (which writes them)
//! and the runtime (which reads them), so the two can never disagree.
//!
//! Vocabulary: one byte pool holding every distinct token of both encodings once, and per
//! encoding an open-addressing hash table of `u64` slots (linear probing in Robin Hood order,
//! power-of-two size, load about 0.76). A slot packs where the token's bytes are in the pool, its
//! length, its rank, its distance from its home slot and 14 more bits of its hash (the tag), so a
//! lookup touches one slot and, on a tag match, the pool once; a miss stops at the first slot
//! closer to its home than the probe is to ours (Robin Hood), after 2 to 3 slots on average. Unicode: a two-level table (blocks of 128 code points) of character classes.

/// A slot that holds no token.
pub const EMPTY_SLOT: u64 = u64::MAX;

pub const OFFSET_BITS: u32 = 21;
pub const LEN_BITS: u32 = 7;
pub const RANK_BITS: u32 = 18;
pub const DIST_BITS: u32 = 4;
pub const TAG_BITS: u32 = 14;
pub const LEN_SHIFT: u32 = OFFSET_BITS;
pub const RANK_SHIFT: u32 = OFFSET_BITS + LEN_BITS;
pub const DIST_SHIFT: u32 = OFFSET_BITS + LEN_BITS + RANK_BITS;
pub const TAG_SHIFT: u32 = OFFSET_BITS + LEN_BITS + RANK_BITS + DIST_BITS;
/// A stored distance of this value means "this far or farther": a lookup never stops on it.
pub const DIST_SATURATED: u64 = (1 << DIST_BITS) - 1;

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

#[inline(always)]
pub fn read_u64_le(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = b.len().min(8);
    w[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(w)
}

/// The hash of a token's bytes. The table index is its top bits, the tag bits below them.
#[inline(always)]
pub fn hash_bytes(b: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (b.len() as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        h = (h ^ read_u64_le(c)).wrapping_mul(K);
        h ^= h >> 29;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = (h ^ read_u64_le(rest)).wrapping_mul(K);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

/// The hash of a token of at most 8 bytes already loaded into `word` (zero-padded, little-endian);
/// equal to `hash_bytes` of those bytes.
#[inline(always)]
pub fn hash_word(word: u64, len: usize) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (len as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    if len == 8 {
        h = (h ^ word).wrapping_mul(K);
        h ^= h >> 29;
    } else {
        h = (h ^ word).wrapping_mul(K);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

/// `hash_bytes` of 9 to 16 bytes: the first 8 in `w0`, the rest zero-padded in `w1`.
#[inline(always)]
pub fn hash_words2(w0: u64, w1: u64, len: usize) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (len as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h = (h ^ w0).wrapping_mul(K);
    h ^= h >> 29;
    if len == 16 {
        h = (h ^ w1).wrapping_mul(K);
        h ^= h >> 29;
    } else {
        h = (h ^ w1).wrapping_mul(K);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

#[inline(always)]
pub fn tag_of(hash: u64) -> u64 {
    (hash >> 8) & ((1 << TAG_BITS) - 1)
}
