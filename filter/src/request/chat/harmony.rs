//! gpt-oss's harmony format (openai-harmony, with the messages vLLM builds for a chat request;
//! `tokenizers/README.md`: harmony). Not a template: harmony renders messages to token ids.
//!
//! vLLM builds: a system message (model identity, knowledge cutoff, the conversation's date,
//! the reasoning effort, the valid channels), a developer message with a first system or
//! developer message's text as instructions and the function tools as TypeScript, then one
//! message per turn (assistant text on the `final` channel, reasoning on `analysis`, each tool
//! call a `commentary` message to `functions.NAME`, tool results from `functions.NAME`), and
//! the reasoning of turns before the last final answer dropped. harmony encodes every header
//! field and every content part as a text of its own, and special strings in text stay text.

use std::borrow::Cow;

use serde_json::Value;

use super::json::Json;
use super::messages::{Conversation, Message};
use super::render::Prompt;
use super::typescript;
use super::ChatError;

const START: &str = "<|start|>";
const END: &str = "<|end|>";
const MESSAGE: &str = "<|message|>";
const CHANNEL: &str = "<|channel|>";
const CALL: &str = "<|call|>";

/// The special tokens of the format (text when a client types them).
pub(super) const SPECIALS: &[&str] =
    &[START, END, MESSAGE, CHANNEL, CALL, "<|return|>", "<|constrain|>", "<|endoftext|>", "<|startoftext|>", "<|endofprompt|>"];

/// The conversation start date harmony's system message carries (vLLM: the server's date).
/// Every `YYYY-MM-DD` date is the same number of tokens, so a fixed one counts exactly.
const DATE: &str = "2026-01-01";

/// One harmony message: author, optional recipient, channel and content type, and its texts.
struct HarmonyMessage<'a> {
    author: Cow<'a, str>,
    recipient: Option<String>,
    channel: Option<&'static str>,
    content_type: Option<&'static str>,
    contents: Vec<Cow<'a, str>>,
}

impl<'a> HarmonyMessage<'a> {
    fn new(author: &'a str, channel: Option<&'static str>, contents: Vec<Cow<'a, str>>) -> HarmonyMessage<'a> {
        HarmonyMessage { author: Cow::Borrowed(author), recipient: None, channel, content_type: None, contents }
    }

    /// `<|start|>` author [` to=`recipient] [`<|channel|>`channel] [` `type] `<|message|>`
    /// contents, then `<|call|>` for an assistant's tool call, else `<|end|>`.
    fn render(&self, p: &mut Prompt) {
        p.special(START);
        p.text(&self.author);
        p.cut();
        if let Some(recipient) = &self.recipient {
            p.text(" to=");
            p.text(recipient);
            p.cut();
        }
        if let Some(channel) = self.channel {
            p.special(CHANNEL);
            p.text(channel);
            p.cut();
        }
        if let Some(content_type) = self.content_type {
            p.text(" ");
            p.text(content_type);
            p.cut();
        }
        p.special(MESSAGE);
        for content in &self.contents {
            p.text(content);
            p.cut();
        }
        p.special(if self.author == "assistant" && self.recipient.is_some() { CALL } else { END });
    }
}

pub(super) fn render(conv: &mut Conversation<'_>, p: &mut Prompt) -> Result<(), ChatError> {
    let (instructions, rest) = match conv.messages.split_first() {
        Some((first, rest)) if first.role == "system" || first.role == "developer" => {
            (if first.null_content { None } else { Some(first.parts.concat()) }, rest)
        }
        _ => (None, &conv.messages[..]),
    };
    let effort = match conv.body.get("reasoning_effort") {
        None | Some(Value::Null) => "medium",
        Some(Value::String(e)) if matches!(e.as_str(), "low" | "medium" | "high") => e.as_str(),
        Some(_) => {
            conv.estimated = true;
            "medium"
        }
    };

    let tools = conv.tools.as_deref().unwrap_or(&[]);
    let functions = function_tools(tools);
    let mut out: Vec<HarmonyMessage<'_>> = Vec::new();
    let mut system = format!(
        "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: {DATE}\n\n\
         Reasoning: {effort}\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message."
    );
    if !functions.is_empty() {
        system.push_str("\nCalls to these tools must go to the commentary channel: 'functions'.");
    }
    out.push(HarmonyMessage::new("system", None, vec![Cow::Owned(system)]));
    if instructions.as_deref().is_some_and(|i| !i.is_empty()) || !tools.is_empty() {
        let mut sections = Vec::new();
        if let Some(instructions) = instructions {
            sections.push("# Instructions".to_owned());
            sections.push(instructions);
        }
        if !functions.is_empty() {
            sections.push(tools_section(&functions));
        }
        out.push(HarmonyMessage::new("developer", None, vec![Cow::Owned(sections.join("\n\n"))]));
    }

    let mut estimated = false;
    for m in rest {
        turn(m, rest, &mut out, &mut estimated)?;
    }
    conv.estimated |= estimated;

    // vLLM drops the reasoning of turns before the last final answer.
    let last_final = out.iter().rposition(|m| m.author == "assistant" && m.channel == Some("final"));
    for (i, m) in out.iter().enumerate() {
        if !(last_final.is_some_and(|f| i < f) && m.channel == Some("analysis")) {
            m.render(p);
        }
    }
    p.special(START);
    p.text("assistant");
    Ok(())
}

/// The harmony messages of one chat message.
fn turn<'a>(m: &'a Message<'a>, all: &'a [Message<'a>], out: &mut Vec<HarmonyMessage<'a>>, estimated: &mut bool) -> Result<(), ChatError> {
    match m.role {
        "assistant" if !m.tool_calls.is_empty() => {
            let text = m.parts.concat();
            if !m.null_content && !text.is_empty() {
                out.push(HarmonyMessage::new("assistant", Some("commentary"), vec![Cow::Owned(text)]));
            }
            if let Some(reasoning) = m.reasoning.filter(|r| !r.is_empty()) {
                out.push(HarmonyMessage::new("assistant", Some("analysis"), vec![Cow::Borrowed(reasoning)]));
            }
            for call in &m.tool_calls {
                let arguments = call.arguments_text().unwrap_or_else(|| {
                    *estimated = true;
                    ""
                });
                let mut message = HarmonyMessage::new("assistant", Some("commentary"), vec![Cow::Borrowed(arguments)]);
                message.recipient = Some(format!("functions.{}", call.name));
                message.content_type = Some("json");
                out.push(message);
            }
        }
        "tool" => {
            // The function's name comes from the call with this id (the last one, if repeated).
            let name = all
                .iter()
                .flat_map(|m| m.tool_calls.iter())
                .rfind(|c| c.id.is_some() && c.id == m.tool_call_id)
                .map_or("", |c| c.name);
            let mut message = HarmonyMessage::new("", Some("commentary"), vec![Cow::Owned(m.parts.concat())]);
            message.author = Cow::Owned(format!("functions.{name}"));
            message.recipient = Some("assistant".to_owned());
            out.push(message);
        }
        "assistant" => {
            if let Some(reasoning) = m.reasoning.filter(|r| !r.is_empty()) {
                out.push(HarmonyMessage::new("assistant", Some("analysis"), vec![Cow::Borrowed(reasoning)]));
            }
            if m.parts.first().is_some_and(|t| !t.is_empty()) {
                let contents = m.parts.iter().map(|t| Cow::Borrowed(*t)).collect();
                out.push(HarmonyMessage::new("assistant", Some("final"), contents));
            }
        }
        "system" | "developer" => {
            if !m.null_content {
                let text = format!("# Instructions\n\n{}", m.parts.concat());
                out.push(HarmonyMessage::new("developer", None, vec![Cow::Owned(text)]));
            }
        }
        "user" => {
            let contents = if m.parts.is_empty() { vec![Cow::Borrowed("")] } else { m.parts.iter().map(|t| Cow::Borrowed(*t)).collect() };
            out.push(HarmonyMessage::new("user", None, contents));
        }
        _ => return Err(ChatError::Refused("unknown message role for the harmony format")),
    }
    Ok(())
}

/// A function tool: name, description (`""` when absent), parameters (`None` when absent).
struct Function<'j, 'a> {
    name: &'j str,
    description: &'j str,
    parameters: Option<&'j Json<'a>>,
}

fn function_tools<'j, 'a>(tools: &'j [Json<'a>]) -> Vec<Function<'j, 'a>> {
    tools
        .iter()
        .filter(|t| t.get("type").and_then(Json::as_str) == Some("function"))
        .filter_map(|t| t.get("function"))
        .map(|f| Function {
            name: f.get("name").and_then(Json::as_str).unwrap_or(""),
            description: f.get("description").and_then(Json::as_str).unwrap_or(""),
            parameters: f.get("parameters").filter(|p| !matches!(p, Json::Null)),
        })
        .collect()
}

/// harmony's `# Tools` section for the `functions` namespace.
fn tools_section(functions: &[Function<'_, '_>]) -> String {
    let mut lines = vec!["## functions\n".to_owned(), "namespace functions {\n".to_owned()];
    for f in functions {
        // Rust's `str::lines`, as harmony splits descriptions.
        lines.extend(f.description.lines().map(|line| format!("// {line}")));
        lines.push(match f.parameters {
            Some(parameters) => format!("type {} = (_: {}) => any;\n", f.name, typescript::type_of(parameters, "")),
            None => format!("type {} = () => any;\n", f.name),
        });
    }
    lines.push("} // namespace functions".to_owned());
    format!("# Tools\n\n{}", lines.join("\n"))
}
