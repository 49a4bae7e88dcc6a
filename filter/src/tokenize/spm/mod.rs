//! The counting engine of SentencePiece-style BPE vocabularies read from Hugging Face files
//! (Gemma 3's): each stretch of text between added tokens is one word whose initial symbols are
//! its characters (after the file's one-character `Replace` normalizer: `" "` -> `"▁"`), a
//! character outside the vocabulary being its UTF-8 bytes (byte fallback, one token each, never
//! merged), and the merges are applied lowest merge index first, leftmost on ties, as
//! `tokenizers`' `Word::merge_all` does.
//!
//! A whole stretch is one BPE input, so the text is cut where no symbol can ever span
//! (`chars`: between two characters that stand side by side in no token a merge makes, and
//! around fallback bytes); the parts between cuts merge independently (`merge`), are counted in
//! order, and counting stops soon after the total passes the limit. Where no cut comes for a
//! long way (a run of one character), a part's lower bound (its characters over the most
//! characters a token holds) decides an early exit before it is merged, and the merge itself is
//! O(n log n) in time and O(n) in memory.

mod chars;
mod merge;
#[cfg(test)]
mod tests;

use super::Count;
use merge::Merger;

/// A vocabulary's tables, generated at build time (`filter/build/spm.rs`).
pub struct Model {
    /// Char index of each ASCII character (after the normalizer), `u32::MAX` when it is no token.
    pub(super) ascii: [u32; 128],
    /// The character the normalizer replaces, and its replacement (code points, equal when none).
    pub(super) replace: (u32, u32),
    /// Code points of the single-character tokens, sorted: a character's position is its index.
    pub(super) chars: &'static [u32],
    /// Token id of each char index.
    pub(super) char_ids: &'static [u32],
    /// CSR by left char index: the char indexes that follow it inside some token a merge makes.
    pub(super) follow_offsets: &'static [u32],
    pub(super) follow: &'static [u32],
    /// CSR by left token id: `right << 42 | merge index << 21 | new id`, sorted by right.
    pub(super) merge_offsets: &'static [u32],
    pub(super) merges: &'static [u64],
    /// The most characters a token a merge makes holds (at least 1).
    pub(super) max_chars: u32,
}

/// How many characters a part may gather before its lower bound is checked against the limit.
const BOUND_EVERY: usize = 1024;

impl Model {
    /// Token count of `t` (a stretch between added tokens, UTF-8), with an early exit once the
    /// count passes `limit`.
    pub fn count(&self, t: &[u8], limit: u64) -> Count {
        let mut merger = Merger::default();
        // The token ids of the current part, and the char index of its last character.
        let mut part: Vec<u32> = Vec::new();
        let mut last: Option<u32> = None;
        let mut total = 0u64;
        let mut i = 0;
        while i < t.len() {
            let (index, len) = self.char_at(t, i);
            let cut = match (last, index) {
                (Some(a), Some(b)) => !self.follows(a, b),
                _ => true,
            };
            if cut && !part.is_empty() {
                match self.part_count(&mut merger, &mut part, limit.saturating_sub(total)) {
                    Some(n) => total += n,
                    None => return Count::Over { counted: total + self.lower_bound(part.len()), complete: false },
                }
                part.clear();
            }
            match index.and_then(|k| self.char_ids.get(k as usize)) {
                Some(&id) => part.push(id),
                // Byte fallback: one token per byte.
                None => total += len as u64,
            }
            last = index;
            i += len;
            if total > limit {
                return Count::Over { counted: total, complete: i >= t.len() && part.is_empty() };
            }
            if part.len() % BOUND_EVERY == 0 && !part.is_empty() && total + self.lower_bound(part.len()) > limit {
                return Count::Over { counted: total + self.lower_bound(part.len()), complete: false };
            }
        }
        if !part.is_empty() {
            match self.part_count(&mut merger, &mut part, limit.saturating_sub(total)) {
                Some(n) => total += n,
                None => return Count::Over { counted: total + self.lower_bound(part.len()), complete: false },
            }
        }
        if total > limit {
            Count::Over { counted: total, complete: true }
        } else {
            Count::Within(total)
        }
    }

    /// Tokens of a part of `n` characters at least: each token holds at most `max_chars`.
    fn lower_bound(&self, n: usize) -> u64 {
        (n as u64).div_ceil(u64::from(self.max_chars.max(1)))
    }

    /// The merged count of a part, or `None` when its lower bound is over `room` already.
    fn part_count(&self, merger: &mut Merger, part: &mut [u32], room: u64) -> Option<u64> {
        if self.lower_bound(part.len()) > room {
            return None;
        }
        Some(merger.count(self, part) as u64)
    }
}
