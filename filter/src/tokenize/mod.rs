//! Token counting: the tiktoken encodings cl100k_base and o200k_base, counted exactly (the same
//! counts as tiktoken-rs, which is the test oracle) with an early exit at a limit.
//!
//! The engine: a hand-written pre-tokenizer per encoding (`pretokenize`, the split patterns
//! without a regex engine), one hash lookup per piece in a vocabulary table generated at build
//! time (`vocab`, `layout`, `build.rs`) and tiktoken's byte-pair merge for the pieces that are
//! not a single token (`bpe`, linear time and bounded memory for long pieces). The tables live in
//! the module's data section: nothing is built when a VM starts. Text that looks like a special
//! token (`<|endoftext|>`) is counted as ordinary text, as the API does for user content.

mod bpe;
mod layout;
mod pretokenize;
mod unicode;
mod vocab;

use std::fmt;

pub use pretokenize::Split;

use vocab::Vocab;

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

/// One encoding, ready to count.
pub struct Tokenizer {
    encoding: Encoding,
    split: Split,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer").field("encoding", &self.encoding).finish()
    }
}

#[inline(always)]
fn count_with(
    vocab: &Vocab,
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

static CL100K: Tokenizer = Tokenizer { encoding: Encoding::Cl100kBase, split: Split::Cl100k };
static O200K: Tokenizer = Tokenizer { encoding: Encoding::O200kBase, split: Split::O200k };

impl Tokenizer {
    /// The tokenizer for `encoding`, shared by the whole process (on wasm: the VM). Its tables
    /// are static data, so this costs nothing and cannot fail.
    pub fn of(encoding: Encoding) -> &'static Tokenizer {
        match encoding {
            Encoding::Cl100kBase => &CL100K,
            Encoding::O200kBase => &O200K,
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    #[cfg(test)]
    fn vocab(&self) -> &'static Vocab {
        match self.encoding {
            Encoding::Cl100kBase => &vocab::CL100K,
            Encoding::O200kBase => &vocab::O200K,
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
        // One loop per encoding, so the pre-tokenizer is inlined into it, and the vocabulary
        // named as its static, so its fields fold into the code as constants.
        match self.encoding {
            Encoding::Cl100kBase => {
                count_with(&vocab::CL100K, text.as_bytes(), limit, Split::Cl100k, pretokenize::next_cl100k)
            }
            Encoding::O200kBase => count_with(&vocab::O200K, text.as_bytes(), limit, Split::O200k, pretokenize::next_o200k),
        }
    }

    /// The pre-tokenizer's pieces of `text` (the split pattern's matches), for tests and tools.
    pub fn pieces<'t>(&self, text: &'t str) -> impl Iterator<Item = &'t str> + 't {
        self.split.pieces(text)
    }
}

#[cfg(test)]
mod tests;
