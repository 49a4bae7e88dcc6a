//! `quota.backend.rls`: fleet-wide quotas kept by an Envoy rate limit service (the RLS v3 gRPC
//! API of Limitador or envoyproxy/ratelimit), reached through an Envoy cluster.

use super::raw::RawRls;
use super::{parse_header_name, ranged, ConfigError};

const DEFAULT_TIMEOUT_MS: u64 = 50;
const MAX_TIMEOUT_MS: u64 = 10_000;
/// The descriptor key tokengate always sends: the key id.
pub const API_KEY_ENTRY: &str = "api_key";
/// Descriptor entries an operator may add beside `api_key`.
const MAX_ENTRIES: usize = 8;

/// What tokengate does when the rate limit service cannot answer (error, timeout, unreadable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Admit on the local limits alone.
    Allow,
    /// Refuse with 503.
    Deny,
}

/// Where a descriptor entry's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrySource {
    /// The request body's `model`.
    Model,
    /// A request header (lower case).
    Header(String),
}

/// One configured descriptor entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsEntry {
    pub key: String,
    pub from: EntrySource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsConfig {
    /// The Envoy cluster of the rate limit service (HTTP/2).
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u32,
    pub failure_mode: FailureMode,
    /// Entries after `api_key`, in order.
    pub entries: Vec<RlsEntry>,
}

impl RlsConfig {
    /// The request headers whose values the descriptor carries, in entry order.
    pub fn headers(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|e| match &e.from {
            EntrySource::Header(name) => Some(name.as_str()),
            EntrySource::Model => None,
        })
    }
}

pub(super) fn parse(raw: RawRls) -> Result<RlsConfig, ConfigError> {
    const PATH: &str = "quota.backend.rls";
    let required = |name: &str, value: String| {
        if value.is_empty() {
            Err(ConfigError::InvalidValue { field: format!("{PATH}.{name}"), reason: "must not be empty".to_owned() })
        } else {
            Ok(value)
        }
    };
    let cluster = required("cluster", raw.cluster)?;
    let domain = required("domain", raw.domain)?;
    let timeout_ms = ranged(&format!("{PATH}.timeout_ms"), raw.timeout_ms, DEFAULT_TIMEOUT_MS, 1, MAX_TIMEOUT_MS)?;
    let failure_mode = match raw.failure_mode.as_deref() {
        None | Some("allow") => FailureMode::Allow,
        Some("deny") => FailureMode::Deny,
        Some(other) => {
            return Err(ConfigError::InvalidValue {
                field: format!("{PATH}.failure_mode"),
                reason: format!("must be \"allow\" or \"deny\", got {other:?}"),
            })
        }
    };
    if raw.descriptors.len() > MAX_ENTRIES {
        return Err(ConfigError::InvalidValue {
            field: format!("{PATH}.descriptors"),
            reason: format!("has {} entries; at most {MAX_ENTRIES} (each is sent with every request)", raw.descriptors.len()),
        });
    }
    let mut entries: Vec<RlsEntry> = Vec::with_capacity(raw.descriptors.len());
    for (i, d) in raw.descriptors.into_iter().enumerate() {
        let field = |name: &str| format!("{PATH}.descriptors[{i}].{name}");
        if d.key.is_empty() || d.key == API_KEY_ENTRY || entries.iter().any(|e| e.key == d.key) {
            return Err(ConfigError::InvalidValue {
                field: field("key"),
                reason: format!("must be a non-empty key other than `{API_KEY_ENTRY}` (always sent: the key id) and unique, got {:?}", d.key),
            });
        }
        let from = match d.from.as_str() {
            "model" => EntrySource::Model,
            other => match other.strip_prefix("header:") {
                Some(name) => EntrySource::Header(parse_header_name(&field("from"), name)?),
                None => {
                    return Err(ConfigError::InvalidValue {
                        field: field("from"),
                        reason: format!("must be \"model\" or \"header:<name>\", got {other:?}"),
                    })
                }
            },
        };
        entries.push(RlsEntry { key: d.key, from });
    }
    Ok(RlsConfig { cluster, domain, timeout_ms: u32::try_from(timeout_ms).unwrap_or(u32::MAX), failure_mode, entries })
}
