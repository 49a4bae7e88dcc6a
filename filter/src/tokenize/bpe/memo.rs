//! The memo of one count's merged pieces: the counts of the pieces of up to 16 bytes that the
//! count had to merge, by their bytes (direct-mapped, the newest piece wins a slot). Texts use
//! their rare words again and again (a name, a term, an identifier), and the merge of such a word
//! costs far more than a look here. A hit is exact: the key is the piece's whole bytes and its
//! length, and only counts taken to the end are stored.

use super::super::layout::{hash_words2, load8, mask_of};

/// Slots of [`Memo`].
const MEMO_SLOTS: usize = 32;

/// The memo: created with each count (768 bytes zeroed); no slot is read before `valid` says it
/// was written.
#[derive(Default)]
pub(super) struct Memo {
    valid: u32,
    slots: [MemoSlot; MEMO_SLOTS],
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct MemoSlot {
    /// The piece's bytes, zero-padded: 0..8 and 8..16.
    w0: u64,
    w1: u64,
    len: u32,
    count: u32,
}

impl Memo {
    /// The piece's slot and its key (the count left 0), for pieces of up to 16 bytes.
    #[inline(always)]
    pub(super) fn key(t: &[u8], s: usize, e: usize) -> Option<(usize, MemoSlot)> {
        let len = e - s;
        if len > 16 {
            return None;
        }
        let w0 = load8(t, s) & mask_of(len.min(8));
        let w1 = if len > 8 { load8(t, s + 8) & mask_of(len - 8) } else { 0 };
        let at = (hash_words2(w0, w1, len) >> (64 - MEMO_SLOTS.trailing_zeros())) as usize;
        Some((at, MemoSlot { w0, w1, len: len as u32, count: 0 }))
    }

    pub(super) fn get(&self, (at, key): (usize, MemoSlot)) -> Option<u64> {
        let slot = self.slots.get(at).filter(|_| self.valid >> at & 1 != 0)?;
        (MemoSlot { count: 0, ..*slot } == key).then_some(u64::from(slot.count))
    }

    pub(super) fn put(&mut self, (at, key): (usize, MemoSlot), count: u64) {
        if let (Some(slot), Ok(count)) = (self.slots.get_mut(at), u32::try_from(count)) {
            *slot = MemoSlot { count, ..key };
            self.valid |= 1 << at;
        }
    }
}
