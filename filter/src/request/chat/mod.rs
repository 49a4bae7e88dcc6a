//! Chat templates as counting rules: a chat request rendered as the model's template renders it
//! on the backend (vLLM), as special tokens and runs of text, and counted run by run.
//!
//! vLLM's `usage.prompt_tokens` for `/v1/chat/completions` is the token count of the
//! conversation rendered with the model's chat template and tokenized as one text, special
//! tokens written by the template becoming one token each. Each format here reproduces its
//! template's output for the request (`tokenizers/README.md`, "Chat formats: the rules";
//! `tokenizers/chat_cases.json` pins the rendered text of every format) without a template
//! engine: the count is the number of special tokens plus the tokens of each maximal run of text
//! between them (`render`), since the backend tokenizes each such run as one string.
//!
//! The templates come with the open-weight models' tokenizers: only a build with model files
//! (`TOKENGATE_TOKENIZERS`, cfg `tokengate_chat`) has them; the default build has the format
//! names, so its configuration can say which formats it lacks.

#[cfg(tokengate_chat)]
mod deepseek;
#[cfg(tokengate_chat)]
mod gemma;
#[cfg(tokengate_chat)]
mod harmony;
#[cfg(tokengate_chat)]
mod json;
#[cfg(tokengate_chat)]
mod llama;
#[cfg(tokengate_chat)]
mod messages;
#[cfg(tokengate_chat)]
mod mistral;
#[cfg(tokengate_chat)]
mod pyjson;
#[cfg(tokengate_chat)]
mod qwen;
#[cfg(tokengate_chat)]
mod qwen35;
#[cfg(tokengate_chat)]
mod render;
#[cfg(tokengate_chat)]
mod typescript;

use std::fmt;

#[cfg(tokengate_chat)]
use serde_json::{Map, Value};

#[cfg(tokengate_chat)]
use super::prompt::{Exactness, PromptCount};
#[cfg(tokengate_chat)]
use crate::tokenize::{Count, Tokenizer};
#[cfg(tokengate_chat)]
use messages::Conversation;
#[cfg(tokengate_chat)]
use render::{Prompt, Segment};

/// How a model's chat requests become its prompt. The names are the configuration's
/// (`models[i].chat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChatFormat {
    /// OpenAI's documented per-message rule (`request/prompt.rs`), for OpenAI's models.
    OpenAi,
    /// Meta Llama 3 (8B/70B Instruct).
    Llama3,
    /// Meta Llama 3.1 and later 3.x.
    Llama31,
    /// Qwen 2.5.
    Qwen25,
    /// Qwen 3.
    Qwen3,
    /// Qwen 3.5 and 3.6.
    Qwen35,
    /// DeepSeek V3.
    DeepseekV3,
    /// Mistral models with Tekken v3 request encoding (mistral-common).
    Mistral,
    /// Google Gemma 3.
    Gemma3,
    /// OpenAI gpt-oss (openai-harmony, as vLLM builds its messages).
    Harmony,
}

impl ChatFormat {
    /// Every format, in the order of the documentation.
    pub const ALL: [ChatFormat; 10] = [
        ChatFormat::OpenAi,
        ChatFormat::Llama3,
        ChatFormat::Llama31,
        ChatFormat::Qwen25,
        ChatFormat::Qwen3,
        ChatFormat::Qwen35,
        ChatFormat::DeepseekV3,
        ChatFormat::Mistral,
        ChatFormat::Gemma3,
        ChatFormat::Harmony,
    ];

    /// The format's name in configuration.
    pub fn name(self) -> &'static str {
        match self {
            ChatFormat::OpenAi => "openai",
            ChatFormat::Llama3 => "llama3",
            ChatFormat::Llama31 => "llama3.1",
            ChatFormat::Qwen25 => "qwen2.5",
            ChatFormat::Qwen3 => "qwen3",
            ChatFormat::Qwen35 => "qwen3.5",
            ChatFormat::DeepseekV3 => "deepseek-v3",
            ChatFormat::Mistral => "mistral",
            ChatFormat::Gemma3 => "gemma3",
            ChatFormat::Harmony => "harmony",
        }
    }

    pub fn from_name(name: &str) -> Option<ChatFormat> {
        ChatFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether this build renders the format: the OpenAI rule always; the templates of
    /// open-weight models only in a build with model tokenizers (`TOKENGATE_TOKENIZERS`).
    pub const fn in_build(self) -> bool {
        cfg!(tokengate_chat) || matches!(self, ChatFormat::OpenAi)
    }

    /// The special tokens the format writes, and whether the backend also reads them as special
    /// tokens when a client types them in content (Hugging Face and tiktoken paths do;
    /// mistral-common and openai-harmony read them as plain text).
    #[cfg(tokengate_chat)]
    fn specials(self) -> (&'static [&'static str], bool) {
        match self {
            ChatFormat::OpenAi => (&[], false),
            ChatFormat::Llama3 | ChatFormat::Llama31 => (llama::SPECIALS, true),
            ChatFormat::Qwen25 | ChatFormat::Qwen3 | ChatFormat::Qwen35 => (qwen::SPECIALS, true),
            ChatFormat::DeepseekV3 => (deepseek::SPECIALS, true),
            ChatFormat::Gemma3 => (gemma::SPECIALS, true),
            ChatFormat::Mistral => (mistral::SPECIALS, false),
            ChatFormat::Harmony => (harmony::SPECIALS, false),
        }
    }
}

impl fmt::Display for ChatFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a chat request cannot be rendered; the backend answers 400 to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatError {
    /// A message the backend's request model refuses (not an object, no role, ...).
    Invalid(&'static str),
    /// The template (or the format's library) refuses the conversation, with its reason.
    Refused(&'static str),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::Invalid(reason) | ChatError::Refused(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for ChatError {}

/// Renders a chat request (`body`, with `raw` its bytes) in `format` (not [`ChatFormat::OpenAi`],
/// which is a counting rule without a template).
#[cfg(tokengate_chat)]
pub(crate) fn render(format: ChatFormat, body: &Map<String, Value>, raw: &[u8]) -> Result<Prompt, ChatError> {
    let mut conv = Conversation::read(body, raw)?;
    let mut prompt = Prompt::default();
    match format {
        ChatFormat::OpenAi => return Err(ChatError::Refused("the OpenAI rule has no template")),
        ChatFormat::Llama3 => llama::render_llama3(&mut conv, &mut prompt),
        ChatFormat::Llama31 => llama::render_llama31(&mut conv, &mut prompt)?,
        ChatFormat::Qwen25 => qwen::render(&mut conv, &mut prompt, qwen::Version::Qwen25)?,
        ChatFormat::Qwen3 => qwen::render(&mut conv, &mut prompt, qwen::Version::Qwen3)?,
        ChatFormat::Qwen35 => qwen35::render(&mut conv, &mut prompt)?,
        ChatFormat::DeepseekV3 => deepseek::render(&mut conv, &mut prompt),
        ChatFormat::Mistral => mistral::render(&mut conv, &mut prompt)?,
        ChatFormat::Gemma3 => gemma::render(&mut conv, &mut prompt)?,
        ChatFormat::Harmony => harmony::render(&mut conv, &mut prompt)?,
    }
    prompt.estimated |= conv.estimated;
    prompt.images = conv.images;
    Ok(prompt)
}

/// Counts a rendered prompt with `tokenizer`: one token per special token, each text run
/// counted whole, `image_tokens` per image. Counting goes on to twice `limit` and stops there,
/// as the OpenAI rule does; special tokens are added even past it (they cost no work).
#[cfg(tokengate_chat)]
pub(crate) fn count(prompt: &Prompt, format: ChatFormat, tokenizer: &Tokenizer, limit: u64, image_tokens: u64) -> PromptCount {
    let stop_at = limit.saturating_mul(2);
    let mut total = prompt.images.saturating_mul(image_tokens);
    let mut stopped = total > stop_at;
    let mut skipped = false;
    let mut estimated = prompt.estimated;
    for segment in &prompt.segments {
        match segment {
            Segment::Special(_) => {
                total = total.saturating_add(1);
                stopped |= total > stop_at;
            }
            Segment::Cut => {}
            Segment::Text(run) => {
                if stopped {
                    skipped = true;
                    continue;
                }
                estimated |= special_text_differs(format, run, tokenizer);
                match tokenizer.count_until(run, stop_at.saturating_sub(total)) {
                    Count::Within(n) => total += n,
                    Count::Over { counted, complete } => {
                        total += counted;
                        stopped = true;
                        skipped |= !complete;
                    }
                }
            }
        }
    }
    PromptCount {
        tokens: total,
        over_limit: total > limit,
        stopped_early: skipped,
        exactness: if estimated { Exactness::Estimated } else { Exactness::Exact },
    }
}

/// Whether `run` holds a special token's text that the backend reads differently from
/// `tokenizer`: as one token where the tokenizer counts text, or as text where it counts one.
/// The template's own special tokens are segments, so such text came from the client.
#[cfg(tokengate_chat)]
fn special_text_differs(format: ChatFormat, run: &str, tokenizer: &Tokenizer) -> bool {
    if !run.contains('<') && !run.contains('[') {
        return false;
    }
    let (specials, backend_matches) = format.specials();
    specials
        .iter()
        .any(|s| run.contains(s) && (tokenizer.count(s) == 1) != backend_matches)
}

#[cfg(all(test, tokengate_chat))]
mod tests;
