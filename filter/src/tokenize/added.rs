//! Added tokens: the strings a Hugging Face tokenizer finds anywhere in its input before
//! splitting it (`<|eot_id|>`, `<|im_end|>`, `<think>` ...), each one token, the longest at the
//! leftmost place where one starts. vLLM counts them so in prompts and in message contents, so a
//! tokenizer read from such a file counts them so too; the text between them is counted as text.
//!
//! The strings are a byte trie generated at build time (`filter/build/codegen.rs`). The text is
//! passed over 8 bytes at a time while no word holds a byte a string starts with (the files'
//! added tokens start with one to three bytes: `<`, `[`), else one byte at a time against a
//! bitmap of those bytes; from a possible start, one step per byte until no string continues, so
//! a match costs at most the longest string's length.

/// The trie of a tokenizer's added tokens. Node 0 is the root; node `k`'s edges are
/// `offsets[k]..offsets[k + 1]` of `bytes` (sorted) and `next`; `ends` has a bit per node that
/// ends a string.
pub struct Added {
    pub(super) first: [u64; 4],
    /// The distinct bytes the strings start with, when there are at most four (else none, and
    /// the text is read one byte at a time).
    pub(super) starts: &'static [u8],
    pub(super) offsets: &'static [u32],
    pub(super) bytes: &'static [u8],
    pub(super) next: &'static [u32],
    pub(super) ends: &'static [u64],
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

impl Added {
    /// Whether some byte of `w` is one of `starts`.
    #[inline(always)]
    fn word_has_start(&self, w: u64) -> bool {
        self.starts.iter().any(|&s| {
            let x = w ^ (u64::from(s) * ONES);
            x.wrapping_sub(ONES) & !x & HIGH != 0
        })
    }

    /// The length of the longest added token at `t[i..]`, if one starts there.
    fn longest_at(&self, t: &[u8], i: usize) -> Option<usize> {
        let mut node = 0usize;
        let mut longest = None;
        for (d, &b) in t.get(i..).unwrap_or(&[]).iter().enumerate() {
            let (Some(&from), Some(&to)) = (self.offsets.get(node), self.offsets.get(node + 1)) else { break };
            let edges = self.bytes.get(from as usize..to as usize).unwrap_or(&[]);
            let Ok(k) = edges.binary_search(&b) else { break };
            let Some(&child) = self.next.get(from as usize + k) else { break };
            node = child as usize;
            if self.ends.get(node / 64).is_some_and(|w| w >> (node % 64) & 1 != 0) {
                longest = Some(d + 1);
            }
        }
        longest
    }

    /// The first added token at or after `from`: its start and length.
    pub fn next(&self, t: &[u8], from: usize) -> Option<(usize, usize)> {
        let mut i = from;
        loop {
            if !self.starts.is_empty() {
                while let Some(word) = t.get(i..i + 8) {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(word);
                    if self.word_has_start(u64::from_le_bytes(w)) {
                        break;
                    }
                    i += 8;
                }
            }
            let &b = t.get(i)?;
            if self.first[usize::from(b >> 6)] >> (b & 63) & 1 != 0 {
                if let Some(len) = self.longest_at(t, i) {
                    return Some((i, len));
                }
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trie of "<a>", "<ab>" and "<b": nodes 0 (root), 1 "<", 2 "<a", 3 "<a>" (end), 4 "<ab",
    /// 5 "<ab>" (end), 6 "<b" (end).
    static TRIE: Added = Added {
        first: [1 << (b'<' & 63), 0, 0, 0],
        starts: b"<",
        offsets: &[0, 1, 3, 5, 5, 6, 6, 6],
        bytes: b"<ab>b>",
        next: &[1, 2, 6, 3, 4, 5],
        ends: &[1 << 3 | 1 << 5 | 1 << 6],
    };

    #[test]
    fn the_leftmost_start_then_the_longest_string() {
        assert_eq!(TRIE.next(b"xx<ab>yy", 0), Some((2, 4)));
        assert_eq!(TRIE.next(b"<a>", 0), Some((0, 3)));
        // "<ab" is no string, and "<a" stops at "b": the next start is later.
        assert_eq!(TRIE.next(b"<ab<b", 0), Some((3, 2)));
        assert_eq!(TRIE.next(b"<<a>", 0), Some((1, 3)));
        assert_eq!(TRIE.next(b"<a>", 1), None);
        assert_eq!(TRIE.next(b"", 0), None);
        assert_eq!(TRIE.next(b"<", 0), None);
        // Long texts: the 8-byte skip lands on every start, at any alignment.
        for pad in 0..20 {
            let text = format!("{}<ab>{}<b", "x".repeat(pad), "y".repeat(pad));
            assert_eq!(TRIE.next(text.as_bytes(), 0), Some((pad, 4)), "{text}");
            assert_eq!(TRIE.next(text.as_bytes(), pad + 1), Some((2 * pad + 4, 2)), "{text}");
        }
        let without = Added { starts: b"", ..TRIE };
        assert_eq!(without.next(b"xxxxxxxxxxxx<ab>", 0), Some((12, 4)));
    }
}
