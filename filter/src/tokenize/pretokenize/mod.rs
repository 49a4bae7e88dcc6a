//! The pre-tokenizers: hand-written equivalents of the split patterns of the encodings and
//! model families tokengate counts with (the patterns themselves are in [`Split`]). For each
//! family, `next_*(t, i)` is the end of the piece that starts at `i`: the match of the pattern's
//! `find_iter` there, or the stretch of text before the next match (the Isolated split of the
//! Hugging Face files keeps both). `t` is valid UTF-8 and `i < t.len()` a piece boundary.
//!
//! No regex engine and no backtracking: what backtracking would find is derived in each
//! family's file, and every run is scanned once (linear in the text), ASCII letters 8 bytes at a
//! time. In front of the scanners, [`ascii_piece`] decides the common pieces of ASCII text from
//! one or two 8-byte loads, without the character-class table. The scanners are out of line
//! (`#[inline(never)]`): the count loop calls one only when the fast path declines, and the
//! scanner's body inlined into the loop would crowd its common path.
//!
//! `cl100k` holds cl100k_base, Llama 3 and Qwen; `o200k` o200k_base (and gpt-oss) and Tekken;
//! `deepseek` DeepSeek V3; `runs` the steps they share.

mod cl100k;
mod deepseek;
mod o200k;
mod runs;
mod split;

pub use cl100k::{next_cl100k, next_llama3, next_qwen, next_qwen35};
pub use deepseek::next_deepseek;
pub use o200k::{next_o200k, next_tekken};
pub use split::Split;

use super::layout::load8;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// 0x80 in each byte of `w` that is an ASCII byte in `lo..=hi`. The high bits are cleared
/// before adding, so no byte carries into the next one whatever the input.
#[inline(always)]
fn ascii_range(w: u64, lo: u8, hi: u8) -> u64 {
    let x = w & !HIGH;
    let ge_lo = x + (0x80 - lo as u64) * ONES;
    let gt_hi = x + (0x80 - hi as u64 - 1) * ONES;
    ge_lo & !gt_hi & !w & HIGH
}

/// 0x80 in each byte of `w` that is an ASCII letter (either case).
#[inline(always)]
fn ascii_letters(w: u64) -> u64 {
    ascii_range(w | (0x20 * ONES), b'a', b'z') & !w
}

/// Whether every byte of `b` is an ASCII letter, 8 bytes at a time.
pub fn all_ascii_letters(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    words.all(|w| ascii_letters(load8(w, 0)) == HIGH) && words.remainder().iter().all(u8::is_ascii_alphabetic)
}

/// 0x80 in each byte of `w` that is an ASCII lowercase letter.
#[inline(always)]
fn ascii_lower(w: u64) -> u64 {
    ascii_range(w, b'a', b'z')
}

/// 0x80 in each byte of `w` that is an ASCII digit.
#[inline(always)]
fn ascii_digits(w: u64) -> u64 {
    ascii_range(w, b'0', b'9')
}

/// 0x80 in each byte of `w` that is ASCII punctuation or a symbol (`[^\s\p{L}\p{N}]` among
/// the printable characters `!`..`~`), other than `'`, which contractions claim.
#[inline(always)]
fn ascii_symbols(w: u64) -> u64 {
    let quote = ascii_range(w ^ (b'\'' as u64 * ONES), 0, 0);
    ascii_range(w, b'!', b'~') & !ascii_letters(w) & !ascii_digits(w) & !quote
}

/// Bit `b % 64` of word `b / 64` set for the ASCII bytes that may stand before letters as the
/// pattern's optional prefix character in the fast path: printable symbols, space and tab, and
/// `'` only when `quote` (elsewhere it may start a contraction, which comes first). (Two
/// `u64`s, not a `u128`: wasm has no 128-bit shift, and the `__ashlti3` call it compiles to
/// would be on the path of every piece.)
const fn prefix_bytes(quote: bool) -> [u64; 2] {
    let mut m = [0u64; 2];
    let mut b = 0u8;
    while b < 128 {
        let symbol = b >= b'!' && b <= b'~' && !b.is_ascii_alphanumeric() && (quote || b != b'\'');
        if symbol || b == b' ' || b == b'\t' {
            m[(b >> 6) as usize] |= 1 << (b & 63);
        }
        b += 1;
    }
    m
}

/// [`prefix_bytes`] without `'`: the word's prefix character of the patterns with contractions
/// (`[^\r\n\p{L}\p{N}]`), and of Tekken's (where `'` could be one, but is left to the scanner).
const PREFIX_BYTES: [u64; 2] = prefix_bytes(false);
/// [`prefix_bytes`] with `'`: DeepSeek's, where ASCII punctuation and symbols before ASCII
/// letters are a piece (`[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+`) and space and tab
/// the prefix of `[\p{L}\p{M}]+`.
const PREFIX_BYTES_QUOTE: [u64; 2] = prefix_bytes(true);

/// The end of the common pieces of ASCII text, decided from at most two 8-byte loads without
/// the character-class table: a word (an optional prefix character, then letters), a run of
/// punctuation (optionally after a space), or a run of digits. `None` when the full scanner
/// must decide (anything non-ASCII nearby, contractions, newlines after punctuation, long
/// runs). Every family agrees on these shapes except in three ways, each a constant once this
/// is inlined for one `split`: capitals (cl100k and its relatives and DeepSeek take any
/// letters; o200k and Tekken capitals then lowercase letters, `U*W+`, or `U+` when no lowercase
/// letter follows, and a capital after a lowercase letter ends the piece), digits (groups of up
/// to three, or one a piece) and `'` before letters (a prefix only for DeepSeek).
/// Past the end of `t` the loads read zeros, which end a word or digit run as the end does.
/// `w` is `load8(t, i)` (the counting loop loads it once for this and the lookup).
#[inline(always)]
pub fn ascii_piece(t: &[u8], i: usize, w: u64, split: Split) -> Option<usize> {
    // An ASCII letter is lowercase when its bit 5 is set; `w << 2` moves that bit to bit 7.
    let letters = ascii_letters(w);
    let (upper, lower) = (letters & !(w << 2), letters & (w << 2));
    // Where the letters start: byte 0, or byte 1 after a prefix character.
    let prefix = if split.quote_before_letters() { &PREFIX_BYTES_QUOTE } else { &PREFIX_BYTES };
    let start = if letters & 0x80 != 0 {
        0
    } else if letters & 0x8000 != 0 && (prefix[(w >> 6) as usize & 1] >> (w & 63)) & 1 != 0 && w & 0x80 == 0 {
        8
    } else {
        return ascii_other(t, i, w, split);
    };
    let from = !0u64 << start;
    let (end, last) = if !split.cased() {
        let m = !letters & HIGH & from;
        if m != 0 {
            (m.trailing_zeros(), w)
        } else {
            let w1 = load8(t, i + 8);
            let m1 = !ascii_letters(w1) & HIGH;
            (64 + m1.trailing_zeros(), w1)
        }
    } else {
        let u_end = (!upper & HIGH & from).trailing_zeros();
        if u_end >= 64 {
            return None;
        }
        let m = !lower & HIGH & (!0u64 << (u_end & !7));
        if m & (0x80 << (u_end & !7)) != 0 {
            // Capitals not followed by a lowercase letter (" I", "HTTP"): `U*W+` fails, and
            // `U+W*C?` takes the capitals, if the byte after them ends the piece.
            (u_end, w)
        } else if m != 0 {
            (m.trailing_zeros(), w)
        } else {
            let w1 = load8(t, i + 8);
            let m1 = !ascii_lower(w1) & HIGH;
            (64 + m1.trailing_zeros(), w1)
        }
    };
    if end >= 128 {
        return None;
    }
    // The byte that ended the run must be ASCII (not a letter outside ASCII) and not `'`.
    let b = (last >> (8 * ((end >> 3) & 7))) & 0xff;
    if b >= 0x80 || b == b'\'' as u64 {
        return None;
    }
    Some(i + (end >> 3) as usize)
}

/// Punctuation and digits for [`ascii_piece`].
#[inline(always)]
fn ascii_other(t: &[u8], i: usize, w: u64, split: Split) -> Option<usize> {
    let b0 = w & 0xff;
    let symbols = ascii_symbols(w);
    let (run, from) = if symbols & 0x80 != 0 {
        (symbols, 0)
    } else if b0 == b' ' as u64 && symbols & 0x8000 != 0 {
        (symbols, 8)
    } else if b0.wrapping_sub(b'0' as u64) < 10 {
        if split.single_digits() {
            return Some(i + 1);
        }
        // `\p{N}{1,3}`: a fourth digit starts the next piece; a shorter run must end at an
        // ASCII byte (a non-ASCII number would continue it).
        let m = !ascii_digits(w) & HIGH;
        let end = m.trailing_zeros().min(24 + 7);
        let b = (w >> (end & !7)) & 0xff;
        return if end < 24 && b >= 0x80 { None } else { Some(i + (end >> 3) as usize) };
    } else {
        return None;
    };
    let m = !run & HIGH & (!0u64 << from);
    if m == 0 {
        return None;
    }
    let k = (m.trailing_zeros() >> 3) as usize;
    // The run ends at a space, letter or digit (or the end of `t`); a newline would join the
    // piece, anything else may be a symbol outside ASCII.
    let b = (w >> (8 * k)) & 0xff;
    let ends = b == b' ' as u64 || (b as u8).is_ascii_alphanumeric() || (b == 0 && i + k >= t.len());
    if ends {
        Some(i + k)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
