//! How a vocabulary's hash table is read (the layout is `layout`'s): a lookup key, the front table
//! of frequent tokens, the miss filter and the Robin Hood probe. Private to `vocab`; the rank
//! lookups there compose these steps, each in the order its callers' hit rates favour.
//!
//! Which steps are inlined is part of the design: in wasm a struct passed to a call goes
//! through memory (a shadow-stack frame), so the out-of-line probes take scalars
//! (`probe_words`) or rebuild the key behind the call (`probe_long`), and the common short keys
//! never build a [`Key`] at all.

use super::super::layout::*;
use super::{Tables, Vocab, NONE};

const LEN_MASK: u64 = ((1 << LEN_BITS) - 1) << LEN_SHIFT;

/// How a slot's remaining bytes compare with the piece's (all slots with the key's first 8
/// bytes and length go through this).
#[derive(Clone, Copy)]
pub(super) enum Rest<'a> {
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
pub(super) struct Key<'a> {
    pub hash: u64,
    first: u64,
    len: usize,
    rest: Rest<'a>,
}

/// The key of `t[start..end]`; `None` for a piece longer than any token.
#[inline(always)]
pub(super) fn key_of(t: &[u8], start: usize, end: usize) -> Option<Key<'_>> {
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



impl<T: Tables> Vocab<T> {
    /// Whether the miss filter allows a token with this hash (false: certainly none).
    #[inline(always)]
    pub(super) fn may_hold(&self, hash: u64) -> bool {
        let b = (hash >> (64 - FILTER_BITS)) as usize;
        T::filter().get(b / 64).is_some_and(|w| w >> (b % 64) & 1 != 0)
    }

    /// Whether a slot's bytes past the first 8 (from `meta`'s tail offset) equal the piece's.
    #[inline(always)]
    pub(super) fn rest_matches(&self, meta: u64, rest: Rest<'_>) -> bool {
        let at = ((meta >> TAIL_SHIFT) & ((1 << TAIL_BITS) - 1)) as usize;
        let tails = T::tails();
        match rest {
            Rest::None => true,
            Rest::Word(w1) => load8(tails, at) & mask_of(((meta >> LEN_SHIFT) & 127) as usize + 1 - 8) == w1,
            Rest::Bytes(b) => tails.get(at..at + b.len()) == Some(b),
        }
    }

    /// The front table's set for the hash first (frequent tokens are found in one 32-byte
    /// read, without probing), then the main table; with `filtered`, the miss filter before
    /// the probe.
    #[inline(always)]
    pub(super) fn front_then_probe(&self, k: Key<'_>, t: &[u8], start: usize, end: usize, filtered: bool) -> u32 {
        if let Some(meta) = self.front(k.hash, k.first, k.len) {
            if self.rest_matches(meta, k.rest) {
                return self.rank_of(meta);
            }
        }
        if !filtered || self.may_hold(k.hash) {
            self.probe_long(t, start, end)
        } else {
            NONE
        }
    }

    /// The probe for `t[start..end]`, longer than 8 bytes, out of line with the key rebuilt
    /// from the bytes: a [`Key`] passed to a call goes through memory in wasm, and its stores
    /// would be on the path of every lookup, front-table hits included.
    #[inline(never)]
    pub(super) fn probe_long(&self, t: &[u8], start: usize, end: usize) -> u32 {
        key_of(t, start, end).map_or(NONE, |k| self.probe(k))
    }

    /// The probe for a key of up to 16 bytes given as its words (`w1` zero for up to 8 bytes)
    /// and hash, out of line: its callers have them in registers, and nothing of the key goes
    /// through memory.
    #[inline(never)]
    pub(super) fn probe_words(&self, hash: u64, w0: u64, w1: u64, len: usize) -> u32 {
        let rest = if len > 8 { Rest::Word(w1) } else { Rest::None };
        self.probe(Key { hash, first: w0, len, rest })
    }

    /// The meta word of the front table's way whose token has `len` bytes starting with
    /// `first` (the first 8 bytes, zero-padded), if one has.
    #[inline(always)]
    pub(super) fn front(&self, hash: u64, first: u64, len: usize) -> Option<u64> {
        let len_bits = ((len - 1) as u64) << LEN_SHIFT;
        let (k0, m0, k1, m1) = match T::front().get(2 + 4 * (hash >> (64 - FRONT_BITS + 1)) as usize..) {
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

    /// This encoding's rank in a slot's meta word.
    #[inline(always)]
    pub(super) fn rank_of(&self, meta: u64) -> u32 {
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
            if first == k.first && m & LEN_MASK == len_bits && self.rest_matches(m, k.rest) {
                return self.rank_of(m);
            }
            i = (i + 1) & self.mask;
            d += 1;
        }
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> (u64, u64) {
        // Word 0 and 1 are the header; slot `i` is words 2 + 2i and 3 + 2i.
        match T::table().get(2 + 2 * i..4 + 2 * i) {
            Some(&[k, m]) => (k, m),
            _ => (0, EMPTY_META),
        }
    }
}
