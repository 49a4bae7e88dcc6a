//! The one room that decides. [`Exchange`] is one HTTP stream's state machine: each callback's
//! inputs go in as plain values (the request's header list, body bytes read only when a decision
//! needs them, the response's headers, the time, a [`Store`] for shared data) and a [`Plan`]
//! comes out. The proxy adapter reads what the host has, calls the matching `on_*` method and
//! carries the plan out; it decides nothing.
//!
//! Request side (this file, with the pure decisions in `admit`): strip client-sent
//! `x-tokengate-*` headers, refuse at the headers or hold the request for its body, count it,
//! reserve from the key's buckets, annotate it. Response side (`settle`): read the usage the
//! backend reports for every admitted request, meter it, and settle the reservation with it.
//! Every plan's stats carry the request's model label (`other` until a rule matches).

mod admit;
mod drift;
mod metric;
mod plan;
mod rls;
mod settle;
#[cfg(test)]
mod tests;
mod throttle;

use crate::config::{whole_tokens, Config};
use crate::quota::bucket::Level;
use crate::quota::{ratelimit_headers, Charge, KeyName, Quotas, Snapshot, Store};
use crate::reject::{ErrorCode, Rejection};
use crate::request::{with_include_usage, Api, Exactness};
use crate::rls::EntryValues;
use admit::{admit_quota, decide_body, decide_head, reserved_output, too_large, Admission, BodyDecision, HeadDecision, QuotaDecision, RequestHead};
use rls::Awaiting;
use settle::{Meter, Reservation, Tap};

pub use throttle::LogThrottle;
pub use metric::Metric;
pub use plan::{Action, Call, Field, HeaderEdits, LogLevel, Plan, Reply, Stats};

/// Headers tokengate owns toward the backend; clients may not send them.
const OWN_HEADER_PREFIX: &str = "x-tokengate-";

/// The time, read only when a decision needs it (on a proxy every read is a host call).
pub trait Clock {
    fn now_ns(&self) -> u64;
}

/// What every decision of a stream is made with.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub config: &'a Config,
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    /// The VM's drift warnings and rate limit service failures, each at most one line a minute.
    pub drift_log: &'a LogThrottle,
    pub rls_log: &'a LogThrottle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Headers,
    AwaitingBody,
    /// Counted and within the local limits; the rate limit service decides.
    AwaitingRls,
    Decided,
}

/// One HTTP stream, from its request headers to its end.
#[derive(Debug)]
pub struct Exchange {
    phase: Phase,
    key_id: Option<String>,
    content_type: Option<String>,
    path: Option<String>,
    /// The request came with a `content-length`, which a rewritten body must correct.
    content_length: bool,
    /// Request body bytes buffered so far.
    body_bytes: usize,
    /// tokengate answered the request itself.
    replied: bool,
    /// The model rule's label, once the body named a model (0, `other`, until then).
    label: u16,
    /// An admitted request, until its response is metered.
    meter: Option<Meter>,
    tap: Tap,
    /// The backend's response failed (status >= 400), or none has arrived yet.
    backend_failed: bool,
    /// The rate limit service's descriptor values from this request.
    rls_values: EntryValues,
    /// An admission the rate limit service decides.
    awaiting: Option<Box<Awaiting>>,
    /// The key's tokens level as the rate limit service reported it.
    rls_level: Option<Level>,
}

impl Default for Exchange {
    fn default() -> Exchange {
        Exchange::new()
    }
}

impl Exchange {
    pub fn new() -> Exchange {
        Exchange {
            phase: Phase::Headers,
            key_id: None,
            content_type: None,
            path: None,
            content_length: false,
            body_bytes: 0,
            replied: false,
            label: 0,
            meter: None,
            tap: Tap::Nothing,
            backend_failed: true,
            rls_values: EntryValues::default(),
            awaiting: None,
            rls_level: None,
        }
    }

    /// The request headers are in: `headers` is the whole map as the host has it (names in
    /// lower case).
    pub fn on_request_headers(&mut self, env: &Env<'_>, headers: &[(String, String)], end_of_stream: bool) -> Plan {
        let mut plan = Plan::default();
        plan.stat(Metric::RequestsTotal, 1);
        plan.request_headers.remove = spoofed(headers);
        let head = RequestHead {
            api_key: header(headers, &env.config.api_key.header),
            content_length: header(headers, "content-length"),
            content_type: header(headers, "content-type"),
            end_of_stream,
        };
        self.content_length = head.content_length.is_some();
        self.content_type = head.content_type.map(str::to_owned);
        self.path = header(headers, ":path").map(str::to_owned);
        if let Some(rls) = env.config.quota.as_ref().and_then(|q| q.rls.as_ref()) {
            self.rls_values.headers = rls.headers().map(|name| header(headers, name).map(str::to_owned)).collect();
        }
        let outcome = decide_head(env.config, &head);
        self.key_id = outcome.key_id;
        match outcome.decision {
            HeadDecision::Reject(rejection) => self.reject(env, plan, &rejection, None),
            HeadDecision::PassThrough => self.pass_through(plan),
            HeadDecision::ReadBody => {
                self.phase = Phase::AwaitingBody;
                plan.action = Action::Pause;
                plan
            }
        }
    }

    /// Every plan leaves through here: its per-model stats carry the request's label.
    fn done(&self, mut plan: Plan) -> Plan {
        if !plan.stats.is_empty() {
            plan.stats.label = self.label;
        }
        plan
    }

    /// `size` bytes of request body are buffered; `read` gives them, and is called only once
    /// the body is complete and tokengate counts it.
    pub fn on_request_body(
        &mut self,
        env: &Env<'_>,
        size: usize,
        end_of_stream: bool,
        read: impl FnOnce(usize) -> Result<Vec<u8>, String>,
    ) -> Plan {
        if self.phase != Phase::AwaitingBody {
            return Plan::default();
        }
        self.body_bytes = size;
        if size as u64 > env.config.max_body_bytes {
            return self.refuse_too_large(env, size);
        }
        if !end_of_stream {
            return Plan::pause();
        }
        self.decide(env, read(size))
    }

    /// Trailers follow the body: a body followed by trailers never ends in a body callback.
    pub fn on_request_trailers(&mut self, env: &Env<'_>, read: impl FnOnce(usize) -> Result<Vec<u8>, String>) -> Plan {
        if self.phase != Phase::AwaitingBody {
            return Plan::default();
        }
        self.decide(env, read(self.body_bytes))
    }

    #[cold]
    #[inline(never)]
    fn refuse_too_large(&mut self, env: &Env<'_>, size: usize) -> Plan {
        self.reject(env, Plan::default(), &too_large(size as u64, env.config.max_body_bytes), None)
    }

    /// The whole body is in: count it and act.
    fn decide(&mut self, env: &Env<'_>, body: Result<Vec<u8>, String>) -> Plan {
        let mut plan = Plan::default();
        let body = match body {
            Ok(body) => body,
            Err(e) => {
                plan.log(LogLevel::Error, format!("cannot read the request body, passing it on uncounted: {e}"));
                return self.pass_through(plan);
            }
        };
        let started = env.clock.now_ns();
        let outcome = decide_body(env.config, self.content_type.as_deref(), self.path.as_deref(), &body);
        let now = env.clock.now_ns();
        let tokenize_us = now.saturating_sub(started) / 1000;
        self.label = outcome.label;
        self.rls_values.model = outcome.model;
        match outcome.decision {
            BodyDecision::Allow(admission) => {
                plan.stat(Metric::TokenizeUs, tokenize_us);
                self.admit(env, plan, &admission, &body, now)
            }
            BodyDecision::PassThrough => self.pass_through(plan),
            BodyDecision::Reject(rejection) => {
                if rejection.code == ErrorCode::ContextLengthExceeded {
                    plan.stat(Metric::TokenizeUs, tokenize_us);
                    plan.stat(Metric::DroppedTokensTotal, outcome.dropped_tokens);
                }
                self.reject(env, plan, &rejection, Some(now))
            }
        }
    }

    /// A counted request goes on: reserve from the key's local buckets, then annotate it; with a
    /// rate limit service, the admission then waits for its verdict. Its response will be metered.
    #[inline(never)]
    fn admit(&mut self, env: &Env<'_>, mut plan: Plan, admission: &Admission, body: &[u8], now: u64) -> Plan {
        let config = env.config;
        let output = reserved_output(config, admission);
        let prompt = admission.prompt_tokens;
        let mut reservation = None;
        let charge = Charge { input_milli: admission.cost.input_milli(prompt, 0), output_milli: admission.cost.output_milli(output) };
        if let Some(quota) = config.quota.as_ref().filter(|q| q.has_local_limits()) {
            let key = self.quota_key();
            match admit_quota(quota, env.store, &key, now, charge) {
                Ok(QuotaDecision::Admitted { snapshot, evicted }) => {
                    if evicted {
                        plan.stat(Metric::QuotaEvictionsTotal, 1);
                    }
                    reservation = Some(Reservation { key, charge, snapshot });
                }
                Ok(QuotaDecision::Refused(rejection)) => {
                    plan.stat(Metric::DroppedTokensTotal, prompt.saturating_add(output));
                    plan.state(Field::PromptTokens, prompt.to_string());
                    return self.reject(env, plan, &rejection, Some(now));
                }
                Err(e) => {
                    // Shared data failing is the proxy's trouble, not the client's: admit, and say so.
                    plan.stat(Metric::QuotaErrorsTotal, 1);
                    plan.log(LogLevel::Error, format!("quota not applied: {e}"));
                }
            }
        }
        self.phase = Phase::Decided;
        let tokens = prompt.to_string();
        let headers = &mut plan.request_headers;
        headers.put("x-tokengate-prompt-tokens", tokens.clone());
        if let Some(asked) = admission.max_output {
            headers.put("x-tokengate-max-output-tokens", asked.tokens.to_string());
        }
        headers.put("x-tokengate-encoding", admission.tokenizer.name().to_owned());
        headers.put("x-tokengate-count", admission.exactness.name().to_owned());
        if let Some(id) = &self.key_id {
            headers.put("x-tokengate-key-id", id.clone());
        }
        // What admitting adds; held while a rate limit service decides.
        let mut allowed = Plan::default();
        if let Some(r) = &reservation {
            let reserved = whole_tokens(r.charge.input_milli.saturating_add(r.charge.output_milli)).to_string();
            plan.request_headers.put("x-tokengate-reserved-tokens", reserved.clone());
            allowed.state(Field::ReservedTokens, reserved);
        }
        if let Some(class) = config.routing.class_for(prompt.saturating_add(output)) {
            plan.request_headers.put("x-tokengate-class", class.to_owned());
        }
        plan.clear_route_cache = config.routing.clear_route_cache;
        self.meter = Some(Meter {
            prompt_tokens: prompt,
            exact: admission.exactness == Exactness::Exact,
            tokenizer: admission.tokenizer,
            cost: admission.cost,
            injected_usage: false,
            reservation,
            rls_charged: None,
        });
        if config.metering.stream_usage {
            self.request_stream_usage(&mut plan, admission, body);
        }
        allowed.stat(Metric::AllowedTotal, 1);
        allowed.stat(Metric::PromptTokensTotal, prompt);
        allowed.stat(Metric::PromptTokens, prompt);
        allowed.state(Field::PromptTokens, tokens);
        allowed.state(Field::Encoding, admission.tokenizer.name().to_owned());
        self.record_decision(&mut allowed, "allowed");
        if let Some(rls) = config.quota.as_ref().and_then(|q| q.rls.as_ref()) {
            // The exact prompt now; the output once the response tells it.
            let hits = whole_tokens(charge.input_milli);
            let waiting = Awaiting { allowed, hits, dropped: prompt.saturating_add(output), prompt, sent_ns: 0 };
            return self.ask_rls(env, plan, rls, waiting);
        }
        plan.merge(allowed);
        self.done(plan)
    }

    /// Streams report usage only when asked: ask, and remember to hide the answer from the client.
    fn request_stream_usage(&mut self, plan: &mut Plan, admission: &Admission, body: &[u8]) {
        let streams_usage = matches!(admission.api, Api::ChatCompletions | Api::Completions);
        if !admission.stream || admission.include_usage || !streams_usage {
            return;
        }
        let Some(rewritten) = with_include_usage(body) else { return };
        if self.content_length {
            // A chunked body has no length to correct; Envoy frames it anew.
            plan.request_headers.put("content-length", rewritten.len().to_string());
        }
        plan.request_body = Some(rewritten);
        if let Some(m) = self.meter.as_mut() {
            m.injected_usage = true;
        }
    }

    fn pass_through(&mut self, mut plan: Plan) -> Plan {
        self.phase = Phase::Decided;
        plan.stat(Metric::PassthroughTotal, 1);
        self.record_decision(&mut plan, "passthrough");
        self.done(plan)
    }

    /// Answers the request with `rejection`. Refusals other than the quota's own and a missing
    /// key tell the client where its buckets stand; `now` is the time if already read.
    fn reject(&mut self, env: &Env<'_>, mut plan: Plan, rejection: &Rejection, now: Option<u64>) -> Plan {
        self.phase = Phase::Decided;
        self.replied = true;
        plan.stat(Metric::RejectedTotal(rejection.code), 1);
        self.record_decision(&mut plan, rejection.code.as_str());
        let mut headers = vec![("content-type", "application/json".to_owned())];
        headers.extend(rejection.headers.iter().cloned());
        if !matches!(rejection.code, ErrorCode::RateLimitExceeded | ErrorCode::MissingApiKey) {
            headers.extend(self.current_quota_headers(env, &mut plan, now));
        }
        plan.reply = Some(Reply { status: rejection.status(), headers, body: rejection.body() });
        plan.action = Action::Pause;
        self.done(plan)
    }

    fn record_decision(&self, plan: &mut Plan, decision: &str) {
        plan.state(Field::Decision, decision.to_owned());
        if let Some(id) = &self.key_id {
            plan.state(Field::KeyId, id.clone());
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
    /// nothing from them (the local buckets read; the rate limit service's level as last told).
    fn current_quota_headers(&self, env: &Env<'_>, plan: &mut Plan, now: Option<u64>) -> Vec<(&'static str, String)> {
        let Some(quota) = &env.config.quota else { return Vec::new() };
        let mut snapshot = Snapshot::default();
        if quota.has_local_limits() {
            let now = now.unwrap_or_else(|| env.clock.now_ns());
            match Quotas::new(quota).peek(env.store, &self.quota_key(), now) {
                Ok(local) => snapshot = local,
                Err(e) => plan.log(LogLevel::Warn, format!("cannot read the quota: {e}")),
            }
        }
        ratelimit_headers(&self.with_rls_level(snapshot))
    }
}

/// The first value of header `name`. Header names from the host are lower case (Envoy keeps
/// them so, HTTP/2 requires it), as are the names tokengate asks for.
#[inline(never)]
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The client-sent `x-tokengate-*` headers, each name once: only tokengate's own values may
/// reach the backend.
fn spoofed(headers: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in headers {
        if name.starts_with(OWN_HEADER_PREFIX) && !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}
