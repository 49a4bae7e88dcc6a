//! The response side: the usage the backend reports (a JSON body, or an SSE stream read as it
//! passes) is metered for every admitted request, and settles the reservation taken at
//! admission when quotas are on.

use super::admit::is_json;
use super::drift;
use super::metric::Metric;
use super::plan::{Field, LogLevel, Plan};
use super::{header, Env, Exchange};
use crate::config::{whole_tokens, Cost, MILLI};
use crate::quota::{ratelimit_headers, Charge, KeyName, Quotas, Snapshot};
use crate::response::{JsonTap, JsonUsage, SseScanner, Usage};
use crate::tokenize::Tokenizer;

/// JSON responses larger than this are not read for usage (the estimate applies).
const MAX_JSON_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// An admitted request whose response is read for usage: every one, quotas or not.
#[derive(Debug)]
pub(super) struct Meter {
    /// tokengate's count.
    pub prompt_tokens: u64,
    /// The count is exact (a drift is then the backend's or the rule's doing).
    pub exact: bool,
    pub tokenizer: &'static Tokenizer,
    pub cost: Cost,
    /// tokengate asked the backend for stream usage; the client did not.
    pub injected_usage: bool,
    pub reservation: Option<Reservation>,
    /// Tokens the rate limit service charged at admission (or may have: it failed open).
    pub rls_charged: Option<u64>,
}

/// What was taken from a key's buckets at admission, to settle when the response is known.
#[derive(Debug)]
pub(super) struct Reservation {
    pub key: KeyName,
    pub charge: Charge,
    pub snapshot: Snapshot,
}

/// How the response body is read.
#[derive(Debug)]
pub(super) enum Tap {
    Nothing,
    Json(JsonTap),
    Sse(SseScanner),
}

/// Where a response's counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The backend's `usage`.
    Reported,
    /// No usage: tokengate's prompt count and the output counted from what was streamed or
    /// returned.
    Estimated,
    /// The backend failed without usage: nothing was used.
    Nothing,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Reported => "reported",
            Source::Estimated => "estimated",
            Source::Nothing => "none",
        }
    }
}

/// What a request really used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settlement {
    pub usage: Usage,
    pub source: Source,
}

/// What a request used: the backend's usage when it reports one; nothing when the backend failed
/// without reporting (the prompt stays charged only if the backend says it used it); else the
/// counted prompt plus the output counted from the response.
pub(super) fn settlement(prompt_tokens: u64, usage: Option<Usage>, backend_failed: bool, estimated_output: u64) -> Settlement {
    match usage {
        Some(usage) => Settlement { usage, source: Source::Reported },
        None if backend_failed => Settlement { usage: Usage::default(), source: Source::Nothing },
        None => Settlement {
            usage: Usage { prompt_tokens, completion_tokens: estimated_output, ..Usage::default() },
            source: Source::Estimated,
        },
    }
}

impl Exchange {
    /// The response headers are in; `read` gives the whole map, and is called only when the
    /// request is metered or quotas are on (tokengate's own replies are not read).
    pub fn on_response_headers<'h>(
        &mut self,
        env: &Env<'_>,
        end_of_stream: bool,
        read: impl FnOnce() -> &'h [(String, String)],
    ) -> Plan {
        if self.replied || (self.meter.is_none() && env.config.quota.is_none()) {
            return Plan::default();
        }
        let headers = read();
        let status = header(headers, ":status").and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        self.backend_failed = !(200..400).contains(&status);
        let mut plan = Plan::default();
        if env.config.quota.is_some() {
            let levels = match self.meter.as_ref().and_then(|m| m.reservation.as_ref()) {
                Some(r) => ratelimit_headers(&self.with_rls_level(r.snapshot)),
                None => self.current_quota_headers(env, &mut plan, None),
            };
            plan.response_headers.set.extend(levels);
        }
        let Some(m) = &self.meter else { return self.done(plan) };
        let content_type = header(headers, "content-type").unwrap_or_default().to_ascii_lowercase();
        self.tap = if content_type.starts_with("text/event-stream") {
            if m.injected_usage {
                // The client's stream loses the usage chunk: its length changes.
                plan.response_headers.remove.push("content-length".to_owned());
            }
            Tap::Sse(SseScanner::new(Some(m.tokenizer), m.injected_usage))
        } else if is_json(&content_type) {
            Tap::Json(JsonTap::new(MAX_JSON_RESPONSE_BYTES))
        } else {
            Tap::Nothing
        };
        if end_of_stream {
            self.finish(env, &mut plan);
        }
        self.done(plan)
    }

    /// A response chunk of `size` bytes passes; `read` gives it, and is called only while the
    /// meter waits for the usage in it.
    pub fn on_response_body(
        &mut self,
        env: &Env<'_>,
        size: usize,
        end_of_stream: bool,
        read: impl FnOnce(usize) -> Result<Vec<u8>, String>,
    ) -> Plan {
        let mut plan = Plan::default();
        if self.meter.is_none() {
            return plan;
        }
        if !matches!(self.tap, Tap::Nothing) {
            let chunk = read(size).unwrap_or_else(|e| {
                plan.log(LogLevel::Warn, format!("cannot read the response body: {e}"));
                Vec::new()
            });
            match &mut self.tap {
                Tap::Nothing => {}
                Tap::Json(json) => json.feed(&chunk),
                Tap::Sse(scanner) => {
                    plan.response_body = scanner.feed(&chunk, end_of_stream).filter(|rewritten| *rewritten != chunk);
                }
            }
        }
        if end_of_stream {
            self.finish(env, &mut plan);
        }
        self.done(plan)
    }

    /// The stream is over (`on_log`): a response that never completed (reset, cut stream)
    /// settles with what was seen of it.
    pub fn on_stream_end(&mut self, env: &Env<'_>) -> Plan {
        let mut plan = Plan::default();
        if self.awaiting.take().is_some() {
            // The client left while the rate limit service decided: nothing was forwarded.
            if let Some(quota) = &env.config.quota {
                self.cancel_reservation(env, quota, &mut plan, env.clock.now_ns());
            }
            return self.done(plan);
        }
        if self.meter.is_some() {
            self.finish(env, &mut plan);
        }
        self.done(plan)
    }

    /// The response body ended (or the stream did): settle with what the tap saw. The output is
    /// counted only when no usage came.
    fn finish(&mut self, env: &Env<'_>, plan: &mut Plan) {
        let tap = std::mem::replace(&mut self.tap, Tap::Nothing);
        let (usage, estimated) = match tap {
            Tap::Nothing => (None, 0),
            Tap::Sse(scanner) => (scanner.usage(), scanner.estimated_output_tokens()),
            Tap::Json(mut json) => match self.meter.as_ref().map(|m| json.finish(m.tokenizer)) {
                Some(JsonUsage::Reported(usage)) => (Some(usage), 0),
                Some(JsonUsage::Estimated(output)) => (None, output),
                Some(JsonUsage::Unread) | None => (None, 0),
            },
        };
        self.settle(env, plan, usage, estimated);
    }

    /// Meters what the response showed, and ends the reservation with it.
    fn settle(&mut self, env: &Env<'_>, plan: &mut Plan, usage: Option<Usage>, estimated_output: u64) {
        let Some(m) = self.meter.take() else { return };
        let s = settlement(m.prompt_tokens, usage, self.backend_failed, estimated_output);
        let u = s.usage;
        let input_milli = m.cost.input_milli(u.prompt_tokens, u.cached_prompt_tokens);
        let output_milli = m.cost.output_milli(u.completion_tokens);
        if let (Some(r), Some(quota)) = (&m.reservation, &env.config.quota) {
            let delta = |actual: u64, reserved: u64| i64::try_from(actual).unwrap_or(i64::MAX) - i64::try_from(reserved).unwrap_or(i64::MAX);
            let (input_delta, output_delta) = (delta(input_milli, r.charge.input_milli), delta(output_milli, r.charge.output_milli));
            if let Err(e) = Quotas::new(quota).settle(env.store, &r.key, env.clock.now_ns(), input_delta, output_delta) {
                plan.stat(Metric::QuotaErrorsTotal, 1);
                plan.log(LogLevel::Error, format!("cannot settle the reservation: {e}"));
            }
            let total = input_delta.saturating_add(output_delta);
            if total < 0 {
                plan.stat(Metric::RefundedTokensTotal, total.unsigned_abs() / MILLI);
            }
        }
        if let Some(charged) = m.rls_charged {
            self.settle_rls(env, plan, charged, input_milli, output_milli);
        }
        plan.stat(Metric::CompletionTokensTotal, u.completion_tokens);
        match s.source {
            Source::Reported => {
                plan.stat(Metric::CompletionTokens, u.completion_tokens);
                self.meter_reported(env, plan, &m, u);
            }
            Source::Estimated => {
                plan.stat(Metric::CompletionTokens, u.completion_tokens);
                plan.stat(Metric::UsageMissingTotal, 1);
            }
            Source::Nothing => {}
        }
        plan.state(Field::Usage, s.source.name().to_owned());
        plan.state(Field::CompletionTokens, u.completion_tokens.to_string());
        if m.reservation.is_some() {
            // What the key's buckets were charged in the end (each field is a host call).
            plan.state(Field::ActualTokens, whole_tokens(input_milli.saturating_add(output_milli)).to_string());
        }
    }

    /// The backend's own counts: its prompt, cache and reasoning tokens, and the drift from
    /// tokengate's count.
    fn meter_reported(&self, env: &Env<'_>, plan: &mut Plan, m: &Meter, u: Usage) {
        plan.stat(Metric::BackendPromptTokensTotal, u.prompt_tokens);
        plan.stat(Metric::CachedPromptTokensTotal, u.cached_prompt_tokens);
        plan.stat(Metric::ReasoningTokensTotal, u.reasoning_tokens);
        plan.stat(Metric::PromptDriftTokens, u.prompt_tokens.abs_diff(m.prompt_tokens));
        if u.prompt_tokens < m.prompt_tokens {
            plan.stat(Metric::PromptDriftNegativeTotal, 1);
        }
        let drift = match u.prompt_tokens.checked_sub(m.prompt_tokens) {
            Some(over) => over.to_string(),
            None => format!("-{}", m.prompt_tokens - u.prompt_tokens),
        };
        plan.state(Field::BackendPromptTokens, u.prompt_tokens.to_string());
        plan.state(Field::CachedTokens, u.cached_prompt_tokens.to_string());
        plan.state(Field::Drift, drift);
        let Some(ppm) = env.config.metering.drift_warn_ppm else { return };
        // An estimated count (images, files) drifts by design; only an exact one warns.
        if m.exact && drift::is_over(m.prompt_tokens, u.prompt_tokens, ppm) {
            plan.stat(Metric::PromptDriftWarningsTotal, 1);
            if let Some(unlogged) = env.drift_log.admit(env.clock.now_ns()) {
                let label = env.config.labels.get(self.label);
                plan.log(LogLevel::Warn, drift::message(label, m.prompt_tokens, u.prompt_tokens, ppm, unlogged));
            }
        }
    }
}
