//! Qwen 2.5 and Qwen 3 chat templates (`tokenizers/README.md`: qwen2.5, qwen3).
//!
//! ChatML turns (`<|im_start|>role\n…<|im_end|>\n`), no BOS. Tools go into the system turn as
//! one JSON line each; tool calls are JSON inside `<tool_call>` tags and tool results are user
//! turns of `<tool_response>` blocks. `<tool_call>`, `<tool_response>`, `<think>` and their
//! closing tags are added tokens of the Qwen 3 vocabulary: one token each, wherever the template
//! writes them (its fixed instructions included). Qwen 3 adds the thinking block of the turns
//! after the last user query and honours `enable_thinking: false`.

use super::json::Json;
use super::messages::{Conversation, Message};
use super::pyjson::{dumps, Style};
use super::render::Prompt;
use super::ChatError;

pub(super) const IM_START: &str = "<|im_start|>";
pub(super) const IM_END: &str = "<|im_end|>";
pub(super) const TOOL_CALL: &str = "<tool_call>";
pub(super) const TOOL_CALL_END: &str = "</tool_call>";
pub(super) const TOOL_RESPONSE: &str = "<tool_response>";
pub(super) const TOOL_RESPONSE_END: &str = "</tool_response>";
pub(super) const THINK: &str = "<think>";
pub(super) const THINK_END: &str = "</think>";

/// The special and added tokens these templates write (matched in content as well).
pub(super) const SPECIALS: &[&str] =
    &[IM_START, IM_END, TOOL_CALL, TOOL_CALL_END, TOOL_RESPONSE, TOOL_RESPONSE_END, THINK, THINK_END, "<|endoftext|>"];

const DEFAULT_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// Which template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    Qwen25,
    Qwen3,
}

/// `<|im_start|>` + text, the start of a turn's run.
pub(super) fn start(p: &mut Prompt, role_and_more: &str) {
    p.special(IM_START);
    p.text(role_and_more);
}

/// `<|im_end|>\n`.
pub(super) fn end(p: &mut Prompt) {
    p.special(IM_END);
    p.text("\n");
}

/// The tools' system text after the opening words, to the end of the turn (shared by both).
fn tools_block(p: &mut Prompt, tools: &[Json<'_>]) {
    p.text(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with \
         function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for tool in tools {
        p.text("\n");
        p.text(&dumps(tool, Style::Python));
    }
    p.text("\n</tools>\n\nFor each function call, return a json object with function name and arguments within ");
    p.special(TOOL_CALL);
    p.special(TOOL_CALL_END);
    p.text(" XML tags:\n");
    p.special(TOOL_CALL);
    p.text("\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n");
    p.special(TOOL_CALL_END);
    end(p);
}

/// A tool message: the user turn opens at the first of a run of tool messages and closes
/// after the last.
pub(super) fn tool_response(p: &mut Prompt, content: &str, opens: bool, closes: bool) {
    if opens {
        start(p, "user");
    }
    p.text("\n");
    p.special(TOOL_RESPONSE);
    p.text("\n");
    p.text(content);
    p.text("\n");
    p.special(TOOL_RESPONSE_END);
    if closes {
        end(p);
    }
}

pub(super) fn render(conv: &mut Conversation<'_>, p: &mut Prompt, version: Version) -> Result<(), ChatError> {
    let thinking_off = match version {
        Version::Qwen25 => false,
        Version::Qwen3 => matches!(conv.kwarg("enable_thinking"), Some(serde_json::Value::Bool(false))),
    };
    conv.check_kwargs(&[]);
    let messages = &conv.messages;
    let first = messages.first().ok_or(ChatError::Refused("the conversation has no messages"))?;
    let system_first = first.role == "system";
    let tools = conv.tools.as_deref().filter(|t| !t.is_empty());
    match (tools, version) {
        (Some(tools), _) => {
            start(p, "system\n");
            match (system_first, version) {
                (true, _) => p.text(&first.text()),
                (false, Version::Qwen25) => p.text(DEFAULT_SYSTEM),
                (false, Version::Qwen3) => {}
            }
            if system_first || version == Version::Qwen25 {
                p.text("\n\n");
            }
            tools_block(p, tools);
        }
        (None, _) if system_first => {
            start(p, "system\n");
            p.text(&first.text());
            end(p);
        }
        (None, Version::Qwen25) => {
            start(p, "system\n");
            p.text(DEFAULT_SYSTEM);
            end(p);
        }
        (None, Version::Qwen3) => {}
    }

    let last_query = last_query_index(messages);
    let mut estimated = false;
    for (i, m) in messages.iter().enumerate() {
        let last = i + 1 == messages.len();
        match m.role {
            "user" => turn(p, m),
            "system" if i > 0 => turn(p, m),
            "assistant" if version == Version::Qwen25 && m.tool_calls.is_empty() => turn(p, m),
            "assistant" => {
                let content = m.text();
                let mut content: &str = &content;
                let owned_content;
                if version == Version::Qwen25 {
                    start(p, "assistant");
                    if !content.is_empty() {
                        p.text("\n");
                        p.text(content);
                    }
                } else {
                    let (reasoning, rest) = split_reasoning(m, content);
                    owned_content = rest;
                    content = &owned_content;
                    if i as isize > last_query && (last || !reasoning.is_empty()) {
                        start(p, "assistant\n");
                        p.special(THINK);
                        p.text("\n");
                        p.text(reasoning.trim_matches('\n'));
                        p.text("\n");
                        p.special(THINK_END);
                        p.text("\n\n");
                        p.text(content.trim_start_matches('\n'));
                    } else {
                        start(p, "assistant\n");
                        p.text(content);
                    }
                }
                for (k, call) in m.tool_calls.iter().enumerate() {
                    if version == Version::Qwen25 || k > 0 || !content.is_empty() {
                        p.text("\n");
                    }
                    p.special(TOOL_CALL);
                    p.text("\n{\"name\": \"");
                    p.text(call.name);
                    p.text("\", \"arguments\": ");
                    let arguments = call.vllm_arguments().unwrap_or_else(|| {
                        estimated = true;
                        Json::Object(Vec::new())
                    });
                    p.text(&dumps(&arguments, Style::Python));
                    p.text("}\n");
                    p.special(TOOL_CALL_END);
                }
                end(p);
            }
            "tool" => {
                let opens = i == 0 || messages[i - 1].role != "tool";
                let closes = last || messages[i + 1].role != "tool";
                tool_response(p, &m.text(), opens, closes);
            }
            // Other roles (a first system message, already written; unknown roles) write nothing.
            _ => {}
        }
    }
    conv.estimated |= estimated;
    if conv.add_generation_prompt {
        start(p, "assistant\n");
        if thinking_off {
            p.special(THINK);
            p.text("\n\n");
            p.special(THINK_END);
            p.text("\n\n");
        }
    }
    Ok(())
}

/// `<|im_start|>role\ncontent<|im_end|>\n`.
fn turn(p: &mut Prompt, m: &Message<'_>) {
    start(p, m.role);
    p.text("\n");
    p.text(&m.text());
    end(p);
}

/// Qwen 3's `last_query_index`: the last user message that is not only a tool response (the
/// message count less one when there is none; -1 never occurs in the template but is harmless).
fn last_query_index(messages: &[Message<'_>]) -> isize {
    messages
        .iter()
        .rposition(|m| {
            let text = m.text();
            m.role == "user" && !(text.starts_with(TOOL_RESPONSE) && text.ends_with(TOOL_RESPONSE_END))
        })
        .map_or(messages.len() as isize - 1, |i| i as isize)
}

/// Qwen 3's reasoning and content of an assistant turn: `reasoning_content` if given, else the
/// text before `</think>` (after any `<think>`) and the content after the last `</think>`.
fn split_reasoning(m: &Message<'_>, content: &str) -> (String, String) {
    if let Some(reasoning) = m.reasoning {
        return (reasoning.to_owned(), content.to_owned());
    }
    match content.find(THINK_END) {
        None => (String::new(), content.to_owned()),
        Some(first_end) => {
            let before = content[..first_end].trim_end_matches('\n');
            let reasoning = before.rsplit(THINK).next().unwrap_or(before).trim_start_matches('\n');
            let after = content.rsplit(THINK_END).next().unwrap_or("").trim_start_matches('\n');
            (reasoning.to_owned(), after.to_owned())
        }
    }
}
