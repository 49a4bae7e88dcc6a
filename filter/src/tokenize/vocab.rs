//! A token vocabulary: one encoding's view of the generated shared hash table (see `layout`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::layout::*;

/// `include_bytes!` with the alignment of `u64`, so the slots can be read in place.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

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

const fn as_words(bytes: &'static Aligned<[u8]>) -> &'static [u64] {
    // SAFETY: the bytes are 8-aligned (`Aligned`), live forever, and every bit pattern is a
    // valid u64; the length is rounded down to whole words.
    unsafe { core::slice::from_raw_parts(bytes.0.as_ptr().cast::<u64>(), bytes.0.len() / 8) }
}

const fn as_u32s(bytes: &'static Aligned<[u8]>) -> &'static [u32] {
    // SAFETY: as `as_words`, for u32.
    unsafe { core::slice::from_raw_parts(bytes.0.as_ptr().cast::<u32>(), bytes.0.len() / 4) }
}

static TABLE: &[u64] = as_words(TABLE_BYTES);
static FRONT: &[u64] = as_words(FRONT_BYTES);
static FILTER: &[u64] = as_words(FILTER_BYTES);
static SPAN: &[u64] = as_words(SPAN_BYTES);

include!(concat!(env!("OUT_DIR"), "/vocab_consts.rs"));

pub static CL100K: Vocab = Vocab::new(
    false,
    CL100K_RANK_SHIFT,
    CL100K_RANK_BITS,
    as_u32s(CL100K_PAIRS),
    as_words(CL100K_INSIDE),
    Solid { chars: as_words(CL100K_SOLID), pairs: CL100K_SOLID_PAIRS },
    CL100K_MAX_LETTER_RUN,
);
pub static O200K: Vocab = Vocab::new(
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
struct Solid {
    chars: &'static [u64],
    pairs: &'static [u8],
}

pub struct Vocab {
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

const LEN_MASK: u64 = ((1 << LEN_BITS) - 1) << LEN_SHIFT;

/// log2 of the slots of [`SPAN_MEMO`].
const SPAN_MEMO_BITS: u32 = 10;
/// The key bits of a [`SPAN_MEMO`] slot: the 4-byte window around the boundary (bits 0..32),
/// the encoding (bit 32) and a bit that is always set (33), so an empty slot matches no key.
const SPAN_MEMO_KEY: u64 = (1 << 34) - 1;

/// [`Vocab::spans`]'s answers for the last windows it was asked about (direct-mapped, 8 KB;
/// zero pages until a merge asks). A slot holds a key (`SPAN_MEMO_KEY`) and the answer (bit
/// 34). Text repeats its character pairs (the letters of a script, the common characters of a
/// language), and one look here replaces the pair table and the span filter's three hashed
/// pairs of bits. It memoizes a pure function of its key, so it is shared by every count and
/// both encodings and never needs clearing. Relaxed atomics keep it safe Rust (plain loads and
/// stores in wasm), and a slot is one word, so a native reader racing a writer sees one whole
/// key and answer or the other.
static SPAN_MEMO: [AtomicU64; 1 << SPAN_MEMO_BITS] = [const { AtomicU64::new(0) }; 1 << SPAN_MEMO_BITS];

/// The mask of the low `len` bytes of a word, for `1 <= len <= 8` (one shift, no branch).
#[inline(always)]
pub fn mask_of(len: usize) -> u64 {
    u64::MAX.wrapping_shr(64u32.wrapping_sub(8 * len as u32))
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

/// How a slot's remaining bytes compare with the piece's (all slots with the key's first 8
/// bytes and length go through this).
#[derive(Clone, Copy)]
enum Rest<'a> {
    /// The piece has at most 8 bytes: the key decided.
    None,
    /// Bytes 8..16, zero-padded.
    Word(u64),
    /// Bytes 8.. of a piece longer than 16 bytes.
    Bytes(&'a [u8]),
}

/// What a lookup compares: the piece's hash, its first 8 bytes (zero-padded), its length and
/// the rest of its bytes.
#[derive(Clone, Copy)]
struct Key<'a> {
    hash: u64,
    first: u64,
    len: usize,
    rest: Rest<'a>,
}

/// The key of `t[start..end]`; `None` for a piece longer than any token.
#[inline(always)]
fn key_of(t: &[u8], start: usize, end: usize) -> Option<Key<'_>> {
    let (len, w0) = (end - start, load8(t, start));
    if len <= 8 {
        let word = w0 & mask_of(len);
        Some(Key { hash: hash_word(word, len), first: word, len, rest: Rest::None })
    } else if len <= 16 {
        let w1 = load8(t, start + 8) & mask_of(len - 8);
        Some(Key { hash: hash_words2(w0, w1, len), first: w0, len, rest: Rest::Word(w1) })
    } else if len <= MAX_TOKEN_LEN {
        t.get(start..end).map(long_key)
    } else {
        None
    }
}

/// The key of a piece of 17 to 128 bytes (rare: kept out of the inlined path).
#[inline(never)]
fn long_key(piece: &[u8]) -> Key<'_> {
    Key { hash: hash_bytes(piece), first: load8(piece, 0), len: piece.len(), rest: Rest::Bytes(piece.get(8..).unwrap_or(&[])) }
}

/// Whether the miss filter allows a token with this hash (false: certainly none).
#[inline(always)]
fn may_hold(hash: u64) -> bool {
    let b = (hash >> (64 - FILTER_BITS)) as usize;
    FILTER.get(b / 64).is_some_and(|w| w >> (b % 64) & 1 != 0)
}

/// Whether a slot's bytes past the first 8 (from `meta`'s tail offset) equal the piece's.
#[inline(always)]
fn rest_matches(meta: u64, rest: Rest<'_>) -> bool {
    let at = ((meta >> TAIL_SHIFT) & ((1 << TAIL_BITS) - 1)) as usize;
    match rest {
        Rest::None => true,
        Rest::Word(w1) => load8(TAILS, at) & mask_of(((meta >> LEN_SHIFT) & 127) as usize + 1 - 8) == w1,
        Rest::Bytes(b) => TAILS.get(at..at + b.len()) == Some(b),
    }
}

impl Vocab {
    const fn new(
        o200k: bool,
        rank_shift: u32,
        rank_bits: u32,
        pairs: &'static [u32],
        inside: &'static [u64],
        solid: Solid,
        max_letter_run: usize,
    ) -> Vocab {
        let bits = if TABLE.is_empty() { 0 } else { TABLE[0] as u32 };
        Vocab {
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

    /// Rank of the 2-byte token `t[i..i + 2]`, or [`NONE`].
    #[inline(always)]
    pub fn pair_rank(&self, t: &[u8], i: usize) -> u32 {
        let (a, b) = (t.get(i).copied().unwrap_or(0), t.get(i + 1).copied().unwrap_or(0));
        self.pairs.get((a as usize) << 8 | b as usize).copied().unwrap_or(NONE)
    }

    /// One bit per 2-byte string (index `b0 << 8 | b1`): clear when no token holds the two
    /// bytes next to each other, so no merge ever joins them (see `bpe::count_merged`).
    #[inline(always)]
    pub fn inside(&self) -> Option<&'static [u64; 1024]> {
        self.inside.try_into().ok()
    }

    /// Whether the character `cp` (below U+10000), whose last byte is `last`, is solid before a
    /// character whose lead byte is `next` (`None`: the end of the span): then, after a
    /// continuation byte or at the start of a span, a merge of the span may take it as one part
    /// from the start (`bpe::seed_solid`).
    #[inline(always)]
    pub fn solid(&self, cp: u32, last: u8, next: Option<u8>) -> bool {
        let nibble = self.solid.chars.get(cp as usize / 16).map_or(0, |w| w >> (4 * (cp % 16)) & 15);
        let class = match next {
            None => return nibble & 3 != 0,
            Some(0xc2..=0xdf) => 1,
            Some(0xe0..=0xef) => 2,
            Some(_) => return false,
        };
        // The tokens starting with the last byte and the next lead byte reach more levels than
        // the character's own merges.
        let pair = usize::from(last & 0x3f) << 6 | usize::from(next.unwrap_or(0) & 0x3f);
        let reach = self.solid.pairs.get(pair).copied().unwrap_or(0);
        nibble & class != 0 && u64::from(reach) > nibble >> 2
    }

    /// [`Vocab::spans`] through [`SPAN_MEMO`], for text with characters of more than one byte
    /// (between ASCII letters the pair table mostly decides, and the windows of random letters
    /// would only miss: 1 MB of them took 11 % more instructions through the memo).
    #[inline(always)]
    pub fn spans_memo(&self, p: &[u8], i: usize) -> bool {
        let Some(&[b0, b1, b2, b3]) = p.get(i.wrapping_sub(2)..i.wrapping_add(2)) else {
            // At the first or last byte of `p`.
            return self.spans(p, i);
        };
        let key = u64::from(u32::from_le_bytes([b0, b1, b2, b3])) | u64::from(self.o200k) << 32 | 1 << 33;
        let slot = SPAN_MEMO.get((key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SPAN_MEMO_BITS)) as usize);
        let memo = slot.map_or(0, |slot| slot.load(Relaxed));
        if memo & SPAN_MEMO_KEY == key {
            return memo > SPAN_MEMO_KEY;
        }
        let spans = self.spans(p, i);
        if let Some(slot) = slot {
            slot.store(key | u64::from(spans) << 34, Relaxed);
        }
        spans
    }

    /// Whether some token may span the boundary before `p[i]` (`0 < i < p.len()`), that is, be
    /// `p[s..e]` with `s < i < e`; false means certainly none. Such a token starts 1 or at least
    /// 2 bytes before the boundary and ends 1 or at least 2 bytes after it: the 2-byte case is
    /// the pair table, the other three the span filter (see `layout::span_hash`).
    #[inline(always)]
    pub fn spans(&self, p: &[u8], i: usize) -> bool {
        let (Some(&b1), Some(&b2)) = (p.get(i.wrapping_sub(1)), p.get(i)) else { return true };
        if self.pairs.get((b1 as usize) << 8 | b2 as usize).is_none_or(|&r| r != NONE) {
            return true;
        }
        let (b0, b3) = (p.get(i.wrapping_sub(2)).copied(), p.get(i + 1).copied());
        let mid = b1 as u32 | (b2 as u32) << 8;
        let present = |window: u32, left: usize, right: usize| {
            let (a, b) = span_hash(self.o200k, window, left, right);
            let bit = |k: usize| SPAN.get(k / 64).is_none_or(|w| w >> (k % 64) & 1 != 0);
            bit(a) && bit(b)
        };
        if let Some(b3) = b3 {
            if present(mid | (b3 as u32) << 16, 1, 2) {
                return true;
            }
        }
        let Some(b0) = b0 else { return false };
        let left2 = b0 as u32 | mid << 8;
        present(left2, 2, 1) || b3.is_some_and(|b3| present(left2 | (b3 as u32) << 24, 2, 2))
    }

    /// Rank of the token `t[start..end]`, or [`NONE`].
    #[cfg(test)]
    pub fn rank(&self, t: &[u8], start: usize, end: usize) -> u32 {
        self.rank_from(t, start, end, load8(t, start))
    }

    /// [`Vocab::rank`] with `w0 == load8(t, start)`, which the pre-tokenizer has loaded.
    #[inline(always)]
    pub fn rank_from(&self, t: &[u8], start: usize, end: usize, w0: u64) -> u32 {
        let len = end - start;
        if len > 8 {
            return self.rank_long(t, start, end);
        }
        // Most pieces (words): the key is the word, and there is nothing past it to compare.
        let word = w0 & mask_of(len);
        let hash = hash_word(word, len);
        match self.front(hash, word, len) {
            Some(meta) => self.rank_of(meta),
            None => self.probe_words(hash, word, 0, len),
        }
    }

    /// [`Vocab::rank`] of a piece longer than 8 bytes, out of line: one piece in ten in prose,
    /// and the short path stays small (no dispatch on the kind of key).
    #[inline(never)]
    fn rank_long(&self, t: &[u8], start: usize, end: usize) -> u32 {
        let len = end - start;
        if len > 16 {
            return self.rank_longer(t, start, end);
        }
        let (w0, w1) = (load8(t, start), load8(t, start + 8) & mask_of(len - 8));
        let hash = hash_words2(w0, w1, len);
        if let Some(meta) = self.front(hash, w0, len) {
            if rest_matches(meta, Rest::Word(w1)) {
                return self.rank_of(meta);
            }
        }
        self.probe_words(hash, w0, w1, len)
    }

    /// [`Vocab::rank`] of a piece longer than 16 bytes (a few in a thousand), apart from
    /// `rank_long`: its key, which holds a slice, lives in wasm memory, and `rank_long` then
    /// paid a shadow-stack frame on every call.
    #[inline(never)]
    fn rank_longer(&self, t: &[u8], start: usize, end: usize) -> u32 {
        key_of(t, start, end).map_or(NONE, |k| self.find(k, t, start, end, false))
    }

    /// [`Vocab::rank`] for the parts a merge cuts a piece into (a CJK character, a stretch of
    /// letters), which are often no token: the miss filter before the probe. (Not for whole
    /// pieces: words are tokens, and with the filter prose took up to 1.7 % more instructions
    /// in wasmtime and 2.7 % more in V8.) Parts of up to 8 bytes (most: a character, a few
    /// letters) take the short path of [`Vocab::rank_from`], with no jump table on the kind of
    /// key (mixed scripts cl100k: −5 % instructions, −10 % simulated mispredictions).
    #[inline(always)]
    pub fn rank_of_part(&self, t: &[u8], start: usize, end: usize) -> u32 {
        let len = end - start;
        if len <= 8 {
            let word = load8(t, start) & mask_of(len);
            let hash = hash_word(word, len);
            return match self.front(hash, word, len) {
                Some(meta) => self.rank_of(meta),
                None if may_hold(hash) => self.probe_words(hash, word, 0, len),
                None => NONE,
            };
        }
        key_of(t, start, end).map_or(NONE, |k| self.find(k, t, start, end, true))
    }

    /// [`Vocab::rank`] for the lookups of a merge, which mostly miss: the miss filter first,
    /// then the main table (the front table holds whole words, rarely what a merge builds).
    /// Keys of up to 8 bytes (most of a merge's) probe with the word and hash already in hand
    /// (`probe_words`): random letters −1.0 / −1.3 % instructions in wasmtime against
    /// `probe_at`, which rebuilds them.
    #[inline(always)]
    pub fn rank_in_merge(&self, t: &[u8], start: usize, end: usize) -> u32 {
        let len = end - start;
        if len <= 8 {
            let word = load8(t, start) & mask_of(len);
            let hash = hash_word(word, len);
            return if may_hold(hash) { self.probe_words(hash, word, 0, len) } else { NONE };
        }
        match key_of(t, start, end) {
            Some(k) if may_hold(k.hash) => self.probe_at(t, start, end),
            _ => NONE,
        }
    }

    /// The front table's set for the hash first (the two most frequent tokens with that index):
    /// frequent tokens are found in one 32-byte read, without probing.
    #[inline(always)]
    fn find(&self, k: Key<'_>, t: &[u8], start: usize, end: usize, filtered: bool) -> u32 {
        if let Some(meta) = self.front(k.hash, k.first, k.len) {
            if rest_matches(meta, k.rest) {
                return self.rank_of(meta);
            }
        }
        if !filtered || may_hold(k.hash) {
            self.probe_at(t, start, end)
        } else {
            NONE
        }
    }

    /// [`Vocab::probe`] for `t[start..end]` (the lookups of merges, and pieces longer than 16
    /// bytes), out of line with the key rebuilt from the bytes: a `Key` passed to a call goes
    /// through memory in wasm, and its stores were on the path of every lookup, front-table hits
    /// included. Keys of up to 8 bytes get a probe of their own, with nothing past the first
    /// word to compare.
    #[inline(never)]
    fn probe_at(&self, t: &[u8], start: usize, end: usize) -> u32 {
        let len = end - start;
        if len <= 8 {
            let word = load8(t, start) & mask_of(len);
            return self.probe(Key { hash: hash_word(word, len), first: word, len, rest: Rest::None });
        }
        key_of(t, start, end).map_or(NONE, |k| self.probe(k))
    }

    /// [`Vocab::probe`] for a key of up to 16 bytes given as its words (`w1` zero for up to
    /// 8 bytes) and hash, out of line: its callers have them in registers, and nothing of the
    /// key goes through memory (`probe_at` rebuilt them from the bytes, in a shadow-stack
    /// frame: prose −0.2 / −1.8 %, code −2.4 / −1.6 % instructions in wasmtime).
    #[inline(never)]
    fn probe_words(&self, hash: u64, w0: u64, w1: u64, len: usize) -> u32 {
        let rest = if len > 8 { Rest::Word(w1) } else { Rest::None };
        self.probe(Key { hash, first: w0, len, rest })
    }

    /// The meta word of the front table's way whose token has `len` bytes starting with
    /// `first` (the first 8 bytes, zero-padded), if one has.
    #[inline(always)]
    fn front(&self, hash: u64, first: u64, len: usize) -> Option<u64> {
        let len_bits = ((len - 1) as u64) << LEN_SHIFT;
        let (k0, m0, k1, m1) = match FRONT.get(2 + 4 * (hash >> (64 - FRONT_BITS + 1)) as usize..) {
            Some(&[k0, m0, k1, m1, ..]) => (k0, m0, k1, m1),
            _ => (0, EMPTY_META, 0, EMPTY_META),
        };
        // Both ways compared before one branch: which way holds a token is not predictable.
        // Each way's difference from the key is one word (zero: a hit), and the way is picked
        // with a mask, so the code has one branch and compares each way once.
        let d0 = (k0 ^ first) | ((m0 ^ len_bits) & LEN_MASK);
        let d1 = (k1 ^ first) | ((m1 ^ len_bits) & LEN_MASK);
        let pick0 = u64::from(d0 == 0).wrapping_neg();
        (d0.min(d1) == 0).then_some(m0 & pick0 | m1 & !pick0)
    }

    #[inline(always)]
    fn rank_of(&self, meta: u64) -> u32 {
        let r = (meta >> self.rank_shift) & self.rank_mask;
        // A token of the other encoding only.
        if r == self.rank_mask {
            NONE
        } else {
            r as u32
        }
    }

    /// The probe: slots from the hash's home on, until the token or a slot that proves its
    /// absence (empty, or closer to its own home than we are to ours).
    #[inline(always)]
    fn probe(&self, k: Key<'_>) -> u32 {
        let len_bits = ((k.len - 1) as u64) << LEN_SHIFT;
        let mut i = (k.hash >> self.shift) as usize;
        let mut d = 0u64;
        loop {
            let (first, m) = self.slot(i);
            let dist = (m >> DIST_SHIFT) & DIST_SATURATED;
            if m == EMPTY_META || (dist < d && dist != DIST_SATURATED) {
                return NONE;
            }
            if first == k.first && m & LEN_MASK == len_bits && rest_matches(m, k.rest) {
                return self.rank_of(m);
            }
            i = (i + 1) & self.mask;
            d += 1;
        }
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> (u64, u64) {
        // Word 0 and 1 are the header; slot `i` is words 2 + 2i and 3 + 2i.
        match TABLE.get(2 + 2 * i..4 + 2 * i) {
            Some(&[k, m]) => (k, m),
            _ => (0, EMPTY_META),
        }
    }
}
