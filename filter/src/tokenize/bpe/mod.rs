//! Counting the tokens of one piece exactly as tiktoken's byte-pair merge does: repeatedly merge
//! the adjacent pair whose concatenation has the lowest rank, the leftmost on ties. A piece that
//! is a token costs one lookup; the rest goes through one stage per file:
//!
//! - here: the entry ([`count_piece`]), the memo of this count's merged pieces (`memo`), the
//!   lower bound that decides an over-long run of letters without merging (`bound_over`), and
//!   the choice of merge for a span no cut divides ([`merge_span`]);
//! - `cut`: cutting a piece into spans at boundaries no token crosses; the spans merge
//!   independently;
//! - `small`: tiktoken's array scan for spans of up to [`SMALL`] bytes, on the stack;
//! - `blocks`: the same merge for spans of up to [`WINDOW`] bytes, with the minimum kept per
//!   block of parts;
//! - `window`: long spans merged in overlapping windows, in linear time and bounded memory, and
//!   the whole-span fallback.
//!
//! Inside the stages (below `merge_piece`), every count follows one convention: the exact
//! count, or, once it has passed the `budget` it was given, a number over `budget` that is a
//! lower bound of the exact count (counting stopped early).

mod blocks;
mod cut;
mod memo;
mod small;
mod window;

#[cfg(test)]
mod tests;

use super::layout::MAX_TOKEN_LEN;
use super::pretokenize::all_ascii_letters;
use super::vocab::{Tables, Vocab, NONE};
use blocks::Merger;
use memo::Memo;

/// Spans up to this many bytes use the array scan (`small`).
const SMALL: usize = 32;
/// Spans up to this many bytes merge at once (`blocks`); longer ones in windows of this length.
const WINDOW: usize = 512;

/// Reusable buffers for one count (empty, and free, until a piece needs a merge), and the memo
/// of its merged pieces.
#[derive(Default)]
pub struct Scratch {
    merger: Merger,
    memo: Memo,
}

/// Exact token count of `t[s..e]` (one pre-tokenizer piece), with `w0 == load8(t, s)`. Stops
/// once the count passes `budget`; the flag is false when it stopped before the end (the count
/// is then a lower bound).
#[inline(always)]
pub fn count_piece<T: Tables>(v: &Vocab<T>, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, w0: u64, budget: u64) -> (u64, bool) {
    if e - s == 1 || v.piece_rank(t, s, e, w0) != NONE {
        return (1, true);
    }
    merge_piece(v, scratch, t, s, e, budget)
}

/// A piece that is no token: its count from the memo of this count's merged pieces, or merged
/// (and remembered when it was counted to the end).
#[inline(never)]
fn merge_piece<T: Tables>(v: &Vocab<T>, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> (u64, bool) {
    let key = Memo::key(t, s, e);
    if let Some(n) = key.and_then(|k| scratch.memo.get(k)) {
        return (n, true);
    }
    // (No piece has more tokens than bytes: only one longer than the budget can be over by a bound.)
    let bound = if (e - s) as u64 > budget { t.get(s..e).and_then(|piece| bound_over(v, piece, budget)) } else { None };
    let n = match bound {
        Some(n) => n,
        None => cut::count_piece(v, scratch, t, s, e, budget),
    };
    let finished = n <= budget;
    if let (Some(k), true) = (key, finished) {
        scratch.memo.put(k, n);
    }
    (n, finished)
}

/// A lower bound of the piece's count, if that alone passes `budget`: then the piece need not be
/// merged at all. No token is longer than `MAX_TOKEN_LEN` bytes, and none holds more than
/// `Vocab::max_letter_run` ASCII letters in a row, so a piece of letters after its first
/// character has at least (letters / that) tokens. A prompt that is one long word (the
/// adversarial "letters without spaces") is decided by one scan of its bytes instead of a merge
/// of a limit's worth of tokens.
#[inline(never)]
fn bound_over<T: Tables>(v: &Vocab<T>, piece: &[u8], budget: u64) -> Option<u64> {
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

/// The merge of `t[s..e]`, a span that is no token and that no cut divides, by its length.
fn merge_span<T: Tables>(v: &Vocab<T>, scratch: &mut Scratch, t: &[u8], s: usize, e: usize, budget: u64) -> u64 {
    let n = e - s;
    if n <= 3 {
        // The span is no token (its callers looked it up), so only a 2-byte merge can happen:
        // one for a 3-byte span (a CJK character) if either of its pairs is a token.
        let merged = n == 3 && (v.pair_rank(t, s) != NONE || v.pair_rank(t, s + 1) != NONE);
        n as u64 - u64::from(merged)
    } else if n <= SMALL {
        small::merge(v, t, s, e)
    } else if n <= WINDOW {
        scratch.merger.merge(v, t, s, e, None) as u64
    } else {
        window::count(v, &mut scratch.merger, t, s, e, budget)
    }
}
