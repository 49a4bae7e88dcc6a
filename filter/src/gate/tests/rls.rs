//! The rate limit service's part of the state machine, on the plans: the admission call, each
//! kind of answer, the local pre-check, the settlement call, and a client that leaves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::rls::Failure;

const RLS: &str = r#"{"quota": {"default_output_reservation": 100, "backend": {"rls": {"cluster": "ratelimit", "domain": "tg", "timeout_ms": 40,
    "descriptors": [{"key": "model", "from": "model"}, {"key": "tenant", "from": "header:x-tenant"}]}}}}"#;

/// An RLS response: overall code, and one status with (limit per minute, remaining, reset s);
/// remaining and reset below 128 (one-byte varints).
fn answer(code: u8, status: Option<(u16, u8, u8)>) -> Vec<u8> {
    let mut r = vec![0x08, code];
    if let Some((limit, remaining, reset)) = status {
        let limit = [(limit as u8 & 0x7f) | 0x80, (limit >> 7) as u8];
        let s = [0x08, code, 0x12, 5, 0x08, limit[0], limit[1], 0x10, 2, 0x18, remaining, 0x22, 2, 0x08, reset];
        r.extend([0x12, s.len() as u8]);
        r.extend(s);
    }
    r
}

fn awaiting(kit: &Kit, extra: &[(&str, &str)]) -> (Exchange, Plan) {
    let (ex, plan) = kit.request(&[&[("authorization", KEY)], extra].concat(), HELLO);
    assert_eq!(plan.action, Action::Pause, "the stream waits for the service");
    assert!(plan.reply.is_none());
    (ex, plan)
}

#[test]
fn the_admission_waits_for_one_call_charging_the_exact_prompt() {
    let kit = Kit::new(RLS);
    let (mut ex, plan) = awaiting(&kit, &[("x-tenant", "acme")]);
    let call = plan.call.as_ref().expect("one call");
    assert!(call.awaited);
    let expected = crate::rls::request(
        kit.config.quota.as_ref().unwrap().rls.as_ref().unwrap(),
        Some(KEY_ID),
        &crate::rls::EntryValues { model: Some("gpt-4o".into()), headers: vec![Some("acme".into())] },
        HELLO_TOKENS,
    );
    assert_eq!(call.message, expected, "api_key, model, tenant; hits = the prompt");
    // The headers for the backend go with the waiting plan; the decision waits for the verdict.
    assert_eq!(set(&plan.request_headers, "x-tokengate-prompt-tokens"), Some("11"));
    assert_eq!(stat(&plan, Metric::AllowedTotal), None);
    assert_eq!(state(&plan, Field::Decision), None);

    let ok = ex.on_rls_answer(&kit.env(), Ok(&answer(1, Some((1000, 100, 30)))));
    assert_eq!(ok.action, Action::Continue);
    assert!(ok.call.is_none() && ok.reply.is_none());
    assert_eq!(stat(&ok, Metric::AllowedTotal), Some(1));
    assert_eq!(stat(&ok, Metric::PromptTokensTotal), Some(HELLO_TOKENS));
    assert!(stat(&ok, Metric::RlsRoundTripUs).is_some());
    assert_eq!(state(&ok, Field::Decision), Some("allowed"));
    assert_eq!(state(&ok, Field::Rls), Some("ok"));
    assert_eq!(ex.on_rls_answer(&kit.env(), Ok(&answer(1, None))), Plan::default(), "a second answer changes nothing");

    // The response carries the service's level, and settles the output with a second call.
    let (head, body) = kit.respond(&mut ex, 200, "application/json", &chat_completion(HELLO_TOKENS, 25));
    assert_eq!(set(&head.response_headers, "x-ratelimit-limit-tokens"), Some("1000"));
    assert_eq!(set(&head.response_headers, "x-ratelimit-remaining-tokens"), Some("100"));
    assert_eq!(set(&head.response_headers, "x-ratelimit-reset-tokens"), Some("30s"));
    let settle = body.call.as_ref().expect("the settlement call");
    assert!(!settle.awaited);
    let values = crate::rls::EntryValues { model: Some("gpt-4o".into()), headers: vec![Some("acme".into())] };
    let rls = kit.config.quota.as_ref().unwrap().rls.as_ref().unwrap();
    assert_eq!(settle.message, crate::rls::request(rls, Some(KEY_ID), &values, 25), "the completion only");
}

#[test]
fn the_settlement_adds_the_prompt_the_backend_counted_beyond_the_charge() {
    let kit = Kit::new(RLS);
    let (mut ex, _) = awaiting(&kit, &[]);
    ex.on_rls_answer(&kit.env(), Ok(&answer(1, None)));
    let (_, body) = kit.respond(&mut ex, 200, "application/json", &chat_completion(HELLO_TOKENS + 4, 25));
    let rls = kit.config.quota.as_ref().unwrap().rls.as_ref().unwrap();
    let values = crate::rls::EntryValues { model: Some("gpt-4o".into()), headers: vec![None] };
    assert_eq!(body.call.unwrap().message, crate::rls::request(rls, Some(KEY_ID), &values, 29));
    // Fewer prompt tokens and no output: nothing to send (an RLS cannot refund).
    let (mut ex, _) = awaiting(&kit, &[]);
    ex.on_rls_answer(&kit.env(), Ok(&answer(1, None)));
    let (_, body) = kit.respond(&mut ex, 200, "application/json", &chat_completion(HELLO_TOKENS - 2, 0));
    assert_eq!(body.call, None);
}

#[test]
fn over_limit_is_the_same_429_as_a_local_limit() {
    let kit = Kit::new(RLS);
    let (mut ex, _) = awaiting(&kit, &[]);
    let refused = ex.on_rls_answer(&kit.env(), Ok(&answer(2, Some((1000, 0, 42)))));
    let r = reply(&refused);
    assert_eq!(r.status, 429);
    assert_eq!(error_code(r), "rate_limit_exceeded");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"]["type"], "tokens");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("key {KEY_ID}")) && message.contains("Limit 1000, Remaining 0, Requested 11") && message.contains("42s"), "{message}");
    assert_eq!(reply_header(r, "retry-after"), Some("42"));
    assert_eq!(reply_header(r, "retry-after-ms"), Some("42000"));
    assert_eq!(reply_header(r, "x-ratelimit-remaining-tokens"), Some("0"));
    assert_eq!(stat(&refused, Metric::RejectedTotal(ErrorCode::RateLimitExceeded)), Some(1));
    assert_eq!(stat(&refused, Metric::DroppedTokensTotal), Some(HELLO_TOKENS + 100));
    assert_eq!(state(&refused, Field::Rls), Some("over_limit"));
    assert_eq!(stat(&refused, Metric::AllowedTotal), None);
    // Nothing reached the backend: no response is metered, no settlement is sent.
    assert_eq!(ex.on_stream_end(&kit.env()).call, None);

    // Without statuses (Limitador): a second's wait, no levels.
    let (mut ex, _) = awaiting(&kit, &[]);
    let refused = ex.on_rls_answer(&kit.env(), Ok(&answer(2, None)));
    let r = reply(&refused);
    assert_eq!(reply_header(r, "retry-after"), Some("1"));
    assert_eq!(reply_header(r, "x-ratelimit-limit-tokens"), None);
}

#[test]
fn failures_apply_the_failure_mode_and_log_once_per_burst() {
    let kit = Kit::new(RLS);
    let failures: [Result<&[u8], Failure>; 4] = [
        Err(Failure::Status { code: 4, message: "deadline exceeded".into() }),
        Err(Failure::Status { code: 14, message: "no healthy upstream".into() }),
        Ok(b"\x08"),
        Err(Failure::NotSent("Envoy has no cluster named \"ratelimit\"".into())),
    ];
    let mut logged = 0;
    for (i, failure) in failures.into_iter().enumerate() {
        let (mut ex, _) = awaiting(&kit, &[]);
        let plan = ex.on_rls_answer(&kit.env(), failure);
        assert_eq!(plan.action, Action::Continue, "failure {i}: allow admits");
        assert_eq!(stat(&plan, Metric::AllowedTotal), Some(1));
        assert_eq!(stat(&plan, Metric::RlsFailuresTotal), Some(1));
        assert_eq!(stat(&plan, Metric::RlsTimeoutsTotal), (i == 0).then_some(1));
        assert_eq!(state(&plan, Field::Rls), Some("failed_allow"));
        logged += plan.logs.len();
        if i == 0 {
            assert!(plan.logs[0].1.contains("timed out") && plan.logs[0].1.contains("cluster ratelimit"), "{:?}", plan.logs);
        }
    }
    assert_eq!(logged, 1, "one line per burst");
    kit.clock.now.set(T0 + 61 * SEC);
    let (mut ex, _) = awaiting(&kit, &[]);
    let plan = ex.on_rls_answer(&kit.env(), Err(Failure::Status { code: 14, message: String::new() }));
    assert!(plan.logs[0].1.contains("3 more failures"), "{:?}", plan.logs);

    let kit = Kit::new(&RLS.replace("\"timeout_ms\": 40", "\"timeout_ms\": 40, \"failure_mode\": \"deny\""));
    let (mut ex, _) = awaiting(&kit, &[]);
    let plan = ex.on_rls_answer(&kit.env(), Err(Failure::Status { code: 4, message: String::new() }));
    let r = reply(&plan);
    assert_eq!(r.status, 503);
    assert_eq!(error_code(r), "quota_unavailable");
    assert_eq!(reply_header(r, "retry-after"), Some("1"));
    assert_eq!(state(&plan, Field::Rls), Some("failed_deny"));
    assert_eq!(stat(&plan, Metric::RejectedTotal(ErrorCode::QuotaUnavailable)), Some(1));
}

const BOTH: &str = r#"{"quota": {"tokens_per_minute": 600, "default_output_reservation": 100, "backend": {"rls": {"cluster": "ratelimit", "domain": "tg"}}}}"#;

#[test]
fn local_limits_are_checked_first_and_returned_when_the_service_refuses() {
    let kit = Kit::new(BOTH);
    // Local refusal: no call at all.
    let (_, plan) = kit.request(&[("authorization", KEY)], &HELLO.replace("\"messages\"", "\"max_tokens\": 5000, \"messages\""));
    assert_eq!(reply(&plan).status, 429);
    assert_eq!(plan.call, None);
    // Admitted locally (111 of 600 reserved), refused by the service: the reservation comes back.
    let (mut ex, plan) = awaiting(&kit, &[]);
    assert_eq!(set(&plan.request_headers, "x-tokengate-reserved-tokens"), Some("111"));
    let refused = ex.on_rls_answer(&kit.env(), Ok(&answer(2, None)));
    assert_eq!(reply(&refused).status, 429);
    let quotas = Quotas::new(kit.config.quota.as_ref().unwrap());
    let key = KeyName::Id(KEY_ID.into());
    assert_eq!(quotas.peek(kit.store.as_ref(), &key, T0).unwrap().tokens.unwrap().remaining, 600, "the refused one came back");
    let (mut ex, _) = awaiting(&kit, &[]);
    assert_eq!(quotas.peek(kit.store.as_ref(), &key, T0).unwrap().tokens.unwrap().remaining, 600 - 111);
    // Admitted by both: the response's levels are the tighter of the two.
    ex.on_rls_answer(&kit.env(), Ok(&answer(1, Some((1000, 100, 30)))));
    let map = headers(&[(":status", "200"), ("content-type", "application/json")]);
    let head = ex.on_response_headers(&kit.env(), false, || map.as_slice());
    assert_eq!(set(&head.response_headers, "x-ratelimit-remaining-tokens"), Some("100"), "the service's 100 < the local 489");
}

#[test]
fn a_client_that_leaves_while_the_service_decides_returns_its_reservation() {
    let kit = Kit::new(BOTH);
    let (mut ex, _) = awaiting(&kit, &[]);
    let end = ex.on_stream_end(&kit.env());
    assert_eq!(end.call, None, "nothing was forwarded: nothing to settle");
    assert_eq!(stat(&end, Metric::AllowedTotal), None);
    let snapshot = Quotas::new(kit.config.quota.as_ref().unwrap()).peek(kit.store.as_ref(), &KeyName::Id(KEY_ID.into()), T0).unwrap();
    assert_eq!(snapshot.tokens.unwrap().remaining, 600);
    assert_eq!(ex.on_rls_answer(&kit.env(), Ok(&answer(1, None))), Plan::default(), "a late answer changes nothing");
}

#[test]
fn without_local_limits_shared_data_is_never_touched() {
    let kit = Kit { store: Box::new(BrokenStoreForRls), ..Kit::new(RLS) };
    let (mut ex, _) = awaiting(&kit, &[]);
    let ok = ex.on_rls_answer(&kit.env(), Ok(&answer(1, None)));
    assert_eq!(stat(&ok, Metric::QuotaErrorsTotal), None);
    let (head, _) = kit.respond(&mut ex, 200, "application/json", &chat_completion(HELLO_TOKENS, 1));
    assert!(head.logs.is_empty(), "{:?}", head.logs);
}

/// Shared data that fails the test if touched.
struct BrokenStoreForRls;

impl Store for BrokenStoreForRls {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, crate::quota::StoreError> {
        panic!("read {key} without local limits")
    }
    fn set(&self, key: &str, _: &[u8], _: Option<u32>) -> Result<(), crate::quota::StoreError> {
        panic!("wrote {key} without local limits")
    }
}

#[test]
fn an_error_after_the_timeout_is_a_timeout() {
    // Envoy ends a call at its timeout with UNAVAILABLE, not DEADLINE_EXCEEDED.
    let kit = Kit::new(RLS);
    let (mut ex, _) = awaiting(&kit, &[]);
    kit.clock.now.set(kit.clock.now.get() + 36_000_000);
    let plan = ex.on_rls_answer(&kit.env(), Err(Failure::Status { code: 14, message: "upstream request timeout".into() }));
    assert_eq!(stat(&plan, Metric::RlsTimeoutsTotal), Some(1));
    assert!(plan.logs[0].1.contains("no answer within timeout_ms 40"), "{:?}", plan.logs);
    let (mut ex, _) = awaiting(&kit, &[]);
    kit.clock.now.set(kit.clock.now.get() + 35_000_000);
    let plan = ex.on_rls_answer(&kit.env(), Err(Failure::Status { code: 14, message: "connection refused".into() }));
    assert_eq!(stat(&plan, Metric::RlsTimeoutsTotal), None, "a quick failure is not a timeout");
}

#[test]
fn unsent_settlements_are_logged_with_the_other_failures_once_a_minute() {
    let kit = Kit::new(RLS);
    let first = Exchange::new().on_settlement_unsent(&kit.env(), "Envoy has no cluster named \"ratelimit\"");
    assert!(first.logs[0].1.contains("settlement not sent: Envoy has no cluster"), "{:?}", first.logs);
    assert!(Exchange::new().on_settlement_unsent(&kit.env(), "x").logs.is_empty());
    let (mut ex, _) = awaiting(&kit, &[]);
    assert!(ex.on_rls_answer(&kit.env(), Err(Failure::NotSent("x".into()))).logs.is_empty(), "the same minute's burst");
}
