//! cl100k_base's split pattern and the patterns built on it: Llama 3, Qwen 2.5 / 3, Qwen 3.5 / 3.6.
//!
//! All of them try, in order: a contraction (`'s 't 're 've 'm 'll 'd`, any case), a word (an
//! optional prefix character `[^\r\n\p{L}\p{N}]`, then letters), a number, symbols (an optional
//! space, a run of symbols, then newlines) and whitespace. They differ in four places:
//!
//! | family  | word letters  | digits        | symbols                 | whitespace               |
//! |---------|---------------|---------------|-------------------------|--------------------------|
//! | cl100k  | `\p{L}`       | `\p{N}{1,3}`  | `[^\s\p{L}\p{N}]`       | `\s++$` first            |
//! | Llama 3 | `\p{L}`       | `\p{N}{1,3}`  | `[^\s\p{L}\p{N}]`       | `\s*[\r\n]+` first       |
//! | Qwen    | `\p{L}`       | `\p{N}`       | `[^\s\p{L}\p{N}]`       | `\s*[\r\n]+` first       |
//! | Qwen 3.5| `[\p{L}\p{M}]`| `\p{N}`       | `[^\s\p{L}\p{M}\p{N}]`  | `\s*[\r\n]+` first       |
//!
//! cl100k's possessive quantifiers (`?+`, `++`, `{1,3}+`) change nothing else: a possessive
//! quantifier only forbids giving characters back, and in these alternatives nothing after it
//! could take them (the prefix character is never a letter, and the symbol run is followed only
//! by the optional newlines). So Llama 3's pattern is cl100k's except at the end of the text: a
//! whitespace run there that holds a newline and then more whitespace (`"a\n  "`) is one piece
//! for cl100k (`\s++$`) and two for Llama 3 (`\s*[\r\n]+` ends after the newline).

use super::super::layout::C_NUMBER;
use super::super::unicode::{char_at, in_set, LETTERS, LETTERS_MARKS, PREFIX, SYMBOLS, SYMBOLS_NO_MARKS};
use super::runs::{contraction, digits, run, symbols, whitespace, whitespace_to_end};
use super::ascii_letters;

/// How one member of the family differs from the others (see the module doc).
#[derive(Clone, Copy)]
struct Shape {
    /// The letters of a word.
    word: u8,
    /// The characters of a symbol run.
    symbols: u8,
    /// `\p{N}` (one digit a piece) rather than `\p{N}{1,3}`.
    single_digits: bool,
    /// `\s++$` before `\s*[\r\n]`.
    whole_run_at_end: bool,
}

/// End of the piece starting at `i < t.len()`; inlined into each family's function, so `s` is a
/// constant there and every test on it is decided at compile time.
#[inline(always)]
fn next(t: &[u8], i: usize, s: Shape) -> usize {
    let (c0, l0) = char_at(t, i);
    if in_set(c0, s.word) {
        return run(t, i + l0, s.word, ascii_letters);
    }
    if c0 == C_NUMBER {
        return if s.single_digits { i + l0 } else { digits(t, i) };
    }
    if t[i] == b'\'' {
        if let Some(e) = contraction(t, i) {
            return e;
        }
    }
    // `[^\r\n\p{L}\p{N}]?\p{L}+`: the prefix character is never a letter, so when the word does
    // not start at `i` it starts at the next character or not at all.
    if in_set(c0, PREFIX) && i + l0 < t.len() {
        let (c1, l1) = char_at(t, i + l0);
        if in_set(c1, s.word) {
            return run(t, i + l0 + l1, s.word, ascii_letters);
        }
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    if let Some(e) = symbols(t, i, c0, s.symbols, false) {
        return e;
    }
    if s.whole_run_at_end {
        whitespace_to_end(t, i)
    } else {
        whitespace(t, i)
    }
}

/// End of the cl100k_base piece starting at `i < t.len()`.
#[inline(never)]
pub fn next_cl100k(t: &[u8], i: usize) -> usize {
    next(t, i, Shape { word: LETTERS, symbols: SYMBOLS, single_digits: false, whole_run_at_end: true })
}

/// End of the Llama 3 piece starting at `i < t.len()`.
#[inline(never)]
pub fn next_llama3(t: &[u8], i: usize) -> usize {
    next(t, i, Shape { word: LETTERS, symbols: SYMBOLS, single_digits: false, whole_run_at_end: false })
}

/// End of the Qwen 2.5 / 3 piece starting at `i < t.len()`.
#[inline(never)]
pub fn next_qwen(t: &[u8], i: usize) -> usize {
    next(t, i, Shape { word: LETTERS, symbols: SYMBOLS, single_digits: true, whole_run_at_end: false })
}

/// End of the Qwen 3.5 / 3.6 piece starting at `i < t.len()`. A mark is part of a word, so a
/// mark at `i` starts one (with or without it as the prefix character, the word ends at the
/// same place), and a mark ends a symbol run.
#[inline(never)]
pub fn next_qwen35(t: &[u8], i: usize) -> usize {
    next(t, i, Shape { word: LETTERS_MARKS, symbols: SYMBOLS_NO_MARKS, single_digits: true, whole_run_at_end: false })
}
