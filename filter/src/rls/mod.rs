//! Fleet-wide quotas on Envoy's rate limit service (RLS v3, as Limitador and envoyproxy/ratelimit
//! serve it): the `ShouldRateLimit` request a charge sends, and what its answer means. Plain
//! data in and out; the gate decides with it and the proxy adapter makes the call.

mod wire;

use crate::config::{EntrySource, RlsConfig, RLS_API_KEY};
use crate::quota::bucket::Level;

pub use wire::WireError;

/// The gRPC service and method tokengate calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";
/// The `api_key` entry of requests without an API key (a key id is 16 hex digits: no clash).
pub const ANONYMOUS: &str = "anonymous";
/// `retry-after` of an OVER_LIMIT answer that does not say when the limit resets.
pub const UNKNOWN_RESET_NS: u64 = 1_000_000_000;

/// The descriptor's values that come from the request, in the order of `RlsConfig::entries`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryValues {
    pub model: Option<String>,
    /// One per header entry, in entry order; `None` when the request did not send it.
    pub headers: Vec<Option<String>>,
}

/// A `ShouldRateLimit` request charging `hits` (tokens) to one descriptor: `api_key` = the key id,
/// then each configured entry whose source the request has (an absent one is left out).
pub fn request(config: &RlsConfig, key_id: Option<&str>, values: &EntryValues, hits: u64) -> Vec<u8> {
    let mut entries: Vec<(&str, &str)> = Vec::with_capacity(1 + config.entries.len());
    entries.push((RLS_API_KEY, key_id.unwrap_or(ANONYMOUS)));
    let mut headers = values.headers.iter();
    for entry in &config.entries {
        let value = match &entry.from {
            EntrySource::Model => values.model.as_deref(),
            EntrySource::Header(_) => headers.next().and_then(Option::as_deref),
        };
        if let Some(value) = value {
            entries.push((entry.key.as_str(), value));
        }
    }
    // Limitador counts a hits_addend of 0 as 1: callers never send 0.
    let hits = u32::try_from(hits.max(1)).unwrap_or(u32::MAX);
    wire::encode_request(&config.domain, &entries, hits)
}

/// What the service said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Charged. `level`: the descriptor's limit as the service reports it, if it does.
    Ok { level: Option<Level> },
    /// Not charged: over the limit. `reset_ns`: when the service says the limit resets.
    OverLimit { level: Option<Level>, reset_ns: Option<u64> },
}

/// Why there is no verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A gRPC status other than OK (4 is the host's timeout, DEADLINE_EXCEEDED).
    Status { code: u32, message: String },
    /// The answer could not be read, or its overall code is UNKNOWN.
    Unreadable(String),
    /// The host could not start the call (Envoy: no such cluster).
    NotSent(String),
}

impl Failure {
    /// A short reason for logs and the `rls` access-log field.
    pub fn describe(&self) -> String {
        match self {
            Failure::Status { code: 4, .. } => "timed out".to_owned(),
            Failure::Status { code, message } if message.is_empty() => format!("gRPC status {code}"),
            Failure::Status { code, message } => format!("gRPC status {code} ({message})"),
            Failure::Unreadable(why) => format!("unreadable answer: {why}"),
            Failure::NotSent(why) => format!("call not sent: {why}"),
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Failure::Status { code: 4, .. })
    }
}

/// Reads an answer's message bytes.
pub fn verdict(bytes: &[u8]) -> Result<Verdict, Failure> {
    let response = wire::decode_response(bytes).map_err(|WireError(why)| Failure::Unreadable(why.to_owned()))?;
    match response.code {
        1 => Ok(Verdict::Ok { level: tightest(&response.statuses, false).and_then(level) }),
        2 => {
            let status = tightest(&response.statuses, true);
            Ok(Verdict::OverLimit { level: status.and_then(level), reset_ns: status.and_then(reset_ns) })
        }
        code => Err(Failure::Unreadable(format!("overall code {code} (UNKNOWN)"))),
    }
}

/// The status that binds: an OVER_LIMIT one when `over` (else any), with the least remaining.
fn tightest(statuses: &[wire::DescriptorStatus], over: bool) -> Option<&wire::DescriptorStatus> {
    let over_limit = statuses.iter().filter(|s| s.code == 2).min_by_key(|s| s.remaining);
    let any = || statuses.iter().min_by_key(|s| s.remaining);
    if over {
        over_limit.or_else(any)
    } else {
        any()
    }
}

/// A unit's window: what a limit resets within at most.
fn unit_ns(unit: u64) -> Option<u64> {
    let seconds = match unit {
        1 => 1,
        2 => 60,
        3 => 3600,
        4 => 86_400,
        5 => 30 * 86_400, // MONTH
        6 => 365 * 86_400, // YEAR
        _ => return None,
    };
    Some(seconds * 1_000_000_000)
}

fn reset_ns(status: &wire::DescriptorStatus) -> Option<u64> {
    status.reset_ns.or_else(|| status.limit.and_then(|(_, unit)| unit_ns(unit)))
}

/// The `x-ratelimit-*-tokens` level of a status that names its limit.
fn level(status: &wire::DescriptorStatus) -> Option<Level> {
    let (limit, _) = status.limit?;
    Some(Level { limit, remaining: status.remaining.min(limit), reset_ns: reset_ns(status).unwrap_or(0) })
}

#[cfg(test)]
mod tests;
