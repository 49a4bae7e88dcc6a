//! Admission and refusal: an exhausted key is refused until its bucket refills, keyless requests
//! share a bucket, overrides give a key its own limits, and a bad quota config is refused.

use std::time::Duration;

use serde_json::json;

use super::{
    admitted, chat, completion, costing, counter, level, rate_limited, rejected_config, requests,
    respond, retry_after, spend, state, tokens, HELLO,
};
use crate::support::{gateway, gateway_with_vms, key_id, rejection, send};

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
