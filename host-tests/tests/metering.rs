//! The meter through the real filter: every admitted request's usage read (JSON and SSE) with or
//! without quotas, one series per model rule whatever names clients send, drift warnings, cost
//! weights and input/output limits.

use std::time::Duration;

use host_tests::{Decision, Gateway, MetricValue, Outcome, Request, Response};
use serde_json::{json, Value};

use crate::support::{chat_body, gateway, post, rejection, send, CHAT};

const HELLO_TOKENS: u64 = 11;

fn hello(model: &str) -> Request {
    post(CHAT, &chat_body(model, &[("user", "Hello, world!")])).header("authorization", "Bearer sk-meter")
}

fn streaming(model: &str, include_usage: bool) -> Request {
    let mut body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "Hello, world!"}]});
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    post(CHAT, &body.to_string())
}

fn usage_json(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Response {
    Response::ok().json(
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                         "prompt_tokens_details": {"cached_tokens": cached},
                         "completion_tokens_details": {"reasoning_tokens": reasoning}}})
        .to_string(),
    )
}

/// An SSE chat stream saying "Hello there", with the usage-only chunk when given.
fn stream(usage: Option<(u64, u64)>) -> Response {
    let mut events = vec![
        format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": "Hello"}}]})),
        format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": " there"}}]})),
    ];
    if let Some((p, c)) = usage {
        events.push(format!("data: {}\n\n", json!({"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c}})));
    }
    events.push("data: [DONE]\n\n".to_owned());
    Response::ok().header("content-type", "text/event-stream").chunks(events)
}

fn exchange(gw: &mut Gateway, request: Request, response: Response) -> Outcome {
    let out = gw.exchange(request, response).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.finished, "{out:#?}");
    out
}

fn field(out: &Outcome, name: &str) -> Option<String> {
    out.filter_state_str(&format!("wasm.tokengate.{name}"))
}

/// A per-model counter's series for `label`.
fn series(gw: &Gateway, metric: &str, label: &str) -> Option<u64> {
    match gw.series(&format!("tokengate.{metric}")).get(label)? {
        MetricValue::Counter(v) => Some(*v),
        other => panic!("{metric} is not a counter: {other:?}"),
    }
}

/// What the client received of a response body.
fn client_body(out: &Outcome) -> String {
    out.response.as_ref().map(|r| r.body_text()).unwrap_or_default()
}

#[test]
fn json_responses_are_metered_without_a_quota() {
    let mut gw = gateway("{}");
    let out = exchange(&mut gw, hello("gpt-4o"), usage_json(12, 7, 4, 5));
    for (name, value) in [
        ("prompt_tokens", "11"),
        ("backend_prompt_tokens", "12"),
        ("completion_tokens", "7"),
        ("cached_tokens", "4"),
        ("drift", "1"),
        ("usage", "reported"),
    ] {
        assert_eq!(field(&out, name).as_deref(), Some(value), "{name}");
    }
    assert_eq!(field(&out, "actual_tokens"), None, "no quota, nothing charged");
    for (metric, value) in [
        ("prompt_tokens_total", HELLO_TOKENS),
        ("backend_prompt_tokens_total", 12),
        ("completion_tokens_total", 7),
        ("cached_prompt_tokens_total", 4),
        ("reasoning_tokens_total", 5),
        ("allowed_total", 1),
    ] {
        assert_eq!(series(&gw, metric, "gpt-4o*"), Some(value), "{metric}");
    }
    assert_eq!(gw.histogram("tokengate.completion_tokens"), Some(vec![7]));
    assert_eq!(gw.histogram("tokengate.prompt_drift_tokens"), Some(vec![1]));
    assert_eq!(gw.counter("tokengate.usage_missing_total"), Some(0));
}

#[test]
fn streams_are_metered_whether_or_not_the_client_asked_for_usage() {
    let mut gw = gateway("{}");
    // The client asked: the stream passes untouched.
    let asked = exchange(&mut gw, streaming("gpt-4o", true), stream(Some((11, 2))));
    assert!(client_body(&asked).contains("\"usage\""));
    assert_eq!(field(&asked, "usage").as_deref(), Some("reported"));
    // It did not: asked for on its behalf, and the usage chunk hidden from it.
    let injected = exchange(&mut gw, streaming("gpt-4o", false), stream(Some((11, 2))));
    let forwarded: Value = serde_json::from_slice(injected.forwarded_body().unwrap()).unwrap();
    assert_eq!(forwarded["stream_options"]["include_usage"], true);
    assert!(!client_body(&injected).contains("usage"), "{}", client_body(&injected));
    assert_eq!((field(&injected, "usage").as_deref(), field(&injected, "completion_tokens").as_deref()), (Some("reported"), Some("2")));
    // The backend never sends usage: the output is counted from the deltas.
    let missing = exchange(&mut gw, streaming("gpt-4o", false), stream(None));
    assert_eq!((field(&missing, "usage").as_deref(), field(&missing, "completion_tokens").as_deref()), (Some("estimated"), Some("2")));
    assert_eq!(field(&missing, "backend_prompt_tokens"), None);
    assert_eq!(series(&gw, "completion_tokens_total", "gpt-4o*"), Some(6));
    assert_eq!(series(&gw, "usage_missing_total", "gpt-4o*"), Some(1));
    assert_eq!(series(&gw, "backend_prompt_tokens_total", "gpt-4o*"), Some(22));
}

#[test]
fn stream_usage_off_leaves_streams_untouched_and_labels_the_output_estimated() {
    let mut gw = gateway(r#"{"metering": {"stream_usage": false}}"#);
    let request = streaming("gpt-4o", false);
    let sent = request.body_chunks().concat();
    let out = exchange(&mut gw, request, stream(None));
    assert_eq!(out.forwarded_body(), Some(sent.as_slice()));
    assert_eq!((field(&out, "usage").as_deref(), field(&out, "completion_tokens").as_deref()), (Some("estimated"), Some("2")));
}

#[test]
fn series_exist_only_for_configured_rules_whatever_model_names_clients_send() {
    let mut gw = gateway(r#"{"models": [{"match": "llama-3*", "label": "llama", "encoding": "cl100k_base"}, {"match": "qwen-max", "max_prompt_tokens": 5}]}"#);
    let before: Vec<String> = gw.metrics().into_keys().collect();
    // `other` and the operator's two rules are defined at configure time.
    for label in ["other", "llama", "qwen-max"] {
        assert_eq!(series(&gw, "allowed_total", label), Some(0), "{label}");
    }
    for i in 0..1000 {
        let model = match i % 4 {
            0 => format!("llama-3-finetune-{i}"),
            1 => "qwen-max".to_owned(),
            _ => format!("client-invented-model-{i}"),
        };
        let out = exchange(&mut gw, hello(&model), usage_json(11, 1, 0, 0));
        assert_eq!(out.decision, if i % 4 == 1 { Decision::LocalReply } else { Decision::Forwarded }, "{model}");
    }
    let after: Vec<String> = gw.metrics().into_keys().collect();
    assert_eq!(after, before, "1,000 model names, no new series");
    assert_eq!(series(&gw, "allowed_total", "llama"), Some(250));
    assert_eq!(series(&gw, "allowed_total", "other"), Some(500));
    assert_eq!(series(&gw, "rejected_context_length_exceeded_total", "qwen-max"), Some(250));
    assert_eq!(series(&gw, "dropped_tokens_total", "qwen-max"), Some(250 * HELLO_TOKENS));
    let labels: Vec<String> = gw.series("tokengate.allowed_total").into_keys().collect();
    assert_eq!(labels, ["llama", "other", "qwen-max"]);
    // A built-in rule's series appears the first time it is used, once.
    exchange(&mut gw, hello("gpt-4o-mini"), usage_json(11, 1, 0, 0));
    let labels: Vec<String> = gw.series("tokengate.allowed_total").into_keys().collect();
    assert_eq!(labels, ["gpt-4o*", "llama", "other", "qwen-max"]);
}

#[test]
fn drift_over_the_ratio_counts_per_rule_and_logs_once_a_minute() {
    let mut gw = gateway(r#"{"models": [{"match": "gpt-4o", "label": "four-o"}], "metering": {"drift_warn_ratio": 0.05}}"#);
    let drift_lines = |gw: &Gateway| gw.logs().iter().filter(|l| l.message.contains("prompt count drift")).count();
    exchange(&mut gw, hello("gpt-4o"), usage_json(11, 1, 0, 0));
    assert_eq!((series(&gw, "prompt_drift_warnings_total", "four-o"), drift_lines(&gw)), (Some(0), 0));
    for _ in 0..3 {
        exchange(&mut gw, hello("gpt-4o"), usage_json(20, 1, 0, 0));
    }
    assert_eq!(series(&gw, "prompt_drift_warnings_total", "four-o"), Some(3));
    assert_eq!(drift_lines(&gw), 1, "{}", gw.logs_text());
    assert!(gw.logs_text().contains("model rule `four-o`: the backend counted 20 prompt tokens, tokengate 11 (+81.81%"), "{}", gw.logs_text());
    gw.advance(Duration::from_secs(61)).unwrap();
    exchange(&mut gw, hello("gpt-4o"), usage_json(20, 1, 0, 0));
    assert_eq!(drift_lines(&gw), 2);
    assert!(gw.logs_text().contains("2 more drifting responses since the last line"), "{}", gw.logs_text());
}

#[test]
fn cost_weights_charge_cached_and_output_tokens_at_their_rates() {
    let config = r#"{"quota": {"tokens_per_minute": 1000, "default_output_reservation": 10},
        "models": [{"match": "gpt-4o", "label": "four-o", "cost": {"input": 2, "cached_input": 0.5, "output": 4}}]}"#;
    let mut gw = gateway(config);
    let out = send(&mut gw, hello("gpt-4o"));
    assert_eq!(out.forwarded_header("x-tokengate-reserved-tokens"), Some("62"), "11 × 2 + 10 × 4");
    // 12 prompt tokens, 4 cached, 5 out: 8 × 2 + 4 × 0.5 + 5 × 4 = 38.
    let done = gw.response(&out, usage_json(12, 5, 4, 0)).unwrap();
    assert_eq!(field(&done, "actual_tokens").as_deref(), Some("38"));
    let next = exchange(&mut gw, hello("gpt-4o"), usage_json(11, 0, 0, 0));
    let client = next.response.as_ref().unwrap();
    assert_eq!(client.header("x-ratelimit-remaining-tokens"), Some("900"), "1000 - 38 - the next reservation of 62");
    // Another model at the default weights pays one token per token.
    let other = send(&mut gw, hello("gpt-4o-mini"));
    assert_eq!(other.forwarded_header("x-tokengate-reserved-tokens"), Some("21"));
}

#[test]
fn input_and_output_limits_refuse_on_their_own_bucket_with_openai_shaped_errors() {
    let mut gw = gateway(r#"{"quota": {"input_tokens_per_minute": 20, "output_tokens_per_minute": 30, "default_output_reservation": 10}}"#);
    let first = exchange(&mut gw, hello("gpt-4o"), usage_json(11, 10, 0, 0));
    let client = first.response.as_ref().unwrap();
    assert_eq!(client.header("x-ratelimit-remaining-input-tokens"), Some("9"));
    assert_eq!(client.header("x-ratelimit-remaining-output-tokens"), Some("20"));
    assert_eq!(client.header("x-ratelimit-limit-tokens"), None);
    let refused = send(&mut gw, hello("gpt-4o"));
    let error = rejection(&refused, 429);
    assert_eq!((error["code"].as_str(), error["type"].as_str()), (Some("rate_limit_exceeded"), Some("tokens")));
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("on input tokens per min (ITPM): Limit 20, Used 11, Requested 11. Please try again in"), "{message}");
    let reply = refused.local_reply.as_ref().unwrap();
    assert!(reply.header("retry-after-ms").is_some());
    assert_eq!(reply.header("x-ratelimit-remaining-input-tokens"), Some("9"));
    // Output: asking for more than the 20 left, with input to spare (another key).
    let asks = post(CHAT, &json!({"model": "gpt-4o", "max_tokens": 31, "messages": [{"role": "user", "content": "Hi"}]}).to_string())
        .header("authorization", "Bearer sk-other");
    let error = rejection(&send(&mut gw, asks), 429);
    assert!(error["message"].as_str().unwrap().contains("output tokens per min (OTPM): Limit 30, Requested 31. It can never fit"), "{error}");
}
