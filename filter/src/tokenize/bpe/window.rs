//! Long spans (past [`WINDOW`] bytes) merged in overlapping windows, so time is linear and
//! memory bounded. Two properties of BPE make the stitching exact (proved in the `bpe` crate's
//! README, "Properties of BPE"): any run of consecutive tokens of an encoding is itself the
//! encoding of its text, and two encodings that share a token at the same place join into the
//! encoding of the union. So with the encoding of one window known, the next window starts at
//! one of its token boundaries a little before its end, and the two are joined at the first
//! token (same start, same end) both contain; what lies before it is final. If two windows
//! share no token (never seen with these vocabularies), the whole span is merged at once with
//! a binary heap ([`merge_whole`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::super::vocab::{Tables, Vocab, NONE};
use super::blocks::Merger;
use super::WINDOW;

/// How far before a window's end the next one starts, at least.
const OVERLAP: usize = 48;

/// The count of `t[s..e]`, a span no cut divides, window by window (the convention on `budget`
/// is in the module doc of `bpe`).
pub(super) fn count<T: Tables>(v: &Vocab<T>, m: &mut Merger, t: &[u8], s: usize, e: usize, budget: u64) -> u64 {
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
            return committed + (cur.len() - 1) as u64;
        }
        // The next window starts at the last boundary at least OVERLAP before the end (but
        // after the first), so it overlaps the current one.
        let target = cur_end - OVERLAP;
        let b_idx = match cur[1..cur.len() - 1].iter().rposition(|&p| p <= target) {
            Some(k) => k + 1,
            None if cur.len() > 2 => 1,
            None => return merge_whole(v, t, s, e),
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
            return merge_whole(v, t, s, e);
        };
        committed += p as u64;
        if committed > budget {
            return committed;
        }
        cur.clear();
        cur.extend_from_slice(&next[q..]);
    }
}

/// The fallback: one merge over the whole span, with a binary heap of candidate merges (stale
/// entries are skipped when popped), so its time stays O(n log n) at any length where the
/// block minima of [`Merger`] would cost O(n^1.5).
/// Memory is proportional to the piece's length.
#[cold]
pub(super) fn merge_whole<T: Tables>(v: &Vocab<T>, t: &[u8], s: usize, e: usize) -> u64 {
    let n = e - s;
    // `end[k]`: end of the part starting at `k`; `prev[k]`: start of the part before it;
    // `pair[k]`: rank of merging it with the next part.
    let mut end: Vec<u32> = (1..=n).map(|k| k as u32).collect();
    let mut prev: Vec<u32> = (0..n).map(|k| (k as u32).wrapping_sub(1)).collect();
    let mut pair: Vec<u32> = (0..n).map(|k| if k + 2 <= n { v.pair_rank(t, s + k) } else { NONE }).collect();
    let mut heap: BinaryHeap<Reverse<u64>> =
        pair.iter().enumerate().filter(|(_, &r)| r != NONE).map(|(k, &r)| Reverse((r as u64) << 32 | k as u64)).collect();
    let mut tokens = n as u64;
    let part_end = |end: &[u32], k: usize| end.get(k).map_or(n, |&x| x as usize);
    let update = |heap: &mut BinaryHeap<Reverse<u64>>, pair: &mut [u32], at: usize, r: u32| {
        if let Some(x) = pair.get_mut(at) {
            *x = r;
        }
        if r != NONE {
            heap.push(Reverse((r as u64) << 32 | at as u64));
        }
    };
    while let Some(Reverse(top)) = heap.pop() {
        let (r, left) = ((top >> 32) as u32, (top & 0xffff_ffff) as usize);
        if pair.get(left) != Some(&r) {
            continue; // stale: the pair changed since it was pushed
        }
        let right = part_end(&end, left);
        let right_end = part_end(&end, right);
        tokens -= 1;
        if let Some(x) = end.get_mut(left) {
            *x = right_end as u32;
        }
        update(&mut heap, &mut pair, right, NONE);
        let r = if right_end < n {
            if let Some(x) = prev.get_mut(right_end) {
                *x = left as u32;
            }
            rank_cold(v, t, s + left, s + part_end(&end, right_end))
        } else {
            NONE
        };
        update(&mut heap, &mut pair, left, r);
        if left > 0 {
            let p = prev.get(left).map_or(0, |&x| x as usize);
            update(&mut heap, &mut pair, p, rank_cold(v, t, s + p, s + right_end));
        }
    }
    tokens
}

/// [`Vocab::merge_rank`] kept out of line, for the cold [`merge_whole`] (less code for V8 to
/// compile at start-up).
#[inline(never)]
fn rank_cold<T: Tables>(v: &Vocab<T>, t: &[u8], start: usize, end: usize) -> u32 {
    v.merge_rank(t, start, end)
}
