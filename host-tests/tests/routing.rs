//! Size classes for routing: the class header from prompt plus requested output, and the
//! `clear_route_cache` foreign call that makes Envoy match routes again.

use host_tests::{Decision, Request, Response};

use crate::support::{chat_body, fixture, gateway, gateway_with_vms, post, send, CHAT};

const CLASSES: &str = r#"{"routing": {"clear_route_cache": true,
    "classes": [{"name": "small", "max_tokens": 20}, {"name": "large", "max_tokens": 1000}]}}"#;

fn with_output(max_tokens: u64) -> String {
    format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"Hello, world!"}}],"max_tokens":{max_tokens}}}"#
    )
}

#[test]
fn the_class_covers_prompt_and_requested_output() {
    let mut gw = gateway(CLASSES);
    let out = send(
        &mut gw,
        post(CHAT, &fixture("chat_hello_gpt4o.json")).header("x-tokengate-class", "large"),
    );
    assert_eq!(
        out.forwarded_header("x-tokengate-class"),
        Some("small"),
        "11 tokens; the client's value is dropped"
    );
    let out = send(&mut gw, post(CHAT, &with_output(9)));
    assert_eq!(
        out.forwarded_header("x-tokengate-class"),
        Some("small"),
        "11 + 9 = 20 fits"
    );
    let out = send(&mut gw, post(CHAT, &with_output(10)));
    assert_eq!(out.forwarded_header("x-tokengate-class"), Some("large"));
    let out = send(&mut gw, post(CHAT, &with_output(5000)));
    assert_eq!(
        out.forwarded_header("x-tokengate-class"),
        None,
        "above every class"
    );
}

#[test]
fn the_route_cache_is_cleared_after_annotating() {
    let mut gw = gateway(CLASSES);
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    let names: Vec<&str> = out.foreign_calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["clear_route_cache"]);

    let mut gw = gateway(r#"{"routing": {"classes": [{"name": "small", "max_tokens": 20}]}}"#);
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    assert!(out.foreign_calls.is_empty(), "only when configured");
    let mut gw = gateway("{}");
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    assert_eq!(out.forwarded_header("x-tokengate-class"), None);
}

/// Every `x-tokengate-*` request header, in order.
fn own_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-tokengate-"))
        .cloned()
        .collect()
}

#[test]
fn the_route_cache_is_cleared_once_per_admitted_request_after_every_own_header() {
    let config = r#"{"quota": {"tokens_per_minute": 100000},
        "routing": {"clear_route_cache": true,
                    "classes": [{"name": "small", "max_tokens": 20}, {"name": "large", "max_tokens": 1000}]}}"#;
    let mut gw = gateway_with_vms(config, 3);
    for vm in 0..3 {
        let out = send(
            &mut gw,
            post(CHAT, &with_output(9))
                .header("authorization", "Bearer sk-test")
                .on_vm(vm),
        );
        assert_eq!(out.decision, Decision::Forwarded);
        let names: Vec<&str> = out.foreign_calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["clear_route_cache"], "vm {vm}");
        let call = &out.foreign_calls[0];
        assert!(call.known && call.args.is_empty());
        let forwarded = own_headers(&out.forwarded.as_ref().unwrap().headers);
        assert_eq!(
            own_headers(&call.request_headers),
            forwarded,
            "every x-tokengate-* header was set before the route cache was cleared"
        );
        for name in [
            "x-tokengate-prompt-tokens",
            "x-tokengate-class",
            "x-tokengate-key-id",
            "x-tokengate-reserved-tokens",
        ] {
            assert!(
                forwarded.iter().any(|(k, _)| k == name),
                "{name} missing: {forwarded:?}"
            );
        }
        let done = gw
            .response(
                &out,
                Response::ok().json(r#"{"usage":{"prompt_tokens":11,"completion_tokens":9}}"#),
            )
            .unwrap();
        assert_eq!(done.foreign_calls.len(), 1, "not again on the response");
    }
}

#[test]
fn the_route_cache_is_left_alone_for_refused_and_uncounted_requests() {
    let config = r#"{"max_prompt_tokens": 15, "max_body_bytes": 500,
        "quota": {"tokens_per_minute": 300},
        "routing": {"clear_route_cache": true, "classes": [{"name": "small", "max_tokens": 1000}]}}"#;
    let mut gw = gateway(config);
    let key = |r: Request| r.header("authorization", "Bearer sk-test");
    let big = chat_body("gpt-4o", &[("user", &"x".repeat(600))]);
    let cases = [
        (
            "too long",
            key(post(CHAT, &fixture("chat_system_user.json"))),
        ),
        ("invalid json", key(post(CHAT, "{oops"))),
        ("too large", key(post(CHAT, &big))),
        ("never fits the quota", key(post(CHAT, &with_output(500)))),
        ("passthrough: no body", key(Request::get("/v1/models"))),
        (
            "passthrough: unknown JSON",
            key(post(CHAT, r#"{"purpose":"batch"}"#)),
        ),
        (
            "passthrough: upload",
            key(Request::post("/v1/files")
                .header("content-type", "multipart/form-data; boundary=x")
                .body("--x--")),
        ),
    ];
    for (what, request) in cases {
        let out = send(&mut gw, request);
        assert!(
            out.foreign_calls.is_empty(),
            "{what}: {:?}",
            out.foreign_calls
        );
        assert_eq!(out.forwarded_header("x-tokengate-class"), None, "{what}");
    }
    // Rate limited: 11 + 189 = 200 of 300 fits once.
    let out = send(&mut gw, key(post(CHAT, &with_output(189))));
    assert_eq!(out.foreign_calls.len(), 1);
    let out = send(&mut gw, key(post(CHAT, &with_output(189))));
    assert_eq!(out.local_status(), Some(429));
    assert!(out.foreign_calls.is_empty(), "rate limited");

    let mut gw = gateway(
        r#"{"api_key": {"required": true},
        "routing": {"clear_route_cache": true, "classes": [{"name": "small", "max_tokens": 1000}]}}"#,
    );
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    assert_eq!(out.local_status(), Some(401));
    assert!(out.foreign_calls.is_empty(), "missing key");

    let mut gw = gateway(
        r#"{"routing": {"clear_route_cache": false, "classes": [{"name": "small", "max_tokens": 20}]}}"#,
    );
    let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    assert_eq!(out.forwarded_header("x-tokengate-class"), Some("small"));
    assert!(out.foreign_calls.is_empty(), "explicitly off");
}

#[test]
fn the_class_counts_the_quotas_default_reservation_when_no_output_is_asked() {
    let classes = r#"[{"name": "small", "max_tokens": 20}, {"name": "large", "max_tokens": 1000}]"#;
    let with_quota = |reservation: u64| {
        format!(
            r#"{{"quota": {{"tokens_per_minute": 100000, "default_output_reservation": {reservation}}},
                 "routing": {{"classes": {classes}}}}}"#
        )
    };
    let hello = fixture("chat_hello_gpt4o.json");
    let class = |config: &str, body: &str| {
        let mut gw = gateway(config);
        let out = send(&mut gw, post(CHAT, body));
        out.forwarded_header("x-tokengate-class")
            .map(str::to_string)
    };
    // 11 prompt tokens + the default reservation.
    assert_eq!(
        class(&with_quota(9), &hello).as_deref(),
        Some("small"),
        "11 + 9 = 20"
    );
    assert_eq!(
        class(&with_quota(10), &hello).as_deref(),
        Some("large"),
        "11 + 10 = 21"
    );
    assert_eq!(class(&with_quota(989), &hello).as_deref(), Some("large"));
    assert_eq!(class(&with_quota(990), &hello), None, "above every class");
    // Without quotas nothing is reserved; an asked size always wins over the default.
    let no_quota = format!(r#"{{"routing": {{"classes": {classes}}}}}"#);
    assert_eq!(class(&no_quota, &hello).as_deref(), Some("small"));
    assert_eq!(
        class(&with_quota(500), &with_output(9)).as_deref(),
        Some("small")
    );
    assert_eq!(
        class(&with_quota(0), &with_output(10)).as_deref(),
        Some("large")
    );
    let responses = r#"{"model":"gpt-4o","input":"Hello, world!","max_output_tokens":9}"#;
    let mut gw = gateway(&with_quota(500));
    let out = send(&mut gw, post("/v1/responses", responses));
    let prompt: u64 = out
        .forwarded_header("x-tokengate-prompt-tokens")
        .unwrap()
        .parse()
        .unwrap();
    let expected = if prompt + 9 <= 20 { "small" } else { "large" };
    assert_eq!(out.forwarded_header("x-tokengate-class"), Some(expected));
}
