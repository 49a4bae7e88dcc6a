//! The Qwen 3.5 / 3.6 chat template (`tokenizers/README.md`: qwen3.5): Qwen 3's ChatML turns
//! with every content trimmed, its own tools preamble, XML-style tool calls
//! (`<function=NAME>`, `<parameter=KEY>`), a thinking block on every assistant turn after the
//! last user query, and a generation prompt that opens `<think>`.
//!
//! Qwen 3.6's template differs only in a `preserve_thinking` switch and in printing non-string
//! tool-call argument values as JSON (`true`, `null`) where 3.5 prints Python's `True`, `None`:
//! requests that touch either are counted as estimated.

use serde_json::Value;

use super::json::Json;
use super::messages::Conversation;
use super::pyjson::{dumps, python_str, Style};
use super::qwen::{end, start, tool_response, THINK, THINK_END, TOOL_CALL, TOOL_CALL_END, TOOL_RESPONSE, TOOL_RESPONSE_END};
use super::render::{py_strip, Prompt};
use super::ChatError;

const TOOLS_INTRO: &str = "system\n# Tools\n\nYou have access to the following functions:\n\n<tools>";
const FORMAT_INTRO: &str = "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n";
const FORMAT_EXAMPLE: &str = "\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n\
<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n</parameter>\n</function>\n";
const REMINDER: &str = "\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified format: an inner \
<function=...></function> block must be nested within ";
const REMINDER_END: &str = " XML tags\n- Required parameters MUST be specified\n- You may provide optional reasoning for \
your function call in natural language BEFORE the function call, but NOT after\n- If there is no function call available, \
answer the question like normal with your current knowledge and do not tell the user about function calls\n</IMPORTANT>";

pub(super) fn render(conv: &mut Conversation<'_>, p: &mut Prompt) -> Result<(), ChatError> {
    let thinking_off = matches!(conv.kwarg("enable_thinking"), Some(Value::Bool(false)));
    // `add_vision_id` only changes image placeholders, which are estimated anyway.
    conv.check_kwargs(&["preserve_thinking"]);
    let messages = &conv.messages;
    let first = messages.first().ok_or(ChatError::Refused("No messages provided."))?;
    let system = (first.role == "system").then(|| py_strip(&first.text()).to_owned());

    match conv.tools.as_deref().filter(|t| !t.is_empty()) {
        Some(tools) => {
            start(p, TOOLS_INTRO);
            for tool in tools {
                p.text("\n");
                p.text(&dumps(tool, Style::Python));
            }
            p.text(FORMAT_INTRO);
            p.special(TOOL_CALL);
            p.text(FORMAT_EXAMPLE);
            p.special(TOOL_CALL_END);
            p.text(REMINDER);
            p.special(TOOL_CALL);
            p.special(TOOL_CALL_END);
            p.text(REMINDER_END);
            if let Some(system) = system.as_deref().filter(|s| !s.is_empty()) {
                p.text("\n\n");
                p.text(system);
            }
            end(p);
        }
        None => {
            if let Some(system) = &system {
                start(p, "system\n");
                p.text(system);
                end(p);
            }
        }
    }

    let contents: Vec<String> = messages.iter().map(|m| py_strip(&m.text()).to_owned()).collect();
    let last_query = messages
        .iter()
        .zip(&contents)
        .rposition(|(m, c)| m.role == "user" && !(c.starts_with(TOOL_RESPONSE) && c.ends_with(TOOL_RESPONSE_END)))
        .ok_or(ChatError::Refused("No user query found in messages."))?;

    let mut estimated = false;
    for (i, (m, content)) in messages.iter().zip(&contents).enumerate() {
        let last = i + 1 == messages.len();
        match m.role {
            "system" if i > 0 => return Err(ChatError::Refused("System message must be at the beginning.")),
            "system" => {}
            "user" => {
                start(p, "user\n");
                p.text(content);
                end(p);
            }
            "assistant" => {
                let (reasoning, content) = match m.reasoning {
                    Some(r) => (r, content.as_str()),
                    None => match content.find(THINK_END) {
                        Some(first_end) => {
                            let before = content[..first_end].trim_end_matches('\n');
                            let reasoning = before.rsplit(THINK).next().unwrap_or(before).trim_start_matches('\n');
                            (reasoning, content.rsplit(THINK_END).next().unwrap_or("").trim_start_matches('\n'))
                        }
                        None => ("", content.as_str()),
                    },
                };
                let reasoning = py_strip(reasoning);
                start(p, "assistant\n");
                if i > last_query {
                    p.special(THINK);
                    p.text("\n");
                    p.text(reasoning);
                    p.text("\n");
                    p.special(THINK_END);
                    p.text("\n\n");
                }
                p.text(content);
                for (k, call) in m.tool_calls.iter().enumerate() {
                    if k > 0 {
                        p.text("\n");
                    } else if !py_strip(content).is_empty() {
                        p.text("\n\n");
                    }
                    p.special(TOOL_CALL);
                    p.text("\n<function=");
                    p.text(call.name);
                    p.text(">\n");
                    let arguments = call.vllm_arguments().unwrap_or_else(|| {
                        estimated = true;
                        Json::Object(Vec::new())
                    });
                    if let Json::Object(arguments) = &arguments {
                        for (key, value) in arguments {
                            p.text("<parameter=");
                            p.text(key);
                            p.text(">\n");
                            match value {
                                Json::Object(_) | Json::Array(_) => p.text(&dumps(value, Style::Python)),
                                other => {
                                    // 3.6 prints these as JSON: the two differ for booleans and null.
                                    estimated |= matches!(other, Json::Bool(_) | Json::Null);
                                    p.text(&python_str(other).unwrap_or_default());
                                }
                            }
                            p.text("\n</parameter>\n");
                        }
                    }
                    p.text("</function>\n");
                    p.special(TOOL_CALL_END);
                }
                end(p);
            }
            "tool" => {
                // The template asks `loop.previtem`, which a first message does not have.
                let opens = i > 0 && messages[i - 1].role != "tool";
                let closes = last || messages[i + 1].role != "tool";
                tool_response(p, content, opens, closes);
            }
            _ => return Err(ChatError::Refused("Unexpected message role.")),
        }
    }
    conv.estimated |= estimated;
    if conv.add_generation_prompt {
        start(p, "assistant\n");
        p.special(THINK);
        if thinking_off {
            p.text("\n\n");
            p.special(THINK_END);
            p.text("\n\n");
        } else {
            p.text("\n");
        }
    }
    Ok(())
}
