//! The response side: the usage the backend reports (a JSON body, or an SSE stream read as it
//! passes) settles the reservation taken at admission, and the stats record what it cost.

use super::metric::Metric;
use super::plan::{Field, LogLevel, Plan};
use super::admit::is_json;
use super::{header, Env, Exchange};
use crate::quota::{ratelimit_headers, KeyName, Quotas, Snapshot};
use crate::response::{output_texts, usage_of, JsonTap, SseScanner, Usage};
use crate::tokenize::Tokenizer;

/// JSON responses larger than this are not read for usage (the estimate applies).
const MAX_JSON_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Tokens taken from a key's buckets at admission, to settle when the response is known.
#[derive(Debug)]
pub(super) struct Reservation {
    pub key: KeyName,
    pub reserved: u64,
    pub prompt_tokens: u64,
    pub tokenizer: &'static Tokenizer,
    pub snapshot: Snapshot,
    /// tokengate asked the backend for stream usage; the client did not.
    pub injected_usage: bool,
}

/// How the response body is read.
#[derive(Debug)]
pub(super) enum Tap {
    Nothing,
    Json(JsonTap),
    Sse(SseScanner),
}

/// How a reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settlement {
    /// Tokens the request really cost.
    pub actual_tokens: u64,
    /// Output tokens in `actual_tokens`.
    pub completion_tokens: u64,
    /// The backend reported its usage (otherwise `actual_tokens` is tokengate's own estimate).
    pub usage_reported: bool,
}

/// What a reservation really cost: the backend's usage when it reports one; nothing when the
/// backend failed without reporting (the prompt stays charged only if the backend says it used
/// it); else the counted prompt plus the output counted from what was streamed or returned.
pub(super) fn settlement(prompt_tokens: u64, usage: Option<Usage>, backend_failed: bool, estimated_output: u64) -> Settlement {
    match usage {
        Some(u) => Settlement { actual_tokens: u.total(), completion_tokens: u.completion_tokens, usage_reported: true },
        None if backend_failed => Settlement { actual_tokens: 0, completion_tokens: 0, usage_reported: false },
        None => Settlement {
            actual_tokens: prompt_tokens.saturating_add(estimated_output),
            completion_tokens: estimated_output,
            usage_reported: false,
        },
    }
}

impl Exchange {
    /// The response headers are in; `read` gives the whole map, and is called only when quotas
    /// are on and the backend answered (tokengate's own replies are not read).
    pub fn on_response_headers<'h>(
        &mut self,
        env: &Env<'_>,
        end_of_stream: bool,
        read: impl FnOnce() -> &'h [(String, String)],
    ) -> Plan {
        if self.replied || env.config.quota.is_none() {
            return Plan::default();
        }
        let headers = read();
        let status = header(headers, ":status").and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        self.backend_failed = !(200..400).contains(&status);
        let mut plan = Plan::default();
        let levels = match &self.reservation {
            Some(r) => ratelimit_headers(&r.snapshot),
            None => self.current_quota_headers(env, &mut plan, None),
        };
        plan.response_headers.set.extend(levels);
        let Some(r) = &self.reservation else { return plan };
        let content_type = header(headers, "content-type").unwrap_or_default().to_ascii_lowercase();
        self.tap = if content_type.starts_with("text/event-stream") {
            if r.injected_usage {
                // The client's stream loses the usage chunk: its length changes.
                plan.response_headers.remove.push("content-length".to_owned());
            }
            Tap::Sse(SseScanner::new(Some(r.tokenizer), r.injected_usage))
        } else if is_json(&content_type) {
            Tap::Json(JsonTap::new(MAX_JSON_RESPONSE_BYTES))
        } else {
            Tap::Nothing
        };
        if end_of_stream {
            self.finish(env, &mut plan);
        }
        plan
    }

    /// A response chunk of `size` bytes passes; `read` gives it, and is called only while a
    /// reservation waits for the usage in it.
    pub fn on_response_body(
        &mut self,
        env: &Env<'_>,
        size: usize,
        end_of_stream: bool,
        read: impl FnOnce(usize) -> Result<Vec<u8>, String>,
    ) -> Plan {
        let mut plan = Plan::default();
        if self.reservation.is_none() {
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
        plan
    }

    /// The stream is over (`on_log`): a response that never completed (reset, cut stream)
    /// settles with what was seen of it.
    pub fn on_stream_end(&mut self, env: &Env<'_>) -> Plan {
        let mut plan = Plan::default();
        if self.reservation.is_some() {
            self.finish(env, &mut plan);
        }
        plan
    }

    /// The response body ended (or the stream did): settle with what the tap saw.
    fn finish(&mut self, env: &Env<'_>, plan: &mut Plan) {
        let tap = std::mem::replace(&mut self.tap, Tap::Nothing);
        let (usage, estimated) = match tap {
            Tap::Nothing => (None, 0),
            Tap::Sse(scanner) => (scanner.usage(), scanner.estimated_output_tokens()),
            Tap::Json(mut json) => match (json.finish(), &self.reservation) {
                (Some(value), Some(r)) => {
                    let tokenizer = r.tokenizer;
                    let estimated = output_texts(&value).iter().map(|text| tokenizer.count(text)).sum();
                    (usage_of(&value), estimated)
                }
                _ => (None, 0),
            },
        };
        self.settle(env, plan, usage, estimated);
    }

    /// Ends the reservation with what the response showed.
    fn settle(&mut self, env: &Env<'_>, plan: &mut Plan, usage: Option<Usage>, estimated_output: u64) {
        let Some(r) = self.reservation.take() else { return };
        let Some(quota) = &env.config.quota else { return };
        let s = settlement(r.prompt_tokens, usage, self.backend_failed, estimated_output);
        let delta = i64::try_from(s.actual_tokens).unwrap_or(i64::MAX) - i64::try_from(r.reserved).unwrap_or(i64::MAX);
        if delta != 0 {
            if let Err(e) = Quotas::new(quota).settle(env.store, &r.key, env.clock.now_ns(), delta) {
                plan.stat(Metric::QuotaErrorsTotal, 1);
                plan.log(LogLevel::Error, format!("cannot settle the reservation: {e}"));
            }
        }
        plan.stat(Metric::CompletionTokensTotal, s.completion_tokens);
        if delta < 0 {
            plan.stat(Metric::RefundedTokensTotal, delta.unsigned_abs());
        }
        match usage {
            Some(u) => {
                plan.stat(Metric::CachedPromptTokensTotal, u.cached_prompt_tokens);
                plan.stat(Metric::PromptDriftTokens, u.prompt_tokens.abs_diff(r.prompt_tokens));
                if u.prompt_tokens < r.prompt_tokens {
                    plan.stat(Metric::PromptDriftNegativeTotal, 1);
                }
            }
            None if !self.backend_failed => plan.stat(Metric::UsageMissingTotal, 1),
            None => {}
        }
        plan.state(Field::ActualTokens, s.actual_tokens.to_string());
        plan.state(Field::Usage, if s.usage_reported { "reported" } else { "estimated" }.to_owned());
    }
}
