//! Where tokens can reach: which boundaries of a piece some token may cross (the byte-pair bits
//! and the span filter, see `layout`), and which characters a merge may take whole from the
//! start. Every "no" here is certain; a "yes" may be wrong and only costs a cut not made.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::super::layout::span_hash;
use super::{Tables, Vocab, NONE};

/// log2 of the slots of [`SPAN_MEMO`].
const SPAN_MEMO_BITS: u32 = 10;
/// The key bits of a [`SPAN_MEMO`] slot: the 4-byte window around the boundary (bits 0..32),
/// the vocabulary's memo id (bits 32..40) and a bit that is always set (40), so an empty slot
/// matches no key.
const SPAN_MEMO_KEY: u64 = (1 << 41) - 1;

/// [`Vocab::spans`]'s answers for the last windows it was asked about (direct-mapped, 8 KB;
/// zero pages until a merge asks). A slot holds a key (`SPAN_MEMO_KEY`) and the answer (bit
/// 41). Text repeats its character pairs (the letters of a script, the common characters of a
/// language), and one look here replaces the pair table and the span filter's three hashed
/// pairs of bits. It memoizes a pure function of its key, so it is shared by every count and
/// every vocabulary and never needs clearing. Relaxed atomics keep it safe Rust (plain loads and
/// stores in wasm), and a slot is one word, so a native reader racing a writer sees one whole
/// key and answer or the other.
static SPAN_MEMO: [AtomicU64; 1 << SPAN_MEMO_BITS] = [const { AtomicU64::new(0) }; 1 << SPAN_MEMO_BITS];

impl<T: Tables> Vocab<T> {
    /// One bit per 2-byte string (index `b0 << 8 | b1`): clear when no token holds the two
    /// bytes next to each other, so no merge ever joins them. As an array, so the cut loop
    /// indexes it without bounds checks.
    #[inline(always)]
    pub fn inside(&self) -> Option<&'static [u64; 1024]> {
        self.inside.try_into().ok()
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
            let bit = |k: usize| T::span().get(k / 64).is_none_or(|w| w >> (k % 64) & 1 != 0);
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

    /// [`Vocab::spans`] through [`SPAN_MEMO`]: for text with characters of more than one byte,
    /// which repeats its windows. Not for ASCII letters: there the pair table mostly decides,
    /// and the windows of random letters would only miss in the memo.
    #[inline(always)]
    pub fn spans_memo(&self, p: &[u8], i: usize) -> bool {
        let Some(&[b0, b1, b2, b3]) = p.get(i.wrapping_sub(2)..i.wrapping_add(2)) else {
            // At the first or last byte of `p`.
            return self.spans(p, i);
        };
        let key = u64::from(u32::from_le_bytes([b0, b1, b2, b3])) | self.memo_id << 32 | 1 << 40;
        let slot = SPAN_MEMO.get((key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SPAN_MEMO_BITS)) as usize);
        let memo = slot.map_or(0, |slot| slot.load(Relaxed));
        if memo & SPAN_MEMO_KEY == key {
            return memo > SPAN_MEMO_KEY;
        }
        let spans = self.spans(p, i);
        if let Some(slot) = slot {
            slot.store(key | u64::from(spans) << 41, Relaxed);
        }
        spans
    }

    /// Whether the character `cp` (below U+10000), whose last byte is `last`, is solid before a
    /// character whose lead byte is `next` (`None`: the end of the span): then, after a
    /// continuation byte or at the start of a span, a merge of the span may take it as one part
    /// from the start (`bpe::small`, `seed_solid`).
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
}
