//! What goes upstream on an allowed request: annotations, stripped client headers, the body and
//! headers otherwise untouched; and the filter state for access logs.

use host_tests::{Decision, Request, Response};

use crate::support::{fixture, gateway, key_id, post, send, CHAT};

#[test]
fn allowed_requests_are_annotated() {
    let mut gw = gateway("{}");
    let body = fixture("chat_hello_gpt4o.json");
    let out = send(
        &mut gw,
        post(CHAT, &body)
            .header("authorization", "Bearer sk-test")
            .header("x-request-id", "r1"),
    );
    assert_eq!(out.decision, Decision::Forwarded);
    let forwarded = out.forwarded.as_ref().unwrap();
    assert_eq!(forwarded.header("x-tokengate-prompt-tokens"), Some("11"));
    assert_eq!(forwarded.header("x-tokengate-encoding"), Some("o200k_base"));
    assert_eq!(forwarded.header("x-tokengate-count"), Some("exact"));
    assert_eq!(
        forwarded.header("x-tokengate-key-id"),
        Some(key_id("sk-test").as_str())
    );
    assert_eq!(key_id("sk-test"), "f3abf2a6cc4f0098");
    assert_eq!(
        forwarded.header("x-tokengate-max-output-tokens"),
        None,
        "only when the request asked"
    );
    assert_eq!(
        forwarded.header("authorization"),
        Some("Bearer sk-test"),
        "the key still goes upstream"
    );
    assert_eq!(forwarded.header("x-request-id"), Some("r1"));
    assert_eq!(forwarded.header(":path"), Some(CHAT));
    assert_eq!(forwarded.body_text(), body, "the body is not rewritten");
}

#[test]
fn the_key_id_strips_bearer_and_is_absent_without_a_key() {
    let mut gw = gateway("{}");
    let body = fixture("chat_hello_gpt4o.json");
    for value in [
        "Bearer sk-test",
        "bearer sk-test",
        "sk-test",
        "Bearer   sk-test  ",
    ] {
        let out = send(&mut gw, post(CHAT, &body).header("authorization", value));
        assert_eq!(
            out.forwarded_header("x-tokengate-key-id"),
            Some("f3abf2a6cc4f0098"),
            "{value:?}"
        );
    }
    let out = send(&mut gw, post(CHAT, &body));
    assert_eq!(out.forwarded_header("x-tokengate-key-id"), None);
    assert_eq!(out.filter_state.get("wasm.tokengate.key_id"), None);
}

#[test]
fn output_size_is_annotated_when_asked() {
    let mut gw = gateway("{}");
    for field in ["max_tokens", "max_completion_tokens"] {
        let body = format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"Hi"}}],"{field}":321}}"#
        );
        let out = send(&mut gw, post(CHAT, &body));
        assert_eq!(
            out.forwarded_header("x-tokengate-max-output-tokens"),
            Some("321"),
            "{field}"
        );
    }
    let out = send(
        &mut gw,
        post(
            "/v1/responses",
            r#"{"model":"gpt-4o","input":"Hi","max_output_tokens":77}"#,
        ),
    );
    assert_eq!(
        out.forwarded_header("x-tokengate-max-output-tokens"),
        Some("77")
    );
}

#[test]
fn client_sent_tokengate_headers_are_removed() {
    let mut gw = gateway("{}");
    let spoof = |request: Request| {
        request
            .header("x-tokengate-prompt-tokens", "1")
            .header("X-Tokengate-Key-Id", "0000000000000000")
            .add_header("x-tokengate-evil", "a")
            .add_header("x-tokengate-evil", "b")
    };
    let out = send(
        &mut gw,
        spoof(post(CHAT, &fixture("chat_hello_gpt4o.json"))),
    );
    let forwarded = out.forwarded.as_ref().unwrap();
    assert_eq!(forwarded.header_values("x-tokengate-prompt-tokens"), ["11"]);
    assert_eq!(forwarded.header("x-tokengate-key-id"), None);
    assert_eq!(forwarded.header("x-tokengate-evil"), None);

    for request in [Request::get("/v1/models"), post(CHAT, r#"{"not":"llm"}"#)] {
        let out = send(&mut gw, spoof(request));
        assert!(
            out.forwarded
                .as_ref()
                .unwrap()
                .headers_with_prefix("x-tokengate-")
                .is_empty(),
            "stripped on pass-through too"
        );
    }
}

#[test]
fn filter_state_records_the_decision() {
    let mut gw = gateway(r#"{"max_prompt_tokens": 15}"#);
    let out = send(
        &mut gw,
        post(CHAT, &fixture("chat_hello_gpt4.json")).header("authorization", "Bearer sk-test"),
    );
    assert_eq!(
        out.filter_state_str("wasm.tokengate.decision").as_deref(),
        Some("allowed")
    );
    assert_eq!(
        out.filter_state_str("wasm.tokengate.prompt_tokens")
            .as_deref(),
        Some("11")
    );
    assert_eq!(
        out.filter_state_str("wasm.tokengate.encoding").as_deref(),
        Some("cl100k_base")
    );
    assert_eq!(
        out.filter_state_str("wasm.tokengate.key_id").as_deref(),
        Some("f3abf2a6cc4f0098")
    );

    let out = send(
        &mut gw,
        post(CHAT, &fixture("chat_system_user.json")).header("authorization", "Bearer sk-test"),
    );
    assert_eq!(
        out.filter_state_str("wasm.tokengate.decision").as_deref(),
        Some("context_length_exceeded")
    );
    assert_eq!(
        out.filter_state_str("wasm.tokengate.key_id").as_deref(),
        Some("f3abf2a6cc4f0098")
    );

    let out = send(&mut gw, Request::get("/v1/models"));
    assert_eq!(
        out.filter_state_str("wasm.tokengate.decision").as_deref(),
        Some("passthrough")
    );
}

#[test]
fn the_response_goes_back_untouched_and_the_stream_ends() {
    let mut gw = gateway("{}");
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    assert!(!out.finished);
    let body = r#"{"id":"x","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":1,"total_tokens":12}}"#;
    let done = gw.response(&out, Response::ok().json(body)).unwrap();
    assert!(done.finished);
    let response = done.response.unwrap();
    assert_eq!(response.header(":status"), Some("200"));
    assert_eq!(response.body_text(), body);
}
