//! The filter's stats: defined once per VM; Envoy exports `tokengate.x` as `tokengate_x`.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType, Status};

use super::log;
use crate::reject::ErrorCode;

/// Metric ids of one VM.
pub(crate) struct Metrics {
    pub requests: u32,
    pub allowed: u32,
    pub passthrough: u32,
    pub prompt_tokens_total: u32,
    rejected: [u32; ErrorCode::ALL.len()],
    /// Histogram of prompt tokens per admitted request.
    pub prompt_tokens: u32,
    /// Histogram of microseconds spent parsing and counting a body.
    pub tokenize_us: u32,
    pub completion_tokens_total: u32,
    pub cached_prompt_tokens_total: u32,
    pub refunded_tokens_total: u32,
    /// Successful responses that reported no usage (the estimate was charged).
    pub usage_missing: u32,
    /// Histogram of |backend's prompt tokens - tokengate's count|.
    pub prompt_drift_tokens: u32,
    /// Responses whose backend counted fewer prompt tokens than tokengate.
    pub prompt_drift_negative: u32,
    pub quota_evictions: u32,
    /// Quota operations that failed (the request was admitted unmetered).
    pub quota_errors: u32,
}

impl Metrics {
    pub fn define() -> Result<Metrics, Status> {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name);
        let histogram = |name: &str| hostcalls::define_metric(MetricType::Histogram, name);
        let mut rejected = [0; ErrorCode::ALL.len()];
        for (slot, code) in rejected.iter_mut().zip(ErrorCode::ALL) {
            *slot = counter(&format!("tokengate.rejected_{}_total", code.as_str()))?;
        }
        Ok(Metrics {
            requests: counter("tokengate.requests_total")?,
            allowed: counter("tokengate.allowed_total")?,
            passthrough: counter("tokengate.passthrough_total")?,
            prompt_tokens_total: counter("tokengate.prompt_tokens_total")?,
            rejected,
            prompt_tokens: histogram("tokengate.prompt_tokens")?,
            tokenize_us: histogram("tokengate.tokenize_us")?,
            completion_tokens_total: counter("tokengate.completion_tokens_total")?,
            cached_prompt_tokens_total: counter("tokengate.cached_prompt_tokens_total")?,
            refunded_tokens_total: counter("tokengate.refunded_tokens_total")?,
            usage_missing: counter("tokengate.usage_missing_total")?,
            prompt_drift_tokens: histogram("tokengate.prompt_drift_tokens")?,
            prompt_drift_negative: counter("tokengate.prompt_drift_negative_total")?,
            quota_evictions: counter("tokengate.quota_evictions_total")?,
            quota_errors: counter("tokengate.quota_errors_total")?,
        })
    }

    pub fn rejected(&self, code: ErrorCode) -> Option<u32> {
        ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .and_then(|i| self.rejected.get(i).copied())
    }

    pub fn add(&self, id: u32, by: u64) {
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        if let Err(s) = hostcalls::increment_metric(id, by) {
            log(LogLevel::Warn, &format!("tokengate: cannot increment metric {id}: {s:?}"));
        }
    }

    pub fn record(&self, id: u32, value: u64) {
        if let Err(s) = hostcalls::record_metric(id, value) {
            log(LogLevel::Warn, &format!("tokengate: cannot record metric {id}: {s:?}"));
        }
    }
}
