//! The DeepSeek V3 chat template (`tokenizers/README.md`: deepseek-v3).
//!
//! BOS, then every system message joined with blank lines, then `<｜User｜>`/`<｜Assistant｜>`
//! turns with nothing trimmed. Tools are not rendered, and neither are tool calls: the template
//! writes them only for an assistant whose content is `None`, which vLLM never passes (it turns
//! `null` into `""`). Tool results are `<｜tool▁output▁begin｜>` blocks.

use super::messages::Conversation;
use super::render::Prompt;

const BOS: &str = "<｜begin▁of▁sentence｜>";
const EOS: &str = "<｜end▁of▁sentence｜>";
const USER: &str = "<｜User｜>";
const ASSISTANT: &str = "<｜Assistant｜>";
const OUTPUTS_BEGIN: &str = "<｜tool▁outputs▁begin｜>";
const OUTPUTS_END: &str = "<｜tool▁outputs▁end｜>";
const OUTPUT_BEGIN: &str = "<｜tool▁output▁begin｜>";
const OUTPUT_END: &str = "<｜tool▁output▁end｜>";

/// The special and added tokens this template writes (matched in content as well).
pub(super) const SPECIALS: &[&str] = &[
    BOS,
    EOS,
    USER,
    ASSISTANT,
    OUTPUTS_BEGIN,
    OUTPUTS_END,
    OUTPUT_BEGIN,
    OUTPUT_END,
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁sep｜>",
];

pub(super) fn render(conv: &mut Conversation<'_>, p: &mut Prompt) {
    conv.check_kwargs(&[]);
    p.special(BOS);
    let mut first_system = true;
    for m in conv.messages.iter().filter(|m| m.role == "system") {
        if !first_system {
            p.text("\n\n");
        }
        p.text(&m.text());
        first_system = false;
    }
    // The template's `is_tool` (inside a run of tool results) and `is_output_first` (no tool
    // result written yet in the whole conversation: it is never reset).
    let mut in_tool_run = false;
    let mut first_output = true;
    for m in &conv.messages {
        match m.role {
            "user" => {
                in_tool_run = false;
                p.special(USER);
                p.text(&m.text());
            }
            "assistant" => {
                p.special(if in_tool_run { OUTPUTS_END } else { ASSISTANT });
                in_tool_run = false;
                p.text(&m.text());
                p.special(EOS);
            }
            "tool" => {
                in_tool_run = true;
                if first_output {
                    p.special(OUTPUTS_BEGIN);
                    first_output = false;
                } else {
                    p.text("\n");
                }
                p.special(OUTPUT_BEGIN);
                p.text(&m.text());
                p.special(OUTPUT_END);
            }
            _ => {}
        }
    }
    if in_tool_run {
        p.special(OUTPUTS_END);
    } else if conv.add_generation_prompt {
        p.special(ASSISTANT);
    }
}
