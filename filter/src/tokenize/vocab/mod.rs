//! A token vocabulary: one encoding's view of the generated tables (see `layout`), and the
//! lookups the merge needs, each named for what it promises. How the hash table is probed is
//! private to `probe`; which boundaries a token can cross is `spans`.
//!
//! Every lookup returns [`NONE`] for "no such token". They differ by what the caller knows:
//! - [`Vocab::piece_rank`]: a whole pre-tokenizer piece, usually a token (a word), its first
//!   8 bytes already loaded;
//! - [`Vocab::part_rank`]: a part cut from a piece that is no token (a character, a stretch of
//!   letters), often a token and often not;
//! - [`Vocab::merge_rank`]: two neighbouring parts joined inside a merge, almost never a token;
//! - [`Vocab::pair_rank`]: a 2-byte string, by a direct table read.

mod probe;
mod spans;

use std::marker::PhantomData;

use super::layout::*;
use probe::{key_of, Rest};

/// `include_bytes!` with the alignment of `u64`, so the slots can be read in place.
#[repr(C, align(8))]
pub(super) struct Aligned<B: ?Sized>(pub(super) B);

static TABLE_BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/vocab_table.bin")));
static FRONT_BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/vocab_front.bin")));
static FILTER_BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/vocab_filter.bin")));
static TAILS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vocab_tails.bin"));
static CL100K_PAIRS: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_pairs.bin")));
static O200K_PAIRS: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/o200k_pairs.bin")));
static CL100K_INSIDE: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_inside.bin")));
static O200K_INSIDE: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/o200k_inside.bin")));
static CL100K_SOLID: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_solid.bin")));
static O200K_SOLID: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/o200k_solid.bin")));
static CL100K_SOLID_PAIRS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_solid_pairs.bin"));
static O200K_SOLID_PAIRS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_solid_pairs.bin"));
static SPAN_BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/span_filter.bin")));

#[cfg(target_endian = "big")]
compile_error!("the generated tables are little-endian");

pub(super) const fn as_words(bytes: &'static Aligned<[u8]>) -> &'static [u64] {
    // SAFETY: the bytes are 8-aligned (`Aligned`), live forever, and every bit pattern is a
    // valid u64; the length is rounded down to whole words.
    unsafe { core::slice::from_raw_parts(bytes.0.as_ptr().cast::<u64>(), bytes.0.len() / 8) }
}

pub(super) const fn as_u32s(bytes: &'static Aligned<[u8]>) -> &'static [u32] {
    // SAFETY: as `as_words`, for u32.
    unsafe { core::slice::from_raw_parts(bytes.0.as_ptr().cast::<u32>(), bytes.0.len() / 4) }
}

static TABLE: &[u64] = as_words(TABLE_BYTES);
static FRONT: &[u64] = as_words(FRONT_BYTES);
static FILTER: &[u64] = as_words(FILTER_BYTES);
static SPAN: &[u64] = as_words(SPAN_BYTES);

include!(concat!(env!("OUT_DIR"), "/vocab_consts.rs"));

/// The tables of the built-in encodings: one hash table, front table, miss filter, tail pool and
/// span filter for both.
pub struct OpenAi;

impl Tables for OpenAi {
    const TABLE_BITS: u32 = OPENAI_TABLE_BITS;
    #[inline(always)]
    fn table() -> &'static [u64] {
        TABLE
    }
    #[inline(always)]
    fn front() -> &'static [u64] {
        FRONT
    }
    #[inline(always)]
    fn filter() -> &'static [u64] {
        FILTER
    }
    #[inline(always)]
    fn tails() -> &'static [u8] {
        TAILS
    }
    #[inline(always)]
    fn span() -> &'static [u64] {
        SPAN
    }
}

pub static CL100K: Vocab<OpenAi> = Vocab::new(
    0,
    false,
    CL100K_RANK_SHIFT,
    CL100K_RANK_BITS,
    as_u32s(CL100K_PAIRS),
    as_words(CL100K_INSIDE),
    Solid { chars: as_words(CL100K_SOLID), pairs: CL100K_SOLID_PAIRS },
    CL100K_MAX_LETTER_RUN,
);
pub static O200K: Vocab<OpenAi> = Vocab::new(
    1,
    true,
    O200K_RANK_SHIFT,
    O200K_RANK_BITS,
    as_u32s(O200K_PAIRS),
    as_words(O200K_INSIDE),
    Solid { chars: as_words(O200K_SOLID), pairs: O200K_SOLID_PAIRS },
    O200K_MAX_LETTER_RUN,
);

/// Rank of "no such token".
pub const NONE: u32 = u32::MAX;

/// The "solid" 2- and 3-byte characters a merge may take whole from the start (`build.rs`,
/// `solid_chars`): four bits per code point below U+10000, and one byte per (continuation byte,
/// lead byte).
pub(super) struct Solid {
    pub(super) chars: &'static [u64],
    pub(super) pairs: &'static [u8],
}

/// The hash table, front table, miss filter, tail pool and span filter a vocabulary reads (see
/// `layout`), as a type: every lookup, inlined or not, is compiled per set of tables with their
/// addresses as constants. The built-in encodings share one set.
pub trait Tables: 'static {
    /// log2 of the hash table's slot count (its header word).
    const TABLE_BITS: u32;
    fn table() -> &'static [u64];
    fn front() -> &'static [u64];
    fn filter() -> &'static [u64];
    fn tails() -> &'static [u8];
    fn span() -> &'static [u64];
}

/// One encoding's tables. The counting loop names each as its static (`CL100K`, `O200K`), so
/// the fields fold into the code as constants.
pub struct Vocab<T: Tables> {
    tables: PhantomData<T>,
    /// Which slots of the span memo are this vocabulary's (every vocabulary has its own id).
    memo_id: u64,
    /// Rank of each 2-byte string, indexed by `b0 << 8 | b1`.
    pairs: &'static [u32],
    /// One bit per 2-byte string: set if some token holds the two bytes next to each other.
    inside: &'static [u64],
    solid: Solid,
    /// Which encoding's keys of the span filter are ours.
    o200k: bool,
    /// The most ASCII letters in a row any token holds.
    max_letter_run: usize,
    rank_shift: u32,
    rank_mask: u64,
    shift: u32,
    mask: usize,
}

impl<T: Tables> Vocab<T> {
    // One argument per table and fact of the vocabulary, each named at its few call sites.
    #[allow(clippy::too_many_arguments)]
    pub(super) const fn new(
        memo_id: u64,
        o200k: bool,
        rank_shift: u32,
        rank_bits: u32,
        pairs: &'static [u32],
        inside: &'static [u64],
        solid: Solid,
        max_letter_run: usize,
    ) -> Vocab<T> {
        let bits = T::TABLE_BITS;
        Vocab {
            tables: PhantomData,
            memo_id,
            pairs,
            inside,
            solid,
            o200k,
            max_letter_run,
            rank_shift,
            rank_mask: (1 << rank_bits) - 1,
            shift: 64 - bits,
            mask: (1usize << bits) - 1,
        }
    }

    /// The most ASCII letters in a row that any token holds (cl100k_base: 41, o200k_base: 26).
    pub fn max_letter_run(&self) -> usize {
        self.max_letter_run
    }

    /// Rank of the whole piece `t[start..end]`, with `w0 == load8(t, start)`, which the
    /// pre-tokenizer has loaded. Most pieces are words and most words are tokens, so the front
    /// table comes first and a miss probes the main table directly: the miss filter would only
    /// add work to the hits. Pieces of up to 8 bytes stay on a short path with no dispatch on
    /// the kind of key; longer ones (a tenth of prose) are out of line.
    #[inline(always)]
    pub fn piece_rank(&self, t: &[u8], start: usize, end: usize, w0: u64) -> u32 {
        let len = end - start;
        if len > 8 {
            return self.piece_rank_long(t, start, end);
        }
        // The key is the word, and there is nothing past it to compare.
        let word = w0 & mask_of(len);
        let hash = hash_word(word, len);
        match self.front(hash, word, len) {
            Some(meta) => self.rank_of(meta),
            None => self.probe_words(hash, word, 0, len),
        }
    }

    /// Rank of `t[start..end]`, a part cut from a piece that is no token (a CJK character, a
    /// stretch of letters): often a token, so the front table first; often not, so the miss
    /// filter before the probe. Parts of up to 8 bytes (most) take the short path of
    /// [`Vocab::piece_rank`].
    #[inline(always)]
    pub fn part_rank(&self, t: &[u8], start: usize, end: usize) -> u32 {
        let len = end - start;
        if len <= 8 {
            let word = load8(t, start) & mask_of(len);
            let hash = hash_word(word, len);
            return match self.front(hash, word, len) {
                Some(meta) => self.rank_of(meta),
                None if self.may_hold(hash) => self.probe_words(hash, word, 0, len),
                None => NONE,
            };
        }
        key_of(t, start, end).map_or(NONE, |k| self.front_then_probe(k, t, start, end, true))
    }

    /// Rank of `t[start..end]`, two neighbouring parts joined inside a merge: almost never a
    /// token, and rarely a frequent one, so the miss filter first and no front table. Keys of
    /// up to 8 bytes (most) probe with the word and hash in hand.
    #[inline(always)]
    pub fn merge_rank(&self, t: &[u8], start: usize, end: usize) -> u32 {
        let len = end - start;
        if len <= 8 {
            let word = load8(t, start) & mask_of(len);
            let hash = hash_word(word, len);
            return if self.may_hold(hash) { self.probe_words(hash, word, 0, len) } else { NONE };
        }
        match key_of(t, start, end) {
            Some(k) if self.may_hold(k.hash) => self.probe_long(t, start, end),
            _ => NONE,
        }
    }

    /// Rank of the 2-byte string `t[i..i + 2]`: the first lookups of every merge, without
    /// hashing.
    #[inline(always)]
    pub fn pair_rank(&self, t: &[u8], i: usize) -> u32 {
        let (a, b) = (t.get(i).copied().unwrap_or(0), t.get(i + 1).copied().unwrap_or(0));
        self.pairs.get((a as usize) << 8 | b as usize).copied().unwrap_or(NONE)
    }

    /// [`Vocab::piece_rank`] of a piece of 9 to 16 bytes, out of line, so the short path stays
    /// small.
    #[inline(never)]
    fn piece_rank_long(&self, t: &[u8], start: usize, end: usize) -> u32 {
        let len = end - start;
        if len > 16 {
            return self.piece_rank_longer(t, start, end);
        }
        let (w0, w1) = (load8(t, start), load8(t, start + 8) & mask_of(len - 8));
        let hash = hash_words2(w0, w1, len);
        if let Some(meta) = self.front(hash, w0, len) {
            if self.rest_matches(meta, Rest::Word(w1)) {
                return self.rank_of(meta);
            }
        }
        self.probe_words(hash, w0, w1, len)
    }

    /// [`Vocab::piece_rank`] of a piece longer than 16 bytes, apart from `piece_rank_long`:
    /// its key holds a slice and lives in wasm memory, which would give `piece_rank_long` a
    /// shadow-stack frame on every call.
    #[inline(never)]
    fn piece_rank_longer(&self, t: &[u8], start: usize, end: usize) -> u32 {
        key_of(t, start, end).map_or(NONE, |k| self.front_then_probe(k, t, start, end, false))
    }
}
