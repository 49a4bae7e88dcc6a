//! Per-key token quotas through the real filter: buckets in shared data, shared by every VM,
//! refilled by the gateway's clock; reservations at admission, settled with the backend's usage.
//!
//! Arithmetic in these tests is exact: limits divide a minute into whole milliseconds per token,
//! and the clock only moves when a test moves it.

use std::time::Duration;

use host_tests::abi::Pairs;
use host_tests::{Decision, Error, Gateway, Outcome, Request, Response};
use serde_json::{json, Value};

use crate::support::{
    chat_tokens, gateway, gateway_with_vms, key_id, o200k, post, rejection, send, CHAT,
};

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

#[test]
fn an_exhausted_key_is_refused_until_its_bucket_refills() {
    let mut gw = gateway_with_vms(r#"{"quota": {"tokens_per_minute": 1000}}"#, 3);
    let id = key_id("sk-alice");
    // 1000 tokens per minute: 60 ms per token, 200 tokens refill in 12 s.
    for (i, reset) in ["12s", "24s", "36s", "48s", "1m0s"].iter().enumerate() {
        let out = admitted(&mut gw, costing("sk-alice", 200).on_vm(i % 3));
        assert_eq!(
            out.forwarded_header("x-tokengate-reserved-tokens"),
            Some("200")
        );
        assert_eq!(
            out.forwarded_header("x-tokengate-key-id"),
            Some(id.as_str())
        );
        assert_eq!(state(&out, "reserved_tokens").as_deref(), Some("200"));
        let done = respond(&mut gw, &out, completion(11, 189));
        let remaining = 1000 - 200 * (i as u64 + 1);
        assert_eq!(tokens(&done), level(1000, remaining, reset), "request {i}");
        assert_eq!(requests(&done), None, "no request limit configured");
    }

    let out = send(&mut gw, costing("sk-alice", 200).on_vm(2));
    assert_eq!(
        rate_limited(&out, "tokens"),
        format!(
            "Rate limit reached for key {id} on tokens per min (TPM): Limit 1000, Used 1000, \
             Requested 200. Please try again in 12s."
        )
    );
    assert_eq!(retry_after(&out), (Some("12"), Some("12000")));
    assert_eq!(tokens(&out), level(1000, 0, "1m0s"));
    assert_eq!(
        out.local_reply.as_ref().unwrap().header("content-type"),
        Some("application/json")
    );
    assert_eq!(counter(&gw, "rejected_rate_limit_exceeded_total"), 1);

    // Half way: the refusal took nothing, so the wait is half as long, not longer.
    gw.advance(Duration::from_secs(6)).unwrap();
    let out = send(&mut gw, costing("sk-alice", 200).on_vm(0));
    let message = rate_limited(&out, "tokens");
    assert!(
        message.contains("Limit 1000, Used 900, Requested 200. Please try again in 6s."),
        "{message}"
    );
    assert_eq!(retry_after(&out), (Some("6"), Some("6000")));
    assert_eq!(tokens(&out), level(1000, 100, "54s"));

    // One millisecond early is still too early, and says so.
    gw.advance(Duration::from_millis(5999)).unwrap();
    let out = send(&mut gw, costing("sk-alice", 200).on_vm(1));
    assert!(rate_limited(&out, "tokens").ends_with("Please try again in 1ms."));
    assert_eq!(retry_after(&out), (Some("1"), Some("1")));

    gw.advance(Duration::from_millis(1)).unwrap();
    let done = spend(&mut gw, costing("sk-alice", 200).on_vm(2));
    assert_eq!(tokens(&done), level(1000, 0, "1m0s"));
    assert_eq!(counter(&gw, "rejected_rate_limit_exceeded_total"), 3);

    // Another key has its own full bucket all along.
    let done = spend(&mut gw, costing("sk-bob", 200).on_vm(0));
    assert_eq!(tokens(&done), level(1000, 800, "12s"));

    // A minute later alice's bucket is full again.
    gw.advance(Duration::from_secs(60)).unwrap();
    let done = spend(&mut gw, costing("sk-alice", 1000).on_vm(1));
    assert_eq!(tokens(&done), level(1000, 0, "1m0s"));
}

#[test]
fn keyless_requests_share_one_bucket_unless_a_key_is_required() {
    let mut gw = gateway_with_vms(r#"{"quota": {"tokens_per_minute": 300}}"#, 2);
    let done = spend(&mut gw, chat(None, HELLO, Some(189)).on_vm(0));
    assert_eq!(tokens(&done), level(300, 100, "40s"));
    let out = send(&mut gw, chat(None, HELLO, Some(189)).on_vm(1));
    let message = rate_limited(&out, "tokens");
    assert!(
        message.contains("Limit 300, Used 200, Requested 200"),
        "{message}"
    );
    assert_eq!(retry_after(&out), (Some("20"), Some("20000")));
    spend(&mut gw, costing("sk-alice", 200).on_vm(1));

    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 300}, "api_key": {"required": true}}"#);
    let out = send(&mut gw, chat(None, HELLO, None));
    assert_eq!(rejection(&out, 401)["code"], "missing_api_key");
    assert_eq!(tokens(&out), None, "a 401 has no rate-limit headers");
    assert_eq!(requests(&out), None);
    let done = spend(&mut gw, costing("sk-alice", 200));
    assert_eq!(tokens(&done), level(300, 100, "40s"));
}

#[test]
fn an_override_gives_a_key_its_own_limits_and_leaves_others_alone() {
    let (a, b, c, d) = ("sk-a", "sk-b", "sk-c", "sk-d");
    let config = json!({"quota": {"tokens_per_minute": 300, "overrides": {
        key_id(b): {"tokens_per_minute": 1000},
        key_id(c): {"tokens_per_minute": null, "requests_per_minute": 2},
        key_id(d): {"requests_per_minute": 5},
    }}})
    .to_string();
    let mut gw = gateway_with_vms(&config, 2);

    let done = spend(&mut gw, costing(a, 200));
    assert_eq!(tokens(&done), level(300, 100, "40s"));
    for i in 1..=5u64 {
        let done = spend(&mut gw, costing(b, 200));
        assert_eq!(
            tokens(&done).map(|t| (t.0, t.1)),
            Some((1000, 1000 - 200 * i))
        );
    }
    let out = send(&mut gw, costing(b, 200));
    let message = rate_limited(&out, "tokens");
    assert!(
        message.starts_with(&format!(
            "Rate limit reached for key {} on tokens per min (TPM): Limit 1000, Used 1000,",
            key_id(b)
        )),
        "{message}"
    );
    let out = send(&mut gw, costing(a, 200));
    let message = rate_limited(&out, "tokens");
    assert!(
        message.contains("Limit 300, Used 200, Requested 200"),
        "b's spending is not a's: {message}"
    );

    // `null` removes the token limit; the override's request limit applies alone.
    for (remaining, reset) in [(1, "30s"), (0, "1m0s")] {
        let done = spend(&mut gw, costing(c, 1200));
        assert_eq!(tokens(&done), None);
        assert_eq!(requests(&done), level(2, remaining, reset));
    }
    let out = send(&mut gw, costing(c, 20));
    assert!(rate_limited(&out, "requests")
        .contains("requests per min (RPM): Limit 2, Used 2, Requested 1"));

    // An absent field inherits the default.
    let done = spend(&mut gw, costing(d, 200));
    assert_eq!(tokens(&done), level(300, 100, "40s"));
    assert_eq!(requests(&done), level(5, 4, "12s"));
    let out = send(&mut gw, costing(d, 200));
    rate_limited(&out, "tokens");
}

#[test]
fn quota_configuration_errors_are_refused() {
    for (config, field) in [
        (r#"{"quota": {}}"#, "quota"),
        (r#"{"quota": {"tokens_per_minute": null}}"#, "quota"),
        (
            r#"{"quota": {"tokens_per_minute": 10, "overrides": {"sk-test": {"tokens_per_minute": 5}}}}"#,
            "quota.overrides.sk-test",
        ),
        (
            r#"{"quota": {"tokens_per_minute": 10, "overrides": {"F3ABF2A6CC4F0098": {}}}}"#,
            "quota.overrides.F3ABF2A6CC4F0098",
        ),
        (
            r#"{"quota": {"tokens_per_minute": 10, "overrides": {"f3abf2a6cc4f009": {}}}}"#,
            "quota.overrides.f3abf2a6cc4f009",
        ),
    ] {
        let logs = rejected_config(config);
        assert!(
            logs.iter().any(|l| l.contains(field)),
            "{config}: no line naming {field}: {logs:?}"
        );
    }
    gateway(r#"{"quota": {"requests_per_minute": 1, "overrides": {"f3abf2a6cc4f0098": {}}}}"#);
}

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

#[test]
fn json_usage_settles_the_reservation_refunds_and_overage() {
    let mut gw = gateway_with_vms(r#"{"quota": {"tokens_per_minute": 1000}}"#, 2);
    let p = prompt(HELLO);
    assert_eq!(p, 11);

    // Default reservation; the backend used far less.
    let out = admitted(&mut gw, chat(Some("sk-alice"), HELLO, None).on_vm(0));
    let reserved = p + DEFAULT_RESERVATION;
    assert_eq!(
        forwarded_number(&out, "x-tokengate-reserved-tokens"),
        reserved
    );
    let usage = Response::ok().json(
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there!"}}],
               "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
                         "prompt_tokens_details": {"cached_tokens": 4}}})
        .to_string(),
    );
    let done = respond(&mut gw, &out, usage);
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(1000 - reserved),
        "the response's headers are as of admission"
    );
    assert_eq!(state(&done, "reserved_tokens"), Some(reserved.to_string()));
    assert_eq!(state(&done, "actual_tokens").as_deref(), Some("16"));
    assert_eq!(state(&done, "usage").as_deref(), Some("reported"));
    assert_eq!(counter(&gw, "refunded_tokens_total"), reserved - 16);
    assert_eq!(counter(&gw, "completion_tokens_total"), 5);
    assert_eq!(counter(&gw, "cached_prompt_tokens_total"), 4);
    assert_eq!(gw.histogram("tokengate.prompt_drift_tokens"), Some(vec![0]));
    assert_eq!(counter(&gw, "prompt_drift_negative_total"), 0);

    // The gateway's levels replace any the backend sent: one value each.
    let out = admitted(&mut gw, chat(Some("sk-bob"), HELLO, Some(89)).on_vm(1));
    let response = completion(11, 89)
        .header("x-ratelimit-remaining-tokens", "149990000")
        .header("x-ratelimit-limit-tokens", "150000000");
    let done = respond(&mut gw, &out, response);
    let client = done.response.as_ref().unwrap();
    assert_eq!(
        client.header_values("x-ratelimit-remaining-tokens"),
        ["900"]
    );
    assert_eq!(client.header_values("x-ratelimit-limit-tokens"), ["1000"]);

    // The refund shows in the next response, on another VM: 16 spent, 21 reserved.
    let out = admitted(&mut gw, chat(Some("sk-alice"), HELLO, Some(10)).on_vm(1));
    assert_eq!(forwarded_number(&out, "x-tokengate-reserved-tokens"), 21);
    // The backend counted 9 prompt tokens and wrote 100: 88 more than reserved are charged.
    let done = respond(&mut gw, &out, completion(9, 100));
    assert_eq!(tokens(&done).map(|t| t.1), Some(1000 - 16 - 21));
    assert_eq!(state(&done, "actual_tokens").as_deref(), Some("109"));
    assert_eq!(
        counter(&gw, "refunded_tokens_total"),
        reserved - 16,
        "an overage refunds nothing"
    );
    assert_eq!(counter(&gw, "completion_tokens_total"), 5 + 89 + 100);
    assert_eq!(
        gw.histogram("tokengate.prompt_drift_tokens"),
        Some(vec![0, 0, 2])
    );
    assert_eq!(counter(&gw, "prompt_drift_negative_total"), 1);

    // Responses API: input_tokens + output_tokens.
    let body = json!({"model": "gpt-4o", "input": HELLO, "max_output_tokens": 30}).to_string();
    let out = admitted(
        &mut gw,
        with_key(post("/v1/responses", &body), Some("sk-alice")).on_vm(0),
    );
    let input = forwarded_number(&out, "x-tokengate-prompt-tokens");
    assert_eq!(
        forwarded_number(&out, "x-tokengate-reserved-tokens"),
        input + 30
    );
    let response = Response::ok().json(
        json!({"object": "response", "output": [],
               "usage": {"input_tokens": input, "output_tokens": 3, "total_tokens": input + 3}})
        .to_string(),
    );
    let done = respond(&mut gw, &out, response);
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(1000 - 16 - 109 - (input + 30))
    );
    assert_eq!(counter(&gw, "refunded_tokens_total"), reserved - 16 + 27);

    let done = spend(&mut gw, costing("sk-alice", 100).on_vm(1));
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(1000 - 16 - 109 - (input + 3) - 100)
    );
}

/// One `data:` event of a chat completion stream.
fn event(data: Value) -> String {
    format!("data: {data}\n\n")
}

const DELTAS: [&str; 3] = ["Hello", " there,", " how can I help?"];

/// A chat completion stream: role, content deltas, finish, then (when given) the usage-only
/// chunk, then `[DONE]`. Returns the events in order.
fn stream_events(usage: Option<(u64, u64)>) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        event(
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    events.extend(
        DELTAS
            .iter()
            .map(|d| chunk(json!({"content": d}), Value::Null)),
    );
    events.push(chunk(json!({}), json!("stop")));
    if let Some((prompt_tokens, completion_tokens)) = usage {
        events.push(event(
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
            "model": "gpt-4o", "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}),
        ));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

fn sse(chunks: Vec<String>) -> Response {
    Response::ok()
        .header("content-type", "text/event-stream")
        .chunks(chunks)
}

fn streaming_chat(key: &str, stream_options: Option<Value>) -> (Request, String) {
    let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": HELLO}],
                          "stream": true, "max_tokens": 100});
    if let Some(options) = stream_options {
        body["stream_options"] = options;
    }
    let body = body.to_string();
    (with_key(post(CHAT, &body), Some(key)), body)
}

#[test]
fn a_stream_whose_client_asked_for_usage_passes_untouched_and_settles() {
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 1000}}"#);
    let (request, body) = streaming_chat("sk-alice", Some(json!({"include_usage": true})));
    let out = admitted(&mut gw, request);
    assert_eq!(
        out.forwarded_body(),
        Some(body.as_bytes()),
        "nothing to ask for"
    );
    assert_eq!(
        out.forwarded_header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(forwarded_number(&out, "x-tokengate-reserved-tokens"), 111);

    let stream: String = stream_events(Some((11, 7))).concat();
    let chunks: Vec<String> = stream
        .as_bytes()
        .chunks(37)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let done = respond(&mut gw, &out, sse(chunks));
    let client = done.response.as_ref().unwrap();
    assert_eq!(
        client.body_text(),
        stream,
        "the client asked for the usage chunk: it keeps it"
    );
    assert_eq!(state(&done, "actual_tokens").as_deref(), Some("18"));
    assert_eq!(state(&done, "usage").as_deref(), Some("reported"));
    assert_eq!(counter(&gw, "refunded_tokens_total"), 111 - 18);
    assert_eq!(counter(&gw, "usage_missing_total"), 0);
    let done = spend(&mut gw, costing("sk-alice", 100));
    assert_eq!(tokens(&done).map(|t| t.1), Some(1000 - 18 - 100));

    // The responses API always reports usage at the end of a stream: nothing to ask or hide.
    let body = json!({"model": "gpt-4o", "input": HELLO, "stream": true, "max_output_tokens": 50})
        .to_string();
    let out = admitted(
        &mut gw,
        with_key(post("/v1/responses", &body), Some("sk-bob")),
    );
    assert_eq!(out.forwarded_body(), Some(body.as_bytes()));
    let input = forwarded_number(&out, "x-tokengate-prompt-tokens");
    let stream = [
        event(json!({"type": "response.created", "response": {"status": "in_progress"}})),
        event(json!({"type": "response.output_text.delta", "delta": "Hi"})),
        event(
            json!({"type": "response.completed", "response": {"status": "completed",
            "usage": {"input_tokens": input, "output_tokens": 4, "total_tokens": input + 4}}}),
        ),
    ]
    .concat();
    let done = respond(
        &mut gw,
        &out,
        sse(vec![stream[..60].to_string(), stream[60..].to_string()]),
    );
    assert_eq!(done.response.as_ref().unwrap().body_text(), stream);
    assert_eq!(state(&done, "actual_tokens"), Some((input + 4).to_string()));
    assert_eq!(state(&done, "usage").as_deref(), Some("reported"));
}

#[test]
fn a_stream_gets_usage_asked_for_and_the_usage_chunk_hidden_from_the_client() {
    let mut gw = gateway_with_vms(r#"{"quota": {"tokens_per_minute": 1000}}"#, 2);
    let (request, body) = streaming_chat("sk-alice", None);
    let out = admitted(&mut gw, request);
    let forwarded = out.forwarded_body().unwrap();
    assert_eq!(
        out.forwarded_header("content-length"),
        Some(forwarded.len().to_string().as_str()),
        "content-length follows the rewritten body"
    );
    let text = std::str::from_utf8(forwarded).unwrap();
    assert!(
        text.contains(r#""stream_options":{"include_usage":true}"#),
        "{text}"
    );
    let mut expected: Value = serde_json::from_str(&body).unwrap();
    expected["stream_options"] = json!({"include_usage": true});
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), expected);

    // The usage event is cut three ways across chunks; every other byte must come through as is.
    let events = stream_events(Some((11, 9)));
    let usage_event = &events[5];
    assert!(usage_event.contains(r#""choices":[]"#) && usage_event.ends_with("}\n\n"));
    let (u1, rest) = usage_event.split_at(10);
    // The last cut falls between the two newlines that end the event.
    let (u2, u3) = rest.split_at(rest.len() - 1);
    let chunks = vec![
        events[..2].concat(),
        events[2..4].concat() + &events[4][..20],
        events[4][20..].to_string() + u1,
        u2.to_string(),
        u3.to_string() + &events[6],
    ];
    assert_eq!(chunks.concat(), events.concat());
    let done = respond(&mut gw, &out, sse(chunks));
    let client = done.response.as_ref().unwrap();
    let without_usage: String = events
        .iter()
        .filter(|e| *e != usage_event)
        .map(String::as_str)
        .collect();
    assert_eq!(client.body_text(), without_usage);
    if let Some(length) = client.header("content-length") {
        assert_eq!(
            length,
            client.body.len().to_string(),
            "a content-length must match the body"
        );
    }
    assert_eq!(state(&done, "usage").as_deref(), Some("reported"));
    assert_eq!(state(&done, "actual_tokens").as_deref(), Some("20"));
    assert_eq!(counter(&gw, "completion_tokens_total"), 9);
    let done = spend(&mut gw, costing("sk-alice", 100));
    assert_eq!(tokens(&done).map(|t| t.1), Some(1000 - 20 - 100));

    // A stream the backend sent with a content-length: the client must not get a stale one.
    let (request, _) = streaming_chat("sk-carol", None);
    let out = admitted(&mut gw, request);
    let response = Response::ok()
        .header("content-type", "text/event-stream")
        .body(events.concat())
        .in_chunks(40);
    assert!(response
        .headers()
        .iter()
        .any(|(k, _)| k == "content-length"));
    let done = respond(&mut gw, &out, response);
    let client = done.response.as_ref().unwrap();
    assert_eq!(client.body_text(), without_usage);
    if let Some(length) = client.header("content-length") {
        assert_eq!(
            length,
            client.body.len().to_string(),
            "a content-length must match the body"
        );
    }

    // The legacy completions API streams the same way; a request body in pieces is no different.
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": HELLO, "stream": true, "max_tokens": 20}).to_string();
    let chunks: Vec<Vec<u8>> = body.as_bytes().chunks(16).map(<[u8]>::to_vec).collect();
    let request = Request::post("/v1/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-dave")
        .chunks(chunks);
    let out = admitted(&mut gw, request);
    let forwarded = out.forwarded_body().unwrap();
    let mut expected: Value = serde_json::from_str(&body).unwrap();
    expected["stream_options"] = json!({"include_usage": true});
    assert_eq!(
        serde_json::from_slice::<Value>(forwarded).unwrap(),
        expected
    );
    // Sent in pieces without a content-length: none is invented for the rewritten body.
    assert_eq!(out.forwarded_header("content-length"), None);

    // stream_options present without include_usage (or set false): asked for all the same.
    for options in [json!({}), json!({"include_usage": false})] {
        let (request, body) = streaming_chat("sk-bob", Some(options.clone()));
        let out = admitted(&mut gw, request);
        let forwarded = out.forwarded_body().unwrap();
        assert_eq!(
            out.forwarded_header("content-length"),
            Some(forwarded.len().to_string().as_str()),
            "{options}"
        );
        let mut expected: Value = serde_json::from_str(&body).unwrap();
        expected["stream_options"]["include_usage"] = json!(true);
        assert_eq!(
            serde_json::from_slice::<Value>(forwarded).unwrap(),
            expected
        );
        let done = respond(&mut gw, &out, sse(vec![events.concat()]));
        assert_eq!(
            done.response.as_ref().unwrap().body_text(),
            without_usage,
            "{options}"
        );
    }
}

#[test]
fn a_stream_without_usage_is_charged_the_counted_estimate() {
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 1000}}"#);
    let (request, _) = streaming_chat("sk-alice", None);
    let out = admitted(&mut gw, request);
    let events = stream_events(None);
    let stream = events.concat();
    let chunks: Vec<String> = stream
        .as_bytes()
        .chunks(50)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let done = respond(&mut gw, &out, sse(chunks));
    assert_eq!(
        done.response.as_ref().unwrap().body_text(),
        stream,
        "nothing to hide"
    );
    let output: u64 = DELTAS.iter().map(|d| o200k(d)).sum();
    let actual = prompt(HELLO) + output;
    assert_eq!(state(&done, "usage").as_deref(), Some("estimated"));
    assert_eq!(state(&done, "actual_tokens"), Some(actual.to_string()));
    assert_eq!(counter(&gw, "usage_missing_total"), 1);
    assert_eq!(counter(&gw, "completion_tokens_total"), output);
    assert_eq!(counter(&gw, "refunded_tokens_total"), 111 - actual);
    let done = spend(&mut gw, costing("sk-alice", 100));
    assert_eq!(tokens(&done).map(|t| t.1), Some(1000 - actual - 100));
}

#[test]
fn a_failed_or_missing_response_refunds_the_whole_reservation() {
    let mut gw = gateway_with_vms(r#"{"quota": {"tokens_per_minute": 1000}}"#, 2);
    let error = r#"{"error":{"message":"upstream overloaded","type":"server_error"}}"#;
    let failures = [
        Response::new(500).json(error),
        Response::new(503)
            .header("content-type", "text/event-stream")
            .chunks(["data: {\"error\":{}}\n\n"]),
        Response::new(429).json(error),
    ];
    let mut refunded = 0;
    for (i, failure) in failures.into_iter().enumerate() {
        let out = admitted(&mut gw, costing("sk-alice", 300).on_vm(i % 2));
        let done = respond(&mut gw, &out, failure);
        assert_eq!(
            tokens(&done).map(|t| t.1),
            Some(700),
            "response {i}: as of admission"
        );
        refunded += 300;
        assert_eq!(
            counter(&gw, "refunded_tokens_total"),
            refunded,
            "response {i}"
        );
    }
    // The client goes away before any response.
    let out = admitted(&mut gw, costing("sk-alice", 300));
    gw.finish(out.stream).unwrap();
    assert_eq!(counter(&gw, "refunded_tokens_total"), 1200);
    assert_eq!(
        counter(&gw, "usage_missing_total"),
        0,
        "a failure is not missing usage"
    );
    let done = spend(&mut gw, costing("sk-alice", 1000));
    assert_eq!(
        tokens(&done),
        level(1000, 0, "1m0s"),
        "everything came back"
    );
}

#[test]
fn a_flood_of_keys_never_tracks_more_than_max_tracked_keys() {
    let mut gw = gateway_with_vms(
        r#"{"quota": {"tokens_per_minute": 1000, "max_tracked_keys": 50}}"#,
        4,
    );
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}).to_string();
    let quota_entries = |gw: &Gateway| -> Vec<String> {
        gw.shared_data_keys()
            .into_iter()
            .filter(|k| k.starts_with("tokengate.quota"))
            .collect()
    };
    for i in 0..2000 {
        let request = with_key(post(CHAT, &body), Some(&format!("sk-flood-{i}")));
        let out = gw.exchange(request, completion(8, 2)).unwrap();
        assert_eq!(
            out.decision,
            Decision::Forwarded,
            "request {i}: every new key starts full"
        );
        if i % 500 == 499 {
            assert!(
                quota_entries(&gw).len() <= 50,
                "after {i} keys: {:?}",
                quota_entries(&gw)
            );
        }
    }
    let entries = quota_entries(&gw);
    assert!(
        !entries.is_empty() && entries.len() <= 50,
        "{} entries: {entries:?}",
        entries.len()
    );
    for entry in &entries {
        let slot: u64 = entry
            .strip_prefix("tokengate.quota.")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected entry {entry}"));
        assert!(slot < 50, "{entry}");
    }
    let evictions = counter(&gw, "quota_evictions_total");
    assert!(
        (2000 - 50..2000).contains(&evictions),
        "every busy slot taken over is counted: {evictions}"
    );
    assert_eq!(counter(&gw, "quota_errors_total"), 0);
}

#[test]
fn an_idle_slot_is_reused_and_a_busy_one_evicted_closest_to_full_first() {
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 1000, "max_tracked_keys": 1}}"#);
    spend(&mut gw, costing("sk-a", 100));
    assert_eq!(gw.shared_data_keys(), ["tokengate.quota.0"]);
    // A minute later a's bucket is full: its slot holds nothing worth keeping.
    gw.advance(Duration::from_secs(60)).unwrap();
    spend(&mut gw, costing("sk-b", 100));
    assert_eq!(counter(&gw, "quota_evictions_total"), 0);
    // b's bucket is busy: c takes its slot, and b starts over.
    spend(&mut gw, costing("sk-c", 100));
    assert_eq!(counter(&gw, "quota_evictions_total"), 1);
    let done = spend(&mut gw, costing("sk-b", 100));
    assert_eq!(tokens(&done).map(|t| t.1), Some(900), "b was forgotten");
    assert_eq!(gw.shared_data_keys(), ["tokengate.quota.0"]);

    // With two slots, both busy, the bucket closest to full goes.
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 1000, "max_tracked_keys": 2}}"#);
    spend(&mut gw, costing("sk-a", 500));
    spend(&mut gw, costing("sk-b", 100));
    spend(&mut gw, costing("sk-c", 100));
    assert_eq!(counter(&gw, "quota_evictions_total"), 1);
    let done = spend(&mut gw, costing("sk-a", 100));
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(400),
        "a, the busier, was kept"
    );
    let done = spend(&mut gw, costing("sk-b", 100));
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(900),
        "b, closest to full, was evicted"
    );
    assert_eq!(counter(&gw, "quota_evictions_total"), 2);
    assert_eq!(gw.shared_data_keys().len(), 2);
}

/// A tiny deterministic generator (xorshift), so the interleaving is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[test]
fn concurrent_reservations_across_vms_never_admit_more_than_is_left() {
    const VMS: usize = 4;
    const Q: u64 = 1000;
    let mut gw = gateway_with_vms(r#"{"quota": {"tokens_per_minute": 1000}}"#, VMS);
    let p = prompt(HELLO);
    // The model: tokens in use in the key's bucket (1000 a minute: one token refills per 60 ms).
    let mut in_use = 0u64;
    // Requests admitted and not answered yet: (outcome, reserved, remaining as of admission).
    let mut in_flight: Vec<(Outcome, u64, u64)> = Vec::new();

    // Many requests in flight at once, spread over the VMs, before any response.
    let mut admitted_cost = 0;
    for i in 0..40 {
        let cost = p + 40 + (i as u64 * 37) % 90;
        let out = send(&mut gw, costing("sk-shared", cost).on_vm(i % VMS));
        if out.decision == Decision::Forwarded {
            assert!(
                in_use + cost <= Q,
                "request {i}: admitted {cost} with {in_use} in use"
            );
            in_use += cost;
            admitted_cost += cost;
            in_flight.push((out, cost, Q - in_use));
        } else {
            rate_limited(&out, "tokens");
            assert!(
                in_use + cost > Q,
                "request {i}: refused {cost} with {in_use} in use"
            );
        }
    }
    assert!(admitted_cost <= Q, "{admitted_cost} admitted in flight");
    assert!(in_flight.len() >= 7 && in_flight.len() < 40);
    let vms: std::collections::BTreeSet<usize> =
        in_flight.iter().map(|(o, ..)| o.stream.vm).collect();
    assert_eq!(vms.len(), VMS, "admitted on every VM");

    // Then a random mix, the same every run: new requests on any VM, responses in any order
    // (refunds, exact usage, overage), and the clock moving on now and then.
    let mut rng = Rng(0x5eed_1234_abcd);
    let (mut admissions, mut refusals) = (0, 0);
    for step in 0..400 {
        match rng.next(10) {
            0 => {
                let ticks = rng.next(300);
                gw.advance(Duration::from_millis(60 * ticks)).unwrap();
                in_use = in_use.saturating_sub(ticks);
            }
            1..=5 => {
                let cost = p + 1 + rng.next(150);
                let vm = rng.next(VMS as u64) as usize;
                let out = send(&mut gw, costing("sk-shared", cost).on_vm(vm));
                if out.decision == Decision::Forwarded {
                    assert!(
                        in_use + cost <= Q,
                        "step {step}: admitted {cost} with {in_use} in use"
                    );
                    in_use += cost;
                    in_flight.push((out, cost, Q - in_use));
                    admissions += 1;
                } else {
                    rate_limited(&out, "tokens");
                    assert!(
                        in_use + cost > Q,
                        "step {step}: refused {cost} with {in_use} in use"
                    );
                    refusals += 1;
                }
            }
            _ if in_flight.is_empty() => {}
            _ => {
                let (out, cost, remaining) =
                    in_flight.swap_remove(rng.next(in_flight.len() as u64) as usize);
                let actual = match rng.next(4) {
                    0 => cost,
                    1 => cost + rng.next(60),
                    _ => p + rng.next(cost - p),
                };
                let done = respond(&mut gw, &out, completion(p, actual - p));
                assert_eq!(tokens(&done).map(|t| t.1), Some(remaining), "step {step}");
                if actual < cost {
                    in_use = in_use.saturating_sub(cost - actual);
                } else {
                    in_use += actual - cost;
                }
            }
        }
    }
    assert!(
        admissions > 20 && refusals > 20,
        "{admissions} admitted, {refusals} refused"
    );
    assert_eq!(counter(&gw, "quota_errors_total"), 0);
}
