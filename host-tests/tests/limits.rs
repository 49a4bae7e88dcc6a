//! Rejections: every limit, with its status, OpenAI-shaped body, and where in the stream it falls.

use host_tests::{Decision, Gateway, Request};
use serde_json::Value;

use crate::support::{chat_body, fixture, gateway, post, rejection, send, CHAT};

fn numbers(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn a_prompt_over_the_limit_is_400_context_length_exceeded() {
    let mut gw = gateway(r#"{"max_prompt_tokens": 10}"#);
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    assert_eq!(out.decision, Decision::LocalReply);
    assert!(out.forwarded.is_none(), "nothing reaches the backend");
    let error = rejection(&out, 400);
    assert_eq!(error["code"], "context_length_exceeded");
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["param"], "messages");
    let message = error["message"].as_str().unwrap();
    let numbers = numbers(message);
    assert!(numbers.contains(&10), "names the limit: {message}");
    assert!(
        numbers.iter().any(|n| *n > 10),
        "names the count: {message}"
    );
    assert_eq!(
        out.filter_state_str("wasm.tokengate.decision").as_deref(),
        Some("context_length_exceeded")
    );
}

#[test]
fn a_prompt_at_the_limit_is_allowed() {
    let mut gw = gateway(r#"{"max_prompt_tokens": 11}"#);
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    assert_eq!(out.decision, Decision::Forwarded);
}

#[test]
fn per_model_limits_and_the_param_of_each_api() {
    let config =
        r#"{"models": [{"match": "gpt-4", "max_prompt_tokens": 5}], "max_prompt_tokens": 3}"#;
    let mut gw = gateway(config);
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4.json")));
    assert_eq!(rejection(&out, 400)["param"], "messages");
    let out = send(
        &mut gw,
        post("/v1/embeddings", &fixture("embeddings_hello.json")),
    );
    assert_eq!(rejection(&out, 400)["param"], "input");
    let out = send(
        &mut gw,
        post("/v1/completions", &fixture("completions_token_arrays.json")),
    );
    assert_eq!(rejection(&out, 400)["param"], "prompt");

    let mut gw = gateway(
        r#"{"models": [{"match": "gpt-4", "max_prompt_tokens": 11}], "max_prompt_tokens": 3}"#,
    );
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4.json")));
    assert_eq!(
        out.decision,
        Decision::Forwarded,
        "the model's own limit applies"
    );
}

#[test]
fn a_huge_prompt_is_refused_without_counting_all_of_it() {
    let mut gw = gateway(r#"{"max_prompt_tokens": 100}"#);
    let text = "lorem ipsum dolor sit amet ".repeat(20_000);
    let out = send(
        &mut gw,
        post(CHAT, &chat_body("gpt-4o", &[("user", &text)])),
    );
    let error = rejection(&out, 400);
    assert_eq!(error["code"], "context_length_exceeded");
}

#[test]
fn one_long_word_is_refused_by_its_length() {
    // 1,000,000 letters without a space: no token holds more than 41 letters in a row
    // (cl100k_base; 26 in o200k_base), so the word has at least 24,391 tokens, past where
    // counting stops (twice the limit), and is decided without merging any of it.
    let mut gw = gateway(r#"{"max_prompt_tokens": 8000}"#);
    let word: String = (0..1_000_000u32)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    for model in ["gpt-4", "gpt-4o"] {
        let out = send(&mut gw, post(CHAT, &chat_body(model, &[("user", &word)])));
        let error = rejection(&out, 400);
        assert_eq!(error["code"], "context_length_exceeded");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("at least"), "{message}");
        let counted = numbers(message)[1];
        assert!(
            counted >= 1_000_000 / 41,
            "the bound, not a count stopped at 16,000: {message}"
        );
        assert!(
            counted < 1_000_000 / 2,
            "a lower bound, below the true count: {message}"
        );
    }
}

#[test]
fn output_over_max_output_tokens_is_400_invalid_value_naming_the_field() {
    let mut gw = gateway(r#"{"max_output_tokens": 100}"#);
    for field in ["max_tokens", "max_completion_tokens"] {
        let body = format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"Hi"}}],"{field}":101}}"#
        );
        let out = send(&mut gw, post(CHAT, &body));
        let error = rejection(&out, 400);
        assert_eq!(
            (error["code"].as_str(), error["param"].as_str()),
            (Some("invalid_value"), Some(field))
        );
        assert!(
            error["message"].as_str().unwrap().contains("100"),
            "{error}"
        );
    }
    let body = r#"{"model":"gpt-4o","input":"Hi","max_output_tokens":500}"#;
    let error = rejection(&send(&mut gw, post("/v1/responses", body)), 400);
    assert_eq!(error["param"], "max_output_tokens");

    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"max_tokens":100}"#;
    let out = send(&mut gw, post(CHAT, body));
    assert_eq!(
        out.forwarded_header("x-tokengate-max-output-tokens"),
        Some("100")
    );
}

#[test]
fn content_length_over_the_cap_is_refused_at_the_headers() {
    let mut gw = gateway(r#"{"max_body_bytes": 100}"#);
    let body = chat_body("gpt-4o", &[("user", &"x".repeat(200))]);
    let out = send(&mut gw, post(CHAT, &body));
    let error = rejection(&out, 413);
    assert_eq!(error["code"], "request_too_large");
    assert_eq!(
        out.actions
            .iter()
            .filter(|(name, _)| name.contains("request_body"))
            .count(),
        0,
        "refused before the body: {:?}",
        out.actions
    );
    assert!(out.forwarded.is_none());
}

#[test]
fn a_chunked_body_over_the_cap_is_refused_as_it_arrives() {
    let mut gw = gateway(r#"{"max_body_bytes": 100}"#);
    let body = chat_body("gpt-4o", &[("user", &"x".repeat(200))]);
    let chunks: Vec<Vec<u8>> = body.as_bytes().chunks(40).map(<[u8]>::to_vec).collect();
    let total = chunks.len();
    let out = send(
        &mut gw,
        Request::post(CHAT)
            .header("content-type", "application/json")
            .chunks(chunks),
    );
    assert_eq!(rejection(&out, 413)["code"], "request_too_large");
    let body_calls = out
        .actions
        .iter()
        .filter(|(name, _)| name.contains("request_body"))
        .count();
    assert_eq!(
        body_calls, 3,
        "refused at the chunk that crossed 100 bytes, not at the end ({total} chunks)"
    );
}

#[test]
fn a_body_longer_than_its_content_length_is_still_capped() {
    let mut gw = gateway(r#"{"max_body_bytes": 100}"#);
    let body = chat_body("gpt-4o", &[("user", &"x".repeat(200))]);
    let out = send(&mut gw, post(CHAT, &body).header("content-length", "50"));
    assert_eq!(rejection(&out, 413)["code"], "request_too_large");
}

#[test]
fn malformed_json_is_400_invalid_json() {
    let mut gw = gateway("{}");
    for body in [
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}"#,
        "{nope}",
    ] {
        let out = send(&mut gw, post(CHAT, body));
        let error = rejection(&out, 400);
        assert_eq!(error["code"], "invalid_json", "{body}");
        assert_eq!(error["type"], "invalid_request_error");
    }
}

#[test]
fn fields_of_the_wrong_type_are_400_invalid_value() {
    let mut gw = gateway("{}");
    for (body, param) in [
        (r#"{"model":"gpt-4o","messages":"Hello"}"#, "messages"),
        (
            r#"{"model":"gpt-4o","messages":[],"max_tokens":-5}"#,
            "max_tokens",
        ),
        (r#"{"model":42,"messages":[]}"#, "model"),
    ] {
        let error = rejection(&send(&mut gw, post(CHAT, body)), 400);
        assert_eq!(
            (error["code"].as_str(), error["param"].as_str()),
            (Some("invalid_value"), Some(param)),
            "{body}"
        );
    }
}

#[test]
fn a_missing_key_is_401_when_required() {
    let mut gw = gateway(r#"{"api_key": {"required": true}}"#);
    let body = fixture("chat_hello_gpt4o.json");
    for request in [
        post(CHAT, &body),
        post(CHAT, &body).header("authorization", "Bearer "),
        Request::get("/v1/models"),
    ] {
        let out = send(&mut gw, request);
        let error = rejection(&out, 401);
        assert_eq!(error["code"], "missing_api_key");
        assert_eq!(error["param"], Value::Null);
    }
    let out = send(
        &mut gw,
        post(CHAT, &body).header("authorization", "Bearer sk-test"),
    );
    assert_eq!(out.decision, Decision::Forwarded);

    let mut gw = gateway(r#"{"api_key": {"header": "x-api-key", "required": true}}"#);
    let out = send(
        &mut gw,
        post(CHAT, &body).header("authorization", "Bearer sk-test"),
    );
    assert_eq!(
        rejection(&out, 401)["code"],
        "missing_api_key",
        "the key is read from the configured header only"
    );
    let out = send(&mut gw, post(CHAT, &body).header("x-api-key", "sk-test"));
    assert_eq!(out.decision, Decision::Forwarded);
}

#[test]
fn a_missing_key_error_has_the_documented_type() {
    let mut gw = gateway(r#"{"api_key": {"required": true}}"#);
    let error = rejection(
        &send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json"))),
        401,
    );
    assert_eq!(error["type"], "invalid_request_error", "{error}");
}

#[test]
fn bodies_over_envoys_buffer_limit_need_a_larger_limit_in_envoy_too() {
    let config = r#"{"max_body_bytes": 2097152, "max_prompt_tokens": 100}"#;
    let body = chat_body("gpt-4o", &[("user", &"hello ".repeat(250_000))]);
    let request = || post(CHAT, &body).in_chunks(64 * 1024);

    let mut gw = gateway(config);
    let out = send(&mut gw, request());
    let reply = out
        .local_reply
        .expect("Envoy refuses to buffer more than 1 MiB");
    assert_eq!((reply.status, reply.from_proxy), (413, true));

    let mut gw = Gateway::builder()
        .config(config)
        .buffer_limit(Some(4 << 20))
        .build()
        .unwrap();
    let out = send(&mut gw, request());
    let error = rejection(&out, 400);
    assert_eq!(
        error["code"], "context_length_exceeded",
        "with room to buffer, the filter decides"
    );
}
