//! The merge of one part: from its characters' token ids, apply the listed merge of lowest
//! index, leftmost on ties, until none applies; the result's length is the count. This is
//! `tokenizers`' `Word::merge_all` (its priority queue of (merge index, position) with stale
//! entries skipped picks exactly that merge each time). Short parts scan for the best pair
//! (quadratic in a bounded length); longer ones use a binary heap: O(n log n) time, O(n) memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Model;

/// Bits of each field of a merge entry.
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;

/// Parts up to this many symbols are merged by scanning.
const SCAN_MAX: usize = 32;

/// A free slot: no merge.
const NONE: u32 = u32::MAX;

impl Model {
    /// The merge of the pair (`a`, `b`): its index (the priority) and the token it makes.
    #[inline]
    pub(super) fn merge(&self, a: u32, b: u32) -> Option<(u32, u32)> {
        let (Some(&from), Some(&to)) = (self.merge_offsets.get(a as usize), self.merge_offsets.get(a as usize + 1)) else {
            return None;
        };
        let list = self.merges.get(from as usize..to as usize)?;
        let k = list.binary_search_by(|e| (e >> (2 * FIELD_BITS)).cmp(&u64::from(b))).ok()?;
        let e = list.get(k)?;
        Some(((e >> FIELD_BITS & FIELD_MASK) as u32, (e & FIELD_MASK) as u32))
    }
}

/// Scratch space reused across the parts of one count.
#[derive(Default)]
pub(super) struct Merger {
    /// Scan: the merge of each adjacent pair (index, new id), `NONE` index when none.
    pairs: Vec<(u32, u32)>,
    /// Heap: the neighbours of each position (`NONE` at the ends) and the queue.
    prev: Vec<u32>,
    next: Vec<u32>,
    queue: BinaryHeap<Reverse<(u32, u32)>>,
}

impl Merger {
    /// The number of tokens `ids` merges into. `ids` is overwritten.
    pub(super) fn count(&mut self, model: &Model, ids: &mut [u32]) -> usize {
        if ids.len() <= 1 {
            ids.len()
        } else if ids.len() <= SCAN_MAX {
            self.scan(model, ids)
        } else {
            self.heap(model, ids)
        }
    }

    fn scan(&mut self, model: &Model, ids: &mut [u32]) -> usize {
        let mut n = ids.len();
        self.pairs.clear();
        self.pairs.extend(ids.windows(2).map(|w| model.merge(w[0], w[1]).unwrap_or((NONE, 0))));
        loop {
            // The lowest merge index; the leftmost on ties (the same pair twice).
            let mut best: Option<usize> = None;
            let mut best_rank = NONE;
            for (k, &(rank, _)) in self.pairs.iter().enumerate() {
                if rank < best_rank {
                    best_rank = rank;
                    best = Some(k);
                }
            }
            let Some(k) = best else { return n };
            let Some(&(_, new)) = self.pairs.get(k) else { return n };
            // Symbol k takes the pair's token; symbol k + 1 goes.
            if let Some(s) = ids.get_mut(k) {
                *s = new;
            }
            ids.copy_within(k + 2..n, k + 1);
            n -= 1;
            self.pairs.remove(k);
            let pair = |j: usize| match (ids.get(j), ids.get(j + 1)) {
                (Some(&a), Some(&b)) if j + 1 < n => model.merge(a, b).unwrap_or((NONE, 0)),
                _ => (NONE, 0),
            };
            if k > 0 {
                let p = pair(k - 1);
                if let Some(slot) = self.pairs.get_mut(k - 1) {
                    *slot = p;
                }
            }
            if k + 1 < n {
                let p = pair(k);
                if let Some(slot) = self.pairs.get_mut(k) {
                    *slot = p;
                }
            }
        }
    }

    fn heap(&mut self, model: &Model, ids: &mut [u32]) -> usize {
        let n = ids.len();
        let mut count = n;
        self.prev.clear();
        self.next.clear();
        self.queue.clear();
        self.prev.extend((0..n as u32).map(|k| k.checked_sub(1).unwrap_or(NONE)));
        self.next.extend((1..=n as u32).map(|k| if k as usize == n { NONE } else { k }));
        for (k, w) in ids.windows(2).enumerate() {
            if let Some((rank, _)) = model.merge(w[0], w[1]) {
                self.queue.push(Reverse((rank, k as u32)));
            }
        }
        while let Some(Reverse((rank, pos))) = self.queue.pop() {
            let p = pos as usize;
            // A stale entry: the symbol went, or its pair is no longer the one queued (a pair
            // only grows to the right, so the same merge index means the same pair).
            let (Some(&left), Some(&nx)) = (ids.get(p), self.next.get(p)) else { continue };
            if left == NONE || nx == NONE {
                continue;
            }
            let Some(&right) = ids.get(nx as usize) else { continue };
            let Some((r, new)) = model.merge(left, right) else { continue };
            if r != rank {
                continue;
            }
            let after = self.next.get(nx as usize).copied().unwrap_or(NONE);
            if let Some(s) = ids.get_mut(p) {
                *s = new;
            }
            if let Some(s) = ids.get_mut(nx as usize) {
                *s = NONE;
            }
            if let Some(s) = self.next.get_mut(p) {
                *s = after;
            }
            if let Some(s) = self.prev.get_mut(after as usize) {
                *s = pos;
            }
            count -= 1;
            let before = self.prev.get(p).copied().unwrap_or(NONE);
            if let Some(&b) = ids.get(before as usize) {
                if let Some((r, _)) = model.merge(b, new) {
                    self.queue.push(Reverse((r, before)));
                }
            }
            if let Some(&a) = ids.get(after as usize) {
                if let Some((r, _)) = model.merge(new, a) {
                    self.queue.push(Reverse((r, pos)));
                }
            }
        }
        count
    }
}
