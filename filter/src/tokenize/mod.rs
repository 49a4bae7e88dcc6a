//! Token counting: the tiktoken encodings, built once per VM, with an exact early-exit count.
//!
//! The runtime engine is tiktoken-rs behind [`Tokenizer`] for now; a compact, faster engine
//! replaces it behind the same interface (issue 4). Text that looks like a special token
//! (`<|endoftext|>`) is counted as ordinary text, as the API does for user content.

mod segment;

use std::fmt;
use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

pub use segment::segments;

/// The tiktoken encodings tokengate counts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    Cl100kBase,
    O200kBase,
}

impl Encoding {
    /// The encoding's tiktoken name, as used in config and headers.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }

    pub fn from_name(name: &str) -> Option<Encoding> {
        match name {
            "cl100k_base" => Some(Encoding::Cl100kBase),
            "o200k_base" => Some(Encoding::O200kBase),
            _ => None,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The encoding's tables could not be built (corrupt embedded data; never expected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerError {
    pub encoding: Encoding,
    pub reason: String,
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot build the {} tokenizer: {}", self.encoding, self.reason)
    }
}

impl std::error::Error for TokenizerError {}

/// Result of counting against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// All text counted; the total is within the limit.
    Within(u64),
    /// The total passed the limit. `counted` is what was counted by then; when `complete` is
    /// false counting stopped before the end and `counted` is a lower bound of the true total.
    Over { counted: u64, complete: bool },
}

/// How many bytes of text are counted between two checks of the limit. Small enough that a
/// prompt over the limit costs about the limit, large enough that the check is free.
const SEGMENT_BYTES: usize = 1024;

/// One encoding, ready to count.
pub struct Tokenizer {
    encoding: Encoding,
    bpe: CoreBPE,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer").field("encoding", &self.encoding).finish()
    }
}

impl Tokenizer {
    /// Builds the encoding's tables (tiktoken-rs: ~100 ms and 17-30 MB per VM).
    pub fn new(encoding: Encoding) -> Result<Tokenizer, TokenizerError> {
        let built = match encoding {
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base(),
            Encoding::O200kBase => tiktoken_rs::o200k_base(),
        };
        built
            .map(|bpe| Tokenizer { encoding, bpe })
            .map_err(|e| TokenizerError { encoding, reason: e.to_string() })
    }

    /// The process-wide (on wasm: VM-wide) tokenizer for `encoding`, built on first use.
    pub fn shared(encoding: Encoding) -> Result<&'static Tokenizer, TokenizerError> {
        static CL100K: OnceLock<Result<Tokenizer, TokenizerError>> = OnceLock::new();
        static O200K: OnceLock<Result<Tokenizer, TokenizerError>> = OnceLock::new();
        let cell = match encoding {
            Encoding::Cl100kBase => &CL100K,
            Encoding::O200kBase => &O200K,
        };
        cell.get_or_init(|| Tokenizer::new(encoding)).as_ref().map_err(Clone::clone)
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Exact token count of `text`.
    pub fn count(&self, text: &str) -> u64 {
        self.bpe.count_ordinary(text) as u64
    }

    /// Exact token count of `text` if it is at most `limit`; otherwise stops soon after the
    /// limit is passed, so a huge text costs about `limit` tokens of work, not its length.
    pub fn count_until(&self, text: &str, limit: u64) -> Count {
        self.count_segmented(text, limit, SEGMENT_BYTES)
    }

    fn count_segmented(&self, text: &str, limit: u64, segment_bytes: usize) -> Count {
        let mut total = 0u64;
        let mut parts = segments(text, segment_bytes).peekable();
        while let Some(part) = parts.next() {
            total += self.count(part);
            if total > limit {
                return Count::Over { counted: total, complete: parts.peek().is_none() };
            }
        }
        Count::Within(total)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn tok(enc: Encoding) -> &'static Tokenizer {
        Tokenizer::shared(enc).unwrap()
    }

    #[test]
    fn names_round_trip() {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            assert_eq!(Encoding::from_name(enc.name()), Some(enc));
        }
        assert_eq!(Encoding::from_name("p50k_base"), None);
    }

    #[test]
    fn known_counts() {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let t = tok(enc);
            assert_eq!(t.count(""), 0);
            assert_eq!(t.count("Hello, world!"), 4);
            assert_eq!(t.count("user"), 1);
            // A special token in user text is ordinary text: several tokens, not one.
            assert!(t.count("<|endoftext|>") > 1);
        }
    }

    #[test]
    fn early_exit_stops_near_the_limit() {
        let t = tok(Encoding::O200kBase);
        let text = "word ".repeat(200_000);
        match t.count_until(&text, 1000) {
            Count::Over { counted, complete } => {
                assert!(counted > 1000 && counted < 1000 + 2 * SEGMENT_BYTES as u64, "{counted}");
                assert!(!complete);
            }
            other => panic!("expected Over, got {other:?}"),
        }
        assert_eq!(t.count_until("Hello, world!", 4), Count::Within(4));
        assert_eq!(t.count_until("Hello, world!", 3), Count::Over { counted: 4, complete: true });
    }

    /// Text biased toward the places where the split patterns are delicate.
    fn tricky_text() -> impl Strategy<Value = String> {
        let atoms = prop::sample::select(vec![
            "a", "Z", "word", "Hello", "ſ", "é", "e\u{301}", "日本", "Ж", "ا", "1", "123", "4567",
            " ", "  ", "\n", "\r\n", "\n\n", " \n", "\t", "\u{a0}", "\u{3000}", "/", "//", ".", "'s",
            "'LL", "'re", "!", "(", "😀", "<|endoftext|>", "\u{200b}", "-", "_", "x/y", "\n/", "\n ",
        ]);
        prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Counting in segments gives exactly the whole-text count, for both encodings, at any
        /// segment size.
        #[test]
        fn segmented_count_is_exact(text in tricky_text(), seg in 1usize..48) {
            for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
                let t = tok(enc);
                let whole = t.count(&text);
                prop_assert_eq!(t.count_segmented(&text, u64::MAX, seg), Count::Within(whole));
            }
        }
    }
}
