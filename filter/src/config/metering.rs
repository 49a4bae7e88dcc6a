//! What the meter is configured with: the stat label of each model rule, its cost weights, and
//! the `metering` object (stream usage injection, the drift warning threshold).

use super::{ConfigError, RawCost, RawMetering};

/// The label of requests no rule matches (and of requests that name no model): the one series
/// that stands for every model name not configured.
pub const OTHER_LABEL: &str = "other";
/// Longest accepted label: a label is part of a stat name in every Envoy VM.
const MAX_LABEL_LEN: usize = 128;
/// Weights are kept in thousandths of a token.
pub const MILLI: u64 = 1000;
/// Largest accepted weight, in tokens per token.
const MAX_WEIGHT: f64 = 1000.0;
const DEFAULT_DRIFT_WARN_PPM: u32 = 20_000;

/// What one token of a model costs against token limits, in thousandths of a token: exact
/// integer arithmetic, so buckets never drift by rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
}

impl Cost {
    /// One token costs one token: the default.
    pub const UNIT: Cost = Cost { input: MILLI, cached_input: MILLI, output: MILLI };

    /// The prompt's cost in milli-tokens, `cached` of its tokens at the cached rate.
    pub fn input_milli(&self, prompt_tokens: u64, cached: u64) -> u64 {
        let cached = cached.min(prompt_tokens);
        (prompt_tokens - cached).saturating_mul(self.input).saturating_add(cached.saturating_mul(self.cached_input))
    }

    /// The output's cost in milli-tokens.
    pub fn output_milli(&self, tokens: u64) -> u64 {
        tokens.saturating_mul(self.output)
    }
}

/// Milli-tokens as whole tokens, rounded up (headers, messages and access-log fields are
/// integers; a cost is never understated).
pub fn whole_tokens(milli: u64) -> u64 {
    milli.div_ceil(MILLI)
}

/// The `metering` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metering {
    /// Ask streaming backends for usage when the client did not (and hide it from the client).
    pub stream_usage: bool,
    /// Warn when the backend's prompt count differs from tokengate's by more than this many
    /// parts per million of tokengate's count; `None`: never.
    pub drift_warn_ppm: Option<u32>,
}

impl Default for Metering {
    fn default() -> Metering {
        Metering { stream_usage: true, drift_warn_ppm: Some(DEFAULT_DRIFT_WARN_PPM) }
    }
}

pub(super) fn parse_metering(raw: Option<RawMetering>) -> Result<Metering, ConfigError> {
    let raw = raw.unwrap_or_default();
    let drift_warn_ppm = match raw.drift_warn_ratio {
        None => Some(DEFAULT_DRIFT_WARN_PPM),
        Some(None) => None,
        Some(Some(ratio)) => {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(ConfigError::InvalidValue {
                    field: "metering.drift_warn_ratio".to_owned(),
                    reason: "must be a share between 0 and 1 (0.02 is 2 %), or null for no drift warnings".to_owned(),
                });
            }
            // In range, so the product fits; rounding to a part per million is the precision kept.
            Some((ratio * 1e6).round() as u32)
        }
    };
    Ok(Metering { stream_usage: raw.stream_usage.unwrap_or(true), drift_warn_ppm })
}

/// A rule's `cost`: each weight a number of tokens per token with at most three decimals.
pub(super) fn parse_cost(prefix: &str, raw: Option<&RawCost>) -> Result<Cost, ConfigError> {
    let Some(raw) = raw else { return Ok(Cost::UNIT) };
    let weight = |name: &str, value: Option<f64>, default: u64| -> Result<u64, ConfigError> {
        let Some(w) = value else { return Ok(default) };
        let invalid = |reason: &str| ConfigError::InvalidValue { field: format!("{prefix}cost.{name}"), reason: reason.to_owned() };
        if !(0.0..=MAX_WEIGHT).contains(&w) {
            return Err(invalid("must be a weight between 0 and 1000 (tokens charged per token)"));
        }
        let milli = (w * 1000.0).round();
        if (milli - w * 1000.0).abs() > 1e-6 {
            return Err(invalid("has more than three decimals: weights are kept in thousandths of a token, exactly"));
        }
        Ok(milli as u64)
    };
    let input = weight("input", raw.input, MILLI)?;
    Ok(Cost {
        input,
        // Cached prompt tokens cost what other prompt tokens cost unless told otherwise.
        cached_input: weight("cached_input", raw.cached_input, input)?,
        output: weight("output", raw.output, MILLI)?,
    })
}

/// A label as a stat name can carry it (a tag value Envoy extracts from the name): printable
/// ASCII without spaces, quotes or backslashes, and dots only between other characters (Envoy
/// splits names at dots).
pub(super) fn is_label(label: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-_.:/*+@".contains(&b);
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label.bytes().all(allowed)
        && !label.starts_with('.')
        && !label.ends_with('.')
        && !label.contains("..")
}

/// The label a rule's series carry: its `label`, else its `match` string.
pub(super) fn rule_label(prefix: &str, label: Option<&str>, pattern: &str) -> Result<String, ConfigError> {
    match label {
        Some(l) if is_label(l) => Ok(l.to_owned()),
        Some(l) => Err(ConfigError::InvalidValue {
            field: format!("{prefix}label"),
            reason: format!("must be 1-{MAX_LABEL_LEN} characters of letters, digits and -_.:/*+@, with no leading, trailing or double dot, got {l:?}"),
        }),
        None if is_label(pattern) => Ok(pattern.to_owned()),
        None => Err(ConfigError::InvalidValue {
            field: format!("{prefix}match"),
            reason: format!("{pattern:?} cannot label the rule's stats (letters, digits and -_.:/*+@ only, no leading, trailing or double dot): give the rule a `label`"),
        }),
    }
}

/// The distinct labels of a configuration, `other` first; `index` finds or adds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels(Vec<String>);

impl Default for Labels {
    fn default() -> Labels {
        Labels(vec![OTHER_LABEL.to_owned()])
    }
}

impl Labels {
    pub(super) fn index(&mut self, label: String) -> u16 {
        let i = match self.0.iter().position(|l| *l == label) {
            Some(i) => i,
            None => {
                self.0.push(label);
                self.0.len() - 1
            }
        };
        u16::try_from(i).unwrap_or(u16::MAX)
    }

    /// The index of `label`, 0 (`other`) when no rule has it.
    pub fn index_of(&self, label: &str) -> u16 {
        self.0.iter().position(|l| l == label).and_then(|i| u16::try_from(i).ok()).unwrap_or(0)
    }

    /// The label at `index` (`other` for an index no rule has).
    pub fn get(&self, index: u16) -> &str {
        self.0.get(usize::from(index)).map_or(OTHER_LABEL, String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
