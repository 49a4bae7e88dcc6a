//! Splits text at points where both tiktoken split patterns are known to cut, so the pieces can
//! be counted one at a time (and counting can stop early) with exactly the whole-text total.
//!
//! tiktoken counts are sums over regex pieces; a cut point is safe when no piece of the whole text
//! crosses it and the text before it ends in the same piece it would have had. Two kinds hold for
//! both the cl100k_base and o200k_base patterns (proved by a property test in `tokenize`):
//! - after `\n` and before an ASCII graphic character other than `/`: no alternative carries a
//!   newline into a following non-space (o200k's punctuation piece may take `/` after newlines),
//!   and a whitespace run ending in `\n` is one piece whether or not text follows;
//! - between an ASCII letter and ` ` followed by an ASCII letter: a letter piece ends at the
//!   space, and the space starts the next word's piece.

/// Iterates over consecutive slices of `text` of at least `min_bytes` (except the last), each
/// ending at a safe cut point. Text without cut points comes back whole.
pub fn segments(text: &str, min_bytes: usize) -> Segments<'_> {
    Segments { text, min_bytes: min_bytes.max(1) }
}

/// Iterator returned by [`segments`].
pub struct Segments<'a> {
    text: &'a str,
    min_bytes: usize,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.text.is_empty() {
            return None;
        }
        let bytes = self.text.as_bytes();
        let cut = (self.min_bytes..bytes.len())
            .find(|&p| is_safe_cut(bytes, p))
            .unwrap_or(bytes.len());
        // A safe cut always sits before an ASCII byte, hence on a char boundary.
        let (head, rest) = self.text.split_at_checked(cut).unwrap_or((self.text, ""));
        self.text = rest;
        Some(head)
    }
}

fn is_safe_cut(b: &[u8], p: usize) -> bool {
    let (Some(&before), Some(&at)) = (b.get(p.wrapping_sub(1)), b.get(p)) else {
        return false;
    };
    match (before, at) {
        (b'\n', c) => c.is_ascii_graphic() && c != b'/',
        (l, b' ') => l.is_ascii_alphabetic() && b.get(p + 1).is_some_and(u8::is_ascii_alphabetic),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_only_at_safe_points_and_loses_nothing() {
        let text = "Hello there world\nfoo /bar\n/baz qux";
        let parts: Vec<&str> = segments(text, 1).collect();
        assert_eq!(parts.concat(), text);
        assert_eq!(parts, vec!["Hello", " there", " world\n", "foo /bar\n/baz", " qux"]);
    }

    #[test]
    fn text_without_cut_points_is_one_segment() {
        let text = "a".repeat(5000);
        assert_eq!(segments(&text, 16).count(), 1);
        assert_eq!(segments("", 16).count(), 0);
        assert_eq!(segments("日本語 日本語", 1).count(), 1);
    }
}
