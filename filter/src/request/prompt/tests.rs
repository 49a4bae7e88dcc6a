//! Prompt counting tests: OpenAI's chat rule, every API shape, the estimated parts, the limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::request::classify;
use serde_json::json;

fn count_with(body: Value, limit: u64) -> PromptCount {
    let req = classify(&body, None).unwrap().unwrap();
    let enc = match req.model {
        Some(m) if m.starts_with("gpt-4o") || m.starts_with("o") => Encoding::O200kBase,
        Some(m) if m.starts_with("gpt-") || m.starts_with("text-") => Encoding::Cl100kBase,
        _ => Encoding::O200kBase,
    };
    count_prompt(&req, Tokenizer::of(enc), limit, 765)
}

fn count(body: Value) -> PromptCount {
    count_with(body, u64::MAX)
}

fn tokens(enc: Encoding, text: &str) -> u64 {
    Tokenizer::of(enc).count(text)
}

#[test]
fn chat_rule_matches_the_cookbook() {
    let c = count(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world!"}]}));
    assert_eq!((c.tokens, c.exactness), (11, Exactness::Exact));
    let c = count(json!({"model": "gpt-4", "messages": [{"role": "user", "content": "Hello, world!"}]}));
    assert_eq!(c.tokens, 11);
    let c = count(json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello, world!"}]}));
    assert_eq!(c.tokens, 21);
    // The cookbook's own example conversation: 129 tokens for gpt-4o / gpt-4 family models.
    let cookbook = json!([
        {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
        {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
        {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
        {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
        {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
        {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
    ]);
    assert_eq!(count(json!({"model": "gpt-4o", "messages": cookbook})).tokens, 124);
    assert_eq!(count(json!({"model": "gpt-4", "messages": cookbook})).tokens, 129);
}

#[test]
fn content_parts_and_images() {
    let enc = Encoding::O200kBase;
    let c = count(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}));
    assert_eq!(c.tokens, 3 + 1 + tokens(enc, "What is in this image?") + 765 + 3);
    assert_eq!(c.exactness, Exactness::Estimated);
    // Text parts alone are exact.
    let c = count(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Hello, world!"}]}]}));
    assert_eq!((c.tokens, c.exactness), (11, Exactness::Exact));
}

#[test]
fn tool_calls_and_definitions_are_estimated() {
    let enc = Encoding::O200kBase;
    let c = count(json!({"model": "gpt-4o", "messages": [
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
          "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}));
    let expected = 3 + tokens(enc, "assistant") + tokens(enc, "get_weather") + tokens(enc, "{\"city\":\"Paris\"}")
        + 3 + tokens(enc, "tool") + tokens(enc, "call_1") + tokens(enc, "sunny") + 3;
    assert_eq!((c.tokens, c.exactness), (expected, Exactness::Estimated));

    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Get the weather.", "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name."},
            "unit": {"type": "string", "description": "Unit", "enum": ["c", "f"]}}}}}]);
    let base = count(json!({"model": "gpt-4o", "messages": []})).tokens;
    let c = count(json!({"model": "gpt-4o", "messages": [], "tools": tools}));
    let expected = base + 7 + tokens(enc, "get_weather:Get the weather") + 3
        + 3 + tokens(enc, "city:string:City name")
        + 3 - 3 + 3 + tokens(enc, "c") + 3 + tokens(enc, "f") + tokens(enc, "unit:string:Unit") + 12;
    assert_eq!((c.tokens, c.exactness), (expected, Exactness::Estimated));
}

#[test]
fn response_format_schema_counts_as_json() {
    let enc = Encoding::O200kBase;
    let schema = json!({"name": "x", "schema": {"type": "object"}});
    let c = count(json!({"model": "gpt-4o", "messages": [], "response_format": {"type": "json_schema", "json_schema": schema}}));
    assert_eq!(c.tokens, 3 + tokens(enc, &schema.to_string()));
    assert_eq!(c.exactness, Exactness::Estimated);
}

#[test]
fn json_mode_is_estimated() {
    let c = count(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world!"}],
                         "response_format": {"type": "json_object"}}));
    assert_eq!((c.tokens, c.exactness), (11, Exactness::Estimated));
    let c = count(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world!"}],
                         "response_format": {"type": "text"}}));
    assert_eq!((c.tokens, c.exactness), (11, Exactness::Exact));
}

#[test]
fn completions_and_embeddings_forms() {
    let enc = Encoding::Cl100kBase;
    assert_eq!(count(json!({"model": "gpt-3.5-turbo-instruct", "prompt": [[1, 2, 3], [4, 5]]})).tokens, 5);
    assert_eq!(count(json!({"model": "gpt-3.5-turbo-instruct", "prompt": [1, 2, 3]})).tokens, 3);
    assert_eq!(count(json!({"model": "gpt-3.5-turbo-instruct", "prompt": ["Hello, world!", "user"]})).tokens, 5);
    assert_eq!(
        count(json!({"model": "gpt-3.5-turbo-instruct", "prompt": "a", "suffix": "Hello, world!"})).tokens,
        tokens(enc, "a") + 4
    );
    let c = count(json!({"model": "text-embedding-3-small", "input": "Hello, world!"}));
    assert_eq!((c.tokens, c.exactness), (4, Exactness::Exact));
    assert_eq!(count(json!({"model": "text-embedding-3-small", "input": ["Hello, world!", "Hello, world!"]})).tokens, 8);
}

#[test]
fn responses_api_counts_like_chat_and_says_estimated() {
    let enc = Encoding::O200kBase;
    let c = count(json!({"model": "gpt-4o", "instructions": "Be brief.", "input": "Hello, world!"}));
    assert_eq!(c.tokens, 3 + 1 + tokens(enc, "Be brief.") + 3 + 1 + 4 + 3);
    assert_eq!(c.exactness, Exactness::Estimated);
    let c = count(json!({"model": "gpt-4o", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Hello, world!"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "ok"}]}));
    assert_eq!(c.tokens, 3 + 1 + 4 + tokens(enc, "f") + tokens(enc, "{}") + 3 + tokens(enc, "ok") + 3);
}

#[test]
fn special_token_text_counts_as_ordinary_text() {
    let c = count(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "<|endoftext|>"}]}));
    assert_eq!(c.tokens, 3 + 1 + tokens(Encoding::O200kBase, "<|endoftext|>") + 3);
    assert!(c.tokens > 8);
}

#[test]
fn stops_counting_once_over_the_limit() {
    let huge = "All work and no play makes Jack a dull boy. ".repeat(50_000);
    let c = count_with(json!({"model": "gpt-4o", "messages": [
        {"role": "user", "content": huge}, {"role": "user", "content": "more"}]}), 100);
    assert!(c.over_limit && c.stopped_early);
    assert!(c.tokens > 200 && c.tokens < 1300, "{}", c.tokens);
    let c = count_with(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world!"}]}), 11);
    assert_eq!((c.tokens, c.over_limit, c.stopped_early), (11, false, false));
    let c = count_with(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world!"}]}), 10);
    assert!(c.over_limit);
    // A prompt less than twice over the limit is counted to the end: the error can say how long it is.
    let seven = json!({"model": "gpt-4o", "messages": vec![json!({"role": "user", "content": "Hello, world!"}); 7]});
    let c = count_with(seven, 50);
    assert_eq!((c.tokens, c.over_limit, c.stopped_early), (59, true, false));
}
