//! tiktoken's merge for spans of up to [`SMALL`] bytes, on the stack: the lowest-ranked
//! adjacent pair merges first, the leftmost on ties, until no adjacent pair is a token; returns
//! the number of parts left. Parts are named by the byte they start at and linked both ways, so
//! a merge moves nothing. A span with characters of 2 or 3 bytes starts with its solid ones
//! (`Vocab::solid`) as one part each, which provably merges to the same tokens (`seed_solid`).

use super::super::layout::{load8, O200K_RANK_BITS};
use super::super::unicode::is_continuation;
use super::super::vocab::{Tables, Vocab, NONE};
use super::SMALL;

/// tiktoken's `_byte_pair_merge` of `t[s..e]` (at most `SMALL` bytes): the number of tokens.
/// `rank[k]` is the key of merging part `k` with the next one (`small_key`: the rank above the
/// position, so one minimum picks the lowest rank, leftmost on ties), `u32::MAX` for the last
/// part and for parts already merged away. Nothing is shifted on a merge: an array shift is a
/// `memmove` call per merge natively and a bulk-memory call in wasm, both out of the generated
/// code.
pub(super) fn merge<T: Tables>(v: &Vocab<T>, t: &[u8], s: usize, e: usize) -> u64 {
    let n = e - s;
    let mut next = [0u8; SMALL];
    let mut prev = [0u8; SMALL];
    let mut rank = [u32::MAX; SMALL];
    for k in 0..n {
        next[k] = (k + 1) as u8;
        prev[k] = k.wrapping_sub(1) as u8;
    }
    let mut parts = n;
    match t.get(s..e) {
        // (Any byte past ASCII, 8 at a time: random letters reach here often.)
        Some(seg) if seg.chunks(8).fold(0, |a, w| a | load8(w, 0)) & 0x8080_8080_8080_8080 != 0 => {
            parts -= seed_solid(v, seg, &mut next, &mut prev);
            let mut k = 0;
            while k < n {
                let b = usize::from(next[k]);
                if b >= n {
                    break;
                }
                let c = usize::from(next[b]);
                rank[k] = small_key(if c == k + 2 { v.pair_rank(t, s + k) } else { v.merge_rank(t, s + k, s + c) }, k);
                k = b;
            }
        }
        _ => {
            for (k, r) in rank.iter_mut().enumerate().take(n - 1) {
                *r = small_key(v.pair_rank(t, s + k), k);
            }
        }
    }
    loop {
        // The lowest rank, leftmost on ties: one minimum over the keys, with no data-dependent
        // branch and nothing to build per part (the keys are kept, not rebuilt on every scan).
        let min = rank[..n - 1].iter().copied().min().unwrap_or(u32::MAX);
        if min == u32::MAX {
            return parts as u64;
        }
        // Merge part `at` with the next one, `gone`; `after` is the part that follows them.
        let at = (min & SMALL_POS_MASK) as usize;
        // (`at` has a next part, so `gone < n`; `after == n` when they were the last two.)
        let gone = usize::from(next[at]);
        let after = usize::from(next[gone]);
        next[at] = after as u8;
        rank[gone] = u32::MAX;
        parts -= 1;
        if after < n {
            rank[at] = small_key(v.merge_rank(t, s + at, s + usize::from(next[after])), at);
            prev[after] = at as u8;
        } else {
            rank[at] = u32::MAX;
        }
        if at > 0 {
            let before = usize::from(prev[at]);
            rank[before] = small_key(v.merge_rank(t, s + before, s + after), before);
        }
    }
}

/// A part's position in a [`merge`] key.
const SMALL_POS_BITS: u32 = SMALL.trailing_zeros();
const SMALL_POS_MASK: u32 = (1 << SMALL_POS_BITS) - 1;
const _: () = assert!(SMALL.is_power_of_two() && O200K_RANK_BITS + SMALL_POS_BITS < 32);

/// The key of merging part `k` at `rank` in [`merge`] (`u32::MAX` for no token).
#[inline(always)]
fn small_key(rank: u32, k: usize) -> u32 {
    if rank == NONE { u32::MAX } else { rank << SMALL_POS_BITS | k as u32 }
}

/// Links each solid character of `seg` (`Vocab::solid`) that stands between characters of two
/// or more bytes (or at an end of `seg`) as one part; returns how many parts that removed.
///
/// Exact: take a solid character c in such a place, with R the highest rank its merge alone
/// reaches.
/// 1. No merge reaches across c's edges before c is whole. The first one would join a proper
///    part of c to a neighbour: a suffix of c followed by the next character's lead byte, or a
///    prefix of c after the previous character's continuation byte. Every such token ranks
///    above R (the tables of `build.rs`; the last byte is checked with the actual next lead
///    byte), while c, not yet whole, still has a merge of rank at most R to make.
/// 2. Once c is whole, a merge of c with a neighbour is such a token too, so it ranks above R.
///    So while c is not whole in the byte-level merge, every merge made elsewhere ranks below
///    every pair that c as one part would have added.
///
/// So the byte-level merge makes the same merges, in the same order, as the merge started with
/// c whole, apart from c's own. `seg` is merged alone, so its ends have no neighbours.
pub(super) fn seed_solid<T: Tables>(v: &Vocab<T>, seg: &[u8], next: &mut [u8; SMALL], prev: &mut [u8; SMALL]) -> usize {
    let n = seg.len().min(SMALL);
    let mut removed = 0;
    let mut k = 0;
    while let Some(&b0) = seg.get(k).filter(|_| k < n) {
        let len = if b0 >= 0xe0 { 3 } else { 2 };
        if !(0xc0..0xf0).contains(&b0) || k + len > n {
            k += 1;
            continue;
        }
        let cont = |i: usize| seg.get(k + i).copied().filter(|&b| is_continuation(b)).map(|b| u32::from(b & 0x3f));
        // (Only the shortest encoding is the character: `seg` need not be UTF-8 here.)
        let cp = match (len, cont(1), cont(2)) {
            (2, Some(c1), _) if b0 >= 0xc2 => u32::from(b0 & 0x1f) << 6 | c1,
            (3, Some(c1), Some(c2)) if b0 > 0xe0 || c1 >= 0x20 => u32::from(b0 & 0x0f) << 12 | c1 << 6 | c2,
            _ => {
                k += 1;
                continue;
            }
        };
        let before_ok = k == 0 || seg.get(k - 1).is_some_and(|&b| is_continuation(b));
        let last = seg.get(k + len - 1).copied().unwrap_or(0);
        if before_ok && v.solid(cp, last, seg.get(k + len).copied()) {
            next[k] = (k + len) as u8;
            if k + len < n {
                prev[k + len] = k as u8;
            }
            removed += len - 1;
        }
        k += len;
    }
    removed
}
