//! How many host calls the real filter makes per request. Each costs 0.6-1 µs in Envoy's V8, so
//! the count is pinned: a change shows here with the breakdown by import.
//!
//! Counted: every import the guest calls (`proxy_*` and WASI) while a callback of the stream
//! runs, split where the response begins (`host_tests::StreamHostCalls`). Measured on the second
//! of two identical exchanges on one VM, so one-time work (first-use initialisation, a key's
//! first bucket) stays out of the figure a request pays in steady state.

use host_tests::{Decision, Gateway, Outcome, Request, Response, StreamHostCalls};
use serde_json::json;

use crate::support::{chat_body, gateway, post, CHAT};

/// Host calls per request: (request side, response side). When the filter changes how it talks
/// to the host, update the row from the breakdown the failing test prints.
#[rustfmt::skip]
const EXPECTED: [(&str, u32, u32); 3] = [
    // case                     request  response
    ("admitted, no quota",         14,      11),
    ("admitted, quota",            17,      17),
    ("over max_prompt_tokens",     11,       0),
];

fn expected(case: &str) -> (u32, u32) {
    EXPECTED
        .iter()
        .find(|(name, ..)| *name == case)
        .map(|(_, request, response)| (*request, *response))
        .unwrap_or_else(|| panic!("no row {case:?} in EXPECTED"))
}

fn chat() -> Request {
    post(CHAT, &chat_body("gpt-4o", &[("user", "Hello, world!")]))
        .header("authorization", "Bearer sk-host-calls")
}

/// A chat completion with usage, as the backend sends it.
fn completion() -> Response {
    Response::ok().json(
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
        })
        .to_string(),
    )
}

/// The request, then (if forwarded) the response, to the end of the stream.
fn exchange(gw: &mut Gateway) -> Outcome {
    let out = gw
        .exchange(chat(), completion())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.finished, "the stream ends: {out:#?}");
    out
}

/// The host calls of the second of two identical exchanges, checked against the table.
fn check(case: &str, config: &str, decision: Decision) {
    let mut gw = gateway(config);
    exchange(&mut gw);
    let out = exchange(&mut gw);
    assert_eq!(out.decision, decision, "{}", out.logs_text());
    let StreamHostCalls { request, response } = &out.host_calls;
    let (want_request, want_response) = expected(case);
    assert_eq!(
        (request.total(), response.total()),
        (want_request, want_response),
        "{case}: host calls (request, response) changed; now\n  request  {request}\n  response {response}"
    );
}

#[test]
fn an_admitted_request_without_a_quota() {
    check("admitted, no quota", "{}", Decision::Forwarded);
}

#[test]
fn an_admitted_request_with_a_quota() {
    check(
        "admitted, quota",
        r#"{"quota": {"tokens_per_minute": 100000}}"#,
        Decision::Forwarded,
    );
}

#[test]
fn a_request_over_the_prompt_limit() {
    check(
        "over max_prompt_tokens",
        r#"{"max_prompt_tokens": 5}"#,
        Decision::LocalReply,
    );
}
