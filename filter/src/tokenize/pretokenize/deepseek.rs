//! DeepSeek V3 / R1: three Isolated splits, each applied to every piece the one before made
//! (the matches and the stretches between them are pieces):
//!
//! 1. `\p{N}{1,3}`: digit groups;
//! 2. `[一-龥぀-ゟ゠-ヿ]+` (U+4E00..U+9FA5, U+3040..U+30FF): runs of Han and kana;
//! 3. `[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+` | `[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+` |
//!    ` ?[\p{P}\p{S}]+[\r\n]*` | `\s*[\r\n]+` | `\s+(?!\S)` | `\s+`.
//!
//! So the third pattern runs inside the pieces of the first two: stretches without numbers that
//! are all Han and kana or all not (a "segment"), each ending where the text ends, at a `\p{N}`
//! or where Han and kana start or stop. A segment's end is to the third pattern what the end of
//! the text is to the others (`(?!\S)` holds there), and the pattern has no look-behind, so the
//! piece at `i` depends only on the text from `i` to the end of its segment. The scanner finds
//! that end lazily, as the character that would end the piece: it never looks further ahead
//! than the character after the piece, so every character is read a bounded number of times.
//!
//! The pattern names `\p{P}` and `\p{S}`, which the class table counts as `C_OTHER`; here they
//! are a class of their own, `C_PUNCT`, from the second table. The characters left in
//! `C_OTHER` (controls, format characters, private use, unassigned) are in no alternative of
//! the third pattern and form the stretches between its matches: such a character starts a
//! match only as the prefix of `[\p{L}\p{M}]+`, so a stretch runs until a character of any
//! other class, or one of them followed by a letter or mark.

use super::super::layout::{load8, C_CRLF, C_NUMBER, C_OTHER, C_SPACE};
use super::super::unicode::{char_at, decode, in_set, is_punct_symbol, last_char_start, LETTERS_MARKS};
use super::runs::{digits, run_newlines};
use super::{ascii_letters, HIGH};

/// `\p{P}` or `\p{S}`, split off `C_OTHER`. Past the table's classes: never passed to
/// `in_set`, only compared.
const C_PUNCT: u8 = 8;

/// Class (with `C_PUNCT`) and length of the character at `t[p]`.
#[inline(always)]
fn class_at(t: &[u8], p: usize) -> (u8, usize) {
    let (c, l) = char_at(t, p);
    let punct = c == C_OTHER && if t[p] < 0x80 { t[p].is_ascii_punctuation() } else { is_punct_symbol(decode(t, p).0) };
    (if punct { C_PUNCT } else { c }, l)
}

/// `[\p{L}\p{M}]`.
#[inline(always)]
fn letter_or_mark(c: u8) -> bool {
    c != C_PUNCT && in_set(c, LETTERS_MARKS)
}

/// Whether the character at `t[i]` is in `[一-龥぀-ゟ゠-ヿ]` (all of it is 3 bytes long in UTF-8,
/// with a first byte from 0xE3 to 0xE9).
#[inline(always)]
fn is_han_kana(t: &[u8], i: usize) -> bool {
    let b0 = t[i];
    if !(0xe3..=0xe9).contains(&b0) {
        return false;
    }
    let cont = |k: usize| (t.get(i + k).copied().unwrap_or(0x80) as u32) & 0x3f;
    let cp = ((b0 as u32 & 0x0f) << 12) | (cont(1) << 6) | cont(2);
    (0x4e00..=0x9fa5).contains(&cp) || (0x3040..=0x30ff).contains(&cp)
}

/// Class and length of the character at `p` if it is in the segment whose characters are Han
/// or kana exactly when `han_kana`; `None` at the segment's end.
#[inline(always)]
fn at(t: &[u8], p: usize, han_kana: bool) -> Option<(u8, usize)> {
    if p >= t.len() {
        return None;
    }
    let (c, l) = class_at(t, p);
    if c == C_NUMBER || is_han_kana(t, p) != han_kana {
        None
    } else {
        Some((c, l))
    }
}

/// End of the run of characters for which `is` holds, from `p` within the segment.
#[inline(always)]
fn run_in(t: &[u8], mut p: usize, is: impl Fn(u8) -> bool, han_kana: bool) -> usize {
    while let Some((c, l)) = at(t, p, han_kana) {
        if !is(c) {
            break;
        }
        p += l;
    }
    p
}

/// End of `[\p{L}\p{M}]+` from `p` within the segment; outside Han and kana, ASCII letters 8
/// bytes at a time (an ASCII byte is never Han, kana or a number).
#[inline(always)]
fn letters(t: &[u8], mut p: usize, han_kana: bool) -> usize {
    if han_kana {
        return run_in(t, p, letter_or_mark, true);
    }
    loop {
        while p + 8 <= t.len() {
            let m = ascii_letters(load8(t, p));
            if m == HIGH {
                p += 8;
            } else {
                p += ((!m & HIGH).trailing_zeros() >> 3) as usize;
                break;
            }
        }
        match at(t, p, false) {
            Some((c, l)) if letter_or_mark(c) => p += l,
            _ => return p,
        }
    }
}

/// End of `[A-Za-z]+` from `p`.
#[inline]
fn ascii_word(t: &[u8], mut p: usize) -> usize {
    while p + 8 <= t.len() {
        let m = ascii_letters(load8(t, p));
        if m != HIGH {
            return p + ((!m & HIGH).trailing_zeros() >> 3) as usize;
        }
        p += 8;
    }
    while p < t.len() && t[p].is_ascii_alphabetic() {
        p += 1;
    }
    p
}

/// The piece of a whitespace run at `i` (never Han or kana): `\s*[\r\n]+`, then `\s+(?!\S)`,
/// then `\s+`, with the segment's end as the end of the text.
#[inline]
fn whitespace(t: &[u8], i: usize) -> usize {
    let mut e = i;
    let mut last_newline = None;
    while e < t.len() {
        let (c, l) = char_at(t, e);
        if c == C_CRLF {
            last_newline = Some(e);
        } else if c != C_SPACE {
            break;
        }
        e += l;
    }
    if let Some(n) = last_newline {
        return n + 1;
    }
    if at(t, e, false).is_none() {
        return e;
    }
    let last = last_char_start(t, e);
    if last > i {
        last
    } else {
        e
    }
}

/// End of the stretch of `C_OTHER` characters from `p` that no match starts in.
#[inline]
fn between(t: &[u8], mut p: usize, han_kana: bool) -> usize {
    while let Some((c, l)) = at(t, p, han_kana) {
        if c != C_OTHER || at(t, p + l, han_kana).is_some_and(|(n, _)| letter_or_mark(n)) {
            break;
        }
        p += l;
    }
    p
}

/// End of the DeepSeek V3 piece starting at `i < t.len()`.
#[inline(never)]
pub fn next_deepseek(t: &[u8], i: usize) -> usize {
    let (c0, l0) = class_at(t, i);
    if c0 == C_NUMBER {
        return digits(t, i);
    }
    let han_kana = is_han_kana(t, i);
    // `[!"#...~][A-Za-z]+`: ASCII punctuation and symbols then ASCII letters.
    if t[i].is_ascii_punctuation() && t.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
        return ascii_word(t, i + 2);
    }
    // `[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+`: a mark starts the run itself (with or without it
    // as the prefix character, the run ends at the same place).
    if letter_or_mark(c0) {
        return letters(t, i + l0, han_kana);
    }
    let next = at(t, i + l0, han_kana);
    if c0 == C_SPACE || c0 == C_OTHER {
        if let Some((c1, l1)) = next {
            if letter_or_mark(c1) {
                return letters(t, i + l0 + l1, han_kana);
            }
        }
    }
    // ` ?[\p{P}\p{S}]+[\r\n]*`: the newlines only outside Han and kana, where they can be.
    let sym_start = if c0 == C_PUNCT {
        Some(i)
    } else if t[i] == b' ' && next.is_some_and(|(c1, _)| c1 == C_PUNCT) {
        Some(i + 1)
    } else {
        None
    };
    if let Some(s) = sym_start {
        let e = run_in(t, s, |c| c == C_PUNCT, han_kana);
        return if han_kana { e } else { run_newlines(t, e, false) };
    }
    if c0 == C_SPACE || c0 == C_CRLF {
        return whitespace(t, i);
    }
    between(t, i + l0, han_kana)
}
