//! Mistral's Tekken v3 request encoding (mistral-common `InstructTokenizerV3`, as vLLM calls it;
//! `tokenizers/README.md`: mistral). Not a template: token ids built message by message.
//!
//! vLLM hands mistral-common the client's messages, marking a final assistant message as a
//! prefix to continue. mistral-common validates them, merges consecutive messages of one role
//! (texts joined with blank lines), gathers every system message into one system prompt, and
//! encodes: `<s>`, then per user turn `[INST]…[/INST]` (the last one prefixed by the tools and
//! the system prompt), assistant text + `</s>`, `[TOOL_CALLS]` + JSON + `</s>`, and tool
//! results as `[TOOL_RESULTS]` + JSON + `[/TOOL_RESULTS]`. Every piece of text is encoded on
//! its own and special strings in content stay text.

use std::borrow::Cow;

use super::json::{self, Json};
use super::messages::{Conversation, Message};
use super::pyjson::{dumps, Style};
use super::render::Prompt;
use super::ChatError;

const BOS: &str = "<s>";
const EOS: &str = "</s>";
const INST: &str = "[INST]";
const INST_END: &str = "[/INST]";
const TOOLS: &str = "[AVAILABLE_TOOLS]";
const TOOLS_END: &str = "[/AVAILABLE_TOOLS]";
const TOOL_RESULTS: &str = "[TOOL_RESULTS]";
const TOOL_RESULTS_END: &str = "[/TOOL_RESULTS]";
const TOOL_CALLS: &str = "[TOOL_CALLS]";

/// The special tokens this encoding writes (text when a client types them).
pub(super) const SPECIALS: &[&str] = &[BOS, EOS, INST, INST_END, TOOLS, TOOLS_END, TOOL_RESULTS, TOOL_RESULTS_END, TOOL_CALLS];

/// What mistral-common joins merged texts with.
const JOIN: &str = "\n\n";

/// A message after mistral-common's merging of neighbours.
enum Turn<'m, 'a> {
    User(String),
    Assistant { content: String, calls: Vec<&'m super::messages::ToolCall<'a>>, prefix: bool },
    Tool(&'m Message<'a>),
}

pub(super) fn render(conv: &mut Conversation<'_>, p: &mut Prompt) -> Result<(), ChatError> {
    validate(&conv.messages)?;
    if conv.messages.iter().any(|m| m.reasoning.is_some()) {
        // Reasoning fields become thinking chunks, which this version's encoder does not take.
        conv.estimated = true;
    }
    let system: Vec<String> = conv
        .messages
        .iter()
        .filter(|m| m.role == "system" || m.role == "developer")
        .map(|m| m.parts.iter().filter(|t| !t.is_empty()).copied().collect::<Vec<_>>().join(JOIN))
        .filter(|s| !s.is_empty())
        .collect();
    let system = (!system.is_empty()).then(|| system.join(JOIN));

    let turns = merge(&conv.messages, &mut conv.estimated);
    let last_user = turns.iter().rposition(|t| matches!(t, Turn::User(_)));
    let tools = conv.tools.as_deref().filter(|t| !t.is_empty());

    p.special(BOS);
    for (i, turn) in turns.iter().enumerate() {
        match turn {
            Turn::User(content) => {
                if let (Some(tools), true) = (tools, Some(i) == last_user) {
                    p.special(TOOLS);
                    let tools = Json::Array(tools.iter().map(mistral_tool).collect());
                    p.text(&dumps(&tools, Style::Python));
                    p.special(TOOLS_END);
                }
                p.special(INST);
                if let (Some(system), true) = (&system, Some(i) == last_user) {
                    p.text(system);
                    p.text(JOIN);
                }
                p.text(content);
                p.special(INST_END);
            }
            Turn::Assistant { content, calls, prefix } => {
                if calls.is_empty() {
                    p.text(content.trim_end_matches(' '));
                } else {
                    p.special(TOOL_CALLS);
                    let calls = Json::Array(calls.iter().map(|c| tool_call(c, &mut conv.estimated)).collect());
                    p.text(&dumps(&calls, Style::Python));
                }
                if !prefix {
                    p.special(EOS);
                }
            }
            Turn::Tool(m) => {
                p.special(TOOL_RESULTS);
                let content = reparsed(Some(&m.text()), &mut conv.estimated);
                let result = Json::Object(vec![
                    (Cow::Borrowed("content"), content),
                    (Cow::Borrowed("call_id"), Json::Str(Cow::Borrowed(m.tool_call_id.unwrap_or("")))),
                ]);
                p.text(&dumps(&result, Style::Python));
                p.special(TOOL_RESULTS_END);
            }
        }
        p.cut();
    }
    Ok(())
}

/// Neighbouring messages of one role merged (a system message writes nothing but separates),
/// and an empty user turn first when the conversation does not start with one.
fn merge<'m, 'a>(messages: &'m [Message<'a>], estimated: &mut bool) -> Vec<Turn<'m, 'a>> {
    let mut turns: Vec<Turn<'m, 'a>> = Vec::new();
    let mut previous = "";
    for (i, m) in messages.iter().enumerate() {
        let same = m.role == previous;
        previous = m.role;
        let text = || m.parts.iter().filter(|t| !t.is_empty()).copied().collect::<Vec<_>>().join(JOIN);
        match (m.role, turns.last_mut()) {
            ("user", Some(Turn::User(content))) if same => append(content, &text()),
            ("user", _) => turns.push(Turn::User(text())),
            ("assistant", Some(Turn::Assistant { content, calls, prefix })) if same => {
                // vLLM joins an assistant's parts with "\n" before mistral-common sees them.
                append(content, &m.parts.join("\n"));
                calls.extend(m.tool_calls.iter());
                *prefix |= i + 1 == messages.len();
            }
            ("assistant", _) => turns.push(Turn::Assistant {
                content: m.parts.join("\n"),
                calls: m.tool_calls.iter().collect(),
                prefix: i + 1 == messages.len(),
            }),
            ("tool", _) => {
                // The join of a tool message's parts depends on the vLLM version.
                *estimated |= m.parts.len() > 1;
                turns.push(Turn::Tool(m));
            }
            _ => {}
        }
    }
    if !matches!(turns.first(), Some(Turn::User(_))) {
        turns.insert(0, Turn::User(String::new()));
    }
    turns
}

fn append(content: &mut String, text: &str) {
    if !text.is_empty() {
        if !content.is_empty() {
            content.push_str(JOIN);
        }
        content.push_str(text);
    }
}

/// mistral-common's checks of the conversation (its default, lenient mode), on the messages
/// as sent: each failure is its refusal.
fn validate(messages: &[Message<'_>]) -> Result<(), ChatError> {
    fn role<'a>(m: &Message<'a>) -> &'a str {
        match m.role {
            "developer" => "system",
            r => r,
        }
    }
    let Some(last) = messages.last() else {
        return Err(ChatError::Refused("Conversation must have at least one message"));
    };
    if messages.len() == 1 && !matches!(role(last), "user" | "system") {
        return Err(ChatError::Refused("Conversation must start with a user message or system message"));
    }
    if messages.len() > 1 && role(last) == "system" {
        return Err(ChatError::Refused("Expected last role User or Tool (or Assistant with prefix) for serving but got system"));
    }
    let mut expected_results: i64 = 0;
    for (i, m) in messages.iter().enumerate() {
        let current = role(m);
        if !matches!(current, "user" | "assistant" | "tool" | "system") {
            return Err(ChatError::Refused("Unknown message role"));
        }
        if let Some(previous) = i.checked_sub(1).map(|j| role(&messages[j])) {
            let allowed: &[&str] = match previous {
                "system" => &["user", "assistant", "system"],
                "user" => &["assistant", "system", "user"],
                "assistant" => &["assistant", "user", "tool"],
                _ => &["assistant", "tool", "user"],
            };
            if !allowed.contains(&current) {
                return Err(ChatError::Refused("Unexpected role after the previous message's role"));
            }
            match current {
                "tool" => expected_results -= 1,
                "assistant" if expected_results != 0 => {
                    return Err(ChatError::Refused("Not the same number of function calls and responses"))
                }
                "assistant" => expected_results = m.tool_calls.len() as i64,
                _ => {}
            }
        }
        match current {
            "assistant" => {
                let has_content = m.parts.iter().any(|t| !t.is_empty());
                if has_content != m.tool_calls.is_empty() {
                    return Err(ChatError::Refused("Assistant message must have either content or tool_calls, but not both."));
                }
                if m.tool_calls.iter().any(|c| !is_call_id(c.id.unwrap_or("null"))) {
                    return Err(ChatError::Refused("Tool call id must be a-z, A-Z, 0-9, with a length of 9."));
                }
            }
            "tool" => match m.tool_call_id {
                None => return Err(ChatError::Refused("Tool call id has to be defined.")),
                Some(id) if !is_call_id(id) => {
                    return Err(ChatError::Refused("Tool call id must be a-z, A-Z, 0-9, with a length of 9."))
                }
                Some(_) => {}
            },
            _ => {}
        }
        if m.null_content && current != "assistant" {
            return Err(ChatError::Refused("A user, system or tool message must have content"));
        }
    }
    Ok(())
}

fn is_call_id(id: &str) -> bool {
    id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A tool as mistral-common dumps it: `type`, `function` with `name`, `description` (`""` when
/// absent) and `parameters` (`{}` when absent); other keys are dropped.
fn mistral_tool<'a>(tool: &Json<'a>) -> Json<'a> {
    let function = tool.get("function");
    let field = |key: &str| function.and_then(|f| f.get(key)).filter(|v| !matches!(v, Json::Null)).cloned();
    Json::Object(vec![
        (Cow::Borrowed("type"), Json::Str(Cow::Borrowed("function"))),
        (
            Cow::Borrowed("function"),
            Json::Object(vec![
                (Cow::Borrowed("name"), field("name").unwrap_or(Json::Null)),
                (Cow::Borrowed("description"), field("description").unwrap_or(Json::Str(Cow::Borrowed("")))),
                (Cow::Borrowed("parameters"), field("parameters").unwrap_or(Json::Object(Vec::new()))),
            ]),
        ),
    ])
}

/// A tool call as mistral-common writes it: name, the arguments re-read as JSON, the id.
fn tool_call<'a>(call: &super::messages::ToolCall<'a>, estimated: &mut bool) -> Json<'a> {
    let arguments = match call.arguments_text() {
        Some(text) => reparsed(Some(text), estimated),
        None => {
            *estimated = true;
            Json::Object(Vec::new())
        }
    };
    let mut fields = vec![
        (Cow::Borrowed("name"), Json::Str(Cow::Borrowed(call.name))),
        (Cow::Borrowed("arguments"), arguments),
    ];
    if let Some(id) = call.id.filter(|id| *id != "null") {
        fields.push((Cow::Borrowed("id"), Json::Str(Cow::Borrowed(id))));
    }
    Json::Object(fields)
}

/// mistral-common's JSON normalisation of a text (empty is `{}`; JSON is re-read, anything else
/// stays a string).
fn reparsed<'a>(text: Option<&str>, estimated: &mut bool) -> Json<'a> {
    let text = text.unwrap_or("");
    if text.is_empty() {
        return Json::Object(Vec::new());
    }
    match json::parse(text) {
        Some(value) => into_owned(value),
        None => {
            // Valid JSON this reader refuses (too deep) is printed differently by Python.
            *estimated |= serde_json::from_str::<serde_json::Value>(text).is_ok();
            Json::Str(Cow::Owned(text.to_owned()))
        }
    }
}

fn into_owned(value: Json<'_>) -> Json<'static> {
    match value {
        Json::Null => Json::Null,
        Json::Bool(b) => Json::Bool(b),
        Json::Int(i) => Json::Int(Cow::Owned(i.into_owned())),
        Json::Float(f) => Json::Float(f),
        Json::Str(s) => Json::Str(Cow::Owned(s.into_owned())),
        Json::Array(items) => Json::Array(items.into_iter().map(into_owned).collect()),
        Json::Object(fields) => {
            Json::Object(fields.into_iter().map(|(k, v)| (Cow::Owned(k.into_owned()), into_owned(v))).collect())
        }
    }
}
