//! Per-key token quotas over a compare-and-swap key-value store (proxy-wasm shared data, shared
//! by all worker VMs of one Envoy): reserve at admission, settle with the real usage later.
//!
//! Memory is bounded: keys live in a fixed table of `max_tracked_keys` slots, found by hashing
//! the key id and probing a few neighbours. A slot whose buckets are all full again holds no
//! information and is reused; when every probed slot is busy, the one closest to full is evicted
//! (its key starts over with a full bucket). A flood of random keys therefore costs at most
//! `max_tracked_keys` entries.
//!
//! Every write is a compare-and-swap of the whole slot (all buckets of a key at once), retried a
//! bounded number of times. The ABI has no create-if-absent, so the first write to a never-used
//! slot is a plain write of an empty record; all charges go through CAS after that.

pub mod bucket;
mod headers;
mod record;

use std::fmt;

use crate::config::{KeyLimits, QuotaConfig, MILLI};
use bucket::{Level, Limit, Refusal};
use record::{Record, BUCKETS};

pub use headers::{format_duration, format_milli, ratelimit_headers, retry_headers};
pub use record::KeyName;

const MINUTE_NS: u64 = 60_000_000_000;
const DAY_NS: u64 = 24 * 60 * MINUTE_NS;
/// Slots probed per key; a power of two keeps the probe within a cache-friendly run.
const PROBE: u32 = 8;
/// CAS attempts before giving up on a contended slot.
const MAX_ATTEMPTS: u32 = 32;

/// A compare-and-swap store. `get` gives the value and its version; `set` with `Some(cas)`
/// fails with [`StoreError::CasMismatch`] when the value changed since that version.
pub trait Store {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    CasMismatch,
    /// The host refused the call (its status, for the log).
    Host(String),
}

/// Why a quota operation could not complete (the request is then let through, and logged).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaError {
    Store(StoreError),
    /// Other VMs kept changing the slot; gave up after `MAX_ATTEMPTS`.
    Contended,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaError::Store(StoreError::CasMismatch) => f.write_str("shared data changed under us"),
            QuotaError::Store(StoreError::Host(s)) => write!(f, "shared data call failed: {s}"),
            QuotaError::Contended => write!(f, "quota slot still contended after {MAX_ATTEMPTS} attempts"),
        }
    }
}

impl std::error::Error for QuotaError {}

impl From<StoreError> for QuotaError {
    fn from(e: StoreError) -> Self {
        QuotaError::Store(e)
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    TokensPerMinute,
    TokensPerDay,
    InputTokensPerMinute,
    InputTokensPerDay,
    OutputTokensPerMinute,
    OutputTokensPerDay,
    RequestsPerMinute,
}

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meter {
    /// Prompt and output tokens, in milli-tokens.
    Tokens,
    /// Prompt tokens, in milli-tokens.
    Input,
    /// Output tokens, in milli-tokens.
    Output,
    Requests,
}

impl LimitKind {
    fn meter(self) -> Meter {
        match self {
            LimitKind::TokensPerMinute | LimitKind::TokensPerDay => Meter::Tokens,
            LimitKind::InputTokensPerMinute | LimitKind::InputTokensPerDay => Meter::Input,
            LimitKind::OutputTokensPerMinute | LimitKind::OutputTokensPerDay => Meter::Output,
            LimitKind::RequestsPerMinute => Meter::Requests,
        }
    }

    /// Whether the bucket counts tokens (kept in milli-tokens) rather than requests.
    pub fn counts_tokens(self) -> bool {
        self.meter() != Meter::Requests
    }

    /// OpenAI's `error.type` for a rate-limit refusal.
    pub fn error_type(self) -> &'static str {
        if self.counts_tokens() {
            "tokens"
        } else {
            "requests"
        }
    }

    /// How the limit is named in messages (OpenAI's names; Anthropic's for input and output).
    pub fn describe(self) -> &'static str {
        match self {
            LimitKind::TokensPerMinute => "tokens per min (TPM)",
            LimitKind::TokensPerDay => "tokens per day (TPD)",
            LimitKind::InputTokensPerMinute => "input tokens per min (ITPM)",
            LimitKind::InputTokensPerDay => "input tokens per day (ITPD)",
            LimitKind::OutputTokensPerMinute => "output tokens per min (OTPM)",
            LimitKind::OutputTokensPerDay => "output tokens per day (OTPD)",
            LimitKind::RequestsPerMinute => "requests per min (RPM)",
        }
    }
}

/// The limits of one key as buckets, in record order. Token buckets hold milli-tokens (their
/// capacity is the limit × 1000), so weighted costs are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Buckets([Option<Limit>; BUCKETS]);

const KINDS: [LimitKind; BUCKETS] = [
    LimitKind::TokensPerMinute,
    LimitKind::TokensPerDay,
    LimitKind::InputTokensPerMinute,
    LimitKind::InputTokensPerDay,
    LimitKind::OutputTokensPerMinute,
    LimitKind::OutputTokensPerDay,
    LimitKind::RequestsPerMinute,
];

impl Buckets {
    fn new(limits: KeyLimits) -> Buckets {
        let tokens = |amount: Option<u64>, period_ns| {
            amount.map(|a| Limit { capacity: a.saturating_mul(MILLI), period_ns })
        };
        Buckets([
            tokens(limits.tokens_per_minute, MINUTE_NS),
            tokens(limits.tokens_per_day, DAY_NS),
            tokens(limits.input_tokens_per_minute, MINUTE_NS),
            tokens(limits.input_tokens_per_day, DAY_NS),
            tokens(limits.output_tokens_per_minute, MINUTE_NS),
            tokens(limits.output_tokens_per_day, DAY_NS),
            limits.requests_per_minute.map(|capacity| Limit { capacity, period_ns: MINUTE_NS }),
        ])
    }

    fn iter(&self) -> impl Iterator<Item = (usize, LimitKind, Limit)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.map(|l| (i, KINDS[i], l)))
    }

    fn snapshot(&self, record: &Record, now: u64) -> Snapshot {
        let mut snap = Snapshot::default();
        for (i, kind, limit) in self.iter() {
            let level = limit.level(record.tats[i], now);
            let slot = match kind.meter() {
                Meter::Requests => {
                    snap.requests = Some(level);
                    continue;
                }
                Meter::Tokens => &mut snap.tokens,
                Meter::Input => &mut snap.input_tokens,
                Meter::Output => &mut snap.output_tokens,
            };
            // In whole tokens, rounded down: never promise a token that has not refilled.
            let level = Level { limit: level.limit / MILLI, remaining: level.remaining / MILLI, reset_ns: level.reset_ns };
            // Report the bucket (minute or day) that binds first.
            if slot.is_none_or(|t| level.remaining < t.remaining) {
                *slot = Some(level);
            }
        }
        snap
    }
}

/// What an admission takes, in milli-tokens (the model's cost weights applied).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub input_milli: u64,
    pub output_milli: u64,
}

impl Charge {
    fn for_meter(self, meter: Meter) -> u64 {
        match meter {
            Meter::Tokens => self.input_milli.saturating_add(self.output_milli),
            Meter::Input => self.input_milli,
            Meter::Output => self.output_milli,
            Meter::Requests => 1,
        }
    }
}

/// The buckets of a key after an operation, for the `x-ratelimit-*` headers, in whole tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Of the token buckets (minute, day) of each meter, the one with the least remaining.
    pub tokens: Option<Level>,
    pub input_tokens: Option<Level>,
    pub output_tokens: Option<Level>,
    pub requests: Option<Level>,
}

/// The answer to an admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted(Snapshot),
    /// `limit` as configured (tokens or requests); `requested` and a wait's `used` in the
    /// bucket's units (milli-tokens for token buckets).
    Refused {
        kind: LimitKind,
        refusal: Refusal,
        limit: u64,
        requested: u64,
        snapshot: Snapshot,
    },
}

/// What a slot lookup found.
struct Found {
    slot: String,
    record: Record,
    /// `None`: the slot was never written.
    cas: Option<u32>,
    evicted: bool,
}

/// Quotas under one configuration.
pub struct Quotas<'c> {
    config: &'c QuotaConfig,
}

impl<'c> Quotas<'c> {
    pub fn new(config: &'c QuotaConfig) -> Quotas<'c> {
        Quotas { config }
    }

    fn buckets(&self, key: &KeyName) -> Buckets {
        Buckets::new(match key {
            KeyName::Id(id) => self.config.limits_for(id),
            KeyName::Anonymous => self.config.limits,
        })
    }

    /// Takes `charge` (and one request) from every bucket of `key`, or none if any cannot cover
    /// it. `evicted` is set when a busy slot had to be taken over.
    pub fn admit(
        &self,
        store: &dyn Store,
        key: &KeyName,
        now: u64,
        charge: Charge,
        evicted: &mut bool,
    ) -> Result<Admission, QuotaError> {
        let buckets = self.buckets(key);
        for _ in 0..MAX_ATTEMPTS {
            let found = self.locate(store, key, now)?;
            let Some(cas) = found.cas else {
                store.set(&found.slot, &Record::fresh(key).encode(), None)?;
                continue;
            };
            let mut record = found.record;
            for (i, kind, limit) in buckets.iter() {
                let cost = charge.for_meter(kind.meter());
                if cost == 0 {
                    continue;
                }
                match limit.admit(record.tats[i], now, cost) {
                    Ok(tat) => record.tats[i] = tat,
                    Err(refusal) => {
                        return Ok(Admission::Refused {
                            kind,
                            refusal,
                            limit: if kind.counts_tokens() { limit.capacity / MILLI } else { limit.capacity },
                            requested: cost,
                            snapshot: buckets.snapshot(&found.record, now),
                        })
                    }
                }
            }
            match store.set(&found.slot, &record.encode(), Some(cas)) {
                Ok(()) => {
                    *evicted = found.evicted;
                    return Ok(Admission::Admitted(buckets.snapshot(&record, now)));
                }
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(QuotaError::Contended)
    }

    /// Settles a reservation, in milli-tokens: a delta > 0 charges usage beyond it, < 0 gives
    /// back. Input buckets move by `input_delta`, output buckets by `output_delta`, token buckets
    /// by both. A key whose slot was taken over meanwhile is not charged (it started over anyway).
    pub fn settle(&self, store: &dyn Store, key: &KeyName, now: u64, input_delta: i64, output_delta: i64) -> Result<(), QuotaError> {
        if input_delta == 0 && output_delta == 0 {
            return Ok(());
        }
        let buckets = self.buckets(key);
        for _ in 0..MAX_ATTEMPTS {
            let Some((slot, mut record, cas)) = self.find_own(store, key)? else {
                return Ok(());
            };
            for (i, kind, limit) in buckets.iter() {
                let delta = match kind.meter() {
                    Meter::Requests => continue,
                    Meter::Tokens => input_delta.saturating_add(output_delta),
                    Meter::Input => input_delta,
                    Meter::Output => output_delta,
                };
                if delta == 0 {
                    continue;
                }
                record.tats[i] = if delta > 0 {
                    limit.charge(record.tats[i], now, delta.unsigned_abs())
                } else {
                    limit.refund(record.tats[i], now, delta.unsigned_abs())
                };
            }
            match store.set(&slot, &record.encode(), Some(cas)) {
                Ok(()) => return Ok(()),
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(QuotaError::Contended)
    }

    /// The key's buckets now, without changing them.
    pub fn peek(&self, store: &dyn Store, key: &KeyName, now: u64) -> Result<Snapshot, QuotaError> {
        let buckets = self.buckets(key);
        let record = match self.find_own(store, key)? {
            Some((_, record, _)) => record,
            None => Record::fresh(key),
        };
        Ok(buckets.snapshot(&record, now))
    }

    fn slots(&self, key: &KeyName) -> impl Iterator<Item = String> {
        let n = self.config.max_tracked_keys.max(1);
        let start = key.hash() % u64::from(n);
        let probe = PROBE.min(n);
        (0..probe).map(move |i| format!("tokengate.quota.{}", (start + u64::from(i)) % u64::from(n)))
    }

    fn find_own(&self, store: &dyn Store, key: &KeyName) -> Result<Option<(String, Record, u32)>, QuotaError> {
        for slot in self.slots(key) {
            if let Some((bytes, cas)) = store.get(&slot)? {
                if let Some(record) = Record::decode(&bytes).filter(|r| r.is(key)) {
                    return Ok(Some((slot, record, cas)));
                }
            }
        }
        Ok(None)
    }

    /// The key's slot, or the slot it should take: its own, else a never-written or idle one,
    /// else the probed slot closest to full (evicted).
    fn locate(&self, store: &dyn Store, key: &KeyName, now: u64) -> Result<Found, QuotaError> {
        let mut free: Option<Found> = None;
        let mut victim: Option<(u64, Found)> = None;
        for slot in self.slots(key) {
            let entry = store.get(&slot)?;
            let record = entry.as_ref().and_then(|(bytes, _)| Record::decode(bytes));
            let cas = entry.map(|(_, cas)| cas);
            match record {
                Some(r) if r.is(key) => return Ok(Found { slot, record: r, cas, evicted: false }),
                _ if free.is_some() => {}
                None => free = Some(Found { slot, record: Record::fresh(key), cas, evicted: false }),
                // All buckets full again: the slot holds nothing worth keeping.
                Some(r) if r.busy_for(now) == 0 || r.is_empty() => {
                    free = Some(Found { slot, record: Record::fresh(key), cas, evicted: false })
                }
                Some(r) => {
                    let busy = r.busy_for(now);
                    if victim.as_ref().is_none_or(|(b, _)| busy < *b) {
                        victim = Some((busy, Found { slot, record: Record::fresh(key), cas, evicted: true }));
                    }
                }
            }
        }
        match (free, victim) {
            (Some(found), _) | (None, Some((_, found))) => Ok(found),
            // PROBE >= 1, so one of the two is always set; an empty table is impossible.
            (None, None) => Err(QuotaError::Contended),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
