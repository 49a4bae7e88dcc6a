//! Meta Llama 3 and 3.1 chat templates (`tokenizers/README.md`: llama3, llama3.1).
//!
//! Both open with the BOS the template writes as text (`<|begin_of_text|>`), which the backend
//! reads as the one BOS token (vLLM adds none of its own for chat). Llama 3 ignores tools; 3.1
//! writes them into the first user turn as indented JSON and renders at most one tool call per
//! assistant turn.

use std::borrow::Cow;

use super::json::Json;
use super::messages::{Conversation, Message};
use super::pyjson::{dumps, write_str, Style};
use super::render::{py_strip, Prompt};
use super::ChatError;

const BOS: &str = "<|begin_of_text|>";
const START_HEADER: &str = "<|start_header_id|>";
const END_HEADER: &str = "<|end_header_id|>";
const EOT: &str = "<|eot_id|>";

/// The special tokens these templates write (and that Hugging Face matches in content).
pub(super) const SPECIALS: &[&str] = &[
    BOS,
    START_HEADER,
    END_HEADER,
    EOT,
    "<|end_of_text|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_",
];

/// Template variables that Llama 3.1's template reads and this rule does not model.
const LLAMA31_UNMODELLED: [&str; 4] = ["custom_tools", "tools_in_user_message", "builtin_tools", "date_string"];

/// The default `date_string` of Meta's 3.1 template (vLLM passes none).
const TODAY: &str = "26 Jul 2024";

/// `<|start_header_id|>ROLE<|end_header_id|>` followed by `"\n\n"`, which starts the body's run.
fn header(p: &mut Prompt, role: &str) {
    p.special(START_HEADER);
    p.text(role);
    p.special(END_HEADER);
    p.text("\n\n");
}

pub(super) fn render_llama3(conv: &mut Conversation<'_>, p: &mut Prompt) {
    conv.check_kwargs(&[]);
    for (i, m) in conv.messages.iter().enumerate() {
        if i == 0 {
            p.special(BOS);
        }
        header(p, m.role);
        p.text(py_strip(&m.text()));
        p.special(EOT);
    }
    // The template writes the generation prompt whatever add_generation_prompt says.
    header(p, "assistant");
}

pub(super) fn render_llama31(conv: &mut Conversation<'_>, p: &mut Prompt) -> Result<(), ChatError> {
    conv.check_kwargs(&LLAMA31_UNMODELLED);
    let first = conv.messages.first().ok_or(ChatError::Refused("the conversation has no messages"))?;
    let (system, mut rest): (Cow<'_, str>, &[Message<'_>]) = if first.role == "system" {
        (Cow::Owned(py_strip(&first.text()).to_owned()), &conv.messages[1..])
    } else {
        (Cow::Borrowed(""), &conv.messages[..])
    };

    p.special(BOS);
    header(p, "system");
    if conv.tools.is_some() {
        p.text("Environment: ipython\n");
    }
    p.text("Cutting Knowledge Date: December 2023\nToday Date: ");
    p.text(TODAY);
    p.text("\n\n");
    p.text(&system);
    p.special(EOT);

    if let Some(tools) = &conv.tools {
        let (first_user, after) = rest
            .split_first()
            .ok_or(ChatError::Refused("Cannot put tools in the first user message when there's no first user message!"))?;
        rest = after;
        header(p, "user");
        p.text(
            "Given the following functions, please respond with a JSON for a function call with its proper \
             arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function name, \
             \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n",
        );
        for tool in tools {
            p.text(&dumps(tool, Style::PythonIndent(4)));
            p.text("\n\n");
        }
        p.text(py_strip(&first_user.text()));
        p.special(EOT);
    }

    for m in rest {
        if m.role == "tool" || m.role == "ipython" {
            header(p, "ipython");
            // The content is a string, which the template's `tojson` prints quoted.
            let mut quoted = String::new();
            write_str(&m.text(), &mut quoted);
            p.text(&quoted);
            p.special(EOT);
        } else if !m.tool_calls.is_empty() {
            let [call] = m.tool_calls.as_slice() else {
                return Err(ChatError::Refused("This model only supports single tool-calls at once!"));
            };
            header(p, "assistant");
            let arguments = call.vllm_arguments().unwrap_or_else(|| {
                conv.estimated = true;
                Json::Object(Vec::new())
            });
            p.text("{\"name\": \"");
            p.text(call.name);
            p.text("\", \"parameters\": ");
            p.text(&dumps(&arguments, Style::Python));
            p.text("}");
            p.special(EOT);
        } else {
            header(p, m.role);
            p.text(py_strip(&m.text()));
            p.special(EOT);
        }
    }
    if conv.add_generation_prompt {
        header(p, "assistant");
    }
    Ok(())
}
