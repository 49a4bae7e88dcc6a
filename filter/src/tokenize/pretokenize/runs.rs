//! The scanning steps the split patterns share: runs of a class, digit groups, contractions and
//! the two ways the patterns end a whitespace run. Each reads its run once, left to right.

use super::super::layout::{load8, C_CRLF, C_NUMBER};
use super::super::unicode::{char_at, char_at_wide, in_set, last_char_start, SPACES};
use super::HIGH;

/// End of the run of characters in `set` starting at `i`; `swar` marks ASCII bytes that are
/// certainly in `set` (a speed-up only: the byte loop decides).
#[inline(always)]
pub(super) fn run(t: &[u8], mut i: usize, set: u8, swar: fn(u64) -> u64) -> usize {
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
pub(super) fn run_plain(t: &[u8], mut i: usize, set: u8) -> usize {
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
pub(super) fn digits(t: &[u8], i: usize) -> usize {
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
pub(super) fn contraction(t: &[u8], i: usize) -> Option<usize> {
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

/// The symbols alternative ` ?S+[\r\n]*` (`[\r\n/]*` when `slash`), S the classes in `set`:
/// the end of the piece when a character of `set` starts at `i < t.len()` (`c0` is its class) or
/// after one space there, else `None`.
#[inline(always)]
pub(super) fn symbols(t: &[u8], i: usize, c0: u8, set: u8, slash: bool) -> Option<usize> {
    let start = if in_set(c0, set) {
        i
    } else if t[i] == b' ' && i + 1 < t.len() && in_set(char_at(t, i + 1).0, set) {
        i + 1
    } else {
        return None;
    };
    Some(run_newlines(t, run_plain(t, start, set), slash))
}

/// End of the run of `\r`, `\n` (and `/` when `slash`) at `i`.
#[inline]
pub(super) fn run_newlines(t: &[u8], mut e: usize, slash: bool) -> usize {
    while let Some(&b) = t.get(e) {
        if b == b'\r' || b == b'\n' || (slash && b == b'/') {
            e += 1;
        } else {
            break;
        }
    }
    e
}

/// The piece of a whitespace run at `i` under cl100k's `\s++$|\s*[\r\n]|\s+(?!\S)|\s`: the
/// whole run when it reaches the end of the text (`\s++$` comes first), else as [`whitespace`].
#[inline]
pub(super) fn whitespace_to_end(t: &[u8], i: usize) -> usize {
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

/// The piece of a whitespace run at `i` under `\s*[\r\n]+|\s+(?!\S)|\s+` (o200k and the
/// patterns in their original, backtracking form): a run with a newline ends after its last
/// newline, even at the end of the text; else a run that reaches the end is one piece; else a
/// run of two or more characters gives all but its last character (`\s+(?!\S)`), and a single
/// character is a piece of its own.
#[inline]
pub(super) fn whitespace(t: &[u8], i: usize) -> usize {
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
