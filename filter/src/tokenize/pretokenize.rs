//! Hand-written equivalents of the two tiktoken split patterns: `next_*(t, i)` is the end of the
//! piece the pattern's `find_iter` matches at `i`. No regex engine, no backtracking beyond what
//! is derived below; every run is scanned once, ASCII letters 8 bytes at a time.
//!
//! cl100k_base (tiktoken-rs 0.12's possessive form), alternatives tried in order:
//! `'(?i:[sdmt]|ll|ve|re)` | `[^\r\n\p{L}\p{N}]?+\p{L}++` | `\p{N}{1,3}+` |
//! ` ?[^\s\p{L}\p{N}]++[\r\n]*+` | `\s++$` | `\s*[\r\n]` | `\s+(?!\S)` | `\s`
//!
//! o200k_base (backtracking), with U = `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`,
//! W = `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`, C = `(?i:'s|'t|'re|'ve|'m|'ll|'d)`:
//! `[^\r\n\p{L}\p{N}]?U*W+C?` | `[^\r\n\p{L}\p{N}]?U+W*C?` | `\p{N}{1,3}` |
//! ` ?[^\s\p{L}\p{N}]+[\r\n/]*` | `\s*[\r\n]+` | `\s+(?!\S)` | `\s+`
//!
//! How backtracking resolves, for a whitespace run `r` starting at `i` (when the letter and
//! symbol alternatives did not match): if `r` holds `\r` or `\n`, the piece ends after the last
//! of them (`\s*[\r\n]`; cl100k's `\s++$` wins first when `r` reaches the end of the text); else
//! if `r` reaches the end, it is one piece; else a run of two or more characters gives all but
//! its last character (`\s+(?!\S)`), and a single character is a piece of its own.
//! For o200k's `U*W+` see [`o200k_letters`].

use super::layout::{C_CRLF, C_LOWER, C_NUMBER};
use super::unicode::{char_at, char_at_wide, in_set, last_char_start, BOTH, LETTERS, LOWERISH, NUMBERS, PREFIX, SPACES, SYMBOLS, UPPERISH};
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
/// pattern's optional prefix character (`[^\r\n\p{L}\p{N}]`) in the fast path: printable
/// symbols except `'`, space and tab. (Two `u64`s, not a `u128`: wasm has no 128-bit shift, and
/// the `__ashlti3` call it compiles to would be on the path of every piece.)
const PREFIX_BYTES: [u64; 2] = {
    let mut m = [0u64; 2];
    let mut b = 0u8;
    while b < 128 {
        let symbol = b >= b'!' && b <= b'~' && !b.is_ascii_alphanumeric() && b != b'\'';
        if symbol || b == b' ' || b == b'\t' {
            m[(b >> 6) as usize] |= 1 << (b & 63);
        }
        b += 1;
    }
    m
};

/// The end of the common pieces of ASCII text, decided from at most two 8-byte loads without
/// the character-class table: a word (an optional prefix character, then letters), a run of
/// punctuation (optionally after a space), or a run of digits. `None` when the full scanner
/// must decide (anything non-ASCII nearby, contractions, newlines after punctuation, long
/// runs). Both patterns agree on these shapes except for capitals: cl100k takes any letters,
/// o200k capitals then lowercase letters (`U*W+`, or `U+` when no lowercase letter follows),
/// and a capital after a lowercase letter ends its piece.
/// Past the end of `t` the loads read zeros, which end a word or digit run as the end does.
/// `w` is `load8(t, i)` (the counting loop loads it once for this and the lookup).
#[inline(always)]
pub fn ascii_piece(t: &[u8], i: usize, w: u64, cl100k: bool) -> Option<usize> {
    // An ASCII letter is lowercase when its bit 5 is set; `w << 2` moves that bit to bit 7.
    let letters = ascii_letters(w);
    let (upper, lower) = (letters & !(w << 2), letters & (w << 2));
    // Where the letters start: byte 0, or byte 1 after a prefix character.
    let start = if letters & 0x80 != 0 {
        0
    } else if letters & 0x8000 != 0 && (PREFIX_BYTES[(w >> 6) as usize & 1] >> (w & 63)) & 1 != 0 && w & 0x80 == 0 {
        8
    } else {
        return ascii_other(t, i, w);
    };
    let from = !0u64 << start;
    let (end, last) = if cl100k {
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
fn ascii_other(t: &[u8], i: usize, w: u64) -> Option<usize> {
    let b0 = w & 0xff;
    let symbols = ascii_symbols(w);
    let (run, from) = if symbols & 0x80 != 0 {
        (symbols, 0)
    } else if b0 == b' ' as u64 && symbols & 0x8000 != 0 {
        (symbols, 8)
    } else if b0.wrapping_sub(b'0' as u64) < 10 {
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

/// End of the run of characters in `set` starting at `i`; `swar` marks ASCII bytes that are
/// certainly in `set` (a speed-up only: the byte loop decides).
#[inline(always)]
fn run(t: &[u8], mut i: usize, set: u8, swar: fn(u64) -> u64) -> usize {
    loop {
        while i + 8 <= t.len() {
            let m = swar(load8(t, i));
            if m == HIGH {
                i += 8;
            } else {
                i += ((!m & HIGH).trailing_zeros() >> 3) as usize;
                break;
            }
        }
        if i >= t.len() {
            return t.len();
        }
        let (c, l) = char_at_wide(t, i);
        if !in_set(c, set) {
            return i;
        }
        i += l;
    }
}

/// End of the run of characters in `set` starting at `i`, without the ASCII speed-up.
#[inline(always)]
fn run_plain(t: &[u8], mut i: usize, set: u8) -> usize {
    while i < t.len() {
        let (c, l) = char_at(t, i);
        if !in_set(c, set) {
            return i;
        }
        i += l;
    }
    i
}

/// End of one to three `\p{N}` characters starting at `i` (which is one).
#[inline(always)]
fn digits(t: &[u8], i: usize) -> usize {
    let mut e = i + char_at(t, i).1;
    for _ in 0..2 {
        if e >= t.len() {
            break;
        }
        let (c, l) = char_at(t, e);
        if c != C_NUMBER {
            break;
        }
        e += l;
    }
    e
}

/// End of a contraction (`'s 't 're 've 'm 'll 'd`, any case, `ſ` for s) at `i`, if there is one.
#[inline]
fn contraction(t: &[u8], i: usize) -> Option<usize> {
    if t.get(i) != Some(&b'\'') {
        return None;
    }
    let a = t.get(i + 1).copied().unwrap_or(0);
    match a | 0x20 {
        b's' | b'd' | b'm' | b't' if a.is_ascii_alphabetic() => return Some(i + 2),
        _ => {}
    }
    // U+017F LATIN SMALL LETTER LONG S folds to s.
    if a == 0xc5 && t.get(i + 2) == Some(&0xbf) {
        return Some(i + 3);
    }
    let b = t.get(i + 2).copied().unwrap_or(0) | 0x20;
    match (a | 0x20, b) {
        (b'l', b'l') | (b'v', b'e') | (b'r', b'e') if a.is_ascii_alphabetic() && t[i + 2].is_ascii_alphabetic() => {
            Some(i + 3)
        }
        _ => None,
    }
}

/// The piece of a whitespace run starting at `i` (see the module doc); `cl100k` selects
/// `\s++$` before `\s*[\r\n]`.
#[inline]
fn whitespace(t: &[u8], i: usize) -> usize {
    let mut e = i;
    let mut last_newline = None;
    while e < t.len() {
        let b = t[e];
        if b == b'\n' || b == b'\r' {
            last_newline = Some(e);
            e += 1;
            continue;
        }
        let (c, l) = char_at(t, e);
        if !in_set(c, SPACES) {
            break;
        }
        e += l;
    }
    if e == t.len() {
        return e;
    }
    if let Some(n) = last_newline {
        return n + 1;
    }
    let last = last_char_start(t, e);
    if last > i {
        last
    } else {
        e
    }
}

/// End of the cl100k_base piece starting at `i < t.len()`.
pub fn next_cl100k(t: &[u8], i: usize) -> usize {
    let (c0, l0) = char_at(t, i);
    if in_set(c0, LETTERS) {
        return run(t, i + l0, LETTERS, ascii_letters);
    }
    if c0 == C_NUMBER {
        return digits(t, i);
    }
    if t[i] == b'\'' {
        if let Some(e) = contraction(t, i) {
            return e;
        }
    }
    // [^\r\n\p{L}\p{N}]?+\p{L}++
    if in_set(c0, PREFIX) && i + l0 < t.len() {
        let (c1, l1) = char_at(t, i + l0);
        if in_set(c1, LETTERS) {
            return run(t, i + l0 + l1, LETTERS, ascii_letters);
        }
    }
    // ` ?[^\s\p{L}\p{N}]++[\r\n]*+`
    let sym_start = if in_set(c0, SYMBOLS) {
        Some(i)
    } else if t[i] == b' ' && i + 1 < t.len() && in_set(char_at(t, i + 1).0, SYMBOLS) {
        Some(i + 1)
    } else {
        None
    };
    if let Some(s) = sym_start {
        let e = run_plain(t, s, SYMBOLS);
        return run_newlines(t, e, false);
    }
    whitespace(t, i)
}

/// End of the run of `\r`, `\n` (and `/` when `slash`) at `i`.
#[inline]
fn run_newlines(t: &[u8], mut e: usize, slash: bool) -> usize {
    while let Some(&b) = t.get(e) {
        if b == b'\r' || b == b'\n' || (slash && b == b'/') {
            e += 1;
        } else {
            break;
        }
    }
    e
}

/// o200k's `U*W+C?` at `s`: `U*` is greedy, so it backtracks to the last point where `W+` can
/// start. With `r` the maximal U run: if the character after it is `\p{Ll}` (in W but not U), `W+`
/// starts there and runs over W; otherwise `W+` can only start at the last character of the run
/// that is also in W (Lm, Lo or M) and, the next one being in neither or only in U, takes just
/// it. No such character: no match.
#[inline]
fn o200k_letters(t: &[u8], s: usize) -> Option<usize> {
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
            return Some(contraction(t, e).unwrap_or(e));
        }
    }
    last_both_end.map(|e| contraction(t, e).unwrap_or(e))
}

/// o200k's `U+W*C?` at `s`.
#[inline]
fn o200k_upper(t: &[u8], s: usize) -> Option<usize> {
    let p = run_plain(t, s, UPPERISH);
    if p == s {
        return None;
    }
    let e = run(t, p, LOWERISH, ascii_lower);
    Some(contraction(t, e).unwrap_or(e))
}

/// End of the o200k_base piece starting at `i < t.len()`.
pub fn next_o200k(t: &[u8], i: usize) -> usize {
    let (c0, l0) = char_at(t, i);
    let prefix = in_set(c0, PREFIX) && i + l0 < t.len();
    // Alternative 1 with and without the optional prefix character, then alternative 2.
    if prefix {
        if let Some(e) = o200k_letters(t, i + l0) {
            return e;
        }
    }
    if in_set(c0, UPPERISH | LOWERISH) {
        if let Some(e) = o200k_letters(t, i) {
            return e;
        }
    }
    if prefix {
        if let Some(e) = o200k_upper(t, i + l0) {
            return e;
        }
    }
    if in_set(c0, UPPERISH) {
        if let Some(e) = o200k_upper(t, i) {
            return e;
        }
    }
    if in_set(c0, NUMBERS) {
        return digits(t, i);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    let sym_start = if in_set(c0, SYMBOLS) {
        Some(i)
    } else if t[i] == b' ' && i + 1 < t.len() && in_set(char_at(t, i + 1).0, SYMBOLS) {
        Some(i + 1)
    } else {
        None
    };
    if let Some(s) = sym_start {
        let e = run_plain(t, s, SYMBOLS);
        return run_newlines(t, e, true);
    }
    whitespace_o200k(t, i)
}

/// o200k's whitespace: `\s*[\r\n]+` comes before `\s+(?!\S)` and there is no `\s++$`, so a run
/// with a newline ends after its last newline even at the end of the text.
#[inline]
fn whitespace_o200k(t: &[u8], i: usize) -> usize {
    let mut e = i;
    let mut last_newline = None;
    while e < t.len() {
        let (c, l) = char_at(t, e);
        if c == C_CRLF {
            last_newline = Some(e);
        } else if !in_set(c, SPACES) {
            break;
        }
        e += l;
    }
    if let Some(n) = last_newline {
        return n + 1;
    }
    if e == t.len() {
        return e;
    }
    let last = last_char_start(t, e);
    if last > i {
        last
    } else {
        e
    }
}
