//! Per-key token quotas through the real filter: buckets in shared data, shared by every VM,
//! refilled by the gateway's clock; reservations at admission, settled with the backend's usage.
//!
//! Arithmetic in these tests is exact: limits divide a minute into whole milliseconds per token,
//! and the clock only moves when a test moves it.
//!
//! One module per concern: `admission` (refusal, refill, keys, overrides, config errors),
//! `limits` (which bucket refuses, what is reserved, the level headers), `settlement` (JSON
//! usage, failed and missing responses), `streaming` (SSE usage), `storage` (slots, eviction),
//! `concurrency` (reservations racing across VMs). The helpers below are theirs.

mod admission;
mod concurrency;
mod limits;
mod settlement;
mod storage;
mod streaming;

use host_tests::abi::Pairs;
use host_tests::{Decision, Error, Gateway, Outcome, Request, Response};
use serde_json::{json, Value};

use crate::support::{chat_tokens, o200k, post, rejection, send, CHAT};

const HELLO: &str = "Hello, world!";
/// The filter's default `quota.default_output_reservation`.
const DEFAULT_RESERVATION: u64 = 256;

/// Tokens of a one-message chat prompt (the oracle).
fn prompt(content: &str) -> u64 {
    chat_tokens(o200k, &[("user", content)])
}

/// A chat request of one user message, with `authorization: Bearer <key>` when given.
fn chat(key: Option<&str>, content: &str, max_tokens: Option<u64>) -> Request {
    let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]});
    if let Some(n) = max_tokens {
        body["max_tokens"] = n.into();
    }
    with_key(post(CHAT, &body.to_string()), key)
}

fn with_key(request: Request, key: Option<&str>) -> Request {
    match key {
        Some(key) => request.header("authorization", &format!("Bearer {key}")),
        None => request,
    }
}

/// "Hello, world!" asking for as much output as makes the reservation `cost`.
fn costing(key: &str, cost: u64) -> Request {
    chat(Some(key), HELLO, Some(cost - prompt(HELLO)))
}

/// A chat completion reporting this usage.
fn completion(prompt_tokens: u64, completion_tokens: u64) -> Response {
    Response::ok().json(
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}
        })
        .to_string(),
    )
}

/// Sends a request that must be forwarded.
fn admitted(gw: &mut Gateway, request: Request) -> Outcome {
    let out = send(gw, request);
    assert_eq!(
        out.decision,
        Decision::Forwarded,
        "expected the request to be admitted, got {:?}: {}",
        out.local_reply.as_ref().map(|r| r.status),
        out.local_reply
            .as_ref()
            .map(|r| r.body_text())
            .unwrap_or_default()
    );
    out
}

fn respond(gw: &mut Gateway, out: &Outcome, response: Response) -> Outcome {
    let done = gw.response(out, response).unwrap_or_else(|e| panic!("{e}"));
    assert!(done.finished, "the stream ends with the response");
    done
}

/// A forwarded header as a number.
fn forwarded_number(out: &Outcome, name: &str) -> u64 {
    out.forwarded_header(name)
        .unwrap_or_else(|| panic!("no {name} upstream"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Admits a request and answers it with usage equal to its reservation (nothing to settle);
/// returns what the client got.
fn spend(gw: &mut Gateway, request: Request) -> Outcome {
    let out = admitted(gw, request);
    let prompt_tokens = forwarded_number(&out, "x-tokengate-prompt-tokens");
    let reserved = forwarded_number(&out, "x-tokengate-reserved-tokens");
    respond(
        gw,
        &out,
        completion(prompt_tokens, reserved - prompt_tokens),
    )
}

/// The headers the client got (the backend's response after the filter, or the local reply).
fn client_headers(out: &Outcome) -> &Pairs {
    &out.response
        .as_ref()
        .unwrap_or_else(|| panic!("no response reached the client: {out:#?}"))
        .headers
}

fn header<'a>(headers: &'a Pairs, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `x-ratelimit-{limit,remaining,reset}-<kind>` as (limit, remaining, reset); `None` when the
/// response has none of the three.
fn trio(headers: &Pairs, kind: &str) -> Option<(u64, u64, String)> {
    let get = |what: &str| header(headers, &format!("x-ratelimit-{what}-{kind}"));
    match (get("limit"), get("remaining"), get("reset")) {
        (None, None, None) => None,
        (Some(limit), Some(remaining), Some(reset)) => Some((
            limit.parse().unwrap(),
            remaining.parse().unwrap(),
            reset.to_string(),
        )),
        partial => panic!("some x-ratelimit-*-{kind} headers missing: {partial:?} in {headers:?}"),
    }
}

fn tokens(out: &Outcome) -> Option<(u64, u64, String)> {
    trio(client_headers(out), "tokens")
}

fn requests(out: &Outcome) -> Option<(u64, u64, String)> {
    trio(client_headers(out), "requests")
}

fn level(limit: u64, remaining: u64, reset: &str) -> Option<(u64, u64, String)> {
    Some((limit, remaining, reset.to_string()))
}

/// Checks a 429 rate-limit refusal and returns its message.
fn rate_limited(out: &Outcome, error_type: &str) -> String {
    assert!(
        out.forwarded.is_none(),
        "a refused request never reaches the backend"
    );
    let error = rejection(out, 429);
    assert_eq!(error["code"], "rate_limit_exceeded", "{error}");
    assert_eq!(error["type"], error_type, "{error}");
    assert_eq!(error["param"], Value::Null, "{error}");
    assert_eq!(
        out.filter_state_str("wasm.tokengate.decision").as_deref(),
        Some("rate_limit_exceeded")
    );
    error["message"].as_str().unwrap().to_string()
}

/// `retry-after` and `retry-after-ms` of a local reply.
fn retry_after(out: &Outcome) -> (Option<&str>, Option<&str>) {
    let reply = out.local_reply.as_ref().expect("a local reply");
    (reply.header("retry-after"), reply.header("retry-after-ms"))
}

fn counter(gw: &Gateway, name: &str) -> u64 {
    gw.counter(&format!("tokengate.{name}"))
        .unwrap_or_else(|| panic!("no counter tokengate.{name}"))
}

fn state(out: &Outcome, name: &str) -> Option<String> {
    out.filter_state_str(&format!("wasm.tokengate.{name}"))
}

fn rejected_config(config: &str) -> Vec<String> {
    match Gateway::new(config) {
        Err(Error::ConfigRejected { logs, .. }) => logs,
        Err(other) => panic!("{config}: expected a rejected config, got {other}"),
        Ok(_) => panic!("{config}: accepted"),
    }
}
