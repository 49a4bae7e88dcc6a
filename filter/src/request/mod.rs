//! What the client sent: recognizes the OpenAI request shapes by their body and pulls out the
//! model, the requested output size and the streaming flags.
//!
//! The API is told by the body's shape, not the path, so any route prefix works: `messages` is
//! chat completions, `prompt` legacy completions, `input` embeddings or the responses API.

mod chat;
mod prompt;

use serde_json::{Map, Value};
use std::fmt;

pub use chat::{ChatError, ChatFormat};
pub use prompt::{count_prompt, Exactness, PromptCount};

use crate::tokenize::Tokenizer;

/// The OpenAI API a body belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Api {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
}

impl Api {
    /// The request field that holds the prompt (the `param` of a length error).
    pub fn prompt_param(self) -> &'static str {
        match self {
            Api::ChatCompletions => "messages",
            Api::Completions => "prompt",
            Api::Embeddings | Api::Responses => "input",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat_completions",
            Api::Completions => "completions",
            Api::Embeddings => "embeddings",
            Api::Responses => "responses",
        }
    }
}

/// The output size a request asked for, and the field it was asked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxOutput {
    pub field: &'static str,
    pub tokens: u64,
}

/// A recognized LLM request, borrowing the parsed body.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest<'a> {
    pub api: Api,
    pub model: Option<&'a str>,
    pub max_output: Option<MaxOutput>,
    pub stream: bool,
    /// `stream_options.include_usage` as sent.
    pub include_usage: bool,
    pub(crate) body: &'a Map<String, Value>,
}

/// A field of a recognized request has a type or value no OpenAI-compatible server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    InvalidField { param: &'static str, reason: &'static str },
    /// The model's chat template refuses the conversation (the backend answers 400 too).
    Unrenderable { format: ChatFormat, reason: &'static str },
}

impl RequestError {
    /// The request field at fault.
    pub fn param(&self) -> &'static str {
        match self {
            RequestError::InvalidField { param, .. } => param,
            RequestError::Unrenderable { .. } => "messages",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::InvalidField { param, reason } => write!(f, "'{param}' {reason}"),
            RequestError::Unrenderable { format, reason } => {
                write!(f, "'messages' cannot be rendered with the {format} chat format: {reason}")
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// Counts the prompt of `request` under the model's chat format: chat completions in a
/// template's format are rendered as the backend renders them and counted run by run; the
/// OpenAI format and the other APIs follow [`count_prompt`]. `raw` is the body as received (the
/// tools' key order is read from it). Counting stops past twice `limit`, as [`count_prompt`]'s.
pub fn count_prompt_as(
    request: &LlmRequest<'_>,
    raw: &[u8],
    format: ChatFormat,
    tokenizer: &Tokenizer,
    limit: u64,
    image_tokens: u64,
) -> Result<PromptCount, RequestError> {
    if format == ChatFormat::OpenAi || request.api != Api::ChatCompletions {
        return Ok(count_prompt(request, tokenizer, limit, image_tokens));
    }
    #[cfg(tokengate_chat)]
    return match chat::render(format, request.body, raw) {
        Ok(prompt) => Ok(chat::count(&prompt, format, tokenizer, limit, image_tokens)),
        Err(ChatError::Invalid(reason)) => Err(RequestError::InvalidField { param: "messages", reason }),
        Err(ChatError::Refused(reason)) => Err(RequestError::Unrenderable { format, reason }),
    };
    // The configuration accepts only the formats of the build (`ChatFormat::in_build`).
    #[cfg(not(tokengate_chat))]
    {
        let _ = raw;
        Err(RequestError::Unrenderable { format, reason: "this build has no chat templates" })
    }
}

/// Fields that ask for an output size, in the order they are honoured.
const MAX_OUTPUT_FIELDS: [&str; 3] = ["max_completion_tokens", "max_tokens", "max_output_tokens"];

/// Fields only the responses API has (its `input` can also be a plain string).
const RESPONSES_ONLY_FIELDS: [&str; 8] = [
    "instructions",
    "max_output_tokens",
    "previous_response_id",
    "reasoning",
    "text",
    "tools",
    "store",
    "stream",
];

/// Recognizes an LLM request in a parsed JSON body. `Ok(None)`: not a shape tokengate counts
/// (it passes through). `path` only breaks the tie between embeddings and a responses-API call
/// with a plain-string `input` and no other telling field.
pub fn classify<'a>(body: &'a Value, path: Option<&str>) -> Result<Option<LlmRequest<'a>>, RequestError> {
    let Value::Object(obj) = body else {
        return Ok(None);
    };
    let api = if let Some(messages) = obj.get("messages") {
        if !messages.is_array() {
            return Err(invalid("messages", "must be an array of messages"));
        }
        Api::ChatCompletions
    } else if let Some(prompt) = obj.get("prompt") {
        if !(prompt.is_string() || prompt.is_array()) {
            return Err(invalid("prompt", "must be a string, an array of strings or an array of tokens"));
        }
        Api::Completions
    } else if let Some(input) = obj.get("input") {
        match input {
            Value::String(_) | Value::Array(_) => input_api(obj, input, path),
            _ => return Err(invalid("input", "must be a string or an array")),
        }
    } else {
        return Ok(None);
    };

    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.as_str()),
        Some(_) => return Err(invalid("model", "must be a string")),
    };

    let mut max_output = None;
    for field in MAX_OUTPUT_FIELDS {
        match obj.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(tokens) if max_output.is_none() => max_output = Some(MaxOutput { field, tokens }),
                Some(_) => {}
                None => return Err(invalid(field, "must be a non-negative integer")),
            },
        }
    }

    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream", "must be a boolean")),
    };
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    Ok(Some(LlmRequest { api, model, max_output, stream, include_usage, body: obj }))
}

/// The body with `stream_options.include_usage: true`, so a stream reports its usage.
/// Without `stream_options` in the body, the field is inserted and every other byte kept;
/// otherwise the body is re-serialized. `None`: not a JSON object.
pub fn with_include_usage(body: &[u8]) -> Option<Vec<u8>> {
    const FIELD: &[u8] = br#""stream_options":{"include_usage":true}"#;
    let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let mentions_options = body.windows(b"\"stream_options\"".len()).any(|w| w == b"\"stream_options\"");
    if !mentions_options {
        let (head, rest) = body.split_at(open + 1);
        let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
        let mut out = Vec::with_capacity(body.len() + FIELD.len() + 1);
        out.extend_from_slice(head);
        out.extend_from_slice(FIELD);
        if !empty {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        return Some(out);
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let options = value
        .as_object_mut()?
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    options.as_object_mut()?.insert("include_usage".to_owned(), Value::Bool(true));
    serde_json::to_vec(&value).ok()
}

fn invalid(param: &'static str, reason: &'static str) -> RequestError {
    RequestError::InvalidField { param, reason }
}

/// Embeddings and the responses API share the `input` field; tell them apart by the rest.
fn input_api(obj: &Map<String, Value>, input: &Value, path: Option<&str>) -> Api {
    let has_items = input
        .as_array()
        .is_some_and(|items| items.iter().any(Value::is_object));
    if has_items || RESPONSES_ONLY_FIELDS.iter().any(|f| obj.contains_key(*f)) {
        return Api::Responses;
    }
    let model_is_embedding = obj
        .get("model")
        .and_then(Value::as_str)
        .is_some_and(|m| m.contains("embed"));
    if model_is_embedding || obj.contains_key("encoding_format") || obj.contains_key("dimensions") {
        return Api::Embeddings;
    }
    let path = path.map(|p| p.split('?').next().unwrap_or(p));
    match path {
        Some(p) if p.ends_with("/responses") => Api::Responses,
        _ => Api::Embeddings,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn api_of(body: Value, path: Option<&str>) -> Option<Api> {
        classify(&body, path).unwrap().map(|r| r.api)
    }

    #[test]
    fn recognizes_every_shape() {
        assert_eq!(api_of(json!({"model": "gpt-4o", "messages": []}), None), Some(Api::ChatCompletions));
        assert_eq!(api_of(json!({"prompt": "hi"}), None), Some(Api::Completions));
        assert_eq!(api_of(json!({"prompt": [[1, 2]]}), None), Some(Api::Completions));
        assert_eq!(
            api_of(json!({"model": "text-embedding-3-small", "input": "hi"}), None),
            Some(Api::Embeddings)
        );
        assert_eq!(api_of(json!({"input": [[1, 2, 3]]}), None), Some(Api::Embeddings));
        assert_eq!(api_of(json!({"input": "hi", "dimensions": 8}), None), Some(Api::Embeddings));
        assert_eq!(api_of(json!({"model": "gpt-4o", "input": "hi", "instructions": "x"}), None), Some(Api::Responses));
        assert_eq!(
            api_of(json!({"input": [{"role": "user", "content": "hi"}]}), None),
            Some(Api::Responses)
        );
        assert_eq!(api_of(json!({"model": "m", "input": "hi"}), Some("/openai/v1/responses?x=1")), Some(Api::Responses));
        assert_eq!(api_of(json!({"model": "m", "input": "hi"}), Some("/v1/embeddings")), Some(Api::Embeddings));
    }

    #[test]
    fn other_bodies_are_not_llm_requests() {
        assert_eq!(api_of(json!({"purpose": "fine-tune"}), None), None);
        assert_eq!(api_of(json!([1, 2, 3]), None), None);
        assert_eq!(api_of(json!("messages"), None), None);
        assert_eq!(api_of(json!(null), None), None);
    }

    #[test]
    fn reads_output_size_and_stream_flags() {
        let body = json!({"messages": [], "max_tokens": 10, "max_completion_tokens": 20,
                          "stream": true, "stream_options": {"include_usage": true}, "model": "gpt-4o"});
        let r = classify(&body, None).unwrap().unwrap();
        assert_eq!(r.max_output, Some(MaxOutput { field: "max_completion_tokens", tokens: 20 }));
        assert!(r.stream && r.include_usage);
        assert_eq!(r.model, Some("gpt-4o"));
        let body = json!({"input": "x", "max_output_tokens": 7});
        let r = classify(&body, None).unwrap().unwrap();
        assert_eq!(r.max_output, Some(MaxOutput { field: "max_output_tokens", tokens: 7 }));
        let body = json!({"messages": [], "max_tokens": null});
        assert_eq!(classify(&body, None).unwrap().unwrap().max_output, None);
    }

    #[test]
    fn injects_include_usage() {
        let body = br#" {"model":"gpt-4o","stream":true,"messages":[]}"#;
        let out = with_include_usage(body).unwrap();
        assert_eq!(out, br#" {"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true,"messages":[]}"#);
        assert_eq!(with_include_usage(b"{ }").unwrap(), br#"{"stream_options":{"include_usage":true} }"#);
        let v: Value = serde_json::from_slice(
            &with_include_usage(br#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(v["stream_options"], json!({"include_usage": true, "x": 1}));
        let v: Value = serde_json::from_slice(&with_include_usage(br#"{"stream_options":null}"#).unwrap()).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], json!(true));
        assert_eq!(with_include_usage(b"[1]"), None);
        // A value that mentions the name without being the field still yields valid JSON.
        let v: Value = serde_json::from_slice(
            &with_include_usage(br#"{"messages":[{"role":"user","content":"\"stream_options\""}]}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(v["stream_options"]["include_usage"], json!(true));
    }

    #[test]
    fn rejects_fields_of_the_wrong_type() {
        for (body, param) in [
            (json!({"messages": "hi"}), "messages"),
            (json!({"prompt": 5}), "prompt"),
            (json!({"input": {"a": 1}}), "input"),
            (json!({"messages": [], "model": 4}), "model"),
            (json!({"messages": [], "max_tokens": -1}), "max_tokens"),
            (json!({"messages": [], "max_tokens": 1.5}), "max_tokens"),
            (json!({"messages": [], "max_completion_tokens": "9"}), "max_completion_tokens"),
            (json!({"messages": [], "stream": "yes"}), "stream"),
        ] {
            match classify(&body, None) {
                Err(RequestError::InvalidField { param: p, .. }) => assert_eq!(p, param, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
