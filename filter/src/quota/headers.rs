//! The `x-ratelimit-*` and `retry-after` headers, in OpenAI's format.

use super::bucket::Level;
use super::Snapshot;
use crate::config::MILLI;

/// `x-ratelimit-{limit,remaining,reset}-{tokens,input-tokens,output-tokens,requests}` for a
/// key's buckets, each trio present when such a limit is set. Tokens are the limits' units:
/// weighted by the model's cost.
pub fn ratelimit_headers(snapshot: &Snapshot) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let trios: [(Option<Level>, [&'static str; 3]); 4] = [
        (snapshot.tokens, ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]),
        (
            snapshot.input_tokens,
            ["x-ratelimit-limit-input-tokens", "x-ratelimit-remaining-input-tokens", "x-ratelimit-reset-input-tokens"],
        ),
        (
            snapshot.output_tokens,
            ["x-ratelimit-limit-output-tokens", "x-ratelimit-remaining-output-tokens", "x-ratelimit-reset-output-tokens"],
        ),
        (snapshot.requests, ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"]),
    ];
    for (level, [limit, remaining, reset]) in trios {
        if let Some(l) = level {
            out.push((limit, l.limit.to_string()));
            out.push((remaining, l.remaining.to_string()));
            out.push((reset, format_duration(l.reset_ns)));
        }
    }
    out
}

/// Milli-tokens as tokens: `1234`, `1234.5`, `0.25` (no float formatting).
pub fn format_milli(milli: u64) -> String {
    let (whole, frac) = (milli / MILLI, milli % MILLI);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{frac:03}").trim_end_matches('0'))
    }
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
        let snap = Snapshot { tokens: Some(level), ..Snapshot::default() };
        assert_eq!(
            ratelimit_headers(&snap),
            vec![
                ("x-ratelimit-limit-tokens", "1000".to_owned()),
                ("x-ratelimit-remaining-tokens", "400".to_owned()),
                ("x-ratelimit-reset-tokens", "36s".to_owned()),
            ]
        );
        assert_eq!(ratelimit_headers(&Snapshot { requests: Some(level), ..Snapshot::default() }).len(), 3);
        let io = Snapshot { input_tokens: Some(level), output_tokens: Some(level), ..Snapshot::default() };
        let names: Vec<&str> = ratelimit_headers(&io).iter().map(|(n, _)| *n).collect();
        assert_eq!(names[0], "x-ratelimit-limit-input-tokens");
        assert_eq!(names[5], "x-ratelimit-reset-output-tokens");
        assert_eq!((format_milli(0), format_milli(1_234_500), format_milli(250), format_milli(7_000)), ("0".into(), "1234.5".into(), "0.25".into(), "7".into()));
        assert_eq!(retry_headers(1_000_000_001), [("retry-after", "2".to_owned()), ("retry-after-ms", "1001".to_owned())]);
    }
}
