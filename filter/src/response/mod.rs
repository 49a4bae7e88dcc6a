//! What the backend answered: the `usage` it reports (JSON bodies and SSE streams, read
//! incrementally with bounded memory) and, when it reports none, an estimate of the output.

mod json;
mod sse;

use serde_json::Value;

pub use json::{JsonTap, JsonUsage};
pub use sse::SseScanner;

/// Token usage as reported by the backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_prompt_tokens: u64,
    /// Output tokens spent reasoning (part of `completion_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// The `usage` of a response object or stream chunk: chat/completions/embeddings name the fields
/// `prompt_tokens`/`completion_tokens`; the responses API `input_tokens`/`output_tokens`, inside
/// `response` on its stream events.
pub fn usage_of(value: &Value) -> Option<Usage> {
    let usage = match value.get("usage") {
        Some(u @ Value::Object(_)) => u,
        _ => value.get("response")?.get("usage").filter(|u| u.is_object())?,
    };
    usage_fields(usage)
}

/// The counts of a `usage` object.
fn usage_fields(usage: &Value) -> Option<Usage> {
    let number = |names: [&str; 2]| names.iter().find_map(|n| usage.get(*n).and_then(Value::as_u64));
    let prompt_tokens = number(["prompt_tokens", "input_tokens"])?;
    let completion_tokens = number(["completion_tokens", "output_tokens"]).unwrap_or(0);
    let detail = |objects: [&str; 2], field: &str| {
        objects
            .iter()
            .find_map(|d| usage.get(*d).and_then(|d| d.get(field)).and_then(Value::as_u64))
            .unwrap_or(0)
    };
    let cached_prompt_tokens = detail(["prompt_tokens_details", "input_tokens_details"], "cached_tokens");
    let reasoning_tokens = detail(["completion_tokens_details", "output_tokens_details"], "reasoning_tokens");
    Some(Usage { prompt_tokens, completion_tokens, cached_prompt_tokens, reasoning_tokens })
}

/// The generated text in a response or stream chunk, for estimating output tokens when no usage
/// is reported.
pub fn output_texts(value: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    if let Some(Value::Array(choices)) = value.get("choices") {
        for choice in choices {
            for text in [
                choice.get("message").and_then(|m| m.get("content")),
                choice.get("delta").and_then(|d| d.get("content")),
                choice.get("text"),
            ]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            {
                out.push(text);
            }
        }
    }
    // Responses API stream: `response.output_text.delta` events carry the text in `delta`.
    if value.get("type").and_then(Value::as_str) == Some("response.output_text.delta") {
        if let Some(Value::String(delta)) = value.get("delta") {
            out.push(delta);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_usage_in_every_api_shape() {
        let chat = json!({"usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
                                    "prompt_tokens_details": {"cached_tokens": 4},
                                    "completion_tokens_details": {"reasoning_tokens": 3}}});
        assert_eq!(usage_of(&chat), Some(Usage { prompt_tokens: 11, completion_tokens: 5, cached_prompt_tokens: 4, reasoning_tokens: 3 }));
        let embeddings = json!({"usage": {"prompt_tokens": 4, "total_tokens": 4}});
        assert_eq!(usage_of(&embeddings).unwrap().total(), 4);
        let responses = json!({"usage": {"input_tokens": 7, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 1},
                                         "output_tokens_details": {"reasoning_tokens": 2}}});
        assert_eq!(usage_of(&responses), Some(Usage { prompt_tokens: 7, completion_tokens: 3, cached_prompt_tokens: 1, reasoning_tokens: 2 }));
        let completed = json!({"type": "response.completed", "response": {"usage": {"input_tokens": 7, "output_tokens": 3}}});
        assert_eq!(usage_of(&completed).unwrap().total(), 10);
        assert_eq!(usage_of(&json!({"usage": null})), None);
        assert_eq!(usage_of(&json!({"choices": []})), None);
    }

    #[test]
    fn finds_output_text() {
        let v = json!({"choices": [{"message": {"content": "Hi there"}}, {"text": "legacy"}, {"delta": {"content": "d"}}]});
        assert_eq!(output_texts(&v), vec!["Hi there", "legacy", "d"]);
        let v = json!({"type": "response.output_text.delta", "delta": "x"});
        assert_eq!(output_texts(&v), vec!["x"]);
    }
}
