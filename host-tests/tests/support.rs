//! Helpers for the behaviour tests of the real tokengate.wasm: gateways, requests, fixtures, and
//! tiktoken-rs as the counting oracle.

use std::path::PathBuf;

use host_tests::{Gateway, Outcome, Request};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The chat completions path.
pub const CHAT: &str = "/v1/chat/completions";

/// A gateway over the real filter; a missing .wasm fails with the command that builds it.
pub fn gateway(config: &str) -> Gateway {
    Gateway::new(config).unwrap_or_else(|e| panic!("{e}"))
}

/// A gateway of `vms` VMs over the real filter.
pub fn gateway_with_vms(config: &str, vms: usize) -> Gateway {
    Gateway::with_vms(config, vms).unwrap_or_else(|e| panic!("{e}"))
}

/// A fixture from `tests/data/`.
pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A POST of a JSON body to `path`.
pub fn post(path: &str, body: &str) -> Request {
    Request::post(path).json(body)
}

/// A chat completion request body.
pub fn chat_body(model: &str, messages: &[(&str, &str)]) -> String {
    let messages: Vec<Value> = messages
        .iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    json!({"model": model, "messages": messages}).to_string()
}

/// Sends a request, failing the test on a harness error (a trap, say).
pub fn send(gw: &mut Gateway, request: Request) -> Outcome {
    gw.request(request).unwrap_or_else(|e| panic!("{e}"))
}

/// The `error` object of a local reply, checking the OpenAI shape and the status on the way.
pub fn rejection(out: &Outcome, status: u32) -> Value {
    let reply = out
        .local_reply
        .as_ref()
        .unwrap_or_else(|| panic!("expected a local reply, got {out:#?}"));
    assert_eq!(reply.status, status, "{}", reply.body_text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply
        .json()
        .unwrap_or_else(|e| panic!("reply body is not JSON ({e}): {}", reply.body_text()));
    let error = body["error"].clone();
    for field in ["message", "type", "param", "code"] {
        assert!(error.get(field).is_some(), "error.{field} missing: {body}");
    }
    assert!(error["message"].is_string(), "{body}");
    error
}

/// Tokens of `text` in o200k_base (tiktoken-rs, the oracle).
pub fn o200k(text: &str) -> u64 {
    tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len() as u64
}

/// Tokens of `text` in cl100k_base.
pub fn cl100k(text: &str) -> u64 {
    tiktoken_rs::cl100k_base_singleton()
        .encode_ordinary(text)
        .len() as u64
}

/// The chat rule: 3 per message, the tokens of role and content, 3 priming the reply.
pub fn chat_tokens(count: fn(&str) -> u64, messages: &[(&str, &str)]) -> u64 {
    3 + messages
        .iter()
        .map(|(role, content)| 3 + count(role) + count(content))
        .sum::<u64>()
}

/// The key id the filter derives: the first 16 hex characters of SHA-256 of the key.
pub fn key_id(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
