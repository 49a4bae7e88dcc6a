//! The filter's stats: one name per metric, exported by Envoy as `tokengate_<name>` on
//! `/stats/prometheus`; the adapter defines every one of them once per VM.

use crate::reject::ErrorCode;

/// A counter or histogram of the filter. Most are per model: one series per model rule's label
/// (and `other`), named `tokengate.<name>.model.<label>`, which Envoy's stats tag extraction
/// turns into `tokengate_<name>{model="<label>"}`; the rest are per proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    // Per proxy.
    RequestsTotal,
    /// Requests not counted: no JSON body, or not an LLM API shape.
    PassthroughTotal,
    QuotaEvictionsTotal,
    /// Quota operations that failed (the request went on unmetered).
    QuotaErrorsTotal,
    /// Admission calls to the rate limit service (`quota.backend.rls`) that got no verdict
    /// (error status, timeout, unreadable answer, not sent): `failure_mode` applied.
    RlsFailuresTotal,
    /// Of those, the timeouts.
    RlsTimeoutsTotal,
    /// Histogram: microseconds from sending an admission call to its answer.
    RlsRoundTripUs,
    // Per model.
    AllowedTotal,
    /// Requests refused with this code.
    RejectedTotal(ErrorCode),
    /// Prompt tokens of admitted requests, as tokengate counted them.
    PromptTokensTotal,
    /// Prompt tokens as the backend reported them.
    BackendPromptTokensTotal,
    /// Output tokens: reported, or counted from the output when no usage came.
    CompletionTokensTotal,
    CachedPromptTokensTotal,
    ReasoningTokensTotal,
    /// Tokens refused requests would have cost (prompt, plus reserved output on a quota refusal).
    DroppedTokensTotal,
    RefundedTokensTotal,
    /// Successful responses that reported no usage (the output was estimated).
    UsageMissingTotal,
    /// Responses whose backend counted fewer prompt tokens than tokengate.
    PromptDriftNegativeTotal,
    /// Responses whose prompt drift was over `metering.drift_warn_ratio`.
    PromptDriftWarningsTotal,
    /// Histogram: prompt tokens per admitted request.
    PromptTokens,
    /// Histogram: output tokens per response.
    CompletionTokens,
    /// Histogram: microseconds spent parsing and counting a body.
    TokenizeUs,
    /// Histogram: |backend's prompt tokens - tokengate's count|.
    PromptDriftTokens,
}

/// The metrics other than the rejection counters, in `index()` order; the first `GLOBAL` are per
/// proxy.
const PLAIN: [Metric; 22] = [
    Metric::RequestsTotal,
    Metric::PassthroughTotal,
    Metric::QuotaEvictionsTotal,
    Metric::QuotaErrorsTotal,
    Metric::RlsFailuresTotal,
    Metric::RlsTimeoutsTotal,
    Metric::RlsRoundTripUs,
    Metric::AllowedTotal,
    Metric::PromptTokensTotal,
    Metric::BackendPromptTokensTotal,
    Metric::CompletionTokensTotal,
    Metric::CachedPromptTokensTotal,
    Metric::ReasoningTokensTotal,
    Metric::DroppedTokensTotal,
    Metric::RefundedTokensTotal,
    Metric::UsageMissingTotal,
    Metric::PromptDriftNegativeTotal,
    Metric::PromptDriftWarningsTotal,
    Metric::PromptTokens,
    Metric::CompletionTokens,
    Metric::TokenizeUs,
    Metric::PromptDriftTokens,
];
const GLOBAL: usize = 7;

impl Metric {
    /// How many metrics there are: `index()` is below it.
    pub const COUNT: usize = PLAIN.len() + ErrorCode::ALL.len();

    /// Every metric, in `index()` order.
    pub fn all() -> impl Iterator<Item = Metric> {
        PLAIN.into_iter().chain(ErrorCode::ALL.into_iter().map(Metric::RejectedTotal))
    }

    /// A dense index for a table of metric ids.
    pub fn index(self) -> usize {
        match self {
            Metric::RejectedTotal(code) => PLAIN.len() + code.index(),
            plain => PLAIN.iter().position(|m| *m == plain).unwrap_or(0),
        }
    }

    /// One series per model label (else one per proxy).
    pub fn is_per_model(self) -> bool {
        self.index() >= GLOBAL
    }

    pub fn is_histogram(self) -> bool {
        matches!(self, Metric::PromptTokens | Metric::CompletionTokens | Metric::TokenizeUs | Metric::PromptDriftTokens | Metric::RlsRoundTripUs)
    }

    /// The name the host knows it by: `tokengate.` and the Prometheus name without its prefix
    /// (a per-model metric's series add `.model.<label>`, see [`Metric::series_name`]).
    pub fn name(self) -> &'static str {
        NAMES.get(self.index()).copied().unwrap_or("tokengate.unknown")
    }

    /// The stat name of this metric's series for `label` (the label is ignored for a metric per
    /// proxy).
    pub fn series_name(self, label: &str) -> String {
        if self.is_per_model() {
            format!("{}.model.{label}", self.name())
        } else {
            self.name().to_owned()
        }
    }
}

/// Names by `Metric::index`: the plain metrics, then one rejection counter per `ErrorCode::ALL`.
const NAMES: [&str; Metric::COUNT] = [
    "tokengate.requests_total",
    "tokengate.passthrough_total",
    "tokengate.quota_evictions_total",
    "tokengate.quota_errors_total",
    "tokengate.rls_failures_total",
    "tokengate.rls_timeouts_total",
    "tokengate.rls_round_trip_us",
    "tokengate.allowed_total",
    "tokengate.prompt_tokens_total",
    "tokengate.backend_prompt_tokens_total",
    "tokengate.completion_tokens_total",
    "tokengate.cached_prompt_tokens_total",
    "tokengate.reasoning_tokens_total",
    "tokengate.dropped_tokens_total",
    "tokengate.refunded_tokens_total",
    "tokengate.usage_missing_total",
    "tokengate.prompt_drift_negative_total",
    "tokengate.prompt_drift_warnings_total",
    "tokengate.prompt_tokens",
    "tokengate.completion_tokens",
    "tokengate.tokenize_us",
    "tokengate.prompt_drift_tokens",
    "tokengate.rejected_context_length_exceeded_total",
    "tokengate.rejected_invalid_value_total",
    "tokengate.rejected_request_too_large_total",
    "tokengate.rejected_invalid_json_total",
    "tokengate.rejected_missing_api_key_total",
    "tokengate.rejected_rate_limit_exceeded_total",
    "tokengate.rejected_quota_unavailable_total",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_names_unique() {
        let all: Vec<Metric> = Metric::all().collect();
        assert_eq!(all.len(), Metric::COUNT);
        for (i, m) in all.iter().enumerate() {
            assert_eq!(m.index(), i, "{m:?}");
        }
        let mut names: Vec<&str> = all.iter().map(|m| m.name()).collect();
        for code in ErrorCode::ALL {
            let name = format!("tokengate.rejected_{}_total", code.as_str());
            assert_eq!(Metric::RejectedTotal(code).name(), name, "the counter is named for the code");
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Metric::COUNT);
        assert!(!Metric::RequestsTotal.is_per_model() && !Metric::QuotaErrorsTotal.is_per_model() && !Metric::RlsRoundTripUs.is_per_model());
        assert!(Metric::AllowedTotal.is_per_model() && Metric::RejectedTotal(ErrorCode::InvalidJson).is_per_model());
        assert_eq!(Metric::PromptTokensTotal.series_name("gpt-4o*"), "tokengate.prompt_tokens_total.model.gpt-4o*");
        assert_eq!(Metric::RequestsTotal.series_name("x"), "tokengate.requests_total");
    }
}
