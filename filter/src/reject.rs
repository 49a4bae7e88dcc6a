//! Rejections: the status, code and OpenAI-shaped JSON error body an OpenAI client understands.

/// Every reason tokengate refuses a request. The code is OpenAI's `error.code` and names the
/// `tokengate_rejected_<code>_total` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    ContextLengthExceeded,
    InvalidValue,
    RequestTooLarge,
    InvalidJson,
    MissingApiKey,
    RateLimitExceeded,
    /// The rate limit service could not answer and `failure_mode` is `deny`.
    QuotaUnavailable,
}

impl ErrorCode {
    /// All codes, for defining one counter each.
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::ContextLengthExceeded,
        ErrorCode::InvalidValue,
        ErrorCode::RequestTooLarge,
        ErrorCode::InvalidJson,
        ErrorCode::MissingApiKey,
        ErrorCode::RateLimitExceeded,
        ErrorCode::QuotaUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ContextLengthExceeded => "context_length_exceeded",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::MissingApiKey => "missing_api_key",
            ErrorCode::RateLimitExceeded => "rate_limit_exceeded",
            ErrorCode::QuotaUnavailable => "quota_unavailable",
        }
    }

    /// The code's place in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        match self {
            ErrorCode::ContextLengthExceeded => 0,
            ErrorCode::InvalidValue => 1,
            ErrorCode::RequestTooLarge => 2,
            ErrorCode::InvalidJson => 3,
            ErrorCode::MissingApiKey => 4,
            ErrorCode::RateLimitExceeded => 5,
            ErrorCode::QuotaUnavailable => 6,
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ContextLengthExceeded | ErrorCode::InvalidValue | ErrorCode::InvalidJson => 400,
            ErrorCode::RequestTooLarge => 413,
            ErrorCode::MissingApiKey => 401,
            ErrorCode::RateLimitExceeded => 429,
            ErrorCode::QuotaUnavailable => 503,
        }
    }
}

/// A request refused at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    /// The request field at fault, when there is one.
    pub param: Option<&'static str>,
    pub message: String,
    /// OpenAI's `error.type`: `invalid_request_error` (a missing key included, as OpenAI does),
    /// or `tokens`/`requests` for rate limits.
    pub error_type: &'static str,
    /// Extra response headers (`retry-after`, `x-ratelimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

impl Rejection {
    pub fn new(code: ErrorCode, param: Option<&'static str>, message: String) -> Rejection {
        Rejection { code, param, message, error_type: "invalid_request_error", headers: Vec::new() }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// `{"error": {"message", "type", "param", "code"}}`, as the OpenAI API answers. Only the
    /// message needs escaping: the other three are tokengate's own identifiers.
    pub fn body(&self) -> String {
        let message = serde_json::to_string(&self.message).unwrap_or_else(|_| "\"\"".to_owned());
        let param = match self.param {
            Some(param) => format!("\"{param}\""),
            None => "null".to_owned(),
        };
        format!(
            r#"{{"error":{{"message":{message},"type":"{}","param":{param},"code":"{}"}}}}"#,
            self.error_type,
            self.code.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn index_is_the_place_in_all() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i);
        }
    }

    #[test]
    fn body_is_openai_shaped() {
        let r = Rejection::new(ErrorCode::ContextLengthExceeded, Some("messages"), "too long".into());
        let v: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(
            v,
            json!({"error": {"message": "too long", "type": "invalid_request_error",
                             "param": "messages", "code": "context_length_exceeded"}})
        );
        let r = Rejection::new(ErrorCode::InvalidJson, None, "a \"quoted\" \\ and\nnewline ✓ \u{1}".into());
        let v: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(v["error"]["message"], "a \"quoted\" \\ and\nnewline ✓ \u{1}");
        let r = Rejection::new(ErrorCode::MissingApiKey, None, "no key".into());
        let v: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(r.status(), 401);
    }
}
