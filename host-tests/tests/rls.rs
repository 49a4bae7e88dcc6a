//! Fleet-wide quotas through the real filter: the rate limit service's gRPC calls as the host
//! sees them (cluster, service, method, timeout, the protobuf message), and every kind of answer
//! scripted: OK, OVER_LIMIT with and without statuses, an error status, a timeout, malformed
//! bytes, no such cluster, and an answer that arrives after the client left.

use std::time::Duration;

use host_tests::{Decision, Gateway, GrpcCall, GrpcReply, Outcome, Response};
use serde_json::json;

use crate::support::{chat_body, gateway, post, rejection, send, CHAT};

const CONFIG: &str = r#"{"quota": {"default_output_reservation": 100, "backend": {"rls": {
    "cluster": "ratelimit", "domain": "tokengate", "timeout_ms": 40,
    "descriptors": [{"key": "model", "from": "model"}, {"key": "tenant", "from": "header:x-tenant"}]}}}}"#;
const KEY: &str = "sk-fleet";

fn request(tenant: Option<&str>) -> host_tests::Request {
    let r = post(CHAT, &chat_body("gpt-4o", &[("user", "Hello, world!")])).header("authorization", &format!("Bearer {KEY}"));
    match tenant {
        Some(t) => r.header("x-tenant", t),
        None => r,
    }
}

/// Minimal protobuf reading of what the filter sends: (domain, descriptor entries, hits).
fn decode_request(message: &[u8]) -> (String, Vec<(String, String)>, u64) {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0;
        let mut shift = 0;
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return v;
            }
        }
    }
    fn bytes<'a>(b: &mut &'a [u8]) -> &'a [u8] {
        let n = varint(b) as usize;
        let (head, rest) = b.split_at(n);
        *b = rest;
        head
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let (mut b, mut domain, mut entries, mut hits) = (message, String::new(), Vec::new(), 0);
    while !b.is_empty() {
        match varint(&mut b) {
            0x0a => domain = text(bytes(&mut b)),
            0x12 => {
                let mut d = bytes(&mut b);
                while !d.is_empty() {
                    assert_eq!(varint(&mut d), 0x0a, "descriptor field 1: entries");
                    let mut e = bytes(&mut d);
                    assert_eq!(varint(&mut e), 0x0a);
                    let key = text(bytes(&mut e));
                    assert_eq!(varint(&mut e), 0x12);
                    entries.push((key, text(bytes(&mut e))));
                }
            }
            0x18 => hits = varint(&mut b),
            tag => panic!("unexpected field tag {tag:#x}"),
        }
    }
    (domain, entries, hits)
}

/// A `RateLimitResponse`: the overall code and, if given, one status (limit per minute,
/// remaining, seconds to reset).
fn answer(code: u8, status: Option<(u32, u32, u8)>) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut r = vec![0x08, code];
    if let Some((limit, remaining, reset)) = status {
        let mut l = vec![0x08];
        varint(&mut l, u64::from(limit));
        l.extend([0x10, 2]);
        let mut s = vec![0x08, code, 0x12, l.len() as u8];
        s.extend(l);
        s.push(0x18);
        varint(&mut s, u64::from(remaining));
        s.extend([0x22, 2, 0x08, reset]);
        r.extend([0x12, s.len() as u8]);
        r.extend(s);
    }
    r
}

fn reply_now(message: Vec<u8>) -> GrpcReply {
    GrpcReply::Message { message, after: Duration::ZERO }
}

fn scripted(config: &str, mut reply: impl FnMut(&GrpcCall) -> Option<GrpcReply> + Send + 'static) -> Gateway {
    let mut gw = gateway(config);
    gw.on_grpc_call(move |call| reply(call));
    gw
}

fn completion(prompt_tokens: u64, completion_tokens: u64) -> Response {
    Response::ok().json(
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}})
        .to_string(),
    )
}

fn header<'o>(out: &'o Outcome, name: &str) -> Option<&'o str> {
    out.response.as_ref()?.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn an_admitted_request_waits_for_one_call_and_settles_its_output_with_another() {
    let mut gw = scripted(CONFIG, |_| Some(reply_now(answer(1, Some((10_000, 9_000, 30))))));
    let out = send(&mut gw, request(Some("acme")));
    assert_eq!(out.decision, Decision::Forwarded, "{:?}", out.local_reply);
    let calls = gw.grpc_calls();
    assert_eq!(calls.len(), 1, "one call on the request path");
    let call = &calls[0];
    assert_eq!((call.upstream.as_str(), call.service.as_str(), call.method.as_str()), ("ratelimit", "envoy.service.ratelimit.v3.RateLimitService", "ShouldRateLimit"));
    assert_eq!(call.timeout, Duration::from_millis(40));
    let prompt: u64 = out.forwarded_header("x-tokengate-prompt-tokens").unwrap().parse().unwrap();
    let key_id = out.forwarded_header("x-tokengate-key-id").unwrap().to_owned();
    let (domain, entries, hits) = decode_request(&call.message);
    assert_eq!(domain, "tokengate");
    let pairs = |p: &[(&str, &str)]| p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
    assert_eq!(entries, pairs(&[("api_key", &key_id), ("model", "gpt-4o"), ("tenant", "acme")]));
    assert!(!call.message.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "never the key itself");
    assert_eq!(hits, prompt, "admission charges the exact prompt");
    assert_eq!(out.filter_state_str("wasm.tokengate.rls").as_deref(), Some("ok"));

    let done = gw.response(&out, completion(prompt, 37)).unwrap();
    assert!(done.finished);
    assert_eq!(header(&done, "x-ratelimit-limit-tokens"), Some("10000"));
    assert_eq!(header(&done, "x-ratelimit-remaining-tokens"), Some("9000"));
    let calls = gw.grpc_calls();
    assert_eq!(calls.len(), 2, "the settlement");
    let (_, entries, hits) = decode_request(&calls[1].message);
    assert_eq!(hits, 37, "the completion");
    assert_eq!(entries.len(), 3);
    assert_eq!(gw.counter("tokengate.allowed_total"), Some(1));
    assert_eq!(gw.histogram("tokengate.rls_round_trip_us").map(|v| v.len()), Some(1));

    // Without the tenant header, the entry is left out.
    let out = send(&mut gw, request(None));
    let (_, entries, _) = decode_request(&gw.grpc_calls()[2].message);
    assert_eq!(entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["api_key", "model"]);
    assert_eq!(out.decision, Decision::Forwarded);
}

#[test]
fn over_limit_refuses_with_the_openai_429_with_and_without_statuses() {
    let mut gw = scripted(CONFIG, |_| Some(reply_now(answer(2, Some((5_000, 12, 9))))));
    let out = send(&mut gw, request(None));
    assert!(out.forwarded.is_none());
    let error = rejection(&out, 429);
    assert_eq!((error["code"].as_str(), error["type"].as_str()), (Some("rate_limit_exceeded"), Some("tokens")));
    assert!(error["message"].as_str().unwrap().contains("Limit 5000, Remaining 12"), "{error}");
    let reply = out.local_reply.as_ref().unwrap();
    assert_eq!((reply.header("retry-after"), reply.header("retry-after-ms")), (Some("9"), Some("9000")));
    assert_eq!(reply.header("x-ratelimit-remaining-tokens"), Some("12"));
    assert_eq!(gw.counter("tokengate.rejected_rate_limit_exceeded_total"), Some(1));
    assert_eq!(gw.grpc_calls().len(), 1, "nothing forwarded, nothing to settle");

    let mut gw = scripted(CONFIG, |_| Some(reply_now(answer(2, None))));
    let out = send(&mut gw, request(None));
    rejection(&out, 429);
    let reply = out.local_reply.as_ref().unwrap();
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.header("x-ratelimit-limit-tokens"), None);
}

/// Every way of getting no verdict, under `failure_mode` allow then deny.
#[test]
fn no_verdict_applies_the_failure_mode_counted_and_logged_once() {
    let failures: Vec<(&str, Option<GrpcReply>)> = vec![
        ("error status", Some(GrpcReply::Status { code: 14, message: "no healthy upstream".into(), after: Duration::from_millis(2) })),
        ("timeout", Some(GrpcReply::Timeout)),
        ("malformed", Some(reply_now(b"\xff\xff\xff\xff".to_vec()))),
        ("unknown code", Some(reply_now(answer(0, None)))),
        ("no such cluster", None),
    ];
    for deny in [false, true] {
        let config = if deny { CONFIG.replace("\"timeout_ms\": 40", "\"timeout_ms\": 40, \"failure_mode\": \"deny\"") } else { CONFIG.to_owned() };
        for (what, reply) in &failures {
            let reply = reply.clone();
            let mut gw = scripted(&config, move |_| reply.clone());
            let first = send(&mut gw, request(None));
            gw.advance(Duration::from_millis(45)).unwrap();
            let out = gw.outcome(first.stream).unwrap_or(first);
            let second = send(&mut gw, request(None));
            gw.advance(Duration::from_millis(45)).unwrap();
            let second = gw.outcome(second.stream).unwrap_or(second);
            for out in [&out, &second] {
                if deny {
                    let error = rejection(out, 503);
                    assert_eq!(error["code"], "quota_unavailable", "{what}");
                    assert_eq!(out.local_reply.as_ref().unwrap().header("retry-after"), Some("1"));
                } else {
                    assert_eq!(out.decision, Decision::Forwarded, "{what}: allow admits");
                }
            }
            assert_eq!(gw.counter("tokengate.rls_failures_total"), Some(2), "{what}");
            assert_eq!(gw.counter("tokengate.rls_timeouts_total").unwrap_or(0), if *what == "timeout" { 2 } else { 0 }, "{what}");
            let lines = gw.logs().iter().filter(|l| l.message.contains("rate limit service")).count();
            assert_eq!(lines, 1, "{what}: one line per burst: {}", gw.logs_text());
        }
    }
}

#[test]
fn an_answer_after_the_client_left_changes_nothing() {
    let mut gw = scripted(CONFIG, |_| Some(GrpcReply::Message { message: answer(1, None), after: Duration::from_millis(20) }));
    let out = send(&mut gw, request(None));
    assert_eq!(out.decision, Decision::Paused, "waiting for the service");
    let gone = gw.finish(out.stream).unwrap();
    assert!(gone.forwarded.is_none());
    gw.advance(Duration::from_millis(30)).unwrap();
    assert_eq!(gw.counter("tokengate.allowed_total").unwrap_or(0), 0);
    // The VM is fine: the next request goes through.
    let mut next = send(&mut gw, request(None));
    gw.advance(Duration::from_millis(30)).unwrap();
    next = gw.outcome(next.stream).unwrap_or(next);
    assert_eq!(next.decision, Decision::Forwarded);
}

#[test]
fn local_limits_come_first_and_a_service_refusal_returns_the_reservation() {
    let config = CONFIG.replace("\"default_output_reservation\": 100,", "\"default_output_reservation\": 100, \"tokens_per_minute\": 1000,");
    let over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = over.clone();
    let mut gw = scripted(&config, move |_| Some(reply_now(answer(if flag.load(std::sync::atomic::Ordering::SeqCst) { 2 } else { 1 }, None))));
    for _ in 0..20 {
        rejection(&send(&mut gw, request(None)), 429);
    }
    // Twenty refusals by the service took nothing locally: the full minute's budget is there.
    over.store(false, std::sync::atomic::Ordering::SeqCst);
    let out = send(&mut gw, request(None));
    assert_eq!(out.decision, Decision::Forwarded);
    let reserved: u64 = out.forwarded_header("x-tokengate-reserved-tokens").unwrap().parse().unwrap();
    let calls = gw.grpc_calls().len();
    // A request the local buckets refuse never reaches the service.
    let big = post(CHAT, &json!({"model": "gpt-4o", "max_tokens": 5000, "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .header("authorization", &format!("Bearer {KEY}"));
    rejection(&send(&mut gw, big), 429);
    assert_eq!(gw.grpc_calls().len(), calls);
    assert!(reserved < 1000);
}
