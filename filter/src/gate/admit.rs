//! The request side's decisions, as pure functions of the config and what the client sent:
//! refuse at the headers, wait for the body, count the prompt and admit or refuse it, take the
//! reservation from the key's buckets.

use serde_json::Value;

use crate::config::{whole_tokens, Config, Cost, EntrySource, QuotaConfig};
use crate::key::{key_from_header, key_id};
use crate::reject::{ErrorCode, Rejection};
use crate::request::{classify, count_prompt_as, Api, Exactness, MaxOutput, RequestError};
use crate::quota::bucket::Refusal;
use crate::quota::{self, Charge, KeyName, QuotaError, Quotas, Snapshot, Store};
use crate::tokenize::Tokenizer;

/// What the request headers say, as far as the gate cares.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    /// The configured key header's value.
    pub api_key: Option<&'a str>,
    pub content_length: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// The headers are the whole request (no body follows).
    pub end_of_stream: bool,
}

/// What to do once the headers are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadDecision {
    Reject(Rejection),
    /// Nothing to count (no body, or a body that is never JSON): forward untouched.
    PassThrough,
    /// Hold the request until the body is complete.
    ReadBody,
}

/// The headers' decision and the key id, if the request carries a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadOutcome {
    pub key_id: Option<String>,
    pub decision: HeadDecision,
}

/// A counted request that may go to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub api: Api,
    pub prompt_tokens: u64,
    pub exactness: Exactness,
    pub tokenizer: &'static Tokenizer,
    pub max_output: Option<MaxOutput>,
    pub stream: bool,
    pub include_usage: bool,
    pub cost: Cost,
}

/// What to do with the complete body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyDecision {
    Allow(Admission),
    /// Not an LLM request tokengate recognizes: forward untouched.
    PassThrough,
    Reject(Rejection),
}

/// Content types whose bodies are never JSON: forwarded without buffering (file and audio
/// uploads must not be held in the proxy).
const NEVER_JSON: [&str; 6] = [
    "multipart/",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "audio/",
    "image/",
    "video/",
];

pub fn decide_head(config: &Config, head: &RequestHead<'_>) -> HeadOutcome {
    let key_id = head.api_key.and_then(key_from_header).map(key_id);
    let decision = if key_id.is_none() && config.api_key.required {
        HeadDecision::Reject(Rejection::new(
            ErrorCode::MissingApiKey,
            None,
            format!(
                "You didn't provide an API key. You need to provide your API key in the {} header.",
                config.api_key.header
            ),
        ))
    } else if let Some(len) = head
        .content_length
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&len| len > config.max_body_bytes)
    {
        HeadDecision::Reject(too_large(len, config.max_body_bytes))
    } else if head.end_of_stream || head.content_type.is_some_and(is_never_json) {
        HeadDecision::PassThrough
    } else {
        HeadDecision::ReadBody
    };
    HeadOutcome { key_id, decision }
}

/// The refusal for a body over `max_body_bytes` (seen so far, or announced by content-length).
pub fn too_large(bytes: u64, max_body_bytes: u64) -> Rejection {
    Rejection::new(
        ErrorCode::RequestTooLarge,
        None,
        format!("Request body of {bytes} bytes exceeds the maximum of {max_body_bytes} bytes."),
    )
}

/// A content type that says JSON (`application/json`, `application/vnd.api+json`, any case).
pub(super) fn is_json(content_type: &str) -> bool {
    content_type.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b"json"))
}

fn is_never_json(content_type: &str) -> bool {
    let ct = content_type.trim_start().to_ascii_lowercase();
    NEVER_JSON.iter().any(|prefix| ct.starts_with(prefix))
}

/// The decision on a body, with what the meter needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyOutcome {
    pub decision: BodyDecision,
    /// The model rule's label (0, `other`, when no rule matched or no model was named).
    pub label: u16,
    /// A prompt refused for its length: the tokens counted before refusing.
    pub dropped_tokens: u64,
    /// The request's `model`, kept only when a rate limit service descriptor carries it.
    pub model: Option<String>,
}

/// Decides on the complete request body. `path` only breaks the embeddings/responses tie.
pub fn decide_body(config: &Config, content_type: Option<&str>, path: Option<&str>, body: &[u8]) -> BodyOutcome {
    let mut outcome = BodyOutcome { decision: BodyDecision::PassThrough, label: 0, dropped_tokens: 0, model: None };
    outcome.decision = decide(config, content_type, path, body, &mut outcome);
    outcome
}

fn decide(config: &Config, content_type: Option<&str>, path: Option<&str>, body: &[u8], outcome: &mut BodyOutcome) -> BodyDecision {
    if body.len() as u64 > config.max_body_bytes {
        return BodyDecision::Reject(too_large(body.len() as u64, config.max_body_bytes));
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let declared_json = content_type.is_some_and(is_json);
    let looks_json = matches!(first, Some(b'{' | b'['));
    if first.is_none() || !(declared_json || looks_json) {
        return BodyDecision::PassThrough;
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return BodyDecision::Reject(Rejection::new(
                ErrorCode::InvalidJson,
                None,
                format!(
                    "We could not parse the JSON body of your request ({e}). The API expects a JSON payload."
                ),
            ))
        }
    };
    let request = match classify(&value, path) {
        Ok(Some(r)) => r,
        Ok(None) => return BodyDecision::PassThrough,
        Err(e) => return BodyDecision::Reject(invalid_request(&e)),
    };
    let policy = config.policy_for(request.model);
    outcome.label = policy.label;
    if config.quota.as_ref().and_then(|q| q.rls.as_ref()).is_some_and(|r| r.entries.iter().any(|e| e.from == EntrySource::Model)) {
        outcome.model = request.model.map(str::to_owned);
    }
    if let (Some(asked), Some(max)) = (request.max_output, config.max_output_tokens) {
        if asked.tokens > max {
            return BodyDecision::Reject(Rejection::new(
                ErrorCode::InvalidValue,
                Some(asked.field),
                format!(
                    "{} is too large: {}. This gateway supports at most {max} output tokens, whereas you provided {}.",
                    asked.field, asked.tokens, asked.tokens
                ),
            ));
        }
    }

    let chat = config.chat_format_for(request.model);
    let count = match count_prompt_as(&request, body, chat, policy.tokenizer, policy.max_prompt_tokens, config.image_tokens) {
        Ok(count) => count,
        Err(e) => return BodyDecision::Reject(invalid_request(&e)),
    };
    if count.over_limit {
        outcome.dropped_tokens = count.tokens;
        let what = request.api.prompt_param();
        let at_least = if count.stopped_early { "at least " } else { "" };
        return BodyDecision::Reject(Rejection::new(
            ErrorCode::ContextLengthExceeded,
            Some(what),
            format!(
                "This model's maximum context length is {} tokens. However, your {what} resulted in {at_least}{} tokens. Please reduce the length of the {what}.",
                policy.max_prompt_tokens, count.tokens
            ),
        ));
    }
    BodyDecision::Allow(Admission {
        api: request.api,
        prompt_tokens: count.tokens,
        exactness: count.exactness,
        tokenizer: policy.tokenizer,
        max_output: request.max_output,
        stream: request.stream,
        include_usage: request.include_usage,
        cost: policy.cost,
    })
}

/// The 400 for a request field no OpenAI-compatible server accepts, or a conversation the
/// model's chat template refuses.
fn invalid_request(e: &RequestError) -> Rejection {
    let param = e.param();
    let message = match e {
        RequestError::Unrenderable { format, reason } => {
            format!("Invalid value for '{param}': the {format} chat template refuses this conversation ({reason}).")
        }
        RequestError::InvalidField { reason, .. } => format!("Invalid value for '{param}': {reason}."),
    };
    Rejection::new(ErrorCode::InvalidValue, Some(param), message)
}

/// Output tokens to reserve and route for: what the request asked for, else the quota's default.
pub fn reserved_output(config: &Config, admission: &Admission) -> u64 {
    match admission.max_output {
        Some(asked) => asked.tokens,
        None => config.quota.as_ref().map_or(0, |q| q.default_output_reservation),
    }
}

/// The quota's answer for a counted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaDecision {
    /// The charge was taken from the key's buckets.
    Admitted { snapshot: Snapshot, evicted: bool },
    Refused(Rejection),
}

/// Reserves the prompt and the expected output (`charge`, in weighted milli-tokens) from `key`'s
/// buckets at `now_ns`.
pub fn admit_quota(quota: &QuotaConfig, store: &dyn Store, key: &KeyName, now_ns: u64, charge: Charge) -> Result<QuotaDecision, QuotaError> {
    let mut evicted = false;
    match Quotas::new(quota).admit(store, key, now_ns, charge, &mut evicted)? {
        quota::Admission::Admitted(snapshot) => Ok(QuotaDecision::Admitted { snapshot, evicted }),
        quota::Admission::Refused { kind, refusal, limit, requested, snapshot } => {
            let who = match key {
                KeyName::Id(id) => format!("key {id}"),
                KeyName::Anonymous => "requests without an API key".to_owned(),
            };
            let limit_name = kind.describe();
            let mut headers = quota::ratelimit_headers(&snapshot);
            // Token buckets count milli-tokens: say it in the limit's units.
            let units = |n: u64| if kind.counts_tokens() { quota::format_milli(n) } else { n.to_string() };
            let requested = units(requested);
            let message = match refusal {
                Refusal::Wait { wait_ns, used } => {
                    // What is in use refills continuously: whole tokens, rounded up.
                    let used = if kind.counts_tokens() { whole_tokens(used) } else { used }.to_string();
                    headers.extend(quota::retry_headers(wait_ns));
                    format!(
                        "Rate limit reached for {who} on {limit_name}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {}.",
                        quota::format_duration(wait_ns)
                    )
                }
                Refusal::NeverFits => format!(
                    "Request too large for {who} on {limit_name}: Limit {limit}, Requested {requested}. It can never fit: the input or output tokens must be reduced in order to run successfully."
                ),
            };
            let mut rejection = Rejection::new(ErrorCode::RateLimitExceeded, None, message);
            rejection.error_type = kind.error_type();
            rejection.headers = headers;
            Ok(QuotaDecision::Refused(rejection))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn config(json: &str) -> Config {
        Config::from_json(json.as_bytes()).unwrap()
    }

    fn body(config: &Config, body: &str) -> BodyDecision {
        decide_body(config, Some("application/json"), Some("/v1/chat/completions"), body.as_bytes()).decision
    }

    fn rejected(d: BodyDecision) -> Rejection {
        match d {
            BodyDecision::Reject(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    const HELLO: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, world!"}]}"#;

    #[test]
    fn head_requires_key_only_when_configured() {
        let open = config("");
        let closed = config(r#"{"api_key": {"required": true}}"#);
        let head = RequestHead::default();
        assert_eq!(decide_head(&open, &head).decision, HeadDecision::ReadBody);
        match decide_head(&closed, &head).decision {
            HeadDecision::Reject(r) => assert_eq!((r.code, r.status()), (ErrorCode::MissingApiKey, 401)),
            other => panic!("{other:?}"),
        }
        let keyed = RequestHead { api_key: Some("Bearer sk-test"), ..head };
        let out = decide_head(&closed, &keyed);
        assert_eq!(out.decision, HeadDecision::ReadBody);
        assert_eq!(out.key_id.as_deref(), Some("f3abf2a6cc4f0098"));
        let empty = RequestHead { api_key: Some("Bearer "), ..head };
        assert!(matches!(decide_head(&closed, &empty).decision, HeadDecision::Reject(_)));
    }

    #[test]
    fn head_refuses_announced_oversize_and_skips_bodiless_or_binary() {
        let c = config(r#"{"max_body_bytes": 100}"#);
        let big = RequestHead { content_length: Some("101"), ..Default::default() };
        match decide_head(&c, &big).decision {
            HeadDecision::Reject(r) => assert_eq!((r.code, r.status()), (ErrorCode::RequestTooLarge, 413)),
            other => panic!("{other:?}"),
        }
        let ok = RequestHead { content_length: Some("100"), ..Default::default() };
        assert_eq!(decide_head(&c, &ok).decision, HeadDecision::ReadBody);
        let get = RequestHead { end_of_stream: true, ..Default::default() };
        assert_eq!(decide_head(&c, &get).decision, HeadDecision::PassThrough);
        let upload = RequestHead { content_type: Some("multipart/form-data; boundary=x"), ..Default::default() };
        assert_eq!(decide_head(&c, &upload).decision, HeadDecision::PassThrough);
    }

    #[test]
    fn admits_and_annotates() {
        match body(&config(""), HELLO) {
            BodyDecision::Allow(a) => {
                assert_eq!(a.prompt_tokens, 11);
                assert_eq!(a.tokenizer.name(), "o200k_base");
                assert_eq!(a.exactness, Exactness::Exact);
                assert_eq!(a.api, Api::ChatCompletions);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_prompts_over_the_limit_with_both_numbers() {
        let r = rejected(body(&config(r#"{"max_prompt_tokens": 10}"#), HELLO));
        assert_eq!((r.code, r.param, r.status()), (ErrorCode::ContextLengthExceeded, Some("messages"), 400));
        assert_eq!(
            r.message,
            "This model's maximum context length is 10 tokens. However, your messages resulted in 11 tokens. Please reduce the length of the messages."
        );
        // A per-model limit applies to its model only.
        let c = config(r#"{"models": [{"match": "gpt-4o", "max_prompt_tokens": 5}]}"#);
        assert!(matches!(body(&c, HELLO), BodyDecision::Reject(_)));
        let other = HELLO.replace("gpt-4o", "gpt-4o-mini");
        assert!(matches!(body(&c, &other), BodyDecision::Allow(_)));
    }

    #[test]
    fn the_outcome_carries_the_rule_label_and_the_tokens_dropped() {
        let c = config(r#"{"max_prompt_tokens": 10, "models": [{"match": "gpt-4o", "label": "four-o", "cost": {"input": 2.5}}]}"#);
        let out = decide_body(&c, None, None, HELLO.as_bytes());
        assert_eq!((c.labels.get(out.label), out.dropped_tokens), ("four-o", 11));
        let out = decide_body(&config(""), None, None, HELLO.as_bytes());
        assert_eq!(config("").labels.get(out.label), "gpt-4o*", "built-in rules are labelled by their pattern");
        match out.decision {
            BodyDecision::Allow(a) => assert_eq!(a.cost, Cost::UNIT),
            other => panic!("{other:?}"),
        }
        let unknown = HELLO.replace("gpt-4o", "my-finetune-17");
        let out = decide_body(&c, None, None, unknown.as_bytes());
        assert_eq!((out.label, c.labels.get(out.label)), (0, "other"));
    }

    #[test]
    fn refuses_output_over_the_limit() {
        let c = config(r#"{"max_output_tokens": 100}"#);
        let asks = |field: &str, n: u64| {
            format!(r#"{{"model":"gpt-4o","messages":[],"{field}":{n}}}"#)
        };
        let r = rejected(body(&c, &asks("max_tokens", 101)));
        assert_eq!((r.code, r.param), (ErrorCode::InvalidValue, Some("max_tokens")));
        assert!(matches!(body(&c, &asks("max_completion_tokens", 100)), BodyDecision::Allow(_)));
    }

    #[test]
    fn malformed_json_and_non_json() {
        let c = config("");
        let r = rejected(body(&c, r#"{"messages": ["#));
        assert_eq!((r.code, r.status()), (ErrorCode::InvalidJson, 400));
        // Looks like JSON without saying so: still parsed, still refused.
        let r = rejected(decide_body(&c, None, None, b"{oops").decision);
        assert_eq!(r.code, ErrorCode::InvalidJson);
        // Plain text and JSON of no known shape pass.
        assert_eq!(decide_body(&c, Some("text/plain"), None, b"hello").decision, BodyDecision::PassThrough);
        assert_eq!(body(&c, r#"{"purpose": "batch"}"#), BodyDecision::PassThrough);
        assert_eq!(body(&c, "   "), BodyDecision::PassThrough);
        // Hostile nesting is an error, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert_eq!(rejected(body(&c, &deep)).code, ErrorCode::InvalidJson);
        // Invalid UTF-8 inside a string.
        let r = rejected(decide_body(&c, None, None, b"{\"prompt\": \"\xff\"}").decision);
        assert_eq!(r.code, ErrorCode::InvalidJson);
    }

    #[test]
    fn refuses_wrong_types_as_invalid_value() {
        let r = rejected(body(&config(""), r#"{"messages": "hi"}"#));
        assert_eq!((r.code, r.param), (ErrorCode::InvalidValue, Some("messages")));
    }

    #[test]
    fn body_over_the_cap_is_refused_even_without_content_length() {
        let c = config(r#"{"max_body_bytes": 10}"#);
        assert_eq!(rejected(body(&c, HELLO)).code, ErrorCode::RequestTooLarge);
    }
}
