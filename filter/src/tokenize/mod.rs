//! Token counting: the tiktoken encodings cl100k_base and o200k_base, and the vocabularies the
//! build read from model files, counted exactly (the same counts as tiktoken-rs and the model's
//! own tokenizer, the test oracles) with an early exit at a limit.
//!
//! The engine: a hand-written pre-tokenizer per encoding (`pretokenize`, the split patterns
//! without a regex engine), one hash lookup per piece in a vocabulary table generated at build
//! time (`vocab`, `layout`, `build.rs`) and tiktoken's byte-pair merge for the pieces that are
//! not a single token (`bpe`, linear time and bounded memory for long pieces). SentencePiece-style
//! vocabularies (Gemma 3) count with an engine of their own (`spm`). The tables live in
//! the module's data section: nothing is built when a VM starts. Text that looks like a special
//! token (`<|endoftext|>`) is counted as ordinary text, as the API does for user content.

mod added;
mod bpe;
mod layout;
mod normalize;
pub mod patterns;
mod pretokenize;
#[cfg_attr(not(tokengate_spm), allow(dead_code))]
mod spm;
mod unicode;
mod vocab;

use std::fmt;

pub use pretokenize::Split;

use added::Added;
use vocab::{Tables, Vocab};

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

/// Result of counting against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// All text counted; the total is within the limit.
    Within(u64),
    /// The total passed the limit. `counted` is what was counted by then; when `complete` is
    /// false counting stopped before the end and `counted` is a lower bound of the true total.
    Over { counted: u64, complete: bool },
}

/// A tokenizer this build contains, ready to count: a built-in encoding, or a vocabulary named
/// in `TOKENGATE_TOKENIZERS` when the module was built (`filter/build/files.rs`). Two tokenizers
/// are equal when they have the same name.
pub struct Tokenizer {
    name: &'static str,
    /// The built-in encoding this is (or whose vocabulary and pattern this one's file holds).
    encoding: Option<Encoding>,
    /// The count loop of this tokenizer's vocabulary and pre-tokenizer.
    count: fn(&[u8], u64) -> Count,
    /// The pre-tokenizer (for [`Tokenizer::pieces`]; `count` has it inlined), `None` for a
    /// tokenizer that merges each stretch between added tokens whole (SentencePiece-style).
    split: Option<Split>,
    /// The added tokens its file's tokenizer finds anywhere in the text (none for the built-in
    /// encodings: OpenAI counts special-token text as text).
    added: Option<&'static Added>,
    /// The whole text in NFC, when the file's tokenizer normalizes before it looks for added
    /// tokens (`None` when it does not, or normalizes each stretch between them in `count`).
    nfc_first: Option<fn(&str) -> Option<String>>,
    /// The special tokens its file's tokenizer adds around a text it is asked to encode with
    /// special tokens (a BOS), as vLLM encodes a completion's prompt.
    prefix_tokens: u8,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Tokenizer {
    fn eq(&self, other: &Tokenizer) -> bool {
        self.name == other.name
    }
}

impl Eq for Tokenizer {}

#[inline(always)]
fn count_with<T: Tables>(
    vocab: &Vocab<T>,
    t: &[u8],
    limit: u64,
    split: Split,
    next_piece: impl Fn(&[u8], usize) -> usize,
) -> Count {
    let mut scratch = bpe::Scratch::default();
    let mut total = 0u64;
    let mut i = 0;
    while i < t.len() {
        // The common pieces (ASCII words, punctuation, digits) are decided from a load or two;
        // the full scanner decides the rest.
        // One load of the piece's first 8 bytes for both steps.
        let w = layout::load8(t, i);
        let e = pretokenize::ascii_piece(t, i, w, split).unwrap_or_else(|| next_piece(t, i));
        let (n, finished) = bpe::count_piece(vocab, &mut scratch, t, i, e, w, limit.saturating_sub(total));
        total += n;
        if total > limit {
            return Count::Over { counted: total, complete: finished && e == t.len() };
        }
        i = e;
    }
    Count::Within(total)
}

// One loop per vocabulary and pre-tokenizer, so the pre-tokenizer is inlined into it, and the
// vocabulary named as its static, so its fields fold into the code as constants.
fn count_cl100k(t: &[u8], limit: u64) -> Count {
    count_with(&vocab::CL100K, t, limit, Split::Cl100k, pretokenize::next_cl100k)
}

fn count_o200k(t: &[u8], limit: u64) -> Count {
    count_with(&vocab::O200K, t, limit, Split::O200k, pretokenize::next_o200k)
}

static CL100K: Tokenizer = Tokenizer {
    name: "cl100k_base",
    encoding: Some(Encoding::Cl100kBase),
    split: Some(Split::Cl100k),
    count: count_cl100k,
    added: None,
    nfc_first: None,
    prefix_tokens: 0,
};
static O200K: Tokenizer = Tokenizer {
    name: "o200k_base",
    encoding: Some(Encoding::O200kBase),
    split: Some(Split::O200k),
    count: count_o200k,
    added: None,
    nfc_first: None,
    prefix_tokens: 0,
};

/// The vocabularies the build read from model files (`filter/build/codegen.rs`).
mod extra {
    use super::*;
    include!(concat!(env!("OUT_DIR"), "/extra_tokenizers.rs"));
}

impl Tokenizer {
    /// The tokenizer of a built-in encoding, shared by the whole process (on wasm: the VM). Its
    /// tables are static data, so this costs nothing and cannot fail.
    pub fn of(encoding: Encoding) -> &'static Tokenizer {
        match encoding {
            Encoding::Cl100kBase => &CL100K,
            Encoding::O200kBase => &O200K,
        }
    }

    /// Every tokenizer of this build: the built-in encodings, then the vocabularies read from
    /// model files.
    pub fn all() -> impl Iterator<Item = &'static Tokenizer> {
        [&CL100K, &O200K].into_iter().chain(extra::EXTRA.iter().copied())
    }

    /// The tokenizer of this name in this build.
    pub fn by_name(name: &str) -> Option<&'static Tokenizer> {
        Tokenizer::all().find(|t| t.name == name)
    }

    /// The name configuration and headers use: `cl100k_base`, `o200k_base`, or the name the
    /// build gave a model file.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The built-in encoding this tokenizer is, or counts exactly as (a model file holding its
    /// vocabulary and pattern).
    pub fn encoding(&self) -> Option<Encoding> {
        self.encoding
    }

    #[cfg(test)]
    fn vocab(&self) -> &'static Vocab<vocab::OpenAi> {
        match self.encoding {
            Some(Encoding::Cl100kBase) => &vocab::CL100K,
            _ => &vocab::O200K,
        }
    }

    /// Exact token count of `text`.
    pub fn count(&self, text: &str) -> u64 {
        match self.count_until(text, u64::MAX) {
            Count::Within(n) | Count::Over { counted: n, .. } => n,
        }
    }

    /// Exact token count of `text` if it is at most `limit`; otherwise stops soon after the
    /// limit is passed (at the end of the piece that passed it, or inside a long piece), so a
    /// huge text costs about `limit` tokens of work, not its length.
    pub fn count_until(&self, text: &str, limit: u64) -> Count {
        if let Some(normal) = self.nfc_first.and_then(|nfc| nfc(text)) {
            return self.count_normal(&normal, limit);
        }
        self.count_normal(text, limit)
    }

    /// [`Tokenizer::count_until`] of a text its tokenizer has normalized as a whole if it does.
    fn count_normal(&self, text: &str, limit: u64) -> Count {
        let t = text.as_bytes();
        let Some(added) = self.added else { return (self.count)(t, limit) };
        // Each added token is one token; the text between them is counted on its own, as the
        // file's tokenizer splits there before anything else.
        let mut total = 0u64;
        let mut start = 0;
        while let Some((at, len)) = added.next(t, start) {
            match (self.count)(t.get(start..at).unwrap_or(&[]), limit - total) {
                Count::Within(n) => total += n,
                Count::Over { counted, .. } => return Count::Over { counted: total + counted, complete: false },
            }
            total += 1;
            start = at + len;
            if total > limit {
                return Count::Over { counted: total, complete: start == t.len() };
            }
        }
        match (self.count)(t.get(start..).unwrap_or(&[]), limit - total) {
            Count::Within(n) => Count::Within(total + n),
            Count::Over { counted, complete } => Count::Over { counted: total + counted, complete },
        }
    }

    /// The special tokens this tokenizer's file adds around a text encoded with special tokens
    /// (vLLM's completions and embeddings): a BOS for some models, none for the built-ins.
    pub fn prefix_tokens(&self) -> u64 {
        u64::from(self.prefix_tokens)
    }

    /// The pre-tokenizer's family, `None` when the tokenizer has no split pattern.
    pub fn split(&self) -> Option<Split> {
        self.split
    }

    /// The pre-tokenizer's pieces of `text` (the split pattern's matches), for tests and tools;
    /// the whole text (if not empty) for a tokenizer without a split pattern.
    pub fn pieces<'t>(&self, text: &'t str) -> impl Iterator<Item = &'t str> + 't {
        let whole = (self.split.is_none() && !text.is_empty()).then_some(text);
        self.split.into_iter().flat_map(move |s| s.pieces(text)).chain(whole)
    }
}

#[cfg(test)]
mod model_files;
#[cfg(test)]
mod tests;
