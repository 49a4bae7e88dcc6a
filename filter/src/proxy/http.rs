//! One HTTP stream: strips spoofed headers, asks the gate, and forwards, annotates or refuses.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::{log, Shared};
use crate::gate::{decide_body, decide_head, too_large, Admission, BodyDecision, HeadDecision, RequestHead};
use crate::reject::{ErrorCode, Rejection};

/// Headers tokengate owns toward the backend; clients may not send them.
const OWN_HEADER_PREFIX: &str = "x-tokengate-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Headers,
    AwaitingBody,
    Decided,
}

pub(crate) struct Stream {
    context_id: u32,
    shared: Option<Rc<Shared>>,
    phase: Phase,
    key_id: Option<String>,
    content_type: Option<String>,
    path: Option<String>,
    body_bytes: usize,
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
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level, &format!("tokengate[{}]: {message}", self.context_id));
    }

    fn header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name).ok().flatten()
    }

    fn set_header(&self, name: &str, value: &str) {
        if let Err(s) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)) {
            self.log(LogLevel::Warn, &format!("cannot set header {name}: {s:?}"));
        }
    }

    /// Removes every `x-tokengate-*` request header, so only tokengate's own values reach the backend.
    fn strip_own_headers(&self) {
        let headers = match hostcalls::get_map(MapType::HttpRequestHeaders) {
            Ok(h) => h,
            Err(s) => {
                self.log(LogLevel::Warn, &format!("cannot read request headers: {s:?}"));
                return;
            }
        };
        let mut spoofed: Vec<&str> = headers
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| {
                name.get(..OWN_HEADER_PREFIX.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(OWN_HEADER_PREFIX))
            })
            .collect();
        spoofed.sort_unstable();
        spoofed.dedup();
        for name in spoofed {
            if let Err(s) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name) {
                self.log(LogLevel::Warn, &format!("cannot remove header {name}: {s:?}"));
            }
        }
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

    fn pass_through(&mut self, shared: &Shared) -> Action {
        self.phase = Phase::Decided;
        shared.metrics.add(shared.metrics.passthrough, 1);
        self.record_decision("passthrough");
        Action::Continue
    }

    fn reject(&mut self, shared: &Shared, rejection: &Rejection) -> Action {
        self.phase = Phase::Decided;
        if let Some(id) = shared.metrics.rejected(rejection.code) {
            shared.metrics.add(id, 1);
        }
        self.record_decision(rejection.code.as_str());
        let body = rejection.body();
        let sent = hostcalls::send_http_response(
            u32::from(rejection.status()),
            vec![("content-type", "application/json")],
            Some(body.as_bytes()),
        );
        if let Err(s) = sent {
            self.log(LogLevel::Error, &format!("cannot send the {} reply: {s:?}", rejection.code.as_str()));
        }
        Action::Pause
    }

    fn admit(&mut self, shared: &Shared, admission: &Admission) -> Action {
        self.phase = Phase::Decided;
        let tokens = admission.prompt_tokens.to_string();
        self.set_header("x-tokengate-prompt-tokens", &tokens);
        if let Some(asked) = admission.max_output {
            self.set_header("x-tokengate-max-output-tokens", &asked.tokens.to_string());
        }
        self.set_header("x-tokengate-encoding", admission.encoding.name());
        self.set_header("x-tokengate-count", admission.exactness.name());
        if let Some(id) = &self.key_id {
            self.set_header("x-tokengate-key-id", id);
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
        let started = now_us();
        let decision = decide_body(&shared.config, self.content_type.as_deref(), self.path.as_deref(), &body);
        let elapsed = now_us().saturating_sub(started);
        match decision {
            Ok(BodyDecision::Allow(admission)) => {
                shared.metrics.record(shared.metrics.tokenize_us, elapsed);
                self.admit(shared, &admission)
            }
            Ok(BodyDecision::PassThrough) => self.pass_through(shared),
            Ok(BodyDecision::Reject(rejection)) => {
                if rejection.code == ErrorCode::ContextLengthExceeded {
                    shared.metrics.record(shared.metrics.tokenize_us, elapsed);
                }
                self.reject(shared, &rejection)
            }
            Err(e) => {
                self.log(LogLevel::Error, &format!("{e}; passing the request on uncounted"));
                self.pass_through(shared)
            }
        }
    }
}

fn now_us() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            self.log(LogLevel::Error, "no valid configuration; passing the request on unchecked");
            return Action::Continue;
        };
        shared.metrics.add(shared.metrics.requests, 1);
        self.strip_own_headers();
        let api_key = self.header(&shared.config.api_key.header);
        let content_length = self.header("content-length");
        self.content_type = self.header("content-type");
        self.path = self.header(":path");
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
}
