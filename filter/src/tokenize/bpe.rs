//! Counting the tokens of one piece exactly as tiktoken's byte-pair merge does: repeatedly merge
//! the adjacent pair whose concatenation has the lowest rank, the leftmost on ties.
//!
//! - A piece in the vocabulary is one token (one lookup).
//! - A piece is first cut where no token can span a boundary (a bit per byte pair, then a filter
//!   of the windows tokens hold around their inner boundaries): no merge ever crosses such a
//!   point, so the segments merge independently.
//! - Short segments: tiktoken's own array scan, on the stack, over parts linked both ways.
//! - Longer segments: a heap of candidate merges over a linked list of parts.
//! - Long segments (past `WINDOW` bytes) are merged in overlapping windows, so time is linear and
//!   memory bounded. Two properties of BPE make the stitching exact (proved in the `bpe` crate's
//!   README, "Properties of BPE"): any run of consecutive tokens of an encoding is itself the
//!   encoding of its text, and two encodings that share a token at the same place join into
//!   the encoding of the union. So with the encoding of one window known, the next window starts
//!   at one of its token boundaries a little before its end, and the two are joined at the first
//!   token (same start, same end) both contain; what lies before it is final. If two windows
//!   share no token (never seen with these vocabularies), the whole piece is merged at once.

use std::collections::BinaryHeap;
use std::cmp::Reverse;

use super::unicode::is_continuation;
use super::vocab::{load8, mask_of, Vocab, NONE};

/// Pieces up to this many bytes use the array scan.
const SMALL: usize = 32;
/// Window length for long pieces, and how far before a window's end the next one starts.
const WINDOW: usize = 512;
const OVERLAP: usize = 48;

/// Exact token count of `t[s..e]` (one pre-tokenizer piece). Stops once the count passes
/// `budget`; the flag is false when it stopped before the end (the count is then a lower bound).
#[inline(always)]
pub fn count_piece(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> (u64, bool) {
    let n = e - s;
    if n == 1 || v.rank(t, s, e) != NONE {
        return (1, true);
    }
    count_merged(v, scratch, t, s, e, budget)
}

#[inline(never)]
fn count_merged(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> (u64, bool) {
    // Split the piece where no token holds the two neighbouring bytes (`Vocab::inside`): no
    // merge crosses such a point, and the merges on either side never change the pairs of the
    // other, so each segment merges on its own to the same tokens. Text mixing scripts splits
    // every few bytes (1 MB of it: 137 → 37 ms in wasm); a segment like the one before
    // (periodic text: emoji, repeated characters) reuses its count. Longer segments are cut
    // further where the windows around a boundary show no token can span it (`count_refined`).
    let (Some(inside), Some(piece)) = (v.inside(), t.get(s..e)) else {
        return count_unsplit(v, scratch, t, s, e, budget);
    };
    let mut total = 0u64;
    let mut a = 0;
    let mut memo = (usize::MAX, 0u64, 0u64);
    let mut prev = piece.first().copied().unwrap_or(0) as usize;
    for (k, &b) in piece.iter().enumerate().skip(1) {
        let pair = prev << 8 | b as usize;
        prev = b as usize;
        if inside[pair >> 6] >> (pair & 63) & 1 != 0 {
            if k - a > WINDOW {
                // A long stretch without a split point (random letters): the rest of the piece
                // is cut where the windows allow, as it goes, so it stops at the budget instead
                // of scanning to the end first.
                let n = count_refined(v, scratch, t, s + a, e, budget.saturating_sub(total));
                return (total + n, total + n <= budget);
            }
            continue;
        }
        // A split point before byte `k`: count the segment `a..k`.
        let len = k - a;
        let word = if len <= 8 { load8(piece, a) & mask_of(len) } else { 0 };
        let n = if len <= 8 && memo.0 == len && memo.1 == word {
            memo.2
        } else {
            let n = count_part(v, scratch, t, s + a, s + k, budget.saturating_sub(total));
            memo = (len, word, n);
            n
        };
        total += n;
        if total > budget {
            return (total, false);
        }
        a = k;
    }
    if a == 0 {
        // No split point: the piece is no token (`count_piece` looked it up).
        let n = count_refined(v, scratch, t, s, e, budget);
        return (n, n <= budget);
    }
    let n = count_part(v, scratch, t, s + a, e, budget.saturating_sub(total));
    (total + n, total + n <= budget)
}

/// A segment between split points (at most `WINDOW + 1` bytes): one token, or cut further and
/// merged.
#[inline(always)]
fn count_part(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> u64 {
    if e - s == 1 || v.rank(t, s, e) != NONE {
        1
    } else {
        count_refined(v, scratch, t, s, e, budget)
    }
}

/// Cuts `t[s..e]` (no token) wherever no token can span the boundary (`Vocab::spans`: the
/// windows of up to 2 bytes on each side) and counts the parts; past `WINDOW` bytes without such
/// a point, the rest goes to the windowed merge. CJK text, whose byte pairs all occur inside
/// some token, mostly splits into single characters here (64 KB of CJK: 29 % fewer
/// instructions with cl100k, 20 % with o200k; 1 MB of mixed scripts: 15 % and 25 %); random
/// lowercase letters into parts of a few to a few hundred bytes. Returns the count, or a number
/// over `budget` once it passes it.
#[inline(never)]
fn count_refined(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> u64 {
    let Some(seg) = t.get(s..e) else {
        return count_unsplit(v, scratch, t, s, e, budget).0;
    };
    let mut total = 0u64;
    let mut a = 0;
    for k in 1..seg.len() {
        // Cuts are only looked for between characters: a UTF-8 continuation byte is kept with
        // the bytes before it (fewer cuts are always exact; each cut only saves merge work).
        if is_continuation(seg[k]) || v.spans(seg, k) {
            if k - a > WINDOW {
                // Long enough without a split point: the rest goes to the windowed merge.
                return total + count_unsplit(v, scratch, t, s + a, e, budget.saturating_sub(total)).0;
            }
            continue;
        }
        total += count_segment(v, scratch, t, s + a, s + k, budget.saturating_sub(total)).0;
        if total > budget {
            return total;
        }
        a = k;
    }
    if a == 0 {
        return count_unsplit(v, scratch, t, s, e, budget).0;
    }
    total + count_segment(v, scratch, t, s + a, e, budget.saturating_sub(total)).0
}

/// A part cut by `count_refined` (no further cut possible): one token, or merged.
#[inline(always)]
fn count_segment(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> (u64, bool) {
    if e - s == 1 || v.rank(t, s, e) != NONE {
        return (1, true);
    }
    count_unsplit(v, scratch, t, s, e, budget)
}

/// The merge of a span with no split point.
fn count_unsplit(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> (u64, bool) {
    let n = e - s;
    if n <= SMALL {
        (count_small(v, t, s, e), true)
    } else if n <= WINDOW {
        (scratch.0.merge(v, t, s, e, None) as u64, true)
    } else {
        count_long(v, &mut scratch.0, t, s, e, budget)
    }
}

/// Reusable buffers for one count (empty, and free, until a piece needs a merge).
#[derive(Default)]
pub struct Scratch(Merger);

/// tiktoken's `_byte_pair_merge` for short pieces, on the stack. Parts are named by the byte
/// they start at and linked both ways; `rank[k]` is the rank of merging part `k` with the next
/// one (`NONE` for the last part and for parts already merged away). Nothing is shifted on a
/// merge: the array shifts (`copy_within`) were a `memmove` call per merge, 14 % of the branch
/// mispredictions of a mixed document natively, and a bulk-memory call in wasm.
fn count_small(v: &Vocab, t: &[u8], s: usize, e: usize) -> u64 {
    let n = e - s;
    let mut next = [0u8; SMALL];
    let mut prev = [0u8; SMALL];
    let mut rank = [NONE; SMALL];
    for k in 0..n {
        next[k] = (k + 1) as u8;
        prev[k] = k.wrapping_sub(1) as u8;
    }
    for (k, r) in rank.iter_mut().enumerate().take(n - 1) {
        *r = v.pair_rank(t, s + k);
    }
    let mut parts = n;
    loop {
        // The lowest rank, leftmost on ties, as one minimum over `rank << 8 | position` (no
        // data-dependent branch in the scan).
        let min = rank[..n - 1].iter().enumerate().map(|(k, &r)| (r as u64) << 8 | k as u64).min();
        let Some(min) = min.filter(|m| (m >> 8) as u32 != NONE) else {
            return parts as u64;
        };
        // Merge part `at` with the next one, `gone`; `after` is the part that follows them.
        let at = (min & 0xff) as usize;
        // (`at` has a next part, so `gone < n`; `after == n` when they were the last two.)
        let gone = usize::from(next[at]);
        let after = usize::from(next[gone]);
        next[at] = after as u8;
        rank[gone] = NONE;
        parts -= 1;
        if after < n {
            rank[at] = v.rank_in_merge(t, s + at, s + usize::from(next[after]));
            prev[after] = at as u8;
        } else {
            rank[at] = NONE;
        }
        if at > 0 {
            let before = usize::from(prev[at]);
            rank[before] = v.rank_in_merge(t, s + before, s + after);
        }
    }
}

/// Scratch for the heap merge, indexed by byte offset in the merged span.
#[derive(Default)]
struct Merger {
    /// End (exclusive) of the part starting here.
    end: Vec<u32>,
    /// Start of the part before the part starting here.
    prev: Vec<u32>,
    /// Rank of merging the part starting here with the next one, or `NONE`.
    pair: Vec<u32>,
    heap: BinaryHeap<Reverse<u64>>,
}

impl Merger {
    /// Merges `t[s..e]`; returns the token count and, if `starts` is given, writes the token
    /// start offsets (absolute) followed by `e`.
    fn merge(&mut self, v: &Vocab, t: &[u8], s: usize, e: usize, starts: Option<&mut Vec<usize>>) -> usize {
        let n = e - s;
        self.end.clear();
        self.prev.clear();
        self.pair.clear();
        self.heap.clear();
        self.end.extend((1..=n).map(|k| k as u32));
        self.prev.extend((0..n).map(|k| (k as u32).wrapping_sub(1)));
        for k in 0..n {
            let r = if k + 2 <= n { v.pair_rank(t, s + k) } else { NONE };
            self.pair.push(r);
            if r != NONE {
                self.heap.push(Reverse(((r as u64) << 32) | k as u64));
            }
        }
        let mut tokens = n;
        while let Some(Reverse(top)) = self.heap.pop() {
            let r = (top >> 32) as u32;
            let left = (top & 0xffff_ffff) as usize;
            if self.pair[left] != r {
                continue; // stale: the pair changed since it was pushed
            }
            let right = self.end[left] as usize;
            let right_end = self.end[right] as usize;
            // Merge: the part at `left` now ends where `right` ended.
            self.end[left] = right_end as u32;
            self.pair[right] = NONE;
            tokens -= 1;
            if right_end < n {
                self.prev[right_end] = left as u32;
                let next_end = self.end[right_end] as usize;
                self.set_pair(v, t, s, left, next_end);
            } else {
                self.pair[left] = NONE;
            }
            if left > 0 {
                let p = self.prev[left] as usize;
                self.set_pair(v, t, s, p, right_end);
            }
        }
        if let Some(out) = starts {
            out.clear();
            let mut k = 0;
            while k < n {
                out.push(s + k);
                k = self.end[k] as usize;
            }
            out.push(e);
        }
        tokens
    }

    #[inline]
    fn set_pair(&mut self, v: &Vocab, t: &[u8], s: usize, at: usize, pair_end: usize) {
        let r = v.rank_in_merge(t, s + at, s + pair_end);
        self.pair[at] = r;
        if r != NONE {
            self.heap.push(Reverse(((r as u64) << 32) | at as u64));
        }
    }
}

/// Windowed merge of a long piece (see the module doc).
fn count_long(v: &Vocab, m: &mut Merger, t: &[u8], s: usize, e: usize, budget: u64) -> (u64, bool) {
    // `cur`: token starts of the current window's encoding from the last join point, then its end.
    let mut cur: Vec<usize> = Vec::with_capacity(WINDOW + 1);
    let mut next: Vec<usize> = Vec::with_capacity(WINDOW + 1);
    // The last merged window and its encoding: a window with the same bytes (periodic text:
    // repeated characters, whitespace, emoji) has the same encoding, shifted.
    let mut last = (s, s + WINDOW);
    m.merge(v, t, s, s + WINDOW, Some(&mut cur));
    let mut last_starts = cur.clone();
    let mut committed = 0u64;
    loop {
        let cur_end = cur[cur.len() - 1];
        if cur_end == e {
            return (committed + (cur.len() - 1) as u64, true);
        }
        // The next window starts at the last boundary at least OVERLAP before the end (but
        // after the first), so it overlaps the current one.
        let target = cur_end - OVERLAP;
        let b_idx = match cur[1..cur.len() - 1].iter().rposition(|&p| p <= target) {
            Some(k) => k + 1,
            None if cur.len() > 2 => 1,
            None => return whole(m, v, t, s, e),
        };
        let b = cur[b_idx];
        let next_end = (b + WINDOW).min(e);
        if next_end - b == last.1 - last.0 && t.get(b..next_end) == t.get(last.0..last.1) {
            next.clear();
            next.extend(last_starts.iter().map(|&p| p - last.0 + b));
        } else {
            m.merge(v, t, b, next_end, Some(&mut next));
            last = (b, next_end);
            last_starts.clear();
            last_starts.extend_from_slice(&next);
        }
        // First token present in both encodings.
        let (mut p, mut q) = (b_idx, 0);
        let joined = loop {
            if p + 1 >= cur.len() || q + 1 >= next.len() {
                break None;
            }
            match cur[p].cmp(&next[q]) {
                std::cmp::Ordering::Less => p += 1,
                std::cmp::Ordering::Greater => q += 1,
                std::cmp::Ordering::Equal => {
                    if cur[p + 1] == next[q + 1] {
                        break Some((p, q));
                    }
                    p += 1;
                    q += 1;
                }
            }
        };
        let Some((p, q)) = joined else {
            return whole(m, v, t, s, e);
        };
        committed += p as u64;
        if committed > budget {
            return (committed, false);
        }
        cur.clear();
        cur.extend_from_slice(&next[q..]);
    }
}

/// The fallback: one merge over the whole piece (memory proportional to its length).
#[cold]
fn whole(m: &mut Merger, v: &Vocab, t: &[u8], s: usize, e: usize) -> (u64, bool) {
    (m.merge(v, t, s, e, None) as u64, true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::tokenize::tests::Rng;
    use crate::tokenize::vocab::{CL100K, O200K};

    /// The array scan and the heap merge are two implementations of tiktoken's merge: they must
    /// agree on every segment the array scan takes, whatever its length up to `SMALL`.
    #[test]
    fn array_scan_and_heap_merge_agree() {
        let alphabets: [&[u8]; 4] = [
            b"abcdefghijklmnopqrstuvwxyz",
            b"etaoin shrdlu",
            "日本語の文章한국어Жωक".as_bytes(),
            b"0123456789.,;:!?()[]{}<>=+-*/_'\"",
        ];
        let mut rng = Rng::new(7);
        let mut merger = Merger::default();
        for round in 0..20_000 {
            let alphabet = alphabets[round % alphabets.len()];
            let n = 2 + rng.below(SMALL - 1);
            let text: Vec<u8> = (0..n).map(|_| *rng.pick(alphabet)).collect();
            for v in [&CL100K, &O200K] {
                let scan = count_small(v, &text, 0, n);
                let heap = merger.merge(v, &text, 0, n, None) as u64;
                assert_eq!(scan, heap, "{:?}", String::from_utf8_lossy(&text));
            }
        }
    }
}
