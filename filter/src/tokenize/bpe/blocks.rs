//! tiktoken's merge for spans of up to [`WINDOW`] bytes (and the windows of longer ones): the
//! same merges in the same order as the array scan of `small`, over parts linked both ways, with
//! the minimum merge key kept per block of about sqrt(n) parts. A merge scans the block minima,
//! recomputes its own block, and recomputes another block only when that block's minimum may
//! have risen; no heap and no data-dependent branch in the scans, which keeps mispredictions
//! low on the long merges of text that never cuts (random letters). The arrays are fixed and
//! every index is masked, so no access needs a bounds check.

use super::super::layout::O200K_RANK_BITS;
use super::super::vocab::{Tables, Vocab, NONE};
use super::WINDOW;

/// Scratch for the merge, indexed by part (a part is named by its first byte's offset in the
/// span): fixed arrays of `WINDOW` entries, allocated when a count first needs them. Every
/// index is masked with `WINDOW - 1` (each is below the span's length, at most `WINDOW`).
#[derive(Default)]
pub(super) struct Merger(Option<Box<MergeArrays>>);

struct MergeArrays {
    /// `rank << POS_BITS | k` for part `k`: the rank of merging it with the next part, or
    /// `u32::MAX` (the last part, parts merged away, pairs that are no token, and the padding
    /// of the last block).
    keys: [u32; WINDOW],
    /// The minimum of `keys` over each block of `1 << shift` parts.
    mins: [u32; MAX_BLOCKS],
    next: [u16; WINDOW],
    prev: [u16; WINDOW],
}

/// Index mask of [`MergeArrays`].
const AT: usize = WINDOW - 1;
/// Blocks have at least 8 parts.
const MAX_BLOCKS: usize = WINDOW / 8;
const _: () = assert!(WINDOW.is_power_of_two() && WINDOW <= u16::MAX as usize);

impl Merger {
    /// Merges `t[s..e]`, at most `WINDOW` bytes (a part's position is `POS_BITS` of its key);
    /// returns the token count and, if `starts` is given, writes the token start offsets
    /// (absolute) followed by `e`.
    pub(super) fn merge<T: Tables>(&mut self, v: &Vocab<T>, t: &[u8], s: usize, e: usize, starts: Option<&mut Vec<usize>>) -> usize {
        debug_assert!(e - s <= WINDOW);
        let n = (e - s).min(WINDOW);
        let a = self.0.get_or_insert_with(|| {
            Box::new(MergeArrays { keys: [u32::MAX; WINDOW], mins: [u32::MAX; MAX_BLOCKS], next: [0; WINDOW], prev: [0; WINDOW] })
        });
        // Blocks of 8 to 32 parts, about sqrt(n): a merge scans the block minima, then
        // recomputes the merged part's block, and another block only when its minimum may
        // have risen.
        let bits = usize::BITS - n.leading_zeros();
        let shift = (bits / 2).max(3);
        let block = 1usize << shift;
        // (`WINDOW` is a multiple of every block size, so the padding stays inside the arrays.)
        let padded = (n + block - 1) & !(block - 1);
        let blocks = (padded >> shift).min(MAX_BLOCKS);
        for k in 0..padded {
            a.keys[k & AT] = if k + 1 < n { key_at(v.pair_rank(t, s + k), k) } else { u32::MAX };
        }
        for k in 0..n {
            a.next[k & AT] = (k + 1) as u16;
            a.prev[k & AT] = k.wrapping_sub(1) as u16;
        }
        for b in 0..blocks {
            a.rescan(b, shift);
        }
        let mut tokens = n;
        loop {
            let min = a.mins[..blocks].iter().copied().min().unwrap_or(u32::MAX);
            if min == u32::MAX {
                break;
            }
            // Merge part `at` with the next one, `gone`; `after` is the part that follows them.
            // (`at` has a next part, so `gone < n`; `after == n` when they were the last two.)
            let at = (min & POS_MASK) as usize;
            let gone = usize::from(a.next[at & AT]);
            let after = usize::from(a.next[gone & AT]);
            a.next[at & AT] = after as u16;
            let gone_key = a.keys[gone & AT];
            a.keys[gone & AT] = u32::MAX;
            tokens -= 1;
            a.keys[at & AT] = if after < n {
                a.prev[after & AT] = at as u16;
                key_at(v.merge_rank(t, s + at, s + usize::from(a.next[after & AT])), at)
            } else {
                u32::MAX
            };
            // `at`'s old key was the minimum of its block: recomputed once all keys are set.
            let at_block = at >> shift;
            if at > 0 {
                let before = usize::from(a.prev[at & AT]);
                let old = a.keys[before & AT];
                let new = key_at(v.merge_rank(t, s + before, s + after), before);
                a.keys[before & AT] = new;
                let b = before >> shift;
                if b != at_block {
                    // Keys are unique (they hold the position): only the block's own minimum
                    // rising needs the block scanned again.
                    let min = &mut a.mins[b & (MAX_BLOCKS - 1)];
                    if old == *min && new > old {
                        a.rescan(b, shift);
                    } else {
                        *min = (*min).min(new);
                    }
                }
            }
            a.rescan(at_block, shift);
            let b = gone >> shift;
            if b != at_block && gone_key == a.mins[b & (MAX_BLOCKS - 1)] {
                a.rescan(b, shift);
            }
        }
        if let Some(out) = starts {
            out.clear();
            let mut k = 0;
            while k < n {
                out.push(s + k);
                k = usize::from(a.next[k & AT]);
            }
            out.push(s + n);
        }
        tokens
    }
}

impl MergeArrays {
    /// Recomputes the minimum of block `b` (parts `b << shift ..` of `1 << shift`).
    #[inline(always)]
    fn rescan(&mut self, b: usize, shift: u32) {
        let from = b << shift;
        let min = self.keys.get(from..from + (1 << shift)).and_then(|block| block.iter().copied().min());
        self.mins[b & (MAX_BLOCKS - 1)] = min.unwrap_or(u32::MAX);
    }
}

/// A part's position in a [`Merger`] key: the merge handles spans of up to `WINDOW` bytes.
const POS_BITS: u32 = 10;
const POS_MASK: u32 = (1 << POS_BITS) - 1;
const _: () = assert!(WINDOW < 1 << POS_BITS && O200K_RANK_BITS + POS_BITS < 32);

#[inline(always)]
fn key_at(rank: u32, k: usize) -> u32 {
    if rank == NONE { u32::MAX } else { rank << POS_BITS | k as u32 }
}
