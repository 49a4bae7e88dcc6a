//! Counting the tokens of one piece exactly as tiktoken's byte-pair merge does: repeatedly merge
//! the adjacent pair whose concatenation has the lowest rank, the leftmost on ties.
//!
//! - A piece in the vocabulary is one token (one lookup).
//! - A piece whose length alone puts it past the budget (a long run of ASCII letters: no token
//!   holds more than 41 of them in a row) is over without merging (`bound_over`).
//! - A piece is first cut where no token can span a boundary (a bit per byte pair, then a filter
//!   of the windows tokens hold around their inner boundaries): no merge ever crosses such a
//!   point, so the segments merge independently.
//! - Short segments: tiktoken's own array scan, on the stack, over parts linked both ways. A
//!   "solid" character of 2 or 3 bytes between other such characters (most CJK, Hangul and
//!   Cyrillic characters in running text) starts as one part instead of its bytes
//!   (`seed_solid`): the merges inside it cannot be overtaken by a merge across its edges.
//! - Longer segments: the same over parts linked both ways, with the minimum kept per block of
//!   parts, so a merge scans the block minima, recomputes its own block and another only when
//!   that block's minimum may have risen. (It replaced a
//!   binary heap of candidate merges: on 1 MB of random letters 36–44 % fewer mispredicted
//!   branches in V8.) The heap stays only for the never-seen fallback of merging a whole long
//!   piece at once, where blocks would cost O(n^1.5).
//! - Long segments (past `WINDOW` bytes) are merged in overlapping windows, so time is linear and
//!   memory bounded. Two properties of BPE make the stitching exact (proved in the `bpe` crate's
//!   README, "Properties of BPE"): any run of consecutive tokens of an encoding is itself the
//!   encoding of its text, and two encodings that share a token at the same place join into
//!   the encoding of the union. So with the encoding of one window known, the next window starts
//!   at one of its token boundaries a little before its end, and the two are joined at the first
//!   token (same start, same end) both contain; what lies before it is final. If two windows
//!   share no token (never seen with these vocabularies), the whole piece is merged at once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::layout::{hash_words2, MAX_TOKEN_LEN, O200K_RANK_BITS};
use super::pretokenize::all_ascii_letters;
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
pub fn count_piece(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, w0: u64, budget: u64) -> (u64, bool) {
    let n = e - s;
    if n == 1 || v.rank_from(t, s, e, w0) != NONE {
        return (1, true);
    }
    count_merged(v, scratch, t, s, e, budget)
}

/// A piece that is no token: its count from the memo of this count's merged pieces, or merged.
#[inline(never)]
fn count_merged(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> (u64, bool) {
    let key = Memo::key(t, s, e);
    if let Some(n) = key.and_then(|k| scratch.1.get(k)) {
        return (n, true);
    }
    let (n, finished) = merge_piece(v, scratch, t, s, e, budget);
    if let (Some(k), true) = (key, finished) {
        scratch.1.put(k, n);
    }
    (n, finished)
}

#[inline(always)]
fn merge_piece(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> (u64, bool) {
    // (No piece has more tokens than bytes: only one longer than the budget can be over by a bound.)
    if (e - s) as u64 > budget {
        if let Some(n) = t.get(s..e).and_then(|piece| bound_over(v, piece, budget)) {
            return (n, false);
        }
    }
    // Split the piece where no token holds the two neighbouring bytes (`Vocab::inside`): no
    // merge crosses such a point, and the merges on either side never change the pairs of the
    // other, so each segment merges on its own to the same tokens. Text mixing scripts splits
    // every few bytes (1 MB of it: 137 → 37 ms in wasm); a segment like the one before
    // (periodic text: emoji, repeated characters) reuses its count. Longer segments are cut
    // further where the windows around a boundary show no token can span it (`count_refined`).
    // Pieces of up to `SMALL` bytes go there directly: its cuts include nearly all of these
    // (1 MB of mixed scripts: −6 % instructions with o200k_base).
    if e - s <= SMALL {
        let n = count_refined(v, scratch, t, s, e, budget);
        return (n, n <= budget);
    }
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

/// A lower bound of the piece's count, if that alone passes `budget`: then the piece need not be
/// merged at all. No token is longer than `MAX_TOKEN_LEN` bytes, and none holds more than
/// `Vocab::max_letter_run` ASCII letters in a row (41 in cl100k_base, 26 in o200k_base), so a
/// piece of letters after its first character has at least (letters / that) tokens. A prompt
/// that is one long word (the adversarial "letters without spaces": 1 MB against an
/// 8,000-token limit) is decided by one scan of its bytes instead of merging 8,000 tokens'
/// worth of it.
#[inline(never)]
fn bound_over(v: &Vocab, piece: &[u8], budget: u64) -> Option<u64> {
    let any = piece.len().div_ceil(MAX_TOKEN_LEN) as u64;
    if any > budget {
        return Some(any);
    }
    if piece.len() as u64 <= budget.saturating_mul(v.max_letter_run() as u64) {
        return None;
    }
    // The first character may be the pattern's prefix (a space, a symbol: at most 4 bytes);
    // every token holds at most `max_letter_run` of the letters after it, which are one run.
    let first = piece.iter().take(4).position(u8::is_ascii_alphabetic).unwrap_or(4);
    let letters = piece.get(first..).filter(|rest| all_ascii_letters(rest))?;
    let n = letters.len().div_ceil(v.max_letter_run().max(1)) as u64;
    (n > budget).then_some(n)
}

/// A segment between split points (at most `WINDOW + 1` bytes): one token, or cut further and
/// merged.
#[inline(always)]
fn count_part(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> u64 {
    if e - s == 1 || v.rank_of_part(t, s, e) != NONE {
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
///
/// Text with characters of more than one byte asks `Vocab::spans_memo`, which remembers the
/// answers for the windows it saw (64 KB of CJK: −3.0 % / −6.0 % instructions, cl100k / o200k;
/// 1 MB of mixed scripts: +0.2 % / −5.8 %; 1 MB mixed document −1.8 % / −2.4 %); ASCII text
/// asks the filter itself (`count_refined_in`; random letters +0.6 % / +0.5 %).
#[inline(never)]
fn count_refined(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> u64 {
    let Some(seg) = t.get(s..e) else {
        return count_unsplit(v, scratch, t, s, e, budget).0;
    };
    if seg.is_ascii() {
        count_refined_in::<false>(v, scratch, t, s, e, seg, budget)
    } else {
        count_refined_in::<true>(v, scratch, t, s, e, seg, budget)
    }
}

/// [`count_refined`] of `seg == t[s..e]`, with or without the memo of span answers.
#[inline(always)]
fn count_refined_in<const MEMO: bool>(
    v: &Vocab,
    scratch: &mut Scratch,
    t: &[u8],
    s: usize,
    e: usize,
    seg: &[u8],
    budget: u64,
) -> u64 {
    let mut total = 0u64;
    let mut a = 0;
    for k in 1..seg.len() {
        // Cuts are only looked for between characters: a UTF-8 continuation byte is kept with
        // the bytes before it (fewer cuts are always exact; each cut only saves merge work).
        if is_continuation(seg[k]) || if MEMO { v.spans_memo(seg, k) } else { v.spans(seg, k) } {
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
    if e - s == 1 || v.rank_of_part(t, s, e) != NONE {
        return (1, true);
    }
    count_unsplit(v, scratch, t, s, e, budget)
}

/// The merge of a span with no split point.
fn count_unsplit(v: &Vocab, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> (u64, bool) {
    let n = e - s;
    if n <= 3 {
        // The span is no token (its callers looked it up), so only a 2-byte merge can happen:
        // one for a 3-byte span (a CJK character) if either of its pairs is a token.
        let merged = n == 3 && (v.pair_rank(t, s) != NONE || v.pair_rank(t, s + 1) != NONE);
        (n as u64 - u64::from(merged), true)
    } else if n <= SMALL {
        (count_small(v, t, s, e), true)
    } else if n <= WINDOW {
        (scratch.0.merge(v, t, s, e, None) as u64, true)
    } else {
        count_long(v, &mut scratch.0, t, s, e, budget)
    }
}

/// Reusable buffers for one count (empty, and free, until a piece needs a merge), and the memo
/// of its merged pieces.
#[derive(Default)]
pub struct Scratch(Merger, Memo);

/// Slots of [`Memo`].
const MEMO_SLOTS: usize = 32;

/// The counts of the pieces of up to 16 bytes that one count has merged, by their bytes
/// (direct-mapped, the newest piece wins a slot). Texts use their rare words again and again
/// (a name, a term, an identifier), and each merge of such a word costs thousands of
/// instructions against a few dozen for a look here: 4 KB of the bench prose merges 10 pieces
/// with o200k_base, 8 of them the same word. Created with each count (768 bytes zeroed); no
/// slot is read before `valid` says it was written.
#[derive(Default)]
struct Memo {
    valid: u32,
    slots: [MemoSlot; MEMO_SLOTS],
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct MemoSlot {
    /// The piece's bytes, zero-padded: 0..8 and 8..16.
    w0: u64,
    w1: u64,
    len: u32,
    count: u32,
}

impl Memo {
    /// The piece's slot and its key (the count left 0), for pieces of up to 16 bytes.
    #[inline(always)]
    fn key(t: &[u8], s: usize, e: usize) -> Option<(usize, MemoSlot)> {
        let len = e - s;
        if len > 16 {
            return None;
        }
        let w0 = load8(t, s) & mask_of(len.min(8));
        let w1 = if len > 8 { load8(t, s + 8) & mask_of(len - 8) } else { 0 };
        let at = (hash_words2(w0, w1, len) >> (64 - MEMO_SLOTS.trailing_zeros())) as usize;
        Some((at, MemoSlot { w0, w1, len: len as u32, count: 0 }))
    }

    fn get(&self, (at, key): (usize, MemoSlot)) -> Option<u64> {
        let slot = self.slots.get(at).filter(|_| self.valid >> at & 1 != 0)?;
        (MemoSlot { count: 0, ..*slot } == key).then_some(u64::from(slot.count))
    }

    fn put(&mut self, (at, key): (usize, MemoSlot), count: u64) {
        if let (Some(slot), Ok(count)) = (self.slots.get_mut(at), u32::try_from(count)) {
            *slot = MemoSlot { count, ..key };
            self.valid |= 1 << at;
        }
    }
}

/// tiktoken's `_byte_pair_merge` for short pieces, on the stack. Parts are named by the byte
/// they start at and linked both ways; `rank[k]` is the key of merging part `k` with the next
/// one (`small_key`: the rank above the position, so one minimum picks the lowest rank,
/// leftmost on ties), `u32::MAX` for the last part and for parts already merged away. Nothing
/// is shifted on a merge: the array shifts (`copy_within`) were a `memmove` call per merge,
/// 14 % of the branch mispredictions of a mixed document natively, and a bulk-memory call in
/// wasm. A segment with characters of 2 or 3 bytes starts with its solid ones as one part each
/// (`seed_solid`): 64 KB of CJK text takes 7 % / 19 % fewer instructions (cl100k / o200k,
/// wasmtime).
fn count_small(v: &Vocab, t: &[u8], s: usize, e: usize) -> u64 {
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
                rank[k] = small_key(if c == k + 2 { v.pair_rank(t, s + k) } else { v.rank_in_merge(t, s + k, s + c) }, k);
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
        // branch and nothing to build per part (keys built in the scan cost 1 MB of random
        // letters 7.5 % / 3.8 % more instructions in wasmtime, cl100k / o200k).
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
            rank[at] = small_key(v.rank_in_merge(t, s + at, s + usize::from(next[after])), at);
            prev[after] = at as u8;
        } else {
            rank[at] = u32::MAX;
        }
        if at > 0 {
            let before = usize::from(prev[at]);
            rank[before] = small_key(v.rank_in_merge(t, s + before, s + after), before);
        }
    }
}

/// A part's position in a [`count_small`] key.
const SMALL_POS_BITS: u32 = SMALL.trailing_zeros();
const SMALL_POS_MASK: u32 = (1 << SMALL_POS_BITS) - 1;
const _: () = assert!(SMALL.is_power_of_two() && O200K_RANK_BITS + SMALL_POS_BITS < 32);

/// The key of merging part `k` at `rank` in [`count_small`] (`u32::MAX` for no token).
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
fn seed_solid(v: &Vocab, seg: &[u8], next: &mut [u8; SMALL], prev: &mut [u8; SMALL]) -> usize {
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

/// Scratch for the merge of longer spans, indexed by part (a part is named by its first byte's
/// offset in the span): fixed arrays of `WINDOW` entries, allocated when a count first needs
/// them. Every index is masked with `WINDOW - 1` (each is below the span's length, at most
/// `WINDOW`), so no access needs a bounds check. With that, and a block scanned again only when
/// its minimum may have risen, 1 MB of random letters took 3.7 % / 6.2 % fewer instructions in
/// wasmtime (cl100k / o200k) than with checked `Vec`s and up to three block scans per merge.
#[derive(Default)]
struct Merger(Option<Box<MergeArrays>>);

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
    fn merge(&mut self, v: &Vocab, t: &[u8], s: usize, e: usize, starts: Option<&mut Vec<usize>>) -> usize {
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
                key_at(v.rank_in_merge(t, s + at, s + usize::from(a.next[after & AT])), at)
            } else {
                u32::MAX
            };
            // `at`'s old key was the minimum of its block: recomputed once all keys are set.
            let at_block = at >> shift;
            if at > 0 {
                let before = usize::from(a.prev[at & AT]);
                let old = a.keys[before & AT];
                let new = key_at(v.rank_in_merge(t, s + before, s + after), before);
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
            None => return whole(v, t, s, e),
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
            return whole(v, t, s, e);
        };
        committed += p as u64;
        if committed > budget {
            return (committed, false);
        }
        cur.clear();
        cur.extend_from_slice(&next[q..]);
    }
}

/// The fallback: one merge over the whole piece, with a binary heap of candidate merges (stale
/// entries are skipped when popped), so its time stays O(n log n) at any length where the
/// block minima of [`Merger`] would cost O(n^1.5) (2.6 s natively for 1 MB of random letters).
/// Memory is proportional to the piece's length.
#[cold]
fn whole(v: &Vocab, t: &[u8], s: usize, e: usize) -> (u64, bool) {
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
    (tokens, true)
}

/// [`Vocab::rank_in_merge`] kept out of line, for the cold [`whole`] (less code for V8 to
/// compile at start-up).
#[inline(never)]
fn rank_cold(v: &Vocab, t: &[u8], start: usize, end: usize) -> u32 {
    v.rank_in_merge(t, start, end)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::tokenize::tests::CORPUS;
    use crate::tokenize::vocab::{CL100K, O200K};

    /// How many parts `seed_solid` removes from `text` (at most `SMALL` bytes).
    fn seeds(v: &Vocab, text: &[u8]) -> usize {
        let (mut next, mut prev) = ([0u8; SMALL], [0u8; SMALL]);
        for (k, x) in next.iter_mut().enumerate() {
            *x = (k + 1) as u8;
        }
        seed_solid(v, text, &mut next, &mut prev)
    }

    /// The array scan, the block-minima merge and the heap merge are three implementations of
    /// tiktoken's merge: they must agree on every segment, whatever its length.
    #[test]
    fn the_three_merges_agree() {
        let alphabets: [&[u8]; 4] = [
            b"abcdefghijklmnopqrstuvwxyz",
            b"etaoin shrdlu",
            "日本語の文章한국어Жωक".as_bytes(),
            b"0123456789.,;:!?()[]{}<>=+-*/_'\"",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut merger = Merger::default();
        for round in 0..24_000 {
            let alphabet = alphabets[round % alphabets.len()];
            // Mostly array-scan lengths; two rounds in ten up to a window, one in ten 2-3 bytes.
            let n = 2 + match round % 10 {
                3 | 7 => rng.usize(..WINDOW - 1),
                9 => rng.usize(..2),
                _ => rng.usize(..SMALL - 1),
            };
            let text: Vec<u8> = (0..n).map(|_| *rng.choice(alphabet).unwrap()).collect();
            for v in [&CL100K, &O200K] {
                let blocks = merger.merge(v, &text, 0, n, None) as u64;
                let heap = whole(v, &text, 0, n).0;
                assert_eq!(blocks, heap, "{:?}", String::from_utf8_lossy(&text));
                if n <= SMALL {
                    assert_eq!(count_small(v, &text, 0, n), heap, "{:?}", String::from_utf8_lossy(&text));
                }
                if v.rank(&text, 0, n) == NONE {
                    // What the counting path runs on a span that is no token.
                    let mut scratch = Scratch::default();
                    let unsplit = count_unsplit(v, &mut scratch, &text, 0, n, u64::MAX).0;
                    assert_eq!(unsplit, heap, "{:?}", String::from_utf8_lossy(&text));
                }
            }
        }
    }

    /// Solid characters taken whole from the start (`seed_solid`) merge to the same count as
    /// their bytes: spans of up to `SMALL` bytes cut from the corpus's letters run together
    /// (words of 15 scripts, as the pre-tokenizer hands them over), now and then with a space or
    /// a stray byte, through `count_small` and the heap merge.
    #[test]
    fn solid_characters_merge_as_their_bytes() {
        let lines: Vec<Vec<char>> = CORPUS.iter().map(|line| line.chars().filter(|c| c.is_alphabetic()).collect()).collect();
        let mut rng = fastrand::Rng::with_seed(5);
        let mut seeded = [0usize; 2];
        for round in 0..60_000 {
            let line = rng.choice(&lines).unwrap();
            let mut text = Vec::new();
            for &c in line.iter().skip(rng.usize(..line.len().max(1))) {
                let mut buf = [0u8; 4];
                let piece: &[u8] = match rng.usize(..30) {
                    0 => b" ",
                    1 => &[0x80, 0xe4][rng.usize(..2)..][..1],
                    _ => c.encode_utf8(&mut buf).as_bytes(),
                };
                if text.len() + piece.len() > SMALL {
                    break;
                }
                text.extend_from_slice(piece);
            }
            let n = text.len();
            if n < 2 {
                continue;
            }
            for (i, v) in [&CL100K, &O200K].into_iter().enumerate() {
                if seeds(v, &text) > 0 {
                    seeded[i] += 1;
                }
                assert_eq!(count_small(v, &text, 0, n), whole(v, &text, 0, n).0, "round {round}: {:?}", String::from_utf8_lossy(&text));
            }
        }
        // The seeded path ran, for both encodings.
        assert!(seeded.iter().all(|&k| k > 10_000), "{seeded:?}");
    }

    /// The tokens that start with a continuation byte then a lead byte are the ones that can
    /// overtake a character's own merges from its last byte (the check `Vocab::solid` makes on
    /// the last byte and the next lead byte). For each such token of rank below 2^16, characters
    /// ending with its first byte, followed by the token's following bytes: where the character
    /// is taken whole, the seeded merge agrees with the heap merge. (It fails without that check.)
    #[test]
    fn solid_characters_hold_against_tokens_starting_at_their_last_byte() {
        use crate::tokenize::tests::oracle;
        use crate::tokenize::Encoding;
        let mut rng = fastrand::Rng::with_seed(13);
        let mut seeded = 0;
        for (enc, v) in [(Encoding::Cl100kBase, &CL100K), (Encoding::O200kBase, &O200K)] {
            let bpe = &oracle(enc).bpe;
            for r in 0..1u32 << 16 {
                let Ok(tok) = bpe.decode_bytes(&[r]) else { continue };
                if tok.len() < 2 || !is_continuation(tok[0]) || !(0xc2..0xf0).contains(&tok[1]) {
                    continue;
                }
                // The token's bytes after the first, completed to whole characters.
                let mut rest = tok[1..].to_vec();
                while std::str::from_utf8(&rest).is_err() && rest.len() < tok.len() + 3 {
                    rest.push(if rest == [0xe0] { 0xa0 } else { 0x80 });
                }
                if std::str::from_utf8(&rest).is_err() {
                    continue;
                }
                for _ in 0..24 {
                    // A character ending with the token's first byte: 2 or 3 bytes.
                    let c: Vec<u8> = if rng.usize(..4) == 0 {
                        vec![0xc2 + rng.usize(..30) as u8, tok[0]]
                    } else {
                        vec![0xe1 + rng.usize(..12) as u8, 0x80 + rng.usize(..64) as u8, tok[0]]
                    };
                    let text = ["Ж".as_bytes(), &c, &rest].concat();
                    if std::str::from_utf8(&text).is_err() {
                        continue;
                    }
                    if text.len() > SMALL || seeds(v, &text) == 0 {
                        continue;
                    }
                    seeded += 1;
                    assert_eq!(count_small(v, &text, 0, text.len()), whole(v, &text, 0, text.len()).0, "{:?}", String::from_utf8_lossy(&text));
                }
            }
        }
        assert!(seeded > 1_000, "{seeded}");
    }

    /// The windowed merge of long pieces joins to the same count as one merge of the piece.
    #[test]
    fn windows_join_to_the_whole_merge() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut merger = Merger::default();
        for round in 0..40 {
            let alphabet: &[u8] = if round % 2 == 0 { b"abcdefghijklmnopqrstuvwxyz" } else { b"aab" };
            let n = WINDOW + rng.usize(..8 * WINDOW);
            let text: Vec<u8> = (0..n).map(|_| *rng.choice(alphabet).unwrap()).collect();
            for v in [&CL100K, &O200K] {
                let windowed = count_long(v, &mut merger, &text, 0, n, u64::MAX);
                assert_eq!(windowed, whole(v, &text, 0, n), "{:?}", String::from_utf8_lossy(&text));
            }
        }
    }
}
