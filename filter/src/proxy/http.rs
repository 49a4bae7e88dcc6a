//! One HTTP stream: strips spoofed headers, asks the gate, forwards, annotates or refuses, holds
//! the quota reservation, and settles it with the usage read from the response.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::store::SharedData;
use super::{log, Shared};
use crate::gate::{
    admit_quota, decide_body, decide_head, reserved_output, settlement, too_large, Admission, BodyDecision,
    HeadDecision, QuotaDecision, RequestHead,
};
use crate::quota::{ratelimit_headers, KeyName, Quotas, Snapshot};
use crate::reject::{ErrorCode, Rejection};
use crate::request::{with_include_usage, Api};
use crate::response::{output_texts, usage_of, JsonTap, SseScanner, Usage};
use crate::tokenize::{Encoding, Tokenizer};

/// Headers tokengate owns toward the backend; clients may not send them.
const OWN_HEADER_PREFIX: &str = "x-tokengate-";
/// JSON responses larger than this are not read for usage (the estimate applies).
const MAX_JSON_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Headers,
    AwaitingBody,
    Decided,
}

/// Tokens taken from a key's buckets at admission, to settle when the response is known.
struct Reservation {
    key: KeyName,
    reserved: u64,
    prompt_tokens: u64,
    encoding: Encoding,
    snapshot: Snapshot,
    /// tokengate asked the backend for stream usage; the client did not.
    injected_usage: bool,
}

/// How the response body is read.
enum Tap {
    Nothing,
    Json(JsonTap),
    Sse(SseScanner),
}

pub(crate) struct Stream {
    context_id: u32,
    shared: Option<Rc<Shared>>,
    phase: Phase,
    key_id: Option<String>,
    content_type: Option<String>,
    path: Option<String>,
    body_bytes: usize,
    /// tokengate answered this request itself.
    local_reply: bool,
    reservation: Option<Reservation>,
    tap: Tap,
    /// The backend's response failed (status >= 400), or none has arrived yet.
    backend_failed: bool,
}

impl Stream {
    pub fn new(context_id: u32, shared: Option<Rc<Shared>>) -> Stream {
        Stream {
            context_id,
            shared,
            phase: Phase::Headers,
            key_id: None,
            content_type: None,
            path: None,
            body_bytes: 0,
            local_reply: false,
            reservation: None,
            tap: Tap::Nothing,
            backend_failed: true,
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level, &format!("tokengate[{}]: {message}", self.context_id));
    }

    fn header(&self, map: MapType, name: &str) -> Option<String> {
        hostcalls::get_map_value(map, name).ok().flatten()
    }

    fn set_header(&self, map: MapType, name: &str, value: &str) {
        if let Err(s) = hostcalls::set_map_value(map, name, Some(value)) {
            self.log(LogLevel::Warn, &format!("cannot set header {name}: {s:?}"));
        }
    }

    /// The request headers, read with one host call, after removing every `x-tokengate-*` one
    /// from the request, so only tokengate's own values reach the backend. Header names come
    /// lowercase from Envoy; `None` if the host refused.
    fn take_request_headers(&self) -> Option<Vec<(String, String)>> {
        let headers = match hostcalls::get_map(MapType::HttpRequestHeaders) {
            Ok(h) => h,
            Err(s) => {
                self.log(LogLevel::Warn, &format!("cannot read request headers: {s:?}"));
                return None;
            }
        };
        // Each name once (a header may repeat). A linear `contains` rather than sort + dedup: the
        // list is almost always empty, and the sort was 9 KB of code that V8 compiles at start-up.
        let mut spoofed: Vec<&str> = Vec::new();
        for (name, _) in &headers {
            let own = name
                .get(..OWN_HEADER_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(OWN_HEADER_PREFIX));
            if own && !spoofed.contains(&name.as_str()) {
                spoofed.push(name);
            }
        }
        for name in spoofed {
            if let Err(s) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name) {
                self.log(LogLevel::Warn, &format!("cannot remove header {name}: {s:?}"));
            }
        }
        Some(headers)
    }

    /// Filter state for access logs: `%FILTER_STATE(wasm.tokengate.<name>:PLAIN)%`.
    fn filter_state(&self, name: &str, value: &str) {
        let path = format!("tokengate.{name}");
        if let Err(s) = hostcalls::set_property(vec![path.as_str()], Some(value.as_bytes())) {
            self.log(LogLevel::Warn, &format!("cannot set filter state {path}: {s:?}"));
        }
    }

    fn record_decision(&self, decision: &str) {
        self.filter_state("decision", decision);
        if let Some(id) = &self.key_id {
            self.filter_state("key_id", id);
        }
    }

    /// Whose buckets this request uses, when quotas are on.
    fn quota_key(&self) -> KeyName {
        match &self.key_id {
            Some(id) => KeyName::Id(id.clone()),
            None => KeyName::Anonymous,
        }
    }

    /// The key's buckets as they stand, for the `x-ratelimit-*` headers of responses that took
    /// nothing from them.
    fn current_quota_headers(&self, shared: &Shared) -> Vec<(&'static str, String)> {
        let Some(quota) = &shared.config.quota else { return Vec::new() };
        match Quotas::new(quota).peek(&SharedData, &self.quota_key(), now_ns()) {
            Ok(snapshot) => ratelimit_headers(&snapshot),
            Err(e) => {
                self.log(LogLevel::Warn, &format!("cannot read the quota: {e}"));
                Vec::new()
            }
        }
    }

    fn pass_through(&mut self, shared: &Shared) -> Action {
        self.phase = Phase::Decided;
        shared.metrics.add(shared.metrics.passthrough, 1);
        self.record_decision("passthrough");
        Action::Continue
    }

    fn reject(&mut self, shared: &Shared, rejection: &Rejection) -> Action {
        self.phase = Phase::Decided;
        self.local_reply = true;
        if let Some(id) = shared.metrics.rejected(rejection.code) {
            shared.metrics.add(id, 1);
        }
        self.record_decision(rejection.code.as_str());
        let mut extra = rejection.headers.clone();
        if rejection.code != ErrorCode::RateLimitExceeded && rejection.code != ErrorCode::MissingApiKey {
            extra.extend(self.current_quota_headers(shared));
        }
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        headers.extend(extra.iter().map(|(n, v)| (*n, v.as_str())));
        let body = rejection.body();
        let sent = hostcalls::send_http_response(u32::from(rejection.status()), headers, Some(body.as_bytes()));
        if let Err(s) = sent {
            self.log(LogLevel::Error, &format!("cannot send the {} reply: {s:?}", rejection.code.as_str()));
        }
        Action::Pause
    }

    /// Takes the reservation from the key's buckets; `Some(action)` when the request is refused.
    fn reserve(&mut self, shared: &Shared, admission: &Admission, output: u64) -> Option<Action> {
        let quota = shared.config.quota.as_ref()?;
        let key = self.quota_key();
        match admit_quota(quota, &SharedData, &key, now_ns(), admission.prompt_tokens, output) {
            Ok(QuotaDecision::Admitted { reserved_tokens, snapshot, evicted }) => {
                if evicted {
                    shared.metrics.add(shared.metrics.quota_evictions, 1);
                }
                self.reservation = Some(Reservation {
                    key,
                    reserved: reserved_tokens,
                    prompt_tokens: admission.prompt_tokens,
                    encoding: admission.encoding,
                    snapshot,
                    injected_usage: false,
                });
                None
            }
            Ok(QuotaDecision::Refused(rejection)) => {
                self.filter_state("prompt_tokens", &admission.prompt_tokens.to_string());
                Some(self.reject(shared, &rejection))
            }
            Err(e) => {
                // Shared data failing is the proxy's trouble, not the client's: admit, and say so.
                shared.metrics.add(shared.metrics.quota_errors, 1);
                self.log(LogLevel::Error, &format!("quota not applied: {e}"));
                None
            }
        }
    }

    /// Streams report usage only when asked: ask, and remember to hide the answer from the client.
    fn request_stream_usage(&mut self, admission: &Admission, body: &[u8]) {
        if self.reservation.is_none() {
            return;
        }
        if !admission.stream || admission.include_usage || !matches!(admission.api, Api::ChatCompletions | Api::Completions) {
            return;
        }
        let Some(rewritten) = with_include_usage(body) else { return };
        match hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body.len(), &rewritten) {
            Ok(()) => {
                if let Some(reservation) = self.reservation.as_mut() {
                    reservation.injected_usage = true;
                }
                // A chunked body has no length to correct; Envoy frames it anew.
                if self.header(MapType::HttpRequestHeaders, "content-length").is_some() {
                    self.set_header(MapType::HttpRequestHeaders, "content-length", &rewritten.len().to_string());
                }
            }
            Err(s) => self.log(LogLevel::Warn, &format!("cannot ask the stream for usage: {s:?}")),
        }
    }

    fn admit(&mut self, shared: &Shared, admission: &Admission, body: &[u8]) -> Action {
        let output = reserved_output(&shared.config, admission);
        if let Some(refused) = self.reserve(shared, admission, output) {
            return refused;
        }
        self.request_stream_usage(admission, body);
        self.phase = Phase::Decided;
        let req = MapType::HttpRequestHeaders;
        let tokens = admission.prompt_tokens.to_string();
        self.set_header(req, "x-tokengate-prompt-tokens", &tokens);
        if let Some(asked) = admission.max_output {
            self.set_header(req, "x-tokengate-max-output-tokens", &asked.tokens.to_string());
        }
        self.set_header(req, "x-tokengate-encoding", admission.encoding.name());
        self.set_header(req, "x-tokengate-count", admission.exactness.name());
        if let Some(id) = &self.key_id {
            self.set_header(req, "x-tokengate-key-id", id);
        }
        if let Some(r) = &self.reservation {
            let reserved = r.reserved.to_string();
            self.set_header(req, "x-tokengate-reserved-tokens", &reserved);
            self.filter_state("reserved_tokens", &reserved);
        }
        let routing = &shared.config.routing;
        let needed = admission.prompt_tokens.saturating_add(output);
        if let Some(class) = routing.class_for(needed) {
            self.set_header(req, "x-tokengate-class", class);
        }
        if routing.clear_route_cache {
            // After the headers above are set: the router matches again on them.
            if let Err(s) = hostcalls::call_foreign_function("clear_route_cache", None) {
                self.log(LogLevel::Warn, &format!("cannot clear the route cache: {s:?}"));
            }
        }
        let m = &shared.metrics;
        m.add(m.allowed, 1);
        m.add(m.prompt_tokens_total, admission.prompt_tokens);
        m.record(m.prompt_tokens, admission.prompt_tokens);
        self.filter_state("prompt_tokens", &tokens);
        self.filter_state("encoding", admission.encoding.name());
        self.record_decision("allowed");
        Action::Continue
    }

    /// The whole body is buffered: count it and act.
    fn decide(&mut self, shared: &Shared) -> Action {
        let body = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, self.body_bytes) {
            Ok(body) => body.unwrap_or_default(),
            Err(s) => {
                self.log(LogLevel::Error, &format!("cannot read the request body, passing it on uncounted: {s:?}"));
                return self.pass_through(shared);
            }
        };
        let started = now_ns();
        let decision = decide_body(&shared.config, self.content_type.as_deref(), self.path.as_deref(), &body);
        let elapsed_us = now_ns().saturating_sub(started) / 1000;
        match decision {
            BodyDecision::Allow(admission) => {
                shared.metrics.record(shared.metrics.tokenize_us, elapsed_us);
                self.admit(shared, &admission, &body)
            }
            BodyDecision::PassThrough => self.pass_through(shared),
            BodyDecision::Reject(rejection) => {
                if rejection.code == ErrorCode::ContextLengthExceeded {
                    shared.metrics.record(shared.metrics.tokenize_us, elapsed_us);
                }
                self.reject(shared, &rejection)
            }
        }
    }

    /// Ends the reservation with what the response showed.
    fn settle(&mut self, shared: &Shared, usage: Option<Usage>, estimated_output: u64) {
        let Some(r) = self.reservation.take() else { return };
        let Some(quota) = &shared.config.quota else { return };
        let s = settlement(r.prompt_tokens, usage, self.backend_failed, estimated_output);
        let delta = i64::try_from(s.actual_tokens).unwrap_or(i64::MAX) - i64::try_from(r.reserved).unwrap_or(i64::MAX);
        if let Err(e) = Quotas::new(quota).settle(&SharedData, &r.key, now_ns(), delta) {
            shared.metrics.add(shared.metrics.quota_errors, 1);
            self.log(LogLevel::Error, &format!("cannot settle the reservation: {e}"));
        }
        let m = &shared.metrics;
        m.add(m.completion_tokens_total, s.completion_tokens);
        if delta < 0 {
            m.add(m.refunded_tokens_total, delta.unsigned_abs());
        }
        match usage {
            Some(u) => {
                m.add(m.cached_prompt_tokens_total, u.cached_prompt_tokens);
                m.record(m.prompt_drift_tokens, u.prompt_tokens.abs_diff(r.prompt_tokens));
                if u.prompt_tokens < r.prompt_tokens {
                    m.add(m.prompt_drift_negative, 1);
                }
            }
            None if !self.backend_failed => m.add(m.usage_missing, 1),
            None => {}
        }
        self.filter_state("actual_tokens", &s.actual_tokens.to_string());
        self.filter_state("usage", if s.usage_reported { "reported" } else { "estimated" });
    }

    fn tokenizer(&self) -> Option<&'static Tokenizer> {
        self.reservation.as_ref().map(|r| Tokenizer::of(r.encoding))
    }

    /// The response body ended (or the stream did): settle with what the tap saw.
    fn finish_tap(&mut self, shared: &Shared) {
        let tap = std::mem::replace(&mut self.tap, Tap::Nothing);
        let (usage, estimated) = match tap {
            Tap::Nothing => (None, 0),
            Tap::Sse(scanner) => (scanner.usage(), scanner.estimated_output_tokens()),
            Tap::Json(mut json) => match json.finish() {
                Some(value) => {
                    let estimated = self
                        .tokenizer()
                        .map_or(0, |t| output_texts(&value).iter().map(|text| t.count(text)).sum());
                    (usage_of(&value), estimated)
                }
                None => (None, 0),
            },
        };
        self.settle(shared, usage, estimated);
    }
}

/// The first value of header `name` (case-insensitive) in a header list. Out of line: inlined
/// four times it was 1.7 KB more code for V8 to compile.
#[inline(never)]
fn find_header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            self.log(LogLevel::Error, "no valid configuration; passing the request on unchecked");
            return Action::Continue;
        };
        shared.metrics.add(shared.metrics.requests, 1);
        // The four headers the filter reads come from the one map read (four host calls fewer
        // per request); if the host refused it, each is asked for on its own.
        let headers = self.take_request_headers();
        let get = |name: &str| match &headers {
            Some(all) => find_header(all, name),
            None => self.header(MapType::HttpRequestHeaders, name),
        };
        let api_key = get(&shared.config.api_key.header);
        let content_length = get("content-length");
        let (content_type, path) = (get("content-type"), get(":path"));
        (self.content_type, self.path) = (content_type, path);
        let head = RequestHead {
            api_key: api_key.as_deref(),
            content_length: content_length.as_deref(),
            content_type: self.content_type.as_deref(),
            end_of_stream,
        };
        let outcome = decide_head(&shared.config, &head);
        self.key_id = outcome.key_id;
        match outcome.decision {
            HeadDecision::Reject(rejection) => self.reject(&shared, &rejection),
            HeadDecision::PassThrough => self.pass_through(&shared),
            HeadDecision::ReadBody => {
                self.phase = Phase::AwaitingBody;
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else { return Action::Continue };
        if self.phase != Phase::AwaitingBody {
            return Action::Continue;
        }
        self.body_bytes = body_size;
        if body_size as u64 > shared.config.max_body_bytes {
            return self.reject(&shared, &too_large(body_size as u64, shared.config.max_body_bytes));
        }
        if !end_of_stream {
            // Keep buffering until the body is complete.
            return Action::Pause;
        }
        self.decide(&shared)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // A body followed by trailers never sees end_of_stream in the body callback.
        let Some(shared) = self.shared.clone() else { return Action::Continue };
        if self.phase != Phase::AwaitingBody {
            return Action::Continue;
        }
        self.decide(&shared)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else { return Action::Continue };
        if self.local_reply || shared.config.quota.is_none() {
            return Action::Continue;
        }
        let resp = MapType::HttpResponseHeaders;
        let status = self.header(resp, ":status").and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        self.backend_failed = !(200..400).contains(&status);
        let headers = match &self.reservation {
            Some(r) => ratelimit_headers(&r.snapshot),
            None => self.current_quota_headers(&shared),
        };
        for (name, value) in &headers {
            self.set_header(resp, name, value);
        }
        if self.reservation.is_none() {
            return Action::Continue;
        }
        let content_type = self.header(resp, "content-type").unwrap_or_default().to_ascii_lowercase();
        let injected = self.reservation.as_ref().is_some_and(|r| r.injected_usage);
        self.tap = if content_type.starts_with("text/event-stream") {
            if injected {
                // The client's stream loses the usage chunk: its length changes.
                let _ = hostcalls::remove_map_value(resp, "content-length");
            }
            Tap::Sse(SseScanner::new(self.tokenizer(), injected))
        } else if content_type.contains("json") {
            Tap::Json(JsonTap::new(MAX_JSON_RESPONSE_BYTES))
        } else {
            Tap::Nothing
        };
        if end_of_stream {
            self.finish_tap(&shared);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else { return Action::Continue };
        if self.reservation.is_none() {
            return Action::Continue;
        }
        let chunk = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size) {
            Ok(chunk) => chunk.unwrap_or_default(),
            Err(s) => {
                self.log(LogLevel::Warn, &format!("cannot read the response body: {s:?}"));
                Vec::new()
            }
        };
        match &mut self.tap {
            Tap::Nothing => {}
            Tap::Json(json) => json.feed(&chunk),
            Tap::Sse(scanner) => {
                if let Some(rewritten) = scanner.feed(&chunk, end_of_stream) {
                    if rewritten != chunk {
                        if let Err(s) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &rewritten) {
                            self.log(LogLevel::Warn, &format!("cannot rewrite the stream: {s:?}"));
                        }
                    }
                }
            }
        }
        if end_of_stream {
            self.finish_tap(&shared);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // The stream ended without a complete response (reset, cut stream): settle with what
        // was seen.
        if let Some(shared) = self.shared.clone() {
            if self.reservation.is_some() {
                self.finish_tap(&shared);
            }
        }
    }
}
