//! The chat formats against `tokenizers/chat_cases.json`: the rendered text of every case for
//! every (tokenizer, format) pair, and the token count for the pairs whose tokenizer this build
//! contains.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};

use super::*;

const CASES: &str = include_str!("../../../../tokenizers/chat_cases.json");

/// Every (case id, "tokenizer/format" pair, request body text, expected) of the fixture file.
/// The request is written back in its key order (serde_json's `Value` would sort the keys).
fn cases() -> Vec<(String, String, String, Value)> {
    let file: Value = serde_json::from_str(CASES).unwrap();
    let ordered = super::json::parse(CASES).unwrap();
    let Some(super::json::Json::Array(ordered_cases)) = ordered.get("cases") else { panic!() };
    let mut out = Vec::new();
    for (case, ordered) in file["cases"].as_array().unwrap().iter().zip(ordered_cases) {
        let request = super::pyjson::dumps(ordered.get("request").unwrap(), super::pyjson::Style::Python);
        for (pair, expected) in case["expected"].as_object().unwrap() {
            out.push((case["id"].as_str().unwrap().to_owned(), pair.clone(), request.clone(), expected.clone()));
        }
    }
    out
}

fn format_of(pair: &str) -> ChatFormat {
    let (_, format) = pair.split_once('/').unwrap();
    ChatFormat::from_name(format).unwrap_or_else(|| panic!("no format {format}"))
}

/// Renders a request body given as its text.
fn render_text(format: ChatFormat, raw: &str) -> Result<Prompt, ChatError> {
    let body: Value = serde_json::from_str(raw).unwrap();
    render(format, body.as_object().unwrap(), raw.as_bytes())
}

fn render_request(format: ChatFormat, request: &Value) -> Result<Prompt, ChatError> {
    render_text(format, &request.to_string())
}

#[test]
fn every_case_renders_the_templates_text() {
    let mut checked = 0;
    for (id, pair, request, expected) in cases() {
        let got = render_text(format_of(&pair), &request);
        match (&got, expected.get("text")) {
            (Ok(prompt), Some(Value::String(text))) => {
                assert_eq!(&prompt.rendered_text(), text, "{id} {pair}");
                assert!(!prompt.estimated, "{id} {pair}: estimated");
            }
            (Err(ChatError::Refused(_)), None) => assert!(expected.get("error").is_some(), "{id} {pair}"),
            _ => panic!("{id} {pair}: got {:?}, expected {expected}", got.map(|p| p.rendered_text())),
        }
        checked += 1;
    }
    assert_eq!(checked, 13 * 9);
}

#[test]
fn counts_match_for_the_tokenizers_of_this_build() {
    let mut counted = 0;
    for (id, pair, request, expected) in cases() {
        let (tokenizer_name, _) = pair.split_once('/').unwrap();
        let (Some(tokenizer), Some(want)) = (Tokenizer::by_name(tokenizer_name), expected["tokens"].as_u64()) else {
            continue;
        };
        let format = format_of(&pair);
        let prompt = render_text(format, &request).unwrap();
        let got = count(&prompt, format, tokenizer, u64::MAX / 4, 765);
        match got.exactness {
            Exactness::Exact => assert_eq!(got.tokens, want, "{id} {pair}"),
            // Special-token text typed by the client, which the backend reads as one token and
            // this tokenizer as text: the count says it is estimated.
            Exactness::Estimated => {
                assert_eq!(id, "special_text", "{pair}: estimated");
                assert_ne!(got.tokens, want, "{id} {pair}: estimated but exact");
            }
        }
        counted += 1;
    }
    eprintln!("chat counts checked against the oracle: {counted} (tokenizers in this build)");
}

fn text_of(format: ChatFormat, request: Value) -> String {
    render_request(format, &request).unwrap().rendered_text()
}

#[test]
fn names_round_trip() {
    for format in ChatFormat::ALL {
        assert_eq!(ChatFormat::from_name(format.name()), Some(format));
    }
    assert_eq!(ChatFormat::from_name("llama-3"), None);
}

#[test]
fn runs_join_across_template_text_and_content() {
    let prompt = render_request(ChatFormat::Qwen3, &json!({"messages": [{"role": "user", "content": "Hi"}]})).unwrap();
    assert_eq!(
        prompt.segments,
        vec![
            Segment::Special("<|im_start|>"),
            Segment::Text("user\nHi".into()),
            Segment::Special("<|im_end|>"),
            Segment::Text("\n".into()),
            Segment::Special("<|im_start|>"),
            Segment::Text("assistant\n".into()),
        ]
    );
}

#[test]
fn harmony_encodes_header_fields_apart() {
    let prompt = render_request(
        ChatFormat::Harmony,
        &json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
    )
    .unwrap();
    let user: Vec<&Segment> = prompt.segments.iter().skip_while(|s| **s != Segment::Text("user".into())).collect();
    assert_eq!(user[..5], [&Segment::Text("user".into()), &Segment::Cut, &Segment::Special("<|message|>"), &Segment::Text("a".into()), &Segment::Cut]);
}

#[test]
fn counting_stops_past_twice_the_limit() {
    let tokenizer = Tokenizer::of(crate::tokenize::Encoding::O200kBase);
    let huge = "All work and no play makes Jack a dull boy. ".repeat(20_000);
    let request = json!({"messages": [{"role": "user", "content": huge}, {"role": "user", "content": "more"}]});
    let prompt = render_request(ChatFormat::Llama3, &request).unwrap();
    let c = count(&prompt, ChatFormat::Llama3, tokenizer, 100, 765);
    assert!(c.over_limit && c.stopped_early, "{c:?}");
    assert!(c.tokens > 200 && c.tokens < 1300, "{}", c.tokens);
    let small = render_request(ChatFormat::Llama3, &json!({"messages": [{"role": "user", "content": "Hi"}]})).unwrap();
    let exact = count(&small, ChatFormat::Llama3, tokenizer, u64::MAX / 4, 765).tokens;
    let c = count(&small, ChatFormat::Llama3, tokenizer, exact, 765);
    assert_eq!((c.tokens, c.over_limit, c.stopped_early), (exact, false, false));
    assert!(count(&small, ChatFormat::Llama3, tokenizer, exact - 1, 765).over_limit);
}

#[test]
fn images_are_estimated_and_counted_at_the_configured_size() {
    let request = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]}]});
    let prompt = render_request(ChatFormat::Qwen3, &request).unwrap();
    assert!(prompt.estimated);
    assert_eq!(prompt.rendered_text(), "<|im_start|>user\nWhat is this?<|im_end|>\n<|im_start|>assistant\n");
    let tokenizer = Tokenizer::of(crate::tokenize::Encoding::O200kBase);
    let with = count(&prompt, ChatFormat::Qwen3, tokenizer, 1000, 100).tokens;
    let without = count(&prompt, ChatFormat::Qwen3, tokenizer, 1000, 0).tokens;
    assert_eq!(with, without + 100);
}

#[test]
fn malformed_messages_are_invalid() {
    for messages in [json!(["hi"]), json!([{"content": "x"}]), json!([{"role": "user", "content": 5}]), json!([{"role": "user", "content": [5]}])] {
        let request = json!({"messages": messages});
        assert!(matches!(render_request(ChatFormat::Llama3, &request), Err(ChatError::Invalid(_))), "{request}");
    }
}

#[test]
fn options_vllm_reads() {
    let user = json!([{"role": "user", "content": "Hi"}]);
    // Qwen 3's thinking switch, and add_generation_prompt.
    assert!(text_of(ChatFormat::Qwen3, json!({"messages": user, "chat_template_kwargs": {"enable_thinking": false}}))
        .ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    assert!(text_of(ChatFormat::Qwen3, json!({"messages": user, "add_generation_prompt": false})).ends_with("Hi<|im_end|>\n"));
    // Options that change the prompt in ways not modelled make the count estimated.
    for request in [
        json!({"messages": user, "chat_template": "{{ messages }}"}),
        json!({"messages": user, "continue_final_message": true}),
        json!({"messages": user, "chat_template_kwargs": {"date_string": "1 Jan 2025"}}),
    ] {
        assert!(render_request(ChatFormat::Llama31, &request).unwrap().estimated, "{request}");
    }
    // Variables the template does not read change nothing.
    let request = json!({"messages": user, "chat_template_kwargs": {"enable_thinking": true}});
    assert!(!render_request(ChatFormat::Llama31, &request).unwrap().estimated);
}
