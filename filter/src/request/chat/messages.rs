//! The conversation as vLLM hands it to a chat template (its `parse_chat_messages`): text parts
//! only, tool-call arguments parsed to objects, tools re-serialised in vLLM's field order.
//!
//! vLLM's rules, applied here once for every format: content `null` is `""`; a list of text parts
//! is joined with `"\n"` (Gemma 3's template gets the parts); an assistant's `tool_calls` is
//! dropped when empty, and each call's `arguments` string becomes an object (invalid or
//! non-object JSON becomes `{}`); `reasoning` (or `reasoning_content`) travels with an assistant
//! message; a tool message keeps its `tool_call_id`. Parts that are not text (images, audio,
//! files) are not rendered: images count the configured estimate, and the count is estimated.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::json::{self, Json};
use super::ChatError;

/// Content part types whose `text` is the part's text.
const TEXT_PARTS: [&str; 3] = ["text", "input_text", "output_text"];
/// Content part types that are images.
const IMAGE_PARTS: [&str; 4] = ["image_url", "input_image", "image", "image_pil"];

/// A request's conversation and the options that shape its rendering.
pub(crate) struct Conversation<'a> {
    pub(crate) messages: Vec<Message<'a>>,
    /// `tools` as vLLM dumps them; `None` when the request has none (or `null`).
    pub(crate) tools: Option<Vec<Json<'a>>>,
    /// vLLM's `add_generation_prompt` (default true).
    pub(crate) add_generation_prompt: bool,
    /// The request body, for the options a single format reads.
    pub(crate) body: &'a Map<String, Value>,
    /// Something was not rendered exactly (non-text parts, unreadable tools).
    pub(crate) estimated: bool,
    /// Image parts, each counted at the configured estimate.
    pub(crate) images: u64,
}

/// One message after vLLM's normalisation.
pub(crate) struct Message<'a> {
    pub(crate) role: &'a str,
    /// The content's text parts in order; empty for `null`.
    pub(crate) parts: Vec<&'a str>,
    /// The content was `null` or absent (harmony and mistral tell it from `""`).
    pub(crate) null_content: bool,
    /// An assistant's tool calls; vLLM drops an empty list, so empty is none.
    pub(crate) tool_calls: Vec<ToolCall<'a>>,
    /// An assistant's `reasoning` (or `reasoning_content`).
    pub(crate) reasoning: Option<&'a str>,
    /// A tool message's `tool_call_id`.
    pub(crate) tool_call_id: Option<&'a str>,
}

impl<'a> Message<'a> {
    /// The content as vLLM passes it to templates that take a string: parts joined with `"\n"`.
    pub(crate) fn text(&self) -> Cow<'a, str> {
        match self.parts.as_slice() {
            [] => Cow::Borrowed(""),
            [one] => Cow::Borrowed(one),
            parts => Cow::Owned(parts.join("\n")),
        }
    }
}

/// One tool call of an assistant message.
pub(crate) struct ToolCall<'a> {
    pub(crate) id: Option<&'a str>,
    pub(crate) name: &'a str,
    /// `function.arguments` as sent (a JSON string, normally).
    pub(crate) arguments: Option<&'a Value>,
}

impl<'a> ToolCall<'a> {
    /// The arguments as vLLM passes them to templates: a string parsed to an object (`{}` when
    /// empty, invalid or not an object), an object as sent. `None`: not readable exactly here
    /// (an object sent as JSON rather than a string loses its key order in the parsed body).
    pub(crate) fn vllm_arguments(&self) -> Option<Json<'a>> {
        match self.arguments {
            None | Some(Value::Null) => Some(Json::Object(Vec::new())),
            Some(Value::String(s)) if s.is_empty() => Some(Json::Object(Vec::new())),
            Some(Value::String(s)) => match json::parse(s) {
                Some(obj @ Json::Object(_)) => Some(obj),
                Some(_) => Some(Json::Object(Vec::new())),
                None if serde_json::from_str::<Value>(s).is_err() => Some(Json::Object(Vec::new())),
                // Valid JSON this reader refuses (too deep, lone surrogates).
                None => None,
            },
            Some(_) => None,
        }
    }

    /// The arguments string as sent; `None` when they were not a string.
    pub(crate) fn arguments_text(&self) -> Option<&'a str> {
        match self.arguments {
            None | Some(Value::Null) => Some(""),
            Some(Value::String(s)) => Some(s),
            Some(_) => None,
        }
    }
}

impl<'a> Conversation<'a> {
    /// Reads the request's messages and tools. `raw` is the body's text, read again for the
    /// tools' key order. A message vLLM refuses (not an object, no role, content of the wrong
    /// type) is an error.
    pub(crate) fn read(body: &'a Map<String, Value>, raw: &'a [u8]) -> Result<Conversation<'a>, ChatError> {
        let mut conv = Conversation {
            messages: Vec::new(),
            tools: None,
            add_generation_prompt: !matches!(body.get("add_generation_prompt"), Some(Value::Bool(false))),
            body,
            estimated: false,
            images: 0,
        };
        if let Some(Value::Array(messages)) = body.get("messages") {
            conv.messages.reserve(messages.len());
            for m in messages {
                let message = conv.message(m)?;
                conv.messages.push(message);
            }
        }
        match body.get("tools") {
            None | Some(Value::Null) => {}
            Some(Value::Array(_)) => {
                let tools = std::str::from_utf8(raw).ok().and_then(|text| json::top_level_field(text, "tools"));
                match tools {
                    Some(Json::Array(tools)) => conv.tools = Some(tools.into_iter().map(vllm_tool).collect()),
                    _ => {
                        conv.estimated = true;
                        conv.tools = Some(Vec::new());
                    }
                }
            }
            Some(_) => conv.estimated = true,
        }
        // Options vLLM reads that change the prompt in ways not modelled here.
        let unmodelled = |field: &str| match body.get(field) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(_) => true,
        };
        if ["chat_template", "continue_final_message", "add_special_tokens"].into_iter().any(unmodelled) {
            conv.estimated = true;
        }
        Ok(conv)
    }

    /// A key of `chat_template_kwargs`.
    pub(crate) fn kwarg(&self, name: &str) -> Option<&'a Value> {
        match self.body.get("chat_template_kwargs") {
            Some(Value::Object(kwargs)) => kwargs.get(name),
            _ => None,
        }
    }

    /// Marks the count estimated when `chat_template_kwargs` sets a variable the template reads
    /// that this rule does not model (`read`), or one vLLM itself sets.
    pub(crate) fn check_kwargs(&mut self, read: &[&str]) {
        const SET_BY_VLLM: [&str; 6] = ["messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token"];
        if let Some(Value::Object(kwargs)) = self.body.get("chat_template_kwargs") {
            if kwargs.keys().any(|k| read.contains(&k.as_str()) || SET_BY_VLLM.contains(&k.as_str())) {
                self.estimated = true;
            }
        }
    }

    fn message(&mut self, value: &'a Value) -> Result<Message<'a>, ChatError> {
        let Value::Object(m) = value else {
            return Err(ChatError::Invalid("each message must be an object"));
        };
        let Some(Value::String(role)) = m.get("role") else {
            return Err(ChatError::Invalid("each message must have a string 'role'"));
        };
        let mut message = Message {
            role,
            parts: Vec::new(),
            null_content: false,
            tool_calls: Vec::new(),
            reasoning: None,
            tool_call_id: None,
        };
        match m.get("content") {
            None | Some(Value::Null) => message.null_content = true,
            Some(Value::String(s)) => message.parts.push(s),
            Some(Value::Array(parts)) => {
                for part in parts {
                    self.part(part, &mut message.parts)?;
                }
            }
            Some(_) => return Err(ChatError::Invalid("a message's 'content' must be a string, an array of parts or null")),
        }
        if role == "assistant" {
            message.reasoning = match (m.get("reasoning"), m.get("reasoning_content")) {
                (Some(Value::String(r)), _) | (None, Some(Value::String(r))) => Some(r),
                _ => None,
            };
            match m.get("tool_calls") {
                None | Some(Value::Null) => {}
                Some(Value::Array(calls)) => {
                    for call in calls {
                        message.tool_calls.push(self.tool_call(call));
                    }
                }
                Some(_) => self.estimated = true,
            }
            // The legacy single call: vLLM does not render it.
            if m.get("function_call").is_some_and(|v| !v.is_null()) {
                self.estimated = true;
            }
        } else if role == "tool" {
            message.tool_call_id = m.get("tool_call_id").and_then(Value::as_str);
        }
        Ok(message)
    }

    fn part(&mut self, part: &'a Value, parts: &mut Vec<&'a str>) -> Result<(), ChatError> {
        let fields = match part {
            Value::String(s) => {
                parts.push(s);
                return Ok(());
            }
            Value::Object(fields) => fields,
            _ => return Err(ChatError::Invalid("a content part must be an object")),
        };
        let kind = fields.get("type").and_then(Value::as_str).unwrap_or("");
        if TEXT_PARTS.contains(&kind) {
            if let Some(Value::String(text)) = fields.get("text") {
                parts.push(text);
            }
            return Ok(());
        }
        self.estimated = true;
        if IMAGE_PARTS.contains(&kind) {
            self.images += 1;
            return Ok(());
        }
        // Refusal and thinking parts: their text is in the prompt, under a field of their own;
        // the rest (audio, files, video) is tokenized from data the edge does not measure.
        if let Some(Value::String(text)) = fields.get(kind).or_else(|| fields.get("text")) {
            parts.push(text);
        }
        Ok(())
    }

    fn tool_call(&mut self, call: &'a Value) -> ToolCall<'a> {
        let function = call.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
        if name.is_none() {
            self.estimated = true;
        }
        ToolCall {
            id: call.get("id").and_then(Value::as_str),
            name: name.unwrap_or(""),
            arguments: function.and_then(|f| f.get("arguments")),
        }
    }
}

/// A tool as vLLM dumps it from its request models: `type`, then `function` with `name`,
/// `description` and `parameters` (`null` when absent) before any other keys, then the tool's
/// other keys, each group in the order sent.
fn vllm_tool(tool: Json<'_>) -> Json<'_> {
    let Json::Object(fields) = tool else { return tool };
    let mut kind = Json::Str(Cow::Borrowed("function"));
    let mut function = Vec::new();
    let mut rest = Vec::new();
    for (key, value) in fields {
        match key.as_ref() {
            "type" => kind = value,
            "function" => function = reorder_function(value),
            _ => rest.push((key, value)),
        }
    }
    let mut out = vec![(Cow::Borrowed("type"), kind), (Cow::Borrowed("function"), Json::Object(function))];
    out.extend(rest);
    Json::Object(out)
}

fn reorder_function(function: Json<'_>) -> Vec<(Cow<'_, str>, Json<'_>)> {
    let Json::Object(mut fields) = function else { return Vec::new() };
    let mut out = Vec::with_capacity(fields.len() + 2);
    for key in ["name", "description", "parameters"] {
        let value = match fields.iter().position(|(k, _)| k == key) {
            Some(i) => fields.remove(i).1,
            None => Json::Null,
        };
        out.push((Cow::Borrowed(key), value));
    }
    out.extend(fields);
    out
}
