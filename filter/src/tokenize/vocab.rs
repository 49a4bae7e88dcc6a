//! A token vocabulary: the generated hash table over the shared byte pool (see `layout`).

use super::layout::*;

/// `include_bytes!` with the alignment of `u64`, so the slots can be read in place.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static POOL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vocab_pool.bin"));
static CL100K_BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_table.bin")));
static O200K_BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/o200k_table.bin")));

#[cfg(target_endian = "big")]
compile_error!("the generated tables are little-endian");

const fn as_words(bytes: &'static Aligned<[u8]>) -> &'static [u64] {
    // SAFETY: the bytes are 8-aligned (`Aligned`), live forever, and every bit pattern is a
    // valid u64; the length is rounded down to whole words.
    unsafe { core::slice::from_raw_parts(bytes.0.as_ptr().cast::<u64>(), bytes.0.len() / 8) }
}

static CL100K_PAIRS: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_pairs.bin")));
static O200K_PAIRS: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/o200k_pairs.bin")));

const fn as_u32s(bytes: &'static Aligned<[u8]>) -> &'static [u32] {
    // SAFETY: as `as_words`, for u32.
    unsafe { core::slice::from_raw_parts(bytes.0.as_ptr().cast::<u32>(), bytes.0.len() / 4) }
}

pub static CL100K: Vocab = Vocab::new(as_words(CL100K_BYTES), as_u32s(CL100K_PAIRS));
pub static O200K: Vocab = Vocab::new(as_words(O200K_BYTES), as_u32s(O200K_PAIRS));

/// Rank of "no such token".
pub const NONE: u32 = u32::MAX;

pub struct Vocab {
    /// Word 0 is log2 of the slot count, the slots follow.
    words: &'static [u64],
    /// Rank of each 2-byte string, indexed by `b0 << 8 | b1`.
    pairs: &'static [u32],
    shift: u32,
    mask: usize,
}

const KEY_MASK: u64 = (((1u64 << TAG_BITS) - 1) << TAG_SHIFT) | (((1u64 << LEN_BITS) - 1) << LEN_SHIFT);

#[inline(always)]
fn mask_of(len: usize) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    }
}

/// Robin Hood: the slot's entry is closer to its home than we are to ours, so ours would have
/// taken this slot: it is not in the table.
#[inline(always)]
fn gave_up(slot: u64, probe: u64) -> bool {
    let dist = (slot >> DIST_SHIFT) & DIST_SATURATED;
    dist < probe && dist != DIST_SATURATED
}

/// The 8 bytes at `t[i..]`, zero-padded past the end of `t`.
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

impl Vocab {
    const fn new(words: &'static [u64], pairs: &'static [u32]) -> Vocab {
        let bits = if words.is_empty() { 0 } else { words[0] as u32 };
        Vocab { words, pairs, shift: 64 - bits, mask: (1usize << bits) - 1 }
    }

    /// Rank of the 2-byte token `t[i..i + 2]`, or [`NONE`].
    #[inline(always)]
    pub fn pair_rank(&self, t: &[u8], i: usize) -> u32 {
        let (a, b) = (t.get(i).copied().unwrap_or(0), t.get(i + 1).copied().unwrap_or(0));
        self.pairs.get((a as usize) << 8 | b as usize).copied().unwrap_or(NONE)
    }

    /// Table bytes (for size reports).
    pub fn table_bytes(&self) -> usize {
        self.words.len() * 8 + self.pairs.len() * 4
    }

    pub fn pool_bytes() -> usize {
        POOL.len()
    }

    /// Rank of the token `t[start..end]`, or [`NONE`].
    #[inline(always)]
    pub fn rank(&self, t: &[u8], start: usize, end: usize) -> u32 {
        let len = end - start;
        if len <= 8 {
            let word = load8(t, start) & mask_of(len);
            self.rank_word(word, len)
        } else if len <= 16 {
            let w0 = load8(t, start);
            let w1 = load8(t, start + 8) & mask_of(len - 8);
            self.rank_words2(w0, w1, len)
        } else if len <= MAX_TOKEN_LEN {
            self.rank_long(&t[start..end])
        } else {
            NONE
        }
    }

    #[inline(always)]
    fn rank_word(&self, word: u64, len: usize) -> u32 {
        let h = hash_word(word, len);
        let key = (tag_of(h) << TAG_SHIFT) | (((len - 1) as u64) << LEN_SHIFT);
        let mut i = (h >> self.shift) as usize;
        let mut d = 0u64;
        loop {
            let s = self.slot(i);
            if s == EMPTY_SLOT || gave_up(s, d) {
                return NONE;
            }
            if s & KEY_MASK == key {
                let off = (s & ((1 << OFFSET_BITS) - 1)) as usize;
                if load8(POOL, off) & mask_of(len) == word {
                    return ((s >> RANK_SHIFT) & ((1 << RANK_BITS) - 1)) as u32;
                }
            }
            i = (i + 1) & self.mask;
            d += 1;
        }
    }

    #[inline(always)]
    fn rank_words2(&self, w0: u64, w1: u64, len: usize) -> u32 {
        let h = hash_words2(w0, w1, len);
        let key = (tag_of(h) << TAG_SHIFT) | (((len - 1) as u64) << LEN_SHIFT);
        let mut i = (h >> self.shift) as usize;
        let mut d = 0u64;
        loop {
            let s = self.slot(i);
            if s == EMPTY_SLOT || gave_up(s, d) {
                return NONE;
            }
            if s & KEY_MASK == key {
                let off = (s & ((1 << OFFSET_BITS) - 1)) as usize;
                if load8(POOL, off) == w0 && load8(POOL, off + 8) & mask_of(len - 8) == w1 {
                    return ((s >> RANK_SHIFT) & ((1 << RANK_BITS) - 1)) as u32;
                }
            }
            i = (i + 1) & self.mask;
            d += 1;
        }
    }

    #[inline(never)]
    fn rank_long(&self, piece: &[u8]) -> u32 {
        let h = hash_bytes(piece);
        let key = (tag_of(h) << TAG_SHIFT) | (((piece.len() - 1) as u64) << LEN_SHIFT);
        let mut i = (h >> self.shift) as usize;
        let mut d = 0u64;
        loop {
            let s = self.slot(i);
            if s == EMPTY_SLOT || gave_up(s, d) {
                return NONE;
            }
            if s & KEY_MASK == key {
                let off = (s & ((1 << OFFSET_BITS) - 1)) as usize;
                if POOL.get(off..off + piece.len()) == Some(piece) {
                    return ((s >> RANK_SHIFT) & ((1 << RANK_BITS) - 1)) as u32;
                }
            }
            i = (i + 1) & self.mask;
            d += 1;
        }
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> u64 {
        self.words.get(i + 1).copied().unwrap_or(EMPTY_SLOT)
    }
}
