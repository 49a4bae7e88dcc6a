//! The `x-ratelimit-*` and `retry-after` headers, in OpenAI's format.

use super::Snapshot;

/// `x-ratelimit-{limit,remaining,reset}-{tokens,requests}` for a key's buckets.
pub fn ratelimit_headers(snapshot: &Snapshot) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(6);
    if let Some(t) = snapshot.tokens {
        out.push(("x-ratelimit-limit-tokens", t.limit.to_string()));
        out.push(("x-ratelimit-remaining-tokens", t.remaining.to_string()));
        out.push(("x-ratelimit-reset-tokens", format_duration(t.reset_ns)));
    }
    if let Some(r) = snapshot.requests {
        out.push(("x-ratelimit-limit-requests", r.limit.to_string()));
        out.push(("x-ratelimit-remaining-requests", r.remaining.to_string()));
        out.push(("x-ratelimit-reset-requests", format_duration(r.reset_ns)));
    }
    out
}

/// `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
pub fn retry_headers(wait_ns: u64) -> [(&'static str, String); 2] {
    [
        ("retry-after", wait_ns.div_ceil(1_000_000_000).to_string()),
        ("retry-after-ms", wait_ns.div_ceil(1_000_000).to_string()),
    ]
}

/// A duration as OpenAI writes it (Go's style, millisecond precision, rounded up): `250ms`,
/// `1s`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn format_duration(ns: u64) -> String {
    let ms = ns.div_ceil(1_000_000);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (hours, minutes) = (ms / 3_600_000, ms / 60_000 % 60);
    let (secs, frac) = (ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        secs.to_string()
    } else {
        format!("{secs}.{frac:03}").trim_end_matches('0').to_owned()
    };
    match (hours, minutes) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::bucket::Level;

    #[test]
    fn durations_read_like_openai() {
        const MS: u64 = 1_000_000;
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(1), "1ms");
        assert_eq!(format_duration(250 * MS), "250ms");
        assert_eq!(format_duration(1000 * MS), "1s");
        assert_eq!(format_duration(1500 * MS), "1.5s");
        assert_eq!(format_duration(360_000 * MS), "6m0s");
        assert_eq!(format_duration(3_723_040 * MS), "1h2m3.04s");
    }

    #[test]
    fn headers_for_each_bucket_kind() {
        let level = Level { limit: 1000, remaining: 400, reset_ns: 36_000_000_000 };
        let snap = Snapshot { tokens: Some(level), requests: None };
        assert_eq!(
            ratelimit_headers(&snap),
            vec![
                ("x-ratelimit-limit-tokens", "1000".to_owned()),
                ("x-ratelimit-remaining-tokens", "400".to_owned()),
                ("x-ratelimit-reset-tokens", "36s".to_owned()),
            ]
        );
        assert_eq!(ratelimit_headers(&Snapshot { tokens: None, requests: Some(level) }).len(), 3);
        assert_eq!(retry_headers(1_000_000_001), [("retry-after", "2".to_owned()), ("retry-after-ms", "1001".to_owned())]);
    }
}
