//! The normalizers of model files (Qwen's `NFC`): text is put in Unicode Normalization Form C
//! before it is split, as the file's tokenizer does, with the tables Hugging Face tokenizers
//! uses (`unicode-normalization-alignments`, Unicode 9.0: a newer NFC differs on marks assigned
//! since, and vLLM counts with these). Only the vocabularies whose file names a normalizer call
//! this, so a build without them carries none of its code or tables.

use unicode_normalization_alignments::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use super::Count;

/// `count` of `t` in NFC. `t` is valid UTF-8 (a text, or the part of one between added tokens).
/// Most text is NFC already and is counted where it lies: ASCII without a look, the rest after
/// the quick check; only text that may change is copied.
#[inline]
#[allow(dead_code)] // called by the generated code of vocabularies that normalize
pub fn nfc_then(t: &[u8], count: impl FnOnce(&[u8]) -> Count) -> Count {
    if t.is_ascii() {
        return count(t);
    }
    let Ok(text) = std::str::from_utf8(t) else { return count(t) };
    if is_nfc_quick(text.chars()) == IsNormalized::Yes {
        return count(t);
    }
    let normal: String = text.nfc().map(|(c, _)| c).collect();
    count(normal.as_bytes())
}

/// `text` in NFC, or `None` when it is NFC already (the common case, decided without a copy).
#[allow(dead_code)] // named by the generated code of vocabularies that normalize first
pub fn nfc_text(text: &str) -> Option<String> {
    if text.is_ascii() || is_nfc_quick(text.chars()) == IsNormalized::Yes {
        None
    } else {
        Some(text.nfc().map(|(c, _)| c).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bytes_seen(text: &str) -> Vec<u8> {
        let mut seen = Vec::new();
        nfc_then(text.as_bytes(), |t| {
            seen = t.to_vec();
            Count::Within(0)
        });
        seen
    }

    #[test]
    fn composes_decomposed_text_and_leaves_the_rest() {
        assert_eq!(bytes_seen("e\u{301}t\u{e9}"), "\u{e9}t\u{e9}".as_bytes());
        assert_eq!(bytes_seen("plain ascii"), b"plain ascii");
        assert_eq!(bytes_seen("日本語 é"), "日本語 é".as_bytes());
        // Hangul jamo compose; a singleton (Ohm sign) maps to omega.
        assert_eq!(bytes_seen("\u{1100}\u{1161}"), "\u{ac00}".as_bytes());
        assert_eq!(bytes_seen("\u{2126}"), "\u{3a9}".as_bytes());
        assert_eq!(nfc_text("caf\u{e9}"), None);
        assert_eq!(nfc_text(">\u{338}").as_deref(), Some("\u{226f}"));
    }
}
