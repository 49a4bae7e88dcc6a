//! The state machine natively: every behaviour the adapter carries out, checked on the plans.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;

use super::*;
use crate::quota::tests::MemStore;
use crate::quota::StoreError;

mod rls;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_000 * SEC;
const HELLO: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, world!"}]}"#;
/// Tokens of `HELLO` in o200k_base, chat overhead included.
const HELLO_TOKENS: u64 = 11;
const KEY: &str = "Bearer sk-test";
const KEY_ID: &str = "f3abf2a6cc4f0098";

/// A clock that moves `step` ns at every read.
struct TestClock {
    now: Cell<u64>,
    step: u64,
    reads: Cell<u32>,
}

impl Clock for TestClock {
    fn now_ns(&self) -> u64 {
        self.reads.set(self.reads.get() + 1);
        let now = self.now.get();
        self.now.set(now + self.step);
        now
    }
}

/// Shared data that always fails, as a host in trouble would.
struct BrokenStore;

impl Store for BrokenStore {
    fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Err(StoreError::Host("BadArgument".into()))
    }
    fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
        Err(StoreError::Host("BadArgument".into()))
    }
}

/// A config, a store and a clock: what the adapter hands every callback.
struct Kit {
    config: Config,
    store: Box<dyn Store>,
    clock: TestClock,
    drift_log: LogThrottle,
    rls_log: LogThrottle,
}

impl Kit {
    fn new(json: &str) -> Kit {
        Kit {
            config: Config::from_json(json.as_bytes()).unwrap(),
            store: Box::new(MemStore::default()),
            clock: TestClock { now: Cell::new(T0), step: 0, reads: Cell::new(0) },
            drift_log: LogThrottle::default(),
            rls_log: LogThrottle::default(),
        }
    }

    fn env(&self) -> Env<'_> {
        Env { config: &self.config, store: self.store.as_ref(), clock: &self.clock, drift_log: &self.drift_log, rls_log: &self.rls_log }
    }

    /// Headers (with `content-type: application/json` and `:path`) then the whole body in one
    /// callback: the plans of both.
    fn send(&self, ex: &mut Exchange, extra: &[(&str, &str)], body: &str) -> (Plan, Plan) {
        let mut headers = headers(&[(":method", "POST"), (":path", "/v1/chat/completions"), ("content-type", "application/json")]);
        headers.extend(self::headers(extra));
        let head = ex.on_request_headers(&self.env(), &headers, false);
        let body = body.as_bytes().to_vec();
        let plan = ex.on_request_body(&self.env(), body.len(), true, |size| {
            assert_eq!(size, body.len());
            Ok(body.clone())
        });
        (head, plan)
    }

    /// A fresh stream: headers and body; the body's plan.
    fn request(&self, extra: &[(&str, &str)], body: &str) -> (Exchange, Plan) {
        let mut ex = Exchange::new();
        let (head, plan) = self.send(&mut ex, extra, body);
        assert_eq!(head.action, Action::Pause, "the headers wait for the body");
        (ex, plan)
    }

    /// The backend's response: headers, then the body in one chunk. The plans of both.
    fn respond(&self, ex: &mut Exchange, status: u16, content_type: &str, body: &str) -> (Plan, Plan) {
        let map = headers(&[(":status", &status.to_string()), ("content-type", content_type), ("content-length", &body.len().to_string())]);
        let head = ex.on_response_headers(&self.env(), false, || map.as_slice());
        let bytes = body.as_bytes().to_vec();
        let chunk = ex.on_response_body(&self.env(), bytes.len(), true, |_| Ok(bytes.clone()));
        (head, chunk)
    }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

fn never<T>(_: usize) -> Result<T, String> {
    panic!("the gate read a body it did not need")
}

fn set<'p>(edits: &'p HeaderEdits, name: &str) -> Option<&'p str> {
    edits.set.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

fn state(plan: &Plan, field: Field) -> Option<&str> {
    plan.filter_state.iter().find(|(f, _)| *f == field).map(|(_, v)| v.as_str())
}

fn stat(plan: &Plan, metric: Metric) -> Option<u64> {
    plan.stats.get(metric)
}

fn reply(plan: &Plan) -> &Reply {
    assert_eq!(plan.action, Action::Pause);
    plan.reply.as_ref().unwrap_or_else(|| panic!("expected a reply, got {plan:?}"))
}

fn reply_header<'p>(reply: &'p Reply, name: &str) -> Option<&'p str> {
    reply.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

fn error_code(reply: &Reply) -> String {
    let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    v["error"]["code"].as_str().unwrap().to_owned()
}

fn chat_completion(prompt_tokens: u64, completion_tokens: u64) -> String {
    format!(
        r#"{{"choices":[{{"message":{{"role":"assistant","content":"Hi there"}}}}],"usage":{{"prompt_tokens":{prompt_tokens},"completion_tokens":{completion_tokens},"prompt_tokens_details":{{"cached_tokens":3}}}}}}"#
    )
}

#[test]
fn an_admitted_request_is_annotated_counted_and_recorded() {
    let kit = Kit::new("");
    let mut ex = Exchange::new();
    let (head, plan) = kit.send(&mut ex, &[("authorization", KEY)], HELLO);
    assert_eq!(head.stats.iter().collect::<Vec<_>>(), [(Metric::RequestsTotal, 1)]);
    assert!(head.request_headers.is_empty() && head.reply.is_none());

    assert_eq!(plan.action, Action::Continue);
    assert!(plan.reply.is_none() && plan.request_body.is_none() && !plan.clear_route_cache);
    let h = &plan.request_headers;
    assert!(h.remove.is_empty());
    assert_eq!(set(h, "x-tokengate-prompt-tokens"), Some("11"));
    assert_eq!(set(h, "x-tokengate-encoding"), Some("o200k_base"));
    assert_eq!(set(h, "x-tokengate-count"), Some("exact"));
    assert_eq!(set(h, "x-tokengate-key-id"), Some(KEY_ID));
    assert_eq!(set(h, "x-tokengate-max-output-tokens"), None);
    assert_eq!(set(h, "x-tokengate-reserved-tokens"), None, "no quota, no reservation");
    assert_eq!(stat(&plan, Metric::AllowedTotal), Some(1));
    assert_eq!(stat(&plan, Metric::PromptTokensTotal), Some(HELLO_TOKENS));
    assert_eq!(stat(&plan, Metric::PromptTokens), Some(HELLO_TOKENS));
    assert_eq!(stat(&plan, Metric::TokenizeUs), Some(0));
    assert_eq!(state(&plan, Field::Decision), Some("allowed"));
    assert_eq!(state(&plan, Field::PromptTokens), Some("11"));
    assert_eq!(state(&plan, Field::Encoding), Some("o200k_base"));
    assert_eq!(state(&plan, Field::KeyId), Some(KEY_ID));

    assert_eq!(plan.stats.label, kit.config.labels.index_of("gpt-4o*"), "the built-in rule's series");

    // Without quotas the response is still metered, and no ratelimit header is added.
    let (head, body) = kit.respond(&mut ex, 200, "application/json", &chat_completion(11, 5));
    assert!(head.response_headers.is_empty() && head.stats.is_empty());
    assert_eq!(stat(&body, Metric::CompletionTokensTotal), Some(5));
    assert_eq!(stat(&body, Metric::BackendPromptTokensTotal), Some(11));
    assert_eq!(state(&body, Field::Usage), Some("reported"));
    let end = ex.on_stream_end(&kit.env());
    assert!(end.stats.is_empty() && end.filter_state.is_empty(), "metered once: {end:?}");
}

#[test]
fn requests_that_are_not_admitted_are_not_metered() {
    let kit = Kit::new(r#"{"max_prompt_tokens": 5}"#);
    let (mut ex, plan) = kit.request(&[], HELLO);
    assert_eq!(reply(&plan).status, 400);
    assert_eq!(ex.on_response_headers(&kit.env(), false, || panic!("read the reply's headers")), Plan::default());
    let mut ex = Exchange::new();
    ex.on_request_headers(&kit.env(), &headers(&[(":method", "GET")]), true);
    assert_eq!(ex.on_response_headers(&kit.env(), false, || panic!("read a passthrough's headers")), Plan::default());
    assert_eq!(ex.on_response_body(&kit.env(), 10, true, never), Plan::default());
}

#[test]
fn the_count_time_comes_from_two_clock_reads_around_the_count() {
    let mut kit = Kit::new("");
    kit.clock.step = 3_000;
    let (_, allowed) = kit.request(&[], HELLO);
    assert_eq!(stat(&allowed, Metric::TokenizeUs), Some(3));
    let mut kit = Kit::new(r#"{"max_prompt_tokens": 5}"#);
    kit.clock.step = 7_000;
    let (_, refused) = kit.request(&[], HELLO);
    assert_eq!(stat(&refused, Metric::TokenizeUs), Some(7));
    assert_eq!(kit.clock.reads.get(), 2, "no quota: the clock is read only around the count");
}

#[test]
fn client_sent_tokengate_headers_are_removed_each_once() {
    let kit = Kit::new("");
    let mut ex = Exchange::new();
    let spoof = [("x-tokengate-prompt-tokens", "1"), ("x-tokengate-class", "long"), ("x-tokengate-prompt-tokens", "2"), ("x-tokengates", "1"), ("x-tokengate", "kept")];
    let (head, _) = kit.send(&mut ex, &spoof, HELLO);
    assert_eq!(head.request_headers.remove, ["x-tokengate-prompt-tokens", "x-tokengate-class"]);
}

#[test]
fn a_missing_key_is_refused_at_the_headers_when_required() {
    let kit = Kit::new(r#"{"api_key": {"header": "x-api-key", "required": true}, "quota": {"tokens_per_minute": 1000}}"#);
    let mut ex = Exchange::new();
    let plan = ex.on_request_headers(&kit.env(), &headers(&[(":path", "/v1/chat/completions")]), false);
    let r = reply(&plan);
    assert_eq!((r.status, error_code(r).as_str()), (401, "missing_api_key"));
    assert!(r.body.contains("x-api-key"), "{}", r.body);
    assert_eq!(reply_header(r, "x-ratelimit-limit-tokens"), None, "a keyless refusal has no bucket to report");
    assert_eq!(stat(&plan, Metric::RejectedTotal(ErrorCode::MissingApiKey)), Some(1));
    assert_eq!(state(&plan, Field::Decision), Some("missing_api_key"));
    // The key in the configured header admits; the body is never read after a refusal.
    assert_eq!(ex.on_request_body(&kit.env(), 10, true, never), Plan::default());
    assert_eq!(ex.on_response_headers(&kit.env(), false, || panic!("read the reply's headers")), Plan::default());
    let (_, plan) = kit.request(&[("x-api-key", "sk-test")], HELLO);
    assert_eq!(set(&plan.request_headers, "x-tokengate-key-id"), Some(KEY_ID));
}

#[test]
fn bodies_over_the_cap_are_refused_without_being_read() {
    let kit = Kit::new(r#"{"max_body_bytes": 100}"#);
    let mut ex = Exchange::new();
    let plan = ex.on_request_headers(&kit.env(), &headers(&[("content-length", "101")]), false);
    assert_eq!((reply(&plan).status, error_code(reply(&plan)).as_str()), (413, "request_too_large"));

    // Chunked: refused as soon as the buffered bytes pass the cap.
    let mut ex = Exchange::new();
    assert_eq!(ex.on_request_headers(&kit.env(), &[], false).action, Action::Pause);
    assert_eq!(ex.on_request_body(&kit.env(), 60, false, never), Plan::pause());
    let plan = ex.on_request_body(&kit.env(), 120, false, never);
    assert_eq!(reply(&plan).status, 413);
    assert!(reply(&plan).body.contains("120 bytes"), "{}", reply(&plan).body);
}

#[test]
fn a_chunked_body_is_read_once_complete_and_trailers_end_it_too() {
    let kit = Kit::new("");
    let mut ex = Exchange::new();
    ex.on_request_headers(&kit.env(), &headers(&[("content-type", "application/json")]), false);
    for size in [10, 30] {
        assert_eq!(ex.on_request_body(&kit.env(), size, false, never), Plan::pause());
    }
    let body = HELLO.as_bytes().to_vec();
    // The body ends without end_of_stream: the trailers decide, with every byte buffered.
    assert_eq!(ex.on_request_body(&kit.env(), body.len(), false, never), Plan::pause());
    let plan = ex.on_request_trailers(&kit.env(), |size| {
        assert_eq!(size, body.len());
        Ok(body.clone())
    });
    assert_eq!(set(&plan.request_headers, "x-tokengate-prompt-tokens"), Some("11"));
    assert_eq!(set(&plan.request_headers, "content-length"), None);
    // Decided: later callbacks change nothing.
    assert_eq!(ex.on_request_trailers(&kit.env(), never), Plan::default());
}

#[test]
fn requests_without_a_countable_body_pass_through_marked() {
    let kit = Kit::new("");
    let passed = |plan: &Plan| {
        assert_eq!(plan.action, Action::Continue);
        assert!(plan.reply.is_none() && plan.request_headers.set.is_empty());
        assert_eq!(stat(plan, Metric::PassthroughTotal), Some(1));
        assert_eq!(state(plan, Field::Decision), Some("passthrough"));
    };
    // No body at all, or an upload: decided at the headers, never buffered.
    passed(&Exchange::new().on_request_headers(&kit.env(), &headers(&[(":method", "GET")]), true));
    let upload = headers(&[("content-type", "multipart/form-data; boundary=x")]);
    passed(&Exchange::new().on_request_headers(&kit.env(), &upload, false));
    // JSON of no known shape, or not JSON.
    passed(&kit.request(&[], r#"{"purpose": "batch"}"#).1);
    let mut ex = Exchange::new();
    ex.on_request_headers(&kit.env(), &headers(&[("content-type", "text/plain")]), false);
    passed(&ex.on_request_body(&kit.env(), 5, true, |_| Ok(b"hello".to_vec())));
    // A body the host cannot give is passed on, and said so.
    let mut ex = Exchange::new();
    ex.on_request_headers(&kit.env(), &[], false);
    let plan = ex.on_request_body(&kit.env(), 5, true, |_| Err("NotFound".to_owned()));
    passed(&plan);
    assert_eq!(plan.logs, [(LogLevel::Error, "cannot read the request body, passing it on uncounted: NotFound".to_owned())]);
}

#[test]
fn refusals_of_the_body_are_openai_shaped_with_their_counter() {
    let kit = Kit::new(r#"{"max_prompt_tokens": 10, "max_output_tokens": 50}"#);
    let cases = [
        (HELLO.to_owned(), 400, ErrorCode::ContextLengthExceeded),
        (r#"{"model":"gpt-4o","messages":[],"max_tokens":51}"#.to_owned(), 400, ErrorCode::InvalidValue),
        (r#"{"messages": ["#.to_owned(), 400, ErrorCode::InvalidJson),
        (r#"{"messages": "hi"}"#.to_owned(), 400, ErrorCode::InvalidValue),
    ];
    for (body, status, code) in cases {
        let (_, plan) = kit.request(&[("authorization", KEY)], &body);
        let r = reply(&plan);
        assert_eq!((r.status, error_code(r)), (status, code.as_str().to_owned()), "{body}");
        assert_eq!(reply_header(r, "content-type"), Some("application/json"));
        assert_eq!(stat(&plan, Metric::RejectedTotal(code)), Some(1));
        assert_eq!(state(&plan, Field::Decision), Some(code.as_str()));
        assert_eq!(state(&plan, Field::KeyId), Some(KEY_ID));
        assert_eq!(stat(&plan, Metric::TokenizeUs).is_some(), code == ErrorCode::ContextLengthExceeded, "{body}");
        assert!(plan.request_headers.set.is_empty());
    }
}

#[test]
fn the_size_class_routes_and_the_route_cache_is_cleared_only_when_configured() {
    let routing = r#"{"routing": {"clear_route_cache": true, "classes": [{"name": "short", "max_tokens": 100}, {"name": "long", "max_tokens": 100000}]}}"#;
    let kit = Kit::new(routing);
    let (_, plan) = kit.request(&[], HELLO);
    assert_eq!(set(&plan.request_headers, "x-tokengate-class"), Some("short"));
    assert!(plan.clear_route_cache);
    let asks = HELLO.replace("\"messages\"", "\"max_tokens\":200,\"messages\"");
    let (_, plan) = kit.request(&[], &asks);
    assert_eq!(set(&plan.request_headers, "x-tokengate-class"), Some("long"), "prompt + asked output");
    assert_eq!(set(&plan.request_headers, "x-tokengate-max-output-tokens"), Some("200"));
    // Refused requests go nowhere: no class, no route lookup.
    let kit = Kit::new(&routing.replace("{\"routing\"", "{\"max_prompt_tokens\": 5, \"routing\""));
    let (_, plan) = kit.request(&[], HELLO);
    assert!(!plan.clear_route_cache && plan.request_headers.set.is_empty());
}

const QUOTA: &str = r#"{"quota": {"tokens_per_minute": 600, "default_output_reservation": 100}}"#;

#[test]
fn admission_reserves_the_prompt_and_the_output_and_reports_the_reservation() {
    let kit = Kit::new(QUOTA);
    let (_, plan) = kit.request(&[("authorization", KEY)], HELLO);
    let reserved = (HELLO_TOKENS + 100).to_string();
    assert_eq!(set(&plan.request_headers, "x-tokengate-reserved-tokens"), Some(reserved.as_str()));
    assert_eq!(state(&plan, Field::ReservedTokens), Some(reserved.as_str()));
    assert_eq!(kit.clock.reads.get(), 2, "the quota reuses the time read after the count");
    // The next request sees what is left, in the reply's headers when refused.
    let (_, plan) = kit.request(&[("authorization", KEY)], &HELLO.replace("\"messages\"", "\"max_tokens\":480,\"messages\""));
    let r = reply(&plan);
    assert_eq!((r.status, error_code(r).as_str()), (429, "rate_limit_exceeded"));
    assert_eq!(reply_header(r, "x-ratelimit-remaining-tokens"), Some("489"));
    assert_eq!(reply_header(r, "x-ratelimit-limit-tokens"), Some("600"));
    assert_eq!(reply_header(r, "retry-after"), Some("1"));
    assert_eq!(reply_header(r, "retry-after-ms"), Some("200"));
    assert!(r.body.contains("Limit 600, Used 111, Requested 491"), "{}", r.body);
    assert_eq!(stat(&plan, Metric::RejectedTotal(ErrorCode::RateLimitExceeded)), Some(1));
    assert_eq!(state(&plan, Field::PromptTokens), Some("11"));
    // Another key has its own bucket.
    let (_, plan) = kit.request(&[("authorization", "Bearer other")], HELLO);
    assert_eq!(plan.action, Action::Continue);
}

#[test]
fn other_refusals_and_passthrough_responses_carry_the_keys_current_levels() {
    let kit = Kit::new(&QUOTA.replace("{\"quota\"", "{\"max_prompt_tokens\": 5, \"quota\""));
    let (_, plan) = kit.request(&[("authorization", KEY)], HELLO);
    let r = reply(&plan);
    assert_eq!(error_code(r), "context_length_exceeded");
    assert_eq!(reply_header(r, "x-ratelimit-remaining-tokens"), Some("600"));
    assert_eq!(reply_header(r, "x-ratelimit-reset-tokens"), Some("0s"));

    let mut ex = Exchange::new();
    ex.on_request_headers(&kit.env(), &headers(&[(":method", "GET"), ("authorization", KEY)]), true);
    let (head, body) = kit.respond(&mut ex, 200, "application/json", "{}");
    assert_eq!(set(&head.response_headers, "x-ratelimit-limit-tokens"), Some("600"));
    assert!(head.stats.is_empty() && body == Plan::default(), "nothing to settle");
}

#[test]
fn a_json_usage_settles_the_reservation() {
    let kit = Kit::new(QUOTA);
    let (mut ex, _) = kit.request(&[("authorization", KEY)], HELLO);
    let (head, body) = kit.respond(&mut ex, 200, "application/json", &chat_completion(12, 20));
    assert_eq!(set(&head.response_headers, "x-ratelimit-remaining-tokens"), Some("489"), "as left after the reservation");
    assert!(head.response_headers.remove.is_empty(), "a JSON body passes unchanged");
    assert_eq!(body.response_body, None);
    assert_eq!(stat(&body, Metric::CompletionTokensTotal), Some(20));
    assert_eq!(stat(&body, Metric::RefundedTokensTotal), Some(111 - 32));
    assert_eq!(stat(&body, Metric::CachedPromptTokensTotal), Some(3));
    assert_eq!(stat(&body, Metric::PromptDriftTokens), Some(1));
    assert_eq!(stat(&body, Metric::PromptDriftNegativeTotal), None);
    assert_eq!(state(&body, Field::ActualTokens), Some("32"));
    assert_eq!(state(&body, Field::Usage), Some("reported"));
    // The bucket holds the real cost: a later response reports 600 - 32.
    let mut ex = Exchange::new();
    ex.on_request_headers(&kit.env(), &headers(&[(":method", "GET"), ("authorization", KEY)]), true);
    let (head, _) = kit.respond(&mut ex, 200, "application/json", "{}");
    assert_eq!(set(&head.response_headers, "x-ratelimit-remaining-tokens"), Some("568"));
    // Settled once: the stream's end changes nothing.
    let (mut ex, _) = kit.request(&[("authorization", KEY)], HELLO);
    kit.respond(&mut ex, 200, "application/json", &chat_completion(10, 1));
    assert_eq!(ex.on_stream_end(&kit.env()), Plan::default());
}

#[test]
fn a_backend_counting_fewer_prompt_tokens_is_counted_as_negative_drift() {
    let kit = Kit::new(QUOTA);
    let (mut ex, _) = kit.request(&[], HELLO);
    let (_, body) = kit.respond(&mut ex, 200, "application/json; charset=utf-8", &chat_completion(9, 0));
    assert_eq!(stat(&body, Metric::PromptDriftTokens), Some(2));
    assert_eq!(stat(&body, Metric::PromptDriftNegativeTotal), Some(1));
    assert_eq!(stat(&body, Metric::CompletionTokensTotal), None, "a zero is no host call");
}

fn sse(events: &[&str]) -> String {
    events.iter().map(|e| format!("data: {e}\n\n")).collect::<String>() + "data: [DONE]\n\n"
}

const STREAMING: &str = r#"{"model":"gpt-4o","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"Hello, world!"}]}"#;

#[test]
fn a_stream_gets_usage_asked_for_and_the_usage_chunk_hidden_from_the_client() {
    let kit = Kit::new(QUOTA);
    let length = STREAMING.len().to_string();
    let (mut ex, plan) = kit.request(&[("authorization", KEY), ("content-length", &length)], STREAMING);
    let rewritten = plan.request_body.as_deref().expect("the body asks for usage");
    let v: serde_json::Value = serde_json::from_slice(rewritten).unwrap();
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(set(&plan.request_headers, "content-length"), Some(rewritten.len().to_string().as_str()));

    let events = sse(&[
        r#"{"choices":[{"delta":{"content":"Hi"}}],"usage":null}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":2}}"#,
    ]);
    let (head, body) = kit.respond(&mut ex, 200, "text/event-stream", &events);
    assert_eq!(head.response_headers.remove, ["content-length"], "the client's stream is shorter");
    let seen = String::from_utf8(body.response_body.clone().expect("the stream is rewritten")).unwrap();
    assert_eq!(seen, sse(&[r#"{"choices":[{"delta":{"content":"Hi"}}]}"#]));
    assert_eq!(state(&body, Field::ActualTokens), Some("13"));
    assert_eq!(state(&body, Field::Usage), Some("reported"));
}

#[test]
fn a_stream_whose_client_asked_for_usage_passes_untouched() {
    let kit = Kit::new(QUOTA);
    let asked = STREAMING.replace("\"stream\":true", "\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    let (mut ex, plan) = kit.request(&[], &asked);
    assert_eq!(plan.request_body, None);
    let events = sse(&[r#"{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":2}}"#]);
    let (head, body) = kit.respond(&mut ex, 200, "text/event-stream", &events);
    assert!(head.response_headers.remove.is_empty());
    assert_eq!(body.response_body, None);
    assert_eq!(state(&body, Field::ActualTokens), Some("13"));
}

#[test]
fn a_stream_without_usage_is_charged_the_counted_estimate() {
    let kit = Kit::new(QUOTA);
    let (mut ex, _) = kit.request(&[], STREAMING);
    let events = sse(&[r#"{"choices":[{"delta":{"content":"Hello there"}}]}"#]);
    let (_, body) = kit.respond(&mut ex, 200, "text/event-stream", &events);
    assert_eq!(state(&body, Field::Usage), Some("estimated"));
    assert_eq!(state(&body, Field::ActualTokens), Some("13"), "11 prompt + 2 counted");
    assert_eq!(stat(&body, Metric::UsageMissingTotal), Some(1));
    assert_eq!(stat(&body, Metric::CompletionTokensTotal), Some(2));
}

#[test]
fn a_failed_or_missing_response_refunds_the_whole_reservation() {
    let kit = Kit::new(QUOTA);
    let (mut ex, _) = kit.request(&[], HELLO);
    let (_, body) = kit.respond(&mut ex, 503, "application/json", r#"{"error": {}}"#);
    assert_eq!(state(&body, Field::ActualTokens), Some("0"));
    assert_eq!(stat(&body, Metric::RefundedTokensTotal), Some(111));
    assert_eq!(stat(&body, Metric::UsageMissingTotal), None, "a failure is not a missing usage");
    // Reset before any response: settled at the stream's end.
    let (mut ex, _) = kit.request(&[], HELLO);
    let end = ex.on_stream_end(&kit.env());
    assert_eq!(stat(&end, Metric::RefundedTokensTotal), Some(111));
    assert_eq!(state(&end, Field::Usage), Some("none"));
    assert_eq!(stat(&end, Metric::CompletionTokens), None, "nothing came: no output sample");
    // A response body other than JSON or SSE is not read.
    let (mut ex, _) = kit.request(&[], HELLO);
    let map = headers(&[(":status", "200"), ("content-type", "text/plain")]);
    ex.on_response_headers(&kit.env(), false, || map.as_slice());
    assert_eq!(ex.on_response_body(&kit.env(), 5, false, never), Plan::default());
    let end = ex.on_response_body(&kit.env(), 5, true, never);
    assert_eq!(state(&end, Field::ActualTokens), Some("11"), "the prompt, nothing counted as output");
}

#[test]
fn a_quota_store_that_fails_admits_and_says_so() {
    let kit = Kit { store: Box::new(BrokenStore), ..Kit::new(QUOTA) };
    let (mut ex, plan) = kit.request(&[], HELLO);
    assert_eq!(plan.action, Action::Continue);
    assert_eq!(stat(&plan, Metric::QuotaErrorsTotal), Some(1));
    assert!(plan.logs.iter().any(|(l, m)| *l == LogLevel::Error && m.starts_with("quota not applied")), "{:?}", plan.logs);
    assert_eq!(set(&plan.request_headers, "x-tokengate-reserved-tokens"), None);
    // Nothing reserved, nothing to settle; the response's levels cannot be read either, but the
    // meter still reads the usage.
    let (head, body) = kit.respond(&mut ex, 200, "application/json", &chat_completion(11, 1));
    assert!(head.response_headers.set.is_empty());
    assert!(head.logs.iter().any(|(l, _)| *l == LogLevel::Warn));
    assert_eq!(stat(&body, Metric::CompletionTokensTotal), Some(1));
    assert_eq!((stat(&body, Metric::RefundedTokensTotal), stat(&body, Metric::QuotaErrorsTotal)), (None, None));
}

// Metering: every admitted request, quotas or not.

#[test]
fn metering_without_a_quota_reads_json_and_sse_and_says_where_counts_come_from() {
    let kit = Kit::new("");
    // JSON with usage: the backend's counts, cached and reasoning tokens, the drift.
    let (mut ex, _) = kit.request(&[], HELLO);
    let completion = r#"{"choices":[{"message":{"content":"Hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":7,
        "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":5}}}"#;
    let (_, body) = kit.respond(&mut ex, 200, "application/json", completion);
    for (metric, value) in [
        (Metric::BackendPromptTokensTotal, 12),
        (Metric::CompletionTokensTotal, 7),
        (Metric::CompletionTokens, 7),
        (Metric::CachedPromptTokensTotal, 4),
        (Metric::ReasoningTokensTotal, 5),
        (Metric::PromptDriftTokens, 1),
    ] {
        assert_eq!(stat(&body, metric), Some(value), "{metric:?}");
    }
    for (field, value) in [
        (Field::Usage, "reported"),
        (Field::BackendPromptTokens, "12"),
        (Field::CompletionTokens, "7"),
        (Field::CachedTokens, "4"),
        (Field::Drift, "1"),
    ] {
        assert_eq!(state(&body, field), Some(value), "{field:?}");
    }
    assert_eq!((stat(&body, Metric::RefundedTokensTotal), state(&body, Field::ActualTokens)), (None, None), "no quota, nothing charged");

    // A stream whose client did not ask for usage: asked for, and hidden, without a quota too.
    let (mut ex, plan) = kit.request(&[], STREAMING);
    assert!(plan.request_body.is_some(), "usage is asked for");
    let events = sse(&[r#"{"choices":[{"delta":{"content":"Hi"}}],"usage":null}"#, r#"{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":2}}"#]);
    let (head, body) = kit.respond(&mut ex, 200, "text/event-stream", &events);
    assert_eq!(head.response_headers.remove, ["content-length"]);
    assert_eq!(String::from_utf8(body.response_body.clone().unwrap()).unwrap(), sse(&[r#"{"choices":[{"delta":{"content":"Hi"}}]}"#]));
    assert_eq!((state(&body, Field::Usage), state(&body, Field::Drift)), (Some("reported"), Some("0")));

    // A backend that never sends usage: the output counted from the deltas.
    let (mut ex, _) = kit.request(&[], STREAMING);
    let (_, body) = kit.respond(&mut ex, 200, "text/event-stream", &sse(&[r#"{"choices":[{"delta":{"content":"Hello there"}}]}"#]));
    assert_eq!((state(&body, Field::Usage), state(&body, Field::CompletionTokens)), (Some("estimated"), Some("2")));
    assert_eq!((state(&body, Field::BackendPromptTokens), state(&body, Field::Drift)), (None, None));
    assert_eq!(stat(&body, Metric::UsageMissingTotal), Some(1));
    assert_eq!(stat(&body, Metric::BackendPromptTokensTotal), None);

    // A JSON response without usage: the output counted from the message.
    let (mut ex, _) = kit.request(&[], HELLO);
    let (_, body) = kit.respond(&mut ex, 200, "application/json", r#"{"choices":[{"message":{"content":"Hello there"}}]}"#);
    assert_eq!((state(&body, Field::Usage), state(&body, Field::CompletionTokens)), (Some("estimated"), Some("2")));
}

#[test]
fn stream_usage_off_leaves_the_request_alone_and_estimates_the_output() {
    let kit = Kit::new(r#"{"metering": {"stream_usage": false}}"#);
    let (mut ex, plan) = kit.request(&[], STREAMING);
    assert_eq!(plan.request_body, None);
    let events = sse(&[r#"{"choices":[{"delta":{"content":"Hello there"}}]}"#]);
    let (head, body) = kit.respond(&mut ex, 200, "text/event-stream", &events);
    assert!(head.response_headers.remove.is_empty() && body.response_body.is_none(), "the stream passes untouched");
    assert_eq!((state(&body, Field::Usage), state(&body, Field::CompletionTokens)), (Some("estimated"), Some("2")));
}

#[test]
fn every_plan_of_a_request_carries_its_rule_label_and_unknown_models_are_other() {
    let kit = Kit::new(r#"{"max_prompt_tokens": 5, "models": [{"match": "gpt-4o", "label": "four-o", "max_prompt_tokens": 100}]}"#);
    let four_o = kit.config.labels.index_of("four-o");
    let (mut ex, plan) = kit.request(&[], HELLO);
    assert_eq!(plan.stats.label, four_o);
    let (_, body) = kit.respond(&mut ex, 200, "application/json", &chat_completion(11, 1));
    assert_eq!(body.stats.label, four_o);
    // A client's own model name never becomes a label.
    let (_, plan) = kit.request(&[], &HELLO.replace("gpt-4o", "anything-a-client-sends"));
    assert_eq!((plan.stats.label, stat(&plan, Metric::RejectedTotal(ErrorCode::ContextLengthExceeded))), (0, Some(1)));
    assert_eq!(stat(&plan, Metric::DroppedTokensTotal), Some(HELLO_TOKENS), "the refused prompt's tokens are dropped tokens");
    // Refused before the body names a model: `other`.
    let mut ex = Exchange::new();
    let plan = ex.on_request_headers(&kit.env(), &headers(&[("content-length", "999999999")]), false);
    assert_eq!((plan.stats.label, stat(&plan, Metric::RejectedTotal(ErrorCode::RequestTooLarge))), (0, Some(1)));
}

#[test]
fn drift_over_the_ratio_moves_a_counter_and_logs_once_a_minute() {
    let kit = Kit::new(r#"{"metering": {"drift_warn_ratio": 0.1}, "models": [{"match": "gpt-4o", "label": "four-o"}]}"#);
    let drift = |backend: u64| {
        let (mut ex, _) = kit.request(&[], HELLO);
        kit.respond(&mut ex, 200, "application/json", &chat_completion(backend, 1)).1
    };
    let within = drift(12);
    assert_eq!(stat(&within, Metric::PromptDriftWarningsTotal), None, "1 of 11 is under 10 %");
    assert!(within.logs.is_empty());
    let over = drift(13);
    assert_eq!(stat(&over, Metric::PromptDriftWarningsTotal), Some(1));
    assert_eq!(over.logs.len(), 1);
    assert!(over.logs[0].1.contains("model rule `four-o`") && over.logs[0].1.contains("counted 13 prompt tokens, tokengate 11 (+18.18%"), "{:?}", over.logs);
    let again = drift(5);
    assert_eq!(stat(&again, Metric::PromptDriftWarningsTotal), Some(1));
    assert!(again.logs.is_empty(), "one line a minute");
    kit.clock.now.set(T0 + 61 * SEC);
    let later = drift(20);
    assert!(later.logs[0].1.contains("1 more drifting responses"), "{:?}", later.logs);
    // Off with null.
    let kit = Kit::new(r#"{"metering": {"drift_warn_ratio": null}}"#);
    let (mut ex, _) = kit.request(&[], HELLO);
    let (_, body) = kit.respond(&mut ex, 200, "application/json", &chat_completion(100, 1));
    assert_eq!((stat(&body, Metric::PromptDriftWarningsTotal), body.logs.len()), (None, 0));
    assert_eq!(stat(&body, Metric::PromptDriftTokens), Some(89), "the histogram still records it");
}

#[test]
fn weighted_costs_reserve_and_settle_in_the_limits_units() {
    // input 2, cached 0.5, output 4; 1000 weighted tokens a minute.
    let kit = Kit::new(r#"{"quota": {"tokens_per_minute": 1000, "default_output_reservation": 10},
        "models": [{"match": "gpt-4o", "cost": {"input": 2, "cached_input": 0.5, "output": 4}}]}"#);
    let (mut ex, plan) = kit.request(&[("authorization", KEY)], HELLO);
    // 11 × 2 + 10 × 4 = 62 reserved.
    assert_eq!(set(&plan.request_headers, "x-tokengate-reserved-tokens"), Some("62"));
    // 12 prompt tokens, 3 of them cached, 5 out: 9 × 2 + 3 × 0.5 + 5 × 4 = 39.5 weighted tokens.
    let (head, body) = kit.respond(&mut ex, 200, "application/json", &chat_completion(12, 5));
    assert_eq!(set(&head.response_headers, "x-ratelimit-remaining-tokens"), Some("938"));
    assert_eq!(state(&body, Field::ActualTokens), Some("40"), "rounded up to whole tokens");
    assert_eq!(stat(&body, Metric::RefundedTokensTotal), Some(22), "62 - 39.5, whole tokens");
    let mut ex = Exchange::new();
    ex.on_request_headers(&kit.env(), &headers(&[(":method", "GET"), ("authorization", KEY)]), true);
    let (head, _) = kit.respond(&mut ex, 200, "application/json", "{}");
    assert_eq!(set(&head.response_headers, "x-ratelimit-remaining-tokens"), Some("960"), "1000 - 39.5, rounded down");
    // A refusal speaks in weighted tokens.
    let big = HELLO.replace("\"messages\"", "\"max_tokens\":240,\"messages\"");
    let (_, plan) = kit.request(&[("authorization", KEY)], &big);
    let r = reply(&plan);
    assert!(r.body.contains("Limit 1000, Used 40, Requested 982"), "{}", r.body);
    assert_eq!(stat(&plan, Metric::DroppedTokensTotal), Some(HELLO_TOKENS + 240), "dropped counts raw tokens");
}

#[test]
fn input_and_output_limits_refuse_on_their_own_bucket() {
    let kit = Kit::new(r#"{"quota": {"input_tokens_per_minute": 20, "output_tokens_per_minute": 100, "default_output_reservation": 10}}"#);
    let (_, plan) = kit.request(&[("authorization", KEY)], HELLO);
    assert_eq!(plan.action, Action::Continue);
    // A second prompt of 11 does not fit the 9 input tokens left.
    let (_, plan) = kit.request(&[("authorization", KEY)], HELLO);
    let r = reply(&plan);
    assert_eq!((r.status, error_code(r).as_str()), (429, "rate_limit_exceeded"));
    assert!(r.body.contains("on input tokens per min (ITPM): Limit 20, Used 11, Requested 11"), "{}", r.body);
    assert_eq!(reply_header(r, "x-ratelimit-remaining-input-tokens"), Some("9"));
    assert_eq!(reply_header(r, "x-ratelimit-remaining-output-tokens"), Some("90"));
    assert_eq!(reply_header(r, "x-ratelimit-limit-tokens"), None, "no total limit, no total headers");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"]["type"], "tokens");
    // Another key asks for more output than the output bucket holds.
    let (_, plan) = kit.request(&[("authorization", "Bearer other")], &HELLO.replace("\"messages\"", "\"max_tokens\":101,\"messages\""));
    assert!(reply(&plan).body.contains("Request too large for key") && reply(&plan).body.contains("output tokens per min (OTPM): Limit 100, Requested 101"), "{}", reply(&plan).body);
}
