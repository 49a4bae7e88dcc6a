//! The Gemma 3 chat template (`tokenizers/README.md`: gemma3).
//!
//! `<bos>`, then `<start_of_turn>user|model\n…<end_of_turn>\n` turns that must alternate user,
//! other, user, … (the template refuses anything else, and vLLM answers 400). A first system
//! message is not a turn: its first text part and a blank line open the first turn. vLLM hands
//! this template the content as parts (it loops over them), so two text parts are written
//! trimmed and back to back, with no separator. Tools are not rendered.

use super::messages::Conversation;
use super::render::{py_strip, Prompt};
use super::ChatError;

const BOS: &str = "<bos>";
const START: &str = "<start_of_turn>";
const END: &str = "<end_of_turn>";

/// The special tokens this template writes (matched in content as well).
pub(super) const SPECIALS: &[&str] = &[BOS, START, END, "<eos>", "<start_of_image>", "<end_of_image>"];

pub(super) fn render(conv: &mut Conversation<'_>, p: &mut Prompt) -> Result<(), ChatError> {
    conv.check_kwargs(&[]);
    let first = conv.messages.first().ok_or(ChatError::Refused("the conversation has no messages"))?;
    let (prefix, turns) = if first.role == "system" {
        let text = first.parts.first().ok_or(ChatError::Refused("the system message has no text"))?;
        (Some(*text), &conv.messages[1..])
    } else {
        (None, &conv.messages[..])
    };
    p.special(BOS);
    for (i, m) in turns.iter().enumerate() {
        if (m.role == "user") != (i % 2 == 0) {
            return Err(ChatError::Refused("Conversation roles must alternate user/assistant/user/assistant/..."));
        }
        p.special(START);
        p.text(if m.role == "assistant" { "model" } else { m.role });
        p.text("\n");
        if let (0, Some(prefix)) = (i, prefix) {
            p.text(prefix);
            p.text("\n\n");
        }
        if m.role == "tool" {
            // vLLM joins a tool message's parts into one string, trimmed as a whole.
            p.text(py_strip(&m.text()));
        } else {
            for part in &m.parts {
                p.text(py_strip(part));
            }
        }
        p.special(END);
        p.text("\n");
    }
    if conv.add_generation_prompt {
        p.special(START);
        p.text("model\n");
    }
    Ok(())
}
