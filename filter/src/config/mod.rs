//! Plugin configuration: the raw JSON an operator writes, validated once into a `Config`.
//!
//! Two phases: [`RawConfig`] is what the JSON says (read in `raw.rs`; unknown fields are an error,
//! so a typo is never a silent default), and [`Config::from_json`] range-checks every value and
//! resolves the model rules.
//! Every default and every bound lives in this file.

use std::collections::HashMap;
use std::fmt;

use crate::request::ChatFormat;
use crate::tokenize::{Encoding, Tokenizer};

mod metering;
mod raw;
mod rls;
pub use metering::{whole_tokens, Cost, Labels, Metering, MILLI, OTHER_LABEL};
pub use raw::{RawApiKey, RawConfig, RawCost, RawDescriptorEntry, RawKeyLimits, RawMetering, RawModelRule, RawQuota, RawRls, RawRouting, RawSizeClass};
pub use rls::{EntrySource, FailureMode, RlsConfig, RlsEntry, API_KEY_ENTRY as RLS_API_KEY};

/// Largest accepted token limit (prompt or output): far above any model's context, low enough
/// that sums of limits never overflow.
pub const MAX_TOKEN_LIMIT: u64 = 100_000_000;
/// Largest accepted quota amount (tokens or requests per period).
pub const MAX_QUOTA_AMOUNT: u64 = 1_000_000_000_000;
/// Largest accepted `quota.max_tracked_keys`: each tracked key is one ~100-byte shared-data entry.
pub const MAX_TRACKED_KEYS_LIMIT: u64 = 10_000_000;
/// Largest accepted `max_body_bytes`: the filter buffers the whole JSON body before counting.
pub const MAX_BODY_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

const DEFAULT_MAX_PROMPT_TOKENS: u64 = 128_000;
const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const DEFAULT_IMAGE_TOKENS: u64 = 765;
const DEFAULT_KEY_HEADER: &str = "authorization";
const DEFAULT_OUTPUT_RESERVATION: u64 = 256;
const DEFAULT_MAX_TRACKED_KEYS: u64 = 100_000;

/// Built-in model rules, tried after the operator's own rules. Order matters: `gpt-4o*` must be
/// tried before `gpt-4*`.
const BUILTIN_RULES: &[(&str, Encoding)] = &[
    ("gpt-4o*", Encoding::O200kBase),
    ("chatgpt-4o*", Encoding::O200kBase),
    ("gpt-4.1*", Encoding::O200kBase),
    ("gpt-4.5*", Encoding::O200kBase),
    ("gpt-5*", Encoding::O200kBase),
    ("gpt-oss*", Encoding::O200kBase),
    ("o1*", Encoding::O200kBase),
    ("o3*", Encoding::O200kBase),
    ("o4*", Encoding::O200kBase),
    ("gpt-4*", Encoding::Cl100kBase),
    ("gpt-3.5*", Encoding::Cl100kBase),
    ("text-embedding-3*", Encoding::Cl100kBase),
    ("text-embedding-ada-002", Encoding::Cl100kBase),
];

/// Built-in rules for open-weight models, by the names backends report (Hugging Face repo ids,
/// as vLLM does, and common short names), tried after the operator's rules and before
/// [`BUILTIN_RULES`]. Each names a tokenizer by the name `tokenizers/manifest.json` gives it and
/// applies only in a build that has a tokenizer of that name (and its chat format). Order
/// matters: `Qwen/Qwen3.5-*` before `Qwen/Qwen3-*`, `llama3.1*` before `llama3*`.
const MODEL_RULES: &[(&str, &str, ChatFormat)] = &[
    ("meta-llama/Llama-3.1-*", "llama3.1", ChatFormat::Llama31),
    ("meta-llama/Meta-Llama-3.1-*", "llama3.1", ChatFormat::Llama31),
    ("meta-llama/Llama-3.2-*", "llama3.1", ChatFormat::Llama31),
    ("meta-llama/Llama-3.3-*", "llama3.1", ChatFormat::Llama31),
    ("meta-llama/Meta-Llama-3-*", "llama3", ChatFormat::Llama3),
    ("llama3.1*", "llama3.1", ChatFormat::Llama31),
    ("llama3.2*", "llama3.1", ChatFormat::Llama31),
    ("llama3.3*", "llama3.1", ChatFormat::Llama31),
    ("llama3*", "llama3", ChatFormat::Llama3),
    ("Qwen/Qwen3.5-*", "qwen3.6", ChatFormat::Qwen35),
    ("Qwen/Qwen3.6-*", "qwen3.6", ChatFormat::Qwen35),
    ("Qwen/Qwen3-*", "qwen3", ChatFormat::Qwen3),
    ("Qwen/Qwen2.5-*", "qwen3", ChatFormat::Qwen25),
    ("qwen3.5*", "qwen3.6", ChatFormat::Qwen35),
    ("qwen3.6*", "qwen3.6", ChatFormat::Qwen35),
    ("qwen3*", "qwen3", ChatFormat::Qwen3),
    ("qwen2.5*", "qwen3", ChatFormat::Qwen25),
    ("deepseek-ai/DeepSeek-V3*", "deepseek-v3", ChatFormat::DeepseekV3),
    ("deepseek-v3*", "deepseek-v3", ChatFormat::DeepseekV3),
    ("mistralai/Mistral-Nemo-*", "mistral-tekken", ChatFormat::Mistral),
    ("mistralai/Mistral-Small-*", "mistral-tekken", ChatFormat::Mistral),
    ("mistralai/Ministral-8B-*", "mistral-tekken", ChatFormat::Mistral),
    ("mistral-nemo*", "mistral-tekken", ChatFormat::Mistral),
    ("mistral-small*", "mistral-tekken", ChatFormat::Mistral),
    ("google/gemma-3-*", "gemma3", ChatFormat::Gemma3),
    ("gemma3*", "gemma3", ChatFormat::Gemma3),
    ("gemma-3-*", "gemma3", ChatFormat::Gemma3),
    ("openai/gpt-oss-*", "gpt-oss", ChatFormat::Harmony),
    ("gpt-oss*", "gpt-oss", ChatFormat::Harmony),
];

/// Why a configuration was refused. `Display` is the one log line an operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not JSON, a wrong type, an unknown or a missing field; the message names the field.
    Syntax(String),
    /// A field parsed but its value is out of range or inconsistent.
    InvalidValue { field: String, reason: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax(msg) => write!(f, "invalid tokengate configuration: {msg}"),
            ConfigError::InvalidValue { field, reason } => {
                write!(f, "invalid tokengate configuration: `{field}` {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// A model-name pattern: an exact name, or a prefix when written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Exact(String),
    Prefix(String),
}

impl ModelPattern {
    fn parse(field: &str, pattern: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidValue {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        if pattern.is_empty() {
            return Err(invalid("must not be empty"));
        }
        match pattern.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => {
                Err(invalid("may contain `*` only as its last character"))
            }
            Some(prefix) => Ok(ModelPattern::Prefix(prefix.to_owned())),
            None if pattern.contains('*') => {
                Err(invalid("may contain `*` only as its last character"))
            }
            None => Ok(ModelPattern::Exact(pattern.to_owned())),
        }
    }

    /// Whether `model` is matched by this pattern (case-sensitive, as model ids are).
    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Exact(name) => model == name,
            ModelPattern::Prefix(prefix) => model.starts_with(prefix.as_str()),
        }
    }
}

/// A validated model rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRule {
    pub pattern: ModelPattern,
    /// `None`: the configured default tokenizer.
    pub tokenizer: Option<&'static Tokenizer>,
    /// `None`: the global `max_prompt_tokens`.
    pub max_prompt_tokens: Option<u64>,
    /// How the model's chat requests are rendered and counted.
    pub chat: ChatFormat,
    /// The rule's stat label, as an index into `Config::labels`.
    pub label: u16,
    pub cost: Cost,
}

/// What applies to one request's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPolicy {
    pub tokenizer: &'static Tokenizer,
    pub max_prompt_tokens: u64,
    /// Index into `Config::labels`; 0 (`other`) when no rule matched.
    pub label: u16,
    pub cost: Cost,
}

/// Where the API key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyConfig {
    /// Lower-case header name.
    pub header: String,
    pub required: bool,
}

/// A named size class: requests needing at most `max_tokens` (prompt + reserved output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeClass {
    pub name: String,
    pub max_tokens: u64,
}

/// Token-aware routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// Ask Envoy to match the route again after the filter set its headers (Envoy >= 1.33 no
    /// longer does so by itself). Off by default: it costs a route lookup per request.
    pub clear_route_cache: bool,
    /// Ordered by strictly increasing `max_tokens`.
    pub classes: Vec<SizeClass>,
}

impl Routing {
    /// The first class that fits `tokens`; `None` above every class.
    pub fn class_for(&self, tokens: u64) -> Option<&str> {
        self.classes
            .iter()
            .find(|c| tokens <= c.max_tokens)
            .map(|c| c.name.as_str())
    }
}

/// The limits that apply to one key; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// Prompt and output tokens together (weighted by the model's cost).
    pub tokens_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    /// Prompt tokens only.
    pub input_tokens_per_minute: Option<u64>,
    pub input_tokens_per_day: Option<u64>,
    /// Output tokens only.
    pub output_tokens_per_minute: Option<u64>,
    pub output_tokens_per_day: Option<u64>,
    pub requests_per_minute: Option<u64>,
}

/// Per-key token quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaConfig {
    pub limits: KeyLimits,
    /// Output tokens reserved when the request does not say how many it wants.
    pub default_output_reservation: u64,
    /// By key id.
    pub overrides: HashMap<String, KeyLimits>,
    pub max_tracked_keys: u32,
    /// Fleet-wide quotas on an Envoy rate limit service, after the local buckets (if any).
    pub rls: Option<RlsConfig>,
}

impl QuotaConfig {
    pub fn limits_for(&self, key_id: &str) -> KeyLimits {
        self.overrides.get(key_id).copied().unwrap_or(self.limits)
    }

    /// Some key has a local limit: the shared-data buckets are in use.
    pub fn has_local_limits(&self) -> bool {
        self.limits != KeyLimits::default() || self.overrides.values().any(|l| *l != KeyLimits::default())
    }
}

/// The validated configuration. Built once per VM in `on_configure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The tokenizer of requests no model rule names one for.
    pub default_tokenizer: &'static Tokenizer,
    /// Operator rules first, then the built-in rules.
    pub models: Vec<ModelRule>,
    pub max_prompt_tokens: u64,
    pub max_output_tokens: Option<u64>,
    pub max_body_bytes: u64,
    pub api_key: ApiKeyConfig,
    pub image_tokens: u64,
    pub routing: Routing,
    /// `None`: no quotas.
    pub quota: Option<QuotaConfig>,
    pub metering: Metering,
    /// The stat labels of the model rules, `other` first, then the operator's rules' labels (the
    /// first `operator_labels` after `other`), then the built-in rules'.
    pub labels: Labels,
    pub operator_labels: usize,
}

impl Config {
    /// Parses and validates the plugin configuration. Empty input (no `configuration` given)
    /// means all defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Config::try_from(RawConfig::default());
        }
        Config::try_from(RawConfig::from_json(bytes)?)
    }

    /// The chat format for a request naming `model`: the matching rule's, else OpenAI's rule.
    pub fn chat_format_for(&self, model: Option<&str>) -> ChatFormat {
        model
            .and_then(|m| self.models.iter().find(|r| r.pattern.matches(m)))
            .map_or(ChatFormat::OpenAi, |r| r.chat)
    }

    /// The tokenizer, prompt limit, label and cost for a request naming `model` (or none).
    pub fn policy_for(&self, model: Option<&str>) -> ModelPolicy {
        let rule = model.and_then(|m| self.models.iter().find(|r| r.pattern.matches(m)));
        ModelPolicy {
            tokenizer: rule
                .and_then(|r| r.tokenizer)
                .unwrap_or(self.default_tokenizer),
            max_prompt_tokens: rule
                .and_then(|r| r.max_prompt_tokens)
                .unwrap_or(self.max_prompt_tokens),
            label: rule.map_or(0, |r| r.label),
            cost: rule.map_or(Cost::UNIT, |r| r.cost),
        }
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, Self::Error> {
        let default_tokenizer = tokenizer_of("", raw.tokenizer.as_deref(), raw.encoding.as_deref())?
            .unwrap_or(Tokenizer::of(Encoding::O200kBase));
        let max_prompt_tokens = ranged(
            "max_prompt_tokens",
            raw.max_prompt_tokens,
            DEFAULT_MAX_PROMPT_TOKENS,
            1,
            MAX_TOKEN_LIMIT,
        )?;
        let max_output_tokens = match raw.max_output_tokens {
            None => None,
            Some(v) => Some(ranged("max_output_tokens", Some(v), v, 1, MAX_TOKEN_LIMIT)?),
        };
        let max_body_bytes = ranged(
            "max_body_bytes",
            raw.max_body_bytes,
            DEFAULT_MAX_BODY_BYTES,
            1,
            MAX_BODY_BYTES_LIMIT,
        )?;
        let image_tokens = ranged(
            "image_tokens",
            raw.image_tokens,
            DEFAULT_IMAGE_TOKENS,
            0,
            MAX_TOKEN_LIMIT,
        )?;

        let mut models = Vec::with_capacity(raw.models.len() + MODEL_RULES.len() + BUILTIN_RULES.len());
        let mut labels = Labels::default();
        for (i, rule) in raw.models.iter().enumerate() {
            let field = |name: &str| format!("models[{i}].{name}");
            let prefix = format!("models[{i}].");
            let pattern = ModelPattern::parse(&field("match"), &rule.pattern)?;
            let label = labels.index(metering::rule_label(&prefix, rule.label.as_deref(), &rule.pattern)?);
            let cost = metering::parse_cost(&prefix, rule.cost.as_ref())?;
            let tokenizer = tokenizer_of(&format!("models[{i}]."), rule.tokenizer.as_deref(), rule.encoding.as_deref())?;
            let max_prompt_tokens = match rule.max_prompt_tokens {
                None => None,
                Some(v) => Some(ranged(
                    &field("max_prompt_tokens"),
                    Some(v),
                    v,
                    1,
                    MAX_TOKEN_LIMIT,
                )?),
            };
            let chat = match rule.chat.as_deref() {
                None => ChatFormat::OpenAi,
                Some(name) => ChatFormat::from_name(name).ok_or_else(|| {
                    let known: Vec<&str> = ChatFormat::ALL.iter().map(|f| f.name()).collect();
                    ConfigError::InvalidValue {
                        field: field("chat"),
                        reason: format!("names {name:?}, which is not a chat format (known: {})", known.join(", ")),
                    }
                })?,
            };
            if !chat.in_build() {
                return Err(ConfigError::InvalidValue {
                    field: field("chat"),
                    reason: format!(
                        "names the chat format {:?}, which this build does not have: the templates of open-weight models come with a build that has model tokenizers (TOKENGATE_TOKENIZERS; see the README)",
                        chat.name()
                    ),
                });
            }
            models.push(ModelRule {
                pattern,
                tokenizer,
                max_prompt_tokens,
                chat,
                label,
                cost,
            });
        }
        let operator_labels = labels.len() - 1;
        // Built-in rules are labelled by their pattern: a fixed set, never a client's value.
        for (pattern, name, chat) in MODEL_RULES {
            if let (Some(tokenizer), true) = (Tokenizer::by_name(name), chat.in_build()) {
                models.push(ModelRule {
                    pattern: ModelPattern::parse("built-in rule", pattern)?,
                    tokenizer: Some(tokenizer),
                    max_prompt_tokens: None,
                    chat: *chat,
                    label: labels.index((*pattern).to_owned()),
                    cost: Cost::UNIT,
                });
            }
        }
        for (pattern, encoding) in BUILTIN_RULES {
            models.push(ModelRule {
                pattern: ModelPattern::parse("built-in rule", pattern)?,
                tokenizer: Some(Tokenizer::of(*encoding)),
                max_prompt_tokens: None,
                chat: ChatFormat::OpenAi,
                label: labels.index((*pattern).to_owned()),
                cost: Cost::UNIT,
            });
        }

        let api_key = match raw.api_key {
            None => ApiKeyConfig {
                header: DEFAULT_KEY_HEADER.to_owned(),
                required: false,
            },
            Some(k) => ApiKeyConfig {
                header: parse_header_name(
                    "api_key.header",
                    k.header.as_deref().unwrap_or(DEFAULT_KEY_HEADER),
                )?,
                required: k.required.unwrap_or(false),
            },
        };

        let routing = match raw.routing {
            None => Routing::default(),
            Some(r) => parse_routing(r)?,
        };

        let quota = match raw.quota {
            None => None,
            Some(q) => Some(parse_quota(q)?),
        };

        Ok(Config {
            default_tokenizer,
            models,
            max_prompt_tokens,
            max_output_tokens,
            max_body_bytes,
            api_key,
            image_tokens,
            routing,
            quota,
            metering: metering::parse_metering(raw.metering)?,
            labels,
            operator_labels,
        })
    }
}

fn parse_quota(raw: RawQuota) -> Result<QuotaConfig, ConfigError> {
    let limits = key_limits("quota", &raw.limits, KeyLimits::default())?;
    let rls = raw.rls.map(rls::parse).transpose()?;
    if limits == KeyLimits::default() && rls.is_none() {
        return Err(ConfigError::InvalidValue {
            field: "quota".to_owned(),
            reason: "sets no limit: set tokens_per_minute, tokens_per_day, input_ or output_tokens_per_minute or _per_day, or requests_per_minute, or a rate limit service in backend.rls".to_owned(),
        });
    }
    let mut overrides = HashMap::with_capacity(raw.overrides.len());
    for (key_id, raw_limits) in &raw.overrides {
        let field = format!("quota.overrides.{key_id}");
        let is_key_id = key_id.len() == 16 && key_id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_key_id {
            return Err(ConfigError::InvalidValue {
                field,
                reason: "is not a key id: overrides are keyed by the first 16 hex characters of SHA-256 of the key (as in x-tokengate-key-id), never by the key itself".to_owned(),
            });
        }
        overrides.insert(key_id.clone(), key_limits(&field, raw_limits, limits)?);
    }
    let output = raw.default_output_reservation;
    Ok(QuotaConfig {
        limits,
        default_output_reservation: ranged(
            "quota.default_output_reservation",
            output,
            DEFAULT_OUTPUT_RESERVATION,
            0,
            MAX_TOKEN_LIMIT,
        )?,
        overrides,
        max_tracked_keys: u32::try_from(ranged(
            "quota.max_tracked_keys",
            raw.max_tracked_keys,
            DEFAULT_MAX_TRACKED_KEYS,
            1,
            MAX_TRACKED_KEYS_LIMIT,
        )?)
        .unwrap_or(u32::MAX),
        rls,
    })
}

/// Resolves limits over `inherited`: absent fields inherit, `null` removes the limit.
fn key_limits(prefix: &str, raw: &RawKeyLimits, inherited: KeyLimits) -> Result<KeyLimits, ConfigError> {
    let one = |name: &str, value: Option<Option<u64>>, inherited: Option<u64>| match value {
        None => Ok(inherited),
        Some(None) => Ok(None),
        Some(Some(v)) => ranged(&format!("{prefix}.{name}"), Some(v), v, 1, MAX_QUOTA_AMOUNT).map(Some),
    };
    Ok(KeyLimits {
        tokens_per_minute: one("tokens_per_minute", raw.tokens_per_minute, inherited.tokens_per_minute)?,
        tokens_per_day: one("tokens_per_day", raw.tokens_per_day, inherited.tokens_per_day)?,
        input_tokens_per_minute: one("input_tokens_per_minute", raw.input_tokens_per_minute, inherited.input_tokens_per_minute)?,
        input_tokens_per_day: one("input_tokens_per_day", raw.input_tokens_per_day, inherited.input_tokens_per_day)?,
        output_tokens_per_minute: one("output_tokens_per_minute", raw.output_tokens_per_minute, inherited.output_tokens_per_minute)?,
        output_tokens_per_day: one("output_tokens_per_day", raw.output_tokens_per_day, inherited.output_tokens_per_day)?,
        requests_per_minute: one("requests_per_minute", raw.requests_per_minute, inherited.requests_per_minute)?,
    })
}

fn parse_routing(raw: RawRouting) -> Result<Routing, ConfigError> {
    let mut classes: Vec<SizeClass> = Vec::with_capacity(raw.classes.len());
    for (i, class) in raw.classes.into_iter().enumerate() {
        let invalid = |name: &str, reason: String| ConfigError::InvalidValue {
            field: format!("routing.classes[{i}].{name}"),
            reason,
        };
        // Routers match the value exactly; keep it to characters every router treats alike.
        let valid_name = !class.name.is_empty()
            && class.name.len() <= 64
            && class.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_name {
            return Err(invalid(
                "name",
                format!("must be 1-64 characters of letters, digits, '-', '_' or '.', got {:?}", class.name),
            ));
        }
        let max_tokens = ranged(&format!("routing.classes[{i}].max_tokens"), Some(class.max_tokens), 0, 1, MAX_TOKEN_LIMIT)?;
        if let Some(prev) = classes.last() {
            if max_tokens <= prev.max_tokens {
                return Err(invalid(
                    "max_tokens",
                    format!("must be larger than the previous class's {} (classes are tried in order), got {max_tokens}", prev.max_tokens),
                ));
            }
        }
        if classes.iter().any(|c| c.name == class.name) {
            return Err(invalid("name", format!("{:?} is used twice", class.name)));
        }
        classes.push(SizeClass { name: class.name, max_tokens });
    }
    Ok(Routing { clear_route_cache: raw.clear_route_cache.unwrap_or(false), classes })
}

/// The tokenizer a rule (or, with an empty `prefix`, the top level) names: `tokenizer` names any
/// tokenizer of this build, `encoding` (its older synonym) only the two built-in encodings.
fn tokenizer_of(prefix: &str, tokenizer: Option<&str>, encoding: Option<&str>) -> Result<Option<&'static Tokenizer>, ConfigError> {
    let invalid = |name: &str, reason: String| ConfigError::InvalidValue { field: format!("{prefix}{name}"), reason };
    match (tokenizer, encoding) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(invalid("encoding", "is a synonym of `tokenizer`: set one of the two".to_owned())),
        (None, Some(name)) => match Encoding::from_name(name) {
            Some(encoding) => Ok(Some(Tokenizer::of(encoding))),
            None => Err(invalid("encoding", format!("must be \"o200k_base\" or \"cl100k_base\", got {name:?} (`tokenizer` names the other tokenizers of the build)"))),
        },
        (Some(name), None) => match Tokenizer::by_name(name) {
            Some(t) => Ok(Some(t)),
            None => {
                let known: Vec<&str> = Tokenizer::all().map(Tokenizer::name).collect();
                Err(invalid(
                    "tokenizer",
                    format!("names {name:?}, which this build does not contain (it has {}; a .wasm gets more from TOKENGATE_TOKENIZERS at build time)", known.join(", ")),
                ))
            }
        },
    }
}

fn ranged(field: &str, value: Option<u64>, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    let v = value.unwrap_or(default);
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::InvalidValue {
            field: field.to_owned(),
            reason: format!("must be between {min} and {max}, got {v}"),
        })
    }
}

/// HTTP header names are RFC 9110 tokens; Envoy stores them lower-case. Pseudo-headers
/// (`:path`) are not keys.
pub(super) fn parse_header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(is_tchar) {
        return Err(ConfigError::InvalidValue {
            field: field.to_owned(),
            reason: format!("must be an HTTP header name, got {name:?}"),
        });
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
