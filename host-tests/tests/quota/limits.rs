//! Limits and levels: which bucket refuses (requests or tokens, per minute or per day), how much a
//! request reserves, and the `x-ratelimit-*` headers every reply carries.

use std::time::Duration;

use host_tests::{Request, Response};
use serde_json::json;

use super::{
    admitted, chat, client_headers, costing, forwarded_number, level, prompt, rate_limited,
    requests, respond, retry_after, spend, tokens, with_key, DEFAULT_RESERVATION, HELLO,
};
use crate::support::{gateway, gateway_with_vms, key_id, post, rejection, send, CHAT};

#[test]
fn requests_per_minute_counts_requests_not_tokens() {
    let mut gw = gateway_with_vms(r#"{"quota": {"requests_per_minute": 3}}"#, 3);
    let id = key_id("sk-alice");
    for (i, reset) in ["20s", "40s", "1m0s"].iter().enumerate() {
        let done = spend(&mut gw, costing("sk-alice", 5000 + i as u64).on_vm(i));
        assert_eq!(requests(&done), level(3, 2 - i as u64, reset));
        assert_eq!(tokens(&done), None, "no token limit configured");
    }
    let out = send(&mut gw, costing("sk-alice", 20).on_vm(0));
    assert_eq!(
        rate_limited(&out, "requests"),
        format!(
            "Rate limit reached for key {id} on requests per min (RPM): Limit 3, Used 3, \
             Requested 1. Please try again in 20s."
        )
    );
    assert_eq!(retry_after(&out), (Some("20"), Some("20000")));
    assert_eq!(requests(&out), level(3, 0, "1m0s"));
    gw.advance(Duration::from_secs(20)).unwrap();
    let done = spend(&mut gw, costing("sk-alice", 20).on_vm(1));
    assert_eq!(requests(&done), level(3, 0, "1m0s"));

    // Both kinds: both trios, and whichever runs out first refuses.
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 1000, "requests_per_minute": 2}}"#);
    let done = spend(&mut gw, costing("sk-alice", 100));
    assert_eq!(tokens(&done), level(1000, 900, "6s"));
    assert_eq!(requests(&done), level(2, 1, "30s"));
    let out = send(&mut gw, costing("sk-alice", 950));
    assert!(rate_limited(&out, "tokens").contains("Limit 1000, Used 100, Requested 950"));
    assert_eq!(
        requests(&out),
        level(2, 1, "30s"),
        "the refusal took no request either"
    );
    spend(&mut gw, costing("sk-alice", 100));
    let out = send(&mut gw, costing("sk-alice", 100));
    rate_limited(&out, "requests");
    assert_eq!(tokens(&out), level(1000, 800, "12s"));
}

#[test]
fn tokens_per_day_and_the_token_headers_report_the_tighter_bucket() {
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 1000, "tokens_per_day": 1500}}"#);
    let id = key_id("sk-alice");
    let done = spend(&mut gw, costing("sk-alice", 600));
    // Minute bucket: 400 left; day bucket: 900 left. The minute one binds.
    assert_eq!(tokens(&done), level(1000, 400, "36s"));

    // A minute on: the minute bucket is full, the day bucket has refilled one token
    // (600 tokens take 9h36m to refill at 1500 a day).
    gw.advance(Duration::from_secs(60)).unwrap();
    let out = send(&mut gw, costing("sk-alice", 1000));
    assert_eq!(
        rate_limited(&out, "tokens"),
        format!(
            "Rate limit reached for key {id} on tokens per day (TPD): Limit 1500, Used 599, \
             Requested 1000. Please try again in 1h35m0s."
        )
    );
    assert_eq!(retry_after(&out), (Some("5700"), Some("5700000")));
    assert_eq!(tokens(&out), level(1500, 901, "9h35m0s"));

    gw.advance(Duration::from_secs(5700)).unwrap();
    let done = spend(&mut gw, costing("sk-alice", 1000));
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(0),
        "both buckets are empty now"
    );
}

#[test]
fn a_request_that_can_never_fit_is_refused_without_a_retry() {
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 100}}"#);
    let id = key_id("sk-alice");
    // No max_tokens: the default reservation of 256 makes 267, more than the bucket holds.
    let out = send(&mut gw, chat(Some("sk-alice"), HELLO, None));
    let message = rate_limited(&out, "tokens");
    let cost = prompt(HELLO) + DEFAULT_RESERVATION;
    assert!(
        message.starts_with(&format!(
            "Request too large for key {id} on tokens per min (TPM): Limit 100, Requested {cost}. \
             It can never fit"
        )),
        "{message}"
    );
    assert_eq!(retry_after(&out), (None, None));
    assert_eq!(tokens(&out), level(100, 100, "0s"), "nothing was taken");
    let done = spend(&mut gw, costing("sk-alice", 100));
    assert_eq!(tokens(&done), level(100, 0, "1m0s"));

    // Day limits too.
    let mut gw = gateway(r#"{"quota": {"tokens_per_day": 50}}"#);
    let out = send(&mut gw, costing("sk-alice", 51));
    let message = rate_limited(&out, "tokens");
    assert!(
        message.starts_with(&format!(
            "Request too large for key {id} on tokens per day (TPD): Limit 50, Requested 51. It can never fit"
        )),
        "{message}"
    );
    assert_eq!(retry_after(&out), (None, None));
}

#[test]
fn the_reservation_is_the_prompt_plus_the_asked_output_or_else_the_default() {
    let mut gw =
        gateway(r#"{"quota": {"tokens_per_minute": 100000, "default_output_reservation": 40}}"#);
    let p = prompt(HELLO);
    let body = |extra: &str| {
        format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"Hello, world!"}}]{extra}}}"#
        )
    };
    for (extra, output) in [
        ("", 40),
        (r#","max_tokens":7"#, 7),
        (r#","max_completion_tokens":5"#, 5),
        (r#","max_tokens":7,"max_completion_tokens":5"#, 5),
    ] {
        let out = admitted(
            &mut gw,
            with_key(post(CHAT, &body(extra)), Some("sk-alice")),
        );
        assert_eq!(forwarded_number(&out, "x-tokengate-prompt-tokens"), p);
        assert_eq!(
            forwarded_number(&out, "x-tokengate-reserved-tokens"),
            p + output,
            "{extra}"
        );
    }
    for (path, body, output) in [
        (
            "/v1/responses",
            r#"{"model":"gpt-4o","input":"Hello, world!","max_output_tokens":12}"#,
            12,
        ),
        (
            "/v1/responses",
            r#"{"model":"gpt-4o","input":"Hello, world!"}"#,
            40,
        ),
        (
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"Hello, world!"}"#,
            40,
        ),
    ] {
        let out = admitted(&mut gw, with_key(post(path, body), Some("sk-alice")));
        let prompt_tokens = forwarded_number(&out, "x-tokengate-prompt-tokens");
        assert_eq!(
            forwarded_number(&out, "x-tokengate-reserved-tokens"),
            prompt_tokens + output,
            "{body}"
        );
    }
}

#[test]
fn the_filters_own_replies_and_passthrough_responses_carry_the_keys_current_levels() {
    let config = r#"{"quota": {"tokens_per_minute": 1000}, "max_body_bytes": 1000, "max_prompt_tokens": 50}"#;
    let mut gw = gateway_with_vms(config, 2);
    spend(&mut gw, costing("sk-alice", 200));
    let current = level(1000, 800, "12s");

    let out = send(&mut gw, with_key(post(CHAT, "{oops"), Some("sk-alice")));
    assert_eq!(rejection(&out, 400)["code"], "invalid_json");
    assert_eq!(tokens(&out), current);

    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(2000)}]});
    let out = send(
        &mut gw,
        with_key(post(CHAT, &big.to_string()), Some("sk-alice")),
    );
    assert_eq!(rejection(&out, 413)["code"], "request_too_large");
    assert_eq!(tokens(&out), current);

    let long = "hello ".repeat(100);
    let out = send(&mut gw, chat(Some("sk-alice"), &long, None));
    assert_eq!(rejection(&out, 400)["code"], "context_length_exceeded");
    assert_eq!(tokens(&out), current, "a refused prompt takes nothing");

    // Requests with nothing to count pass through; their responses still say where the key stands.
    let out = admitted(
        &mut gw,
        with_key(Request::get("/v1/models"), Some("sk-alice")),
    );
    assert_eq!(out.forwarded_header("x-tokengate-reserved-tokens"), None);
    let done = respond(&mut gw, &out, Response::ok().json(r#"{"data":[]}"#));
    assert_eq!(tokens(&done), current);

    // A key never seen has a full bucket.
    let out = send(&mut gw, with_key(post(CHAT, "{oops"), Some("sk-new")));
    assert_eq!(tokens(&out), level(1000, 1000, "0s"));

    let mut gw =
        gateway(r#"{"quota": {"tokens_per_minute": 1000}, "api_key": {"required": true}}"#);
    let out = send(&mut gw, post(CHAT, "{oops"));
    rejection(&out, 401);
    assert!(
        client_headers(&out)
            .iter()
            .all(|(k, _)| !k.starts_with("x-ratelimit-")),
        "{:?}",
        client_headers(&out)
    );
}
