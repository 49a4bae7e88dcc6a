//! The configuration as the operator wrote it: JSON read field by field into plain structs.
//!
//! Read by hand over a `serde_json::Value` rather than with serde's derive: the derived readers
//! (with `serde_path_to_error` to name the field in type errors) are a large share of the
//! module's code, which Envoy's V8 compiles before the filter is ready, while the `Value` reader
//! is linked anyway for request bodies. The rules: an unknown field is an error (a typo is never
//! a silent default), every error names the field's path, and `null` is the same as leaving a
//! field out, except for quota limits, where `null` removes the limit, and
//! `metering.drift_warn_ratio`, where it turns the warnings off.

use serde_json::{Map, Value};

use super::ConfigError;

/// The top-level object.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub tokenizer: Option<String>,
    pub encoding: Option<String>,
    pub models: Vec<RawModelRule>,
    pub max_prompt_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub max_body_bytes: Option<u64>,
    pub api_key: Option<RawApiKey>,
    pub image_tokens: Option<u64>,
    pub routing: Option<RawRouting>,
    pub quota: Option<RawQuota>,
    pub metering: Option<RawMetering>,
}

/// The `metering` object.
#[derive(Debug, Default)]
pub struct RawMetering {
    pub stream_usage: Option<bool>,
    /// `None` when absent (the default), `Some(None)` when `null` (no drift warnings).
    pub drift_warn_ratio: Option<Option<f64>>,
}

/// The `quota` object: the default limits, and overrides by key id (in key order).
#[derive(Debug)]
pub struct RawQuota {
    pub limits: RawKeyLimits,
    pub default_output_reservation: Option<u64>,
    pub overrides: Vec<(String, RawKeyLimits)>,
    pub max_tracked_keys: Option<u64>,
    /// `backend.rls`.
    pub rls: Option<RawRls>,
}

/// The `quota.backend.rls` object.
#[derive(Debug)]
pub struct RawRls {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: Option<u64>,
    pub failure_mode: Option<String>,
    pub descriptors: Vec<RawDescriptorEntry>,
}

/// One of `quota.backend.rls.descriptors`.
#[derive(Debug)]
pub struct RawDescriptorEntry {
    pub key: String,
    pub from: String,
}

/// Limits as written: `None` when absent (inherit), `Some(None)` when `null` (no limit).
#[derive(Debug, Default)]
pub struct RawKeyLimits {
    pub tokens_per_minute: Option<Option<u64>>,
    pub tokens_per_day: Option<Option<u64>>,
    pub input_tokens_per_minute: Option<Option<u64>>,
    pub input_tokens_per_day: Option<Option<u64>>,
    pub output_tokens_per_minute: Option<Option<u64>>,
    pub output_tokens_per_day: Option<Option<u64>>,
    pub requests_per_minute: Option<Option<u64>>,
}

/// The `routing` object.
#[derive(Debug)]
pub struct RawRouting {
    pub clear_route_cache: Option<bool>,
    pub classes: Vec<RawSizeClass>,
}

/// One entry of `routing.classes`.
#[derive(Debug)]
pub struct RawSizeClass {
    pub name: String,
    pub max_tokens: u64,
}

/// One entry of `models`.
#[derive(Debug)]
pub struct RawModelRule {
    pub pattern: String,
    pub tokenizer: Option<String>,
    pub encoding: Option<String>,
    pub max_prompt_tokens: Option<u64>,
    pub chat: Option<String>,
    pub label: Option<String>,
    pub cost: Option<RawCost>,
}

/// A model rule's `cost`: weights per token, as written.
#[derive(Debug, Default)]
pub struct RawCost {
    pub input: Option<f64>,
    pub cached_input: Option<f64>,
    pub output: Option<f64>,
}

/// The `api_key` object.
#[derive(Debug)]
pub struct RawApiKey {
    pub header: Option<String>,
    pub required: Option<bool>,
}

const LIMIT_FIELDS: [&str; 7] = [
    "tokens_per_minute",
    "tokens_per_day",
    "input_tokens_per_minute",
    "input_tokens_per_day",
    "output_tokens_per_minute",
    "output_tokens_per_day",
    "requests_per_minute",
];

const QUOTA_FIELDS: [&str; 11] = [
    "tokens_per_minute",
    "tokens_per_day",
    "input_tokens_per_minute",
    "input_tokens_per_day",
    "output_tokens_per_minute",
    "output_tokens_per_day",
    "requests_per_minute",
    "default_output_reservation",
    "overrides",
    "max_tracked_keys",
    "backend",
];

impl RawConfig {
    /// Reads the configuration JSON. Errors are `ConfigError::Syntax`, naming the field.
    pub fn from_json(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let top = Fields::new(
            String::new(),
            &value,
            &[
                "tokenizer",
                "encoding",
                "models",
                "max_prompt_tokens",
                "max_output_tokens",
                "max_body_bytes",
                "api_key",
                "image_tokens",
                "routing",
                "quota",
                "metering",
            ],
        )?;
        Ok(RawConfig {
            tokenizer: top.string("tokenizer")?,
            encoding: top.string("encoding")?,
            models: top.each("models", &["match", "tokenizer", "encoding", "max_prompt_tokens", "chat", "label", "cost"], model_rule)?,
            max_prompt_tokens: top.u64("max_prompt_tokens")?,
            max_output_tokens: top.u64("max_output_tokens")?,
            max_body_bytes: top.u64("max_body_bytes")?,
            api_key: top.object("api_key", &["header", "required"], |f| {
                Ok(RawApiKey { header: f.string("header")?, required: f.bool("required")? })
            })?,
            image_tokens: top.u64("image_tokens")?,
            routing: top.object("routing", &["clear_route_cache", "classes"], routing)?,
            quota: top.object("quota", &QUOTA_FIELDS, quota)?,
            metering: top.object("metering", &["stream_usage", "drift_warn_ratio"], |f| {
                Ok(RawMetering { stream_usage: f.bool("stream_usage")?, drift_warn_ratio: f.nullable("drift_warn_ratio", Fields::f64)? })
            })?,
        })
    }
}

fn model_rule(f: &Fields) -> Result<RawModelRule, ConfigError> {
    Ok(RawModelRule {
        pattern: f.required("match", Fields::string)?,
        tokenizer: f.string("tokenizer")?,
        encoding: f.string("encoding")?,
        max_prompt_tokens: f.u64("max_prompt_tokens")?,
        chat: f.string("chat")?,
        label: f.string("label")?,
        cost: f.object("cost", &["input", "cached_input", "output"], |c| {
            Ok(RawCost { input: c.f64("input")?, cached_input: c.f64("cached_input")?, output: c.f64("output")? })
        })?,
    })
}

fn routing(f: &Fields) -> Result<RawRouting, ConfigError> {
    Ok(RawRouting {
        clear_route_cache: f.bool("clear_route_cache")?,
        classes: f.each("classes", &["name", "max_tokens"], |c| {
            Ok(RawSizeClass { name: c.required("name", Fields::string)?, max_tokens: c.required("max_tokens", Fields::u64)? })
        })?,
    })
}

fn quota(f: &Fields) -> Result<RawQuota, ConfigError> {
    let mut overrides = Vec::new();
    if let Some(map) = f.get("overrides") {
        let Value::Object(map) = map else {
            return Err(invalid_type(&f.path("overrides"), "an object of key ids", map));
        };
        for (key_id, limits) in map {
            let path = format!("{}.{key_id}", f.path("overrides"));
            overrides.push((key_id.clone(), key_limits(&Fields::new(path, limits, &LIMIT_FIELDS)?)?));
        }
    }
    Ok(RawQuota {
        limits: key_limits(f)?,
        default_output_reservation: f.u64("default_output_reservation")?,
        overrides,
        max_tracked_keys: f.u64("max_tracked_keys")?,
        rls: f.object("backend", &["rls"], |b| b.object("rls", &["cluster", "domain", "timeout_ms", "failure_mode", "descriptors"], rls))?.flatten(),
    })
}

fn rls(f: &Fields) -> Result<RawRls, ConfigError> {
    Ok(RawRls {
        cluster: f.required("cluster", Fields::string)?,
        domain: f.required("domain", Fields::string)?,
        timeout_ms: f.u64("timeout_ms")?,
        failure_mode: f.string("failure_mode")?,
        descriptors: f.each("descriptors", &["key", "from"], |d| {
            Ok(RawDescriptorEntry { key: d.required("key", Fields::string)?, from: d.required("from", Fields::string)? })
        })?,
    })
}

fn key_limits(f: &Fields) -> Result<RawKeyLimits, ConfigError> {
    Ok(RawKeyLimits {
        tokens_per_minute: f.nullable("tokens_per_minute", Fields::u64)?,
        tokens_per_day: f.nullable("tokens_per_day", Fields::u64)?,
        input_tokens_per_minute: f.nullable("input_tokens_per_minute", Fields::u64)?,
        input_tokens_per_day: f.nullable("input_tokens_per_day", Fields::u64)?,
        output_tokens_per_minute: f.nullable("output_tokens_per_minute", Fields::u64)?,
        output_tokens_per_day: f.nullable("output_tokens_per_day", Fields::u64)?,
        requests_per_minute: f.nullable("requests_per_minute", Fields::u64)?,
    })
}

/// One JSON object being read, with the path that names it in errors (empty at the top).
struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// `value` must be an object whose fields are all in `known`.
    fn new(path: String, value: &'a Value, known: &[&str]) -> Result<Fields<'a>, ConfigError> {
        let Value::Object(map) = value else {
            return Err(invalid_type(&path, "an object", value));
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            let expected = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
            return Err(syntax(&path, format!("unknown field `{unknown}`, expected one of {expected}")));
        }
        Ok(Fields { path, map })
    }

    fn path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// The field's value; `None` when absent or `null`.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn u64(&self, name: &str) -> Result<Option<u64>, ConfigError> {
        self.get(name)
            .map(|v| v.as_u64().ok_or_else(|| invalid_type(&self.path(name), "an unsigned integer", v)))
            .transpose()
    }

    /// A number, whole or fractional.
    fn f64(&self, name: &str) -> Result<Option<f64>, ConfigError> {
        self.get(name)
            .map(|v| v.as_f64().ok_or_else(|| invalid_type(&self.path(name), "a number", v)))
            .transpose()
    }

    /// A field read by `read` that tells an explicit `null` (`Some(None)`) from an absent one.
    fn nullable<T>(&self, name: &str, read: fn(&Self, &str) -> Result<Option<T>, ConfigError>) -> Result<Option<Option<T>>, ConfigError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(_) => read(self, name).map(Some),
        }
    }

    fn string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        self.get(name)
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| invalid_type(&self.path(name), "a string", v)))
            .transpose()
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        self.get(name)
            .map(|v| v.as_bool().ok_or_else(|| invalid_type(&self.path(name), "a boolean", v)))
            .transpose()
    }

    /// A field that must be present (and not `null`).
    fn required<T>(&self, name: &str, read: fn(&Self, &str) -> Result<Option<T>, ConfigError>) -> Result<T, ConfigError> {
        read(self, name)?.ok_or_else(|| syntax(&self.path, format!("missing field `{name}`")))
    }

    /// A nested object with the fields `known`, read by `read`.
    fn object<T>(&self, name: &str, known: &[&str], read: fn(&Fields) -> Result<T, ConfigError>) -> Result<Option<T>, ConfigError> {
        self.get(name).map(|v| read(&Fields::new(self.path(name), v, known)?)).transpose()
    }

    /// An array of objects with the fields `known`, each read by `read`; absent is empty.
    fn each<T>(&self, name: &str, known: &[&str], read: fn(&Fields) -> Result<T, ConfigError>) -> Result<Vec<T>, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = value else {
            return Err(invalid_type(&self.path(name), "an array", value));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| read(&Fields::new(format!("{}[{i}]", self.path(name)), item, known)?))
            .collect()
    }
}

fn syntax(path: &str, message: String) -> ConfigError {
    if path.is_empty() {
        ConfigError::Syntax(message)
    } else {
        ConfigError::Syntax(format!("`{path}`: {message}"))
    }
}

fn invalid_type(path: &str, expected: &str, got: &Value) -> ConfigError {
    syntax(path, format!("invalid type: expected {expected}, got {}", describe(got)))
}

/// A short description of a JSON value for an error message. Fractional numbers are not
/// printed: that would link float formatting, a large piece of code, for one message.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.to_string(),
            (None, Some(i)) => i.to_string(),
            (None, None) => "a fractional number".to_owned(),
        },
        Value::String(s) if s.len() <= 64 => format!("string {s:?}"),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}
