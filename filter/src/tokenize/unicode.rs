//! Character classes of the split patterns, from the generated two-level table, and
//! `[\p{P}\p{S}]` from a second one.

use super::layout::{
    PUNCT_BLOCK_BITS, PUNCT_LIMIT, UNICODE_BLOCK_BITS, C_CRLF, C_LETTER, C_LOWER, C_MARK, C_NUMBER, C_OTHER, C_SPACE,
    C_UPPER,
};

static TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/unicode_classes.bin"));
static PUNCT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/unicode_punct.bin"));

/// Level 1 has one u16 per block of 128 code points, up to U+10FFFF.
const LEVEL1_BYTES: usize = (0x11_0000 >> UNICODE_BLOCK_BITS) * 2;

/// Class sets as bit masks over the class numbers.
pub const fn set(classes: &[u8]) -> u8 {
    let mut m = 0u8;
    let mut i = 0;
    while i < classes.len() {
        m |= 1 << classes[i];
        i += 1;
    }
    m
}

/// `\p{L}`.
pub const LETTERS: u8 = set(&[C_UPPER, C_LOWER, C_LETTER]);
/// `\p{N}`.
pub const NUMBERS: u8 = set(&[C_NUMBER]);
/// `\s`.
pub const SPACES: u8 = set(&[C_SPACE, C_CRLF]);
/// `[^\s\p{L}\p{N}]`.
pub const SYMBOLS: u8 = set(&[C_OTHER, C_MARK]);
/// `[^\r\n\p{L}\p{N}]`.
pub const PREFIX: u8 = set(&[C_OTHER, C_MARK, C_SPACE]);
/// o200k's `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`.
pub const UPPERISH: u8 = set(&[C_UPPER, C_LETTER, C_MARK]);
/// o200k's `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
pub const LOWERISH: u8 = set(&[C_LOWER, C_LETTER, C_MARK]);
/// In both of the above.
pub const BOTH: u8 = set(&[C_LETTER, C_MARK]);
/// `[\p{L}\p{M}]`.
pub const LETTERS_MARKS: u8 = set(&[C_UPPER, C_LOWER, C_LETTER, C_MARK]);
/// `[^\s\p{L}\p{M}\p{N}]`.
pub const SYMBOLS_NO_MARKS: u8 = set(&[C_OTHER]);

#[inline(always)]
pub fn in_set(class: u8, set: u8) -> bool {
    set & (1 << class) != 0
}

/// Class of an ASCII byte (the first block of the table is U+0000..U+007F).
#[inline(always)]
pub fn ascii_class(b: u8) -> u8 {
    TABLE[LEVEL1_BYTES + (b as usize & 0x7f)]
}

#[inline(always)]
pub fn class_of(cp: u32) -> u8 {
    let block = (cp >> UNICODE_BLOCK_BITS) as usize;
    let lo = TABLE.get(block * 2).copied().unwrap_or(0) as usize;
    let hi = TABLE.get(block * 2 + 1).copied().unwrap_or(0) as usize;
    let at = LEVEL1_BYTES + ((hi << 8 | lo) << UNICODE_BLOCK_BITS) + (cp as usize & ((1 << UNICODE_BLOCK_BITS) - 1));
    TABLE.get(at).copied().unwrap_or(C_OTHER)
}

/// Class and byte length of the character starting at `t[i]`; `t` is valid UTF-8 and `i` a
/// character boundary.
#[inline(always)]
pub fn char_at(t: &[u8], i: usize) -> (u8, usize) {
    let b0 = t[i];
    if b0 < 0x80 {
        return (ascii_class(b0), 1);
    }
    decode_class(t, i)
}

/// [`char_at`] with 2- and 3-byte characters decoded in line, for the letter runs of CJK,
/// Cyrillic and other scripts, where they are most characters; 4-byte ones out of line.
#[inline(always)]
pub fn char_at_wide(t: &[u8], i: usize) -> (u8, usize) {
    let b0 = t[i];
    if b0 < 0x80 {
        (ascii_class(b0), 1)
    } else if b0 < 0xf0 {
        decode_short(t, i)
    } else {
        decode_class(t, i)
    }
}

/// Class and length of the 2- or 3-byte character at `t[i]`.
#[inline(always)]
fn decode_short(t: &[u8], i: usize) -> (u8, usize) {
    let b0 = t[i] as u32;
    let cont = |k: usize| (t.get(i + k).copied().unwrap_or(0x80) as u32) & 0x3f;
    if b0 < 0xe0 {
        (class_of(((b0 & 0x1f) << 6) | cont(1)), 2)
    } else {
        (class_of(((b0 & 0x0f) << 12) | (cont(1) << 6) | cont(2)), 3)
    }
}

/// Class and length of the character of 2 to 4 bytes at `t[i]`, out of line.
#[inline(never)]
fn decode_class(t: &[u8], i: usize) -> (u8, usize) {
    let b0 = t[i] as u32;
    if b0 < 0xf0 {
        return decode_short(t, i);
    }
    let cont = |k: usize| (t.get(i + k).copied().unwrap_or(0x80) as u32) & 0x3f;
    (class_of(((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3)), 4)
}

/// Whether `cp` is in `\p{P}` or `\p{S}` (all of them have the class `C_OTHER`).
#[inline]
pub fn is_punct_symbol(cp: u32) -> bool {
    if cp >= PUNCT_LIMIT {
        return false;
    }
    let block = PUNCT.get((cp >> PUNCT_BLOCK_BITS) as usize).copied().unwrap_or(0) as usize;
    let at = (PUNCT_LIMIT >> PUNCT_BLOCK_BITS) as usize + (block << (PUNCT_BLOCK_BITS - 3)) + (cp as usize & ((1 << PUNCT_BLOCK_BITS) - 1)) / 8;
    PUNCT.get(at).is_some_and(|b| b >> (cp % 8) & 1 != 0)
}

/// Code point and byte length of the character starting at `t[i]`; `t` is valid UTF-8 and `i`
/// a character boundary.
#[inline(always)]
pub fn decode(t: &[u8], i: usize) -> (u32, usize) {
    let b0 = t[i] as u32;
    let cont = |k: usize| (t.get(i + k).copied().unwrap_or(0x80) as u32) & 0x3f;
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xe0 {
        (((b0 & 0x1f) << 6) | cont(1), 2)
    } else if b0 < 0xf0 {
        (((b0 & 0x0f) << 12) | (cont(1) << 6) | cont(2), 3)
    } else {
        (((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3), 4)
    }
}

/// Whether `b` continues a UTF-8 character (is not the first byte of one).
#[inline(always)]
pub fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

/// Start of the character that ends at `end` (exclusive).
#[inline]
pub fn last_char_start(t: &[u8], end: usize) -> usize {
    let mut i = end - 1;
    while i > 0 && is_continuation(t[i]) {
        i -= 1;
    }
    i
}
