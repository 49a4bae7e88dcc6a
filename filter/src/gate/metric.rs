//! The filter's stats: one name per metric, exported by Envoy as `tokengate_<name>` on
//! `/stats/prometheus`; the adapter defines every one of them once per VM.

use crate::reject::ErrorCode;

/// A counter or histogram of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    RequestsTotal,
    AllowedTotal,
    PassthroughTotal,
    /// Requests refused with this code.
    RejectedTotal(ErrorCode),
    PromptTokensTotal,
    CompletionTokensTotal,
    CachedPromptTokensTotal,
    RefundedTokensTotal,
    /// Successful responses that reported no usage (the estimate was charged).
    UsageMissingTotal,
    /// Responses whose backend counted fewer prompt tokens than tokengate.
    PromptDriftNegativeTotal,
    QuotaEvictionsTotal,
    /// Quota operations that failed (the request went on unmetered).
    QuotaErrorsTotal,
    /// Histogram: prompt tokens per admitted request.
    PromptTokens,
    /// Histogram: microseconds spent parsing and counting a body.
    TokenizeUs,
    /// Histogram: |backend's prompt tokens - tokengate's count|.
    PromptDriftTokens,
}

const PLAIN: [Metric; 14] = [
    Metric::RequestsTotal,
    Metric::AllowedTotal,
    Metric::PassthroughTotal,
    Metric::PromptTokensTotal,
    Metric::CompletionTokensTotal,
    Metric::CachedPromptTokensTotal,
    Metric::RefundedTokensTotal,
    Metric::UsageMissingTotal,
    Metric::PromptDriftNegativeTotal,
    Metric::QuotaEvictionsTotal,
    Metric::QuotaErrorsTotal,
    Metric::PromptTokens,
    Metric::TokenizeUs,
    Metric::PromptDriftTokens,
];

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

    pub fn is_histogram(self) -> bool {
        matches!(self, Metric::PromptTokens | Metric::TokenizeUs | Metric::PromptDriftTokens)
    }

    /// The name the host knows it by: `tokengate.` and the Prometheus name without its prefix.
    pub fn name(self) -> &'static str {
        NAMES.get(self.index()).copied().unwrap_or("tokengate.unknown")
    }
}

/// Names by `Metric::index`: the plain metrics, then one rejection counter per `ErrorCode::ALL`.
const NAMES: [&str; Metric::COUNT] = [
    "tokengate.requests_total",
    "tokengate.allowed_total",
    "tokengate.passthrough_total",
    "tokengate.prompt_tokens_total",
    "tokengate.completion_tokens_total",
    "tokengate.cached_prompt_tokens_total",
    "tokengate.refunded_tokens_total",
    "tokengate.usage_missing_total",
    "tokengate.prompt_drift_negative_total",
    "tokengate.quota_evictions_total",
    "tokengate.quota_errors_total",
    "tokengate.prompt_tokens",
    "tokengate.tokenize_us",
    "tokengate.prompt_drift_tokens",
    "tokengate.rejected_context_length_exceeded_total",
    "tokengate.rejected_invalid_value_total",
    "tokengate.rejected_request_too_large_total",
    "tokengate.rejected_invalid_json_total",
    "tokengate.rejected_missing_api_key_total",
    "tokengate.rejected_rate_limit_exceeded_total",
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
    }
}
