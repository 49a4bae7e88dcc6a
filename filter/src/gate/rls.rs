//! The rate limit service's part (`quota.backend.rls`): an admission that passed the local
//! buckets (if any) waits for one `ShouldRateLimit` charging its exact prompt; the answer admits
//! it, refuses it with the same 429 as a local limit, or applies `failure_mode`. When the
//! response is known, a second call charges the output (and any prompt the backend counted
//! beyond the admission's charge); its answer changes nothing, since an RLS cannot refund.

use super::metric::Metric;
use super::plan::{Action, Call, Field, LogLevel, Plan};
use super::settle::Reservation;
use super::{Env, Exchange, Phase};
use crate::config::{FailureMode, QuotaConfig, RlsConfig};
use crate::quota::bucket::Level;
use crate::quota::{self, Quotas, Snapshot};
use crate::reject::{ErrorCode, Rejection};
use crate::rls::{self, Failure, Verdict};

/// An admission waiting for the rate limit service.
#[derive(Debug)]
pub(super) struct Awaiting {
    /// What admitting the request adds to the plan: its stats, filter state and decision.
    pub allowed: Plan,
    /// Tokens charged by the call (the prompt, weighted).
    pub hits: u64,
    /// Prompt + reserved output: what a refusal drops.
    pub dropped: u64,
    pub prompt: u64,
    pub sent_ns: u64,
}

impl Exchange {
    /// Holds the admission (`waiting.allowed`) and asks the service to charge `waiting.hits`
    /// tokens; the stream waits.
    pub(super) fn ask_rls(&mut self, env: &Env<'_>, mut plan: Plan, rls: &RlsConfig, mut waiting: Awaiting) -> Plan {
        let message = rls::request(rls, self.key_id.as_deref(), &self.rls_values, waiting.hits);
        plan.call = Some(Call { message, awaited: true });
        plan.action = Action::Pause;
        self.phase = Phase::AwaitingRls;
        waiting.sent_ns = env.clock.now_ns();
        self.awaiting = Some(Box::new(waiting));
        self.done(plan)
    }

    /// The answer to the admission call: the message bytes, or why there are none. Answers to
    /// anything else (a settlement's) change nothing.
    pub fn on_rls_answer(&mut self, env: &Env<'_>, answer: Result<&[u8], Failure>) -> Plan {
        let Some(w) = self.awaiting.take() else { return Plan::default() };
        let Some(quota) = &env.config.quota else { return Plan::default() };
        let Some(rls) = &quota.rls else { return Plan::default() };
        let now = env.clock.now_ns();
        let mut plan = Plan::default();
        plan.stat(Metric::RlsRoundTripUs, now.saturating_sub(w.sent_ns) / 1000);
        self.phase = Phase::Decided;
        match answer.and_then(rls::verdict) {
            Ok(Verdict::Ok { level }) => {
                self.rls_level = level;
                self.admitted(plan, *w, "ok")
            }
            Ok(Verdict::OverLimit { level, reset_ns }) => {
                self.rls_level = level;
                self.cancel_reservation(env, quota, &mut plan, now);
                plan.stat(Metric::DroppedTokensTotal, w.dropped);
                plan.state(Field::PromptTokens, w.prompt.to_string());
                plan.state(Field::Rls, "over_limit".to_owned());
                let rejection = self.over_limit(level, reset_ns.unwrap_or(rls::UNKNOWN_RESET_NS), w.hits);
                self.reject(env, plan, &rejection, Some(now))
            }
            Err(failure) => {
                plan.stat(Metric::RlsFailuresTotal, 1);
                // Envoy ends a call at its timeout with UNAVAILABLE ("upstream request timeout"),
                // not DEADLINE_EXCEEDED: the time taken tells. Its timer and the clock the filter
                // reads differ by a few milliseconds, so 90 % of timeout_ms counts.
                let waited_us = now.saturating_sub(w.sent_ns) / 1000;
                let timed_out = failure.is_timeout() || waited_us * 10 >= u64::from(rls.timeout_ms) * 9000;
                if timed_out {
                    plan.stat(Metric::RlsTimeoutsTotal, 1);
                }
                let allow = rls.failure_mode == FailureMode::Allow;
                if let Some(unlogged) = env.rls_log.admit(now) {
                    let more = if unlogged > 0 { format!("; {unlogged} more failures since the last line") } else { String::new() };
                    let applied = if allow { "allow: admitted on the local limits" } else { "deny: refused with 503" };
                    let why = if timed_out { format!("no answer within timeout_ms {} ({})", rls.timeout_ms, failure.describe()) } else { failure.describe() };
                    plan.log(LogLevel::Warn, format!("rate limit service (cluster {}) gave no verdict: {why}; failure_mode {applied}{more}", rls.cluster));
                }
                if allow {
                    return self.admitted(plan, *w, "failed_allow");
                }
                self.cancel_reservation(env, quota, &mut plan, now);
                plan.stat(Metric::DroppedTokensTotal, w.dropped);
                plan.state(Field::PromptTokens, w.prompt.to_string());
                plan.state(Field::Rls, "failed_deny".to_owned());
                let mut rejection = Rejection::new(
                    ErrorCode::QuotaUnavailable,
                    None,
                    "The token quota service is unavailable, and this gateway refuses requests it cannot check. Please try again shortly.".to_owned(),
                );
                rejection.error_type = "server_error";
                rejection.headers.extend(quota::retry_headers(rls::UNKNOWN_RESET_NS));
                self.reject(env, plan, &rejection, Some(now))
            }
        }
    }

    /// The service admitted the request (or failed open): the held decision goes out and the
    /// stream resumes. The prompt counts as charged from now on.
    fn admitted(&mut self, mut plan: Plan, w: Awaiting, outcome: &str) -> Plan {
        plan.merge(w.allowed);
        plan.state(Field::Rls, outcome.to_owned());
        if let Some(m) = self.meter.as_mut() {
            m.rls_charged = Some(w.hits);
        }
        plan.action = Action::Continue;
        self.done(plan)
    }

    /// A settlement call the host could not send (Envoy: no such cluster): logged with the
    /// service's other failures, at most a line a minute. Its answers are never read, so its
    /// failures are not counted.
    pub fn on_settlement_unsent(&self, env: &Env<'_>, why: &str) -> Plan {
        let mut plan = Plan::default();
        if let (Some(unlogged), Some(rls)) = (env.rls_log.admit(env.clock.now_ns()), env.config.quota.as_ref().and_then(|q| q.rls.as_ref())) {
            let more = if unlogged > 0 { format!("; {unlogged} more failures since the last line") } else { String::new() };
            plan.log(LogLevel::Warn, format!("rate limit service (cluster {}): settlement not sent: {why}; the output goes uncharged{more}", rls.cluster));
        }
        plan
    }

    /// A refused or abandoned admission gives its local reservation back.
    pub(super) fn cancel_reservation(&mut self, env: &Env<'_>, quota: &QuotaConfig, plan: &mut Plan, now: u64) {
        let Some(m) = self.meter.take() else { return };
        let Some(Reservation { key, charge, .. }) = m.reservation else { return };
        let minus = |milli: u64| -i64::try_from(milli).unwrap_or(i64::MAX);
        if let Err(e) = Quotas::new(quota).settle(env.store, &key, now, minus(charge.input_milli), minus(charge.output_milli)) {
            plan.stat(Metric::QuotaErrorsTotal, 1);
            plan.log(LogLevel::Error, format!("cannot return the reservation: {e}"));
        }
    }

    /// The 429 of an OVER_LIMIT answer, shaped as a local limit's.
    fn over_limit(&self, level: Option<Level>, reset_ns: u64, requested: u64) -> Rejection {
        let who = match &self.key_id {
            Some(id) => format!("key {id}"),
            None => "requests without an API key".to_owned(),
        };
        let standing = match level {
            Some(l) => format!("Limit {}, Remaining {}, Requested {requested}", l.limit, l.remaining),
            None => format!("Requested {requested}"),
        };
        let message = format!(
            "Rate limit reached for {who} on the fleet-wide tokens limit: {standing}. Please try again in {}.",
            quota::format_duration(reset_ns)
        );
        let mut rejection = Rejection::new(ErrorCode::RateLimitExceeded, None, message);
        rejection.error_type = "tokens";
        let snapshot = Snapshot { tokens: level, ..Snapshot::default() };
        rejection.headers = quota::ratelimit_headers(&snapshot);
        rejection.headers.extend(quota::retry_headers(reset_ns));
        rejection
    }

    /// The settlement charge: the output, and the prompt the backend counted beyond what the
    /// admission charged, in whole weighted tokens; nothing to send when that is zero.
    pub(super) fn settle_rls(&self, env: &Env<'_>, plan: &mut Plan, charged: u64, input_milli: u64, output_milli: u64) {
        let Some(rls) = env.config.quota.as_ref().and_then(|q| q.rls.as_ref()) else { return };
        let input = crate::config::whole_tokens(input_milli);
        let hits = crate::config::whole_tokens(output_milli).saturating_add(input.saturating_sub(charged));
        if hits > 0 {
            let message = rls::request(rls, self.key_id.as_deref(), &self.rls_values, hits);
            plan.call = Some(Call { message, awaited: false });
        }
    }

    /// The key's levels for `x-ratelimit-*` headers: the local buckets' `snapshot`, with the
    /// service's tokens level where it is the tighter one.
    pub(super) fn with_rls_level(&self, mut snapshot: Snapshot) -> Snapshot {
        if let Some(level) = self.rls_level {
            snapshot.tokens = match snapshot.tokens {
                Some(local) if local.remaining <= level.remaining => Some(local),
                _ => Some(level),
            };
        }
        snapshot
    }
}
