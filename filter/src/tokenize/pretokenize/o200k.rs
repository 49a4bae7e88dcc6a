//! o200k_base's split pattern (also gpt-oss's) and Mistral's Tekken, which is o200k's without
//! the contraction suffixes and with single digits.
//!
//! With U = `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`, W = `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`,
//! C = `(?i:'s|'t|'re|'ve|'m|'ll|'d)` and P = `[^\r\n\p{L}\p{N}]`, the alternatives in order:
//! o200k: `P?U*W+C?` | `P?U+W*C?` | `\p{N}{1,3}` | ` ?[^\s\p{L}\p{N}]+[\r\n/]*` |
//! `\s*[\r\n]+` | `\s+(?!\S)` | `\s+`;
//! Tekken: `P?U*W+` | `P?U+W*` | `\p{N}` | the same symbol and whitespace alternatives.
//! For `U*W+` see [`letters`].

use super::super::unicode::{char_at, char_at_wide, in_set, BOTH, LOWERISH, NUMBERS, PREFIX, SYMBOLS, UPPERISH};
use super::super::layout::C_LOWER;
use super::runs::{contraction, digits, run, run_plain, symbols, whitespace};
use super::ascii_lower;

/// A contraction at `e` extends the piece when the pattern has the suffix `C?`.
#[inline(always)]
fn suffix<const CONTRACTIONS: bool>(t: &[u8], e: usize) -> usize {
    if CONTRACTIONS {
        contraction(t, e).unwrap_or(e)
    } else {
        e
    }
}

/// `U*W+` (then the suffix) at `s`: `U*` is greedy, so it backtracks to the last point where
/// `W+` can start. With `r` the maximal U run: if the character after it is `\p{Ll}` (in W but
/// not U), `W+` starts there and runs over W; otherwise `W+` can only start at the last
/// character of the run that is also in W (Lm, Lo or M) and, the next one being in neither or
/// only in U, takes just it. No such character: no match.
#[inline]
fn letters<const CONTRACTIONS: bool>(t: &[u8], s: usize) -> Option<usize> {
    let mut p = s;
    let mut last_both_end = None;
    // ASCII fast path: capitals are U only, lowercase is W only.
    while p < t.len() {
        let b = t[p];
        if b.is_ascii_uppercase() {
            p += 1;
            continue;
        }
        if b < 0x80 {
            break;
        }
        let (c, l) = char_at_wide(t, p);
        if !in_set(c, UPPERISH) {
            break;
        }
        p += l;
        if in_set(c, BOTH) {
            last_both_end = Some(p);
        }
    }
    if p < t.len() {
        let (c, l) = char_at(t, p);
        if c == C_LOWER {
            let e = run(t, p + l, LOWERISH, ascii_lower);
            return Some(suffix::<CONTRACTIONS>(t, e));
        }
    }
    last_both_end.map(|e| suffix::<CONTRACTIONS>(t, e))
}

/// `U+W*` (then the suffix) at `s`.
#[inline]
fn upper<const CONTRACTIONS: bool>(t: &[u8], s: usize) -> Option<usize> {
    let p = run_plain(t, s, UPPERISH);
    if p == s {
        return None;
    }
    let e = run(t, p, LOWERISH, ascii_lower);
    Some(suffix::<CONTRACTIONS>(t, e))
}

/// End of the piece starting at `i < t.len()`: o200k's with `CONTRACTIONS` (the suffix `C?`)
/// and `DIGIT_GROUPS` (`\p{N}{1,3}`), Tekken's with neither.
#[inline(always)]
fn next<const CONTRACTIONS: bool, const DIGIT_GROUPS: bool>(t: &[u8], i: usize) -> usize {
    let (c0, l0) = char_at(t, i);
    let prefix = in_set(c0, PREFIX) && i + l0 < t.len();
    // Alternative 1 with and without the optional prefix character, then alternative 2.
    if prefix {
        if let Some(e) = letters::<CONTRACTIONS>(t, i + l0) {
            return e;
        }
    }
    if in_set(c0, UPPERISH | LOWERISH) {
        if let Some(e) = letters::<CONTRACTIONS>(t, i) {
            return e;
        }
    }
    if prefix {
        if let Some(e) = upper::<CONTRACTIONS>(t, i + l0) {
            return e;
        }
    }
    if in_set(c0, UPPERISH) {
        if let Some(e) = upper::<CONTRACTIONS>(t, i) {
            return e;
        }
    }
    if in_set(c0, NUMBERS) {
        return if DIGIT_GROUPS { digits(t, i) } else { i + l0 };
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    if let Some(e) = symbols(t, i, c0, SYMBOLS, true) {
        return e;
    }
    whitespace(t, i)
}

/// End of the o200k_base piece starting at `i < t.len()`.
#[inline(never)]
pub fn next_o200k(t: &[u8], i: usize) -> usize {
    next::<true, true>(t, i)
}

/// End of the Tekken piece starting at `i < t.len()`.
#[inline(never)]
pub fn next_tekken(t: &[u8], i: usize) -> usize {
    next::<false, false>(t, i)
}
