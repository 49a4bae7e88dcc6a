//! The characters of a stretch as the merge sees them: each one's char index (after the
//! normalizer; `None` for a character outside the vocabulary, which falls back to bytes), and
//! whether two characters can ever end up in one symbol. Guarantee: when `follows(a, b)` is
//! false no token a merge makes holds `a` then `b`, so no symbol spans their boundary and the
//! text on either side merges as if alone.

use super::Model;

impl Model {
    /// The char index of the character at `t[i..]` and its length in bytes. An invalid or cut
    /// UTF-8 sequence counts as one byte outside the vocabulary.
    #[inline]
    pub(super) fn char_at(&self, t: &[u8], i: usize) -> (Option<u32>, usize) {
        let Some(&b) = t.get(i) else { return (None, 1) };
        if b < 0x80 {
            let k = self.ascii.get(usize::from(b)).copied().unwrap_or(u32::MAX);
            return ((k != u32::MAX).then_some(k), 1);
        }
        let len = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return (None, 1),
        };
        let Some(c) = t.get(i..i + len).and_then(|s| std::str::from_utf8(s).ok()).and_then(|s| s.chars().next()) else {
            return (None, 1);
        };
        let mut c = c as u32;
        if c == self.replace.0 {
            c = self.replace.1;
        }
        (self.chars.binary_search(&c).ok().map(|k| k as u32), len)
    }

    /// Whether char `b` may follow char `a` inside one token a merge makes.
    #[inline]
    pub(super) fn follows(&self, a: u32, b: u32) -> bool {
        let (Some(&from), Some(&to)) = (self.follow_offsets.get(a as usize), self.follow_offsets.get(a as usize + 1)) else {
            return false;
        };
        self.follow.get(from as usize..to as usize).is_some_and(|f| f.binary_search(&b).is_ok())
    }
}
