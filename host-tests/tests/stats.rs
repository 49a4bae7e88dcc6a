//! Stats after a sequence of requests, with the names Envoy exports (`tokengate.x` → `tokengate_x`).

use host_tests::Request;

use crate::support::{fixture, gateway, post, send, CHAT};

const CODES: [&str; 5] = [
    "context_length_exceeded",
    "invalid_value",
    "request_too_large",
    "invalid_json",
    "missing_api_key",
];

#[test]
fn every_stat_is_defined_at_configure_time() {
    let gw = gateway("{}");
    for name in [
        "tokengate.requests_total",
        "tokengate.allowed_total",
        "tokengate.passthrough_total",
        "tokengate.prompt_tokens_total",
    ] {
        assert_eq!(gw.counter(name), Some(0), "{name}");
    }
    for code in CODES {
        assert_eq!(
            gw.counter(&format!("tokengate.rejected_{code}_total")),
            Some(0),
            "{code}"
        );
    }
    assert_eq!(gw.histogram("tokengate.prompt_tokens"), Some(vec![]));
    assert_eq!(gw.histogram("tokengate.tokenize_us"), Some(vec![]));
}

#[test]
fn stats_after_a_sequence_of_requests() {
    let mut gw =
        gateway(r#"{"max_prompt_tokens": 15, "max_output_tokens": 10, "max_body_bytes": 1000}"#);
    send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    send(
        &mut gw,
        post("/v1/embeddings", &fixture("embeddings_hello.json")),
    );
    send(&mut gw, post(CHAT, &fixture("chat_system_user.json"))); // 21 > 15
    send(&mut gw, post(CHAT, "{oops"));
    send(
        &mut gw,
        post(CHAT, r#"{"model":"gpt-4o","messages":[],"max_tokens":11}"#),
    );
    send(&mut gw, post(CHAT, &"x".repeat(2000)));
    send(&mut gw, Request::get("/v1/models"));
    send(&mut gw, post(CHAT, r#"{"unrelated":true}"#));

    let expected = [
        ("tokengate.requests_total", 8),
        ("tokengate.allowed_total", 2),
        ("tokengate.passthrough_total", 2),
        ("tokengate.prompt_tokens_total", 15),
        ("tokengate.rejected_context_length_exceeded_total", 1),
        ("tokengate.rejected_invalid_json_total", 1),
        ("tokengate.rejected_invalid_value_total", 1),
        ("tokengate.rejected_request_too_large_total", 1),
        ("tokengate.rejected_missing_api_key_total", 0),
    ];
    for (name, value) in expected {
        assert_eq!(
            gw.counter(name),
            Some(value),
            "{name}; all: {:#?}",
            gw.metrics()
        );
    }
    assert_eq!(gw.histogram("tokengate.prompt_tokens"), Some(vec![11, 4]));
    let tokenize = gw.histogram("tokengate.tokenize_us").unwrap();
    assert_eq!(
        tokenize.len(),
        3,
        "counted bodies: two allowed, one over the limit: {tokenize:?}"
    );
    assert!(
        tokenize.iter().all(|us| *us == 0),
        "the harness clock is frozen: {tokenize:?}"
    );
}

#[test]
fn the_response_path_moves_only_the_responses_stats() {
    let mut gw = gateway("{}");
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    let before = gw.metrics();
    gw.response(
        &out,
        host_tests::Response::ok().json(r#"{"usage":{"prompt_tokens":11,"completion_tokens":3}}"#),
    )
    .unwrap();
    let after = gw.metrics();
    let moved: Vec<&str> = after
        .iter()
        .filter(|(name, value)| before.get(*name) != Some(*value))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        moved,
        [
            "tokengate.backend_prompt_tokens_total.model.gpt-4o*",
            "tokengate.completion_tokens.model.gpt-4o*",
            "tokengate.completion_tokens_total.model.gpt-4o*",
            "tokengate.prompt_drift_tokens.model.gpt-4o*",
        ]
    );
}

#[test]
fn per_model_series_are_named_for_envoys_tag_extraction() {
    let gw = gateway(r#"{"models": [{"match": "meta-llama/Llama-3.1-8B*", "encoding": "cl100k_base"}]}"#);
    let names: Vec<String> = gw.metrics().into_keys().collect();
    for name in &names {
        let per_proxy = [
            "tokengate.requests_total",
            "tokengate.passthrough_total",
            "tokengate.quota_evictions_total",
            "tokengate.quota_errors_total",
            "tokengate.rls_failures_total",
            "tokengate.rls_timeouts_total",
            "tokengate.rls_round_trip_us",
        ];
        if per_proxy.contains(&name.as_str()) {
            continue;
        }
        let (metric, label) = name.split_once(".model.").unwrap_or_else(|| panic!("{name} has no model label"));
        assert!(metric.starts_with("tokengate.") && !metric["tokengate.".len()..].contains('.'), "{name}");
        assert!(["other", "meta-llama/Llama-3.1-8B*"].contains(&label), "{name}");
    }
}
