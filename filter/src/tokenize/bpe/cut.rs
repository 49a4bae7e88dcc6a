//! Cutting a piece that is no token into spans at boundaries no token crosses. No merge ever
//! joins bytes across such a boundary, and the merges on either side never change the pairs of
//! the other, so each span merges on its own to the same tokens as in the merge of the whole
//! piece: the count of the piece is the sum of its spans' counts. Two tests find the
//! boundaries, the cheaper first: a bit per byte pair (`Vocab::inside`: does any token hold
//! these two bytes next to each other), then, inside spans that are no token, the windows of up
//! to 2 bytes on each side (`Vocab::spans`). Fewer cuts are always exact; each cut only saves
//! merge work. A stretch of more than [`WINDOW`] bytes without a cut is handed on as soon as it
//! is reached (from the pair test to the span test, from the span test to the windowed merge),
//! so a count that passes its budget stops there instead of scanning to the end first.

use super::super::layout::{load8, mask_of};
use super::super::unicode::is_continuation;
use super::super::vocab::{Tables, Vocab, NONE};
use super::{merge_span, Scratch, SMALL, WINDOW};

/// The count of `t[s..e]`, a piece that is no token (see the module doc for the convention on
/// `budget`).
#[inline(always)]
pub(super) fn count_piece<T: Tables>(v: &Vocab<T>, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> u64 {
    // Short pieces go straight to the span test, whose cuts include nearly all of the byte-pair
    // ones, for less than both.
    if e - s <= SMALL {
        return count_at_spans(v, scratch, t, s, e, budget);
    }
    let (Some(inside), Some(piece)) = (v.inside(), t.get(s..e)) else {
        return merge_span(v, scratch, t, s, e, budget);
    };
    let mut total = 0u64;
    let mut a = 0;
    // The last span and its count: periodic text (emoji, repeated characters) repeats its spans.
    let mut memo = (usize::MAX, 0u64, 0u64);
    let mut prev = piece.first().copied().unwrap_or(0) as usize;
    for (k, &b) in piece.iter().enumerate().skip(1) {
        let pair = prev << 8 | b as usize;
        prev = b as usize;
        if inside[pair >> 6] >> (pair & 63) & 1 != 0 {
            if k - a > WINDOW {
                // A long stretch without a cut (random letters): the rest is cut where the
                // windows allow, as it goes.
                return total + count_at_spans(v, scratch, t, s + a, e, budget.saturating_sub(total));
            }
            continue;
        }
        // A cut before byte `k`: count the span `a..k`.
        let len = k - a;
        let word = if len <= 8 { load8(piece, a) & mask_of(len) } else { 0 };
        let n = if len <= 8 && memo.0 == len && memo.1 == word {
            memo.2
        } else {
            let n = if is_token(v, t, s + a, s + k) {
                1
            } else {
                count_at_spans(v, scratch, t, s + a, s + k, budget.saturating_sub(total))
            };
            memo = (len, word, n);
            n
        };
        total += n;
        if total > budget {
            return total;
        }
        a = k;
    }
    if a == 0 {
        // No cut: the piece is no token (`count_piece` looked it up).
        return count_at_spans(v, scratch, t, s, e, budget);
    }
    total + if is_token(v, t, s + a, e) { 1 } else { count_at_spans(v, scratch, t, s + a, e, budget.saturating_sub(total)) }
}

/// Whether the part `t[s..e]` of a piece is one token.
#[inline(always)]
fn is_token<T: Tables>(v: &Vocab<T>, t: &[u8], s: usize, e: usize) -> bool {
    e - s == 1 || v.part_rank(t, s, e) != NONE
}

/// The count of `t[s..e]`, no token, cut wherever no token can span the boundary. CJK text,
/// whose byte pairs all occur inside some token, mostly cuts into single characters here;
/// random lowercase letters into parts of a few to a few hundred bytes. Text with characters of
/// more than one byte asks through the memo of span answers (`Vocab::spans_memo`), which its
/// repeated character pairs hit; ASCII text asks the filter itself, as its windows rarely repeat.
#[inline(never)]
fn count_at_spans<T: Tables>(v: &Vocab<T>, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> u64 {
    let Some(span) = t.get(s..e) else {
        return merge_span(v, scratch, t, s, e, budget);
    };
    if span.is_ascii() {
        count_at_spans_in::<T, false>(v, scratch, t, s, e, span, budget)
    } else {
        count_at_spans_in::<T, true>(v, scratch, t, s, e, span, budget)
    }
}

/// [`count_at_spans`] of `span == t[s..e]`, with or without the memo of span answers.
#[inline(always)]
fn count_at_spans_in<T: Tables, const MEMO: bool>(
    v: &Vocab<T>,
    scratch: &mut Scratch,
    t: &[u8],
    s: usize,
    e: usize,
    span: &[u8],
    budget: u64,
) -> u64 {
    let mut total = 0u64;
    let mut a = 0;
    for k in 1..span.len() {
        // Cuts are only looked for between characters: a UTF-8 continuation byte stays with
        // the bytes before it.
        if is_continuation(span[k]) || if MEMO { v.spans_memo(span, k) } else { v.spans(span, k) } {
            if k - a > WINDOW {
                // Long enough without a cut: the rest goes to the windowed merge.
                return total + merge_span(v, scratch, t, s + a, e, budget.saturating_sub(total));
            }
            continue;
        }
        total += if is_token(v, t, s + a, s + k) { 1 } else { merge_span(v, scratch, t, s + a, s + k, budget.saturating_sub(total)) };
        if total > budget {
            return total;
        }
        a = k;
    }
    if a == 0 {
        return merge_span(v, scratch, t, s, e, budget);
    }
    total + if is_token(v, t, s + a, e) { 1 } else { merge_span(v, scratch, t, s + a, e, budget.saturating_sub(total)) }
}
