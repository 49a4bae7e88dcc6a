//! An incremental reader of `text/event-stream` responses: finds the usage chunk, estimates the
//! output from the deltas, and optionally drops the usage-only chunk the client did not ask for.
//!
//! Memory is bounded by the largest event (`MAX_EVENT_BYTES`); the stream itself is never
//! buffered. When dropping, the bytes of an incomplete event are held back until it completes.

use serde_json::Value;

use super::{output_texts, usage_of, Usage};
use crate::tokenize::Tokenizer;

/// Events larger than this are passed through unread.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// Reads one SSE response stream.
pub struct SseScanner {
    tokenizer: Option<&'static Tokenizer>,
    /// Drop the `choices: []` + `usage` chunk (tokengate asked for it, the client did not).
    strip_usage_chunk: bool,
    /// The start of an event whose end has not arrived yet.
    pending: Vec<u8>,
    /// Inside an oversized event: skip to its end.
    skipping: bool,
    usage: Option<Usage>,
    estimated_output_tokens: u64,
}

impl SseScanner {
    pub fn new(tokenizer: Option<&'static Tokenizer>, strip_usage_chunk: bool) -> SseScanner {
        SseScanner {
            tokenizer,
            strip_usage_chunk,
            pending: Vec::new(),
            skipping: false,
            usage: None,
            estimated_output_tokens: 0,
        }
    }

    /// The usage the stream reported, if any so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Output tokens counted from the streamed deltas.
    pub fn estimated_output_tokens(&self) -> u64 {
        self.estimated_output_tokens
    }

    /// Reads one chunk. Returns what to forward in its place when the stream is being rewritten
    /// (`None`: forward the chunk unchanged). `end` flushes anything held back.
    pub fn feed(&mut self, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        let mut out = self.strip_usage_chunk.then(Vec::new);
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(chunk);
        let mut rest: &[u8] = &data;
        while let Some((event, after)) = split_event(rest) {
            if self.skipping {
                // The tail of an oversized event: forward, do not read.
                self.skipping = false;
                if let Some(out) = out.as_mut() {
                    out.extend_from_slice(event);
                }
            } else {
                let verdict = self.read_event(event);
                if let Some(out) = out.as_mut() {
                    verdict.forward(event, out);
                }
            }
            rest = after;
        }
        if rest.len() > MAX_EVENT_BYTES || (self.skipping && !rest.is_empty()) {
            // Too large to hold: let it through unread.
            self.skipping = true;
            if let Some(out) = out.as_mut() {
                out.extend_from_slice(rest);
            }
        } else if end {
            if !rest.is_empty() {
                let verdict = self.read_event(rest);
                if let Some(out) = out.as_mut() {
                    verdict.forward(rest, out);
                }
            }
        } else {
            // Held back from the client when rewriting; a copy to read later otherwise.
            self.pending = rest.to_vec();
        }
        out
    }

    /// Reads one complete event, and says what the client gets of it.
    fn read_event(&mut self, event: &[u8]) -> Verdict {
        let Some(value) = event_json(event) else { return Verdict::Keep };
        if let Some(usage) = usage_of(&value) {
            self.usage = Some(usage);
            let usage_only = value.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
            return if self.strip_usage_chunk && usage_only { Verdict::Drop } else { Verdict::Keep };
        }
        if let Some(tokenizer) = self.tokenizer {
            for text in output_texts(&value) {
                self.estimated_output_tokens += tokenizer.count(text);
            }
        }
        if self.strip_usage_chunk && value.get("usage").is_some_and(Value::is_null) {
            // With include_usage on, every chunk carries `"usage":null`; the client did not ask.
            if let Some(rewritten) = without_null_usage(event, &value) {
                return Verdict::Replace(rewritten);
            }
        }
        Verdict::Keep
    }
}

/// What the client receives of one event.
enum Verdict {
    Keep,
    Drop,
    Replace(Vec<u8>),
}

impl Verdict {
    fn forward(self, event: &[u8], out: &mut Vec<u8>) {
        match self {
            Verdict::Keep => out.extend_from_slice(event),
            Verdict::Drop => {}
            Verdict::Replace(bytes) => out.extend_from_slice(&bytes),
        }
    }
}

/// The event without its top-level `"usage": null` member, every other byte kept; `None` when
/// that cannot be done by removing the member's text (checked by parsing the result).
fn without_null_usage(event: &[u8], value: &Value) -> Option<Vec<u8>> {
    let (at, end) = last_null_usage_member(event)?;
    let before = event.get(..at)?.iter().rposition(|b| !b.is_ascii_whitespace());
    let after = event.get(end..)?.iter().position(|b| !b.is_ascii_whitespace()).map(|i| end + i);
    let (start, end) = match (before.map(|i| (i, event[i])), after.map(|i| (i, event[i]))) {
        (Some((comma, b',')), _) => (comma, end),
        (_, Some((comma, b','))) => (at, comma + 1),
        _ => (at, end),
    };
    let mut rewritten = Vec::with_capacity(event.len());
    rewritten.extend_from_slice(event.get(..start)?);
    rewritten.extend_from_slice(event.get(end..)?);
    let mut expected = value.clone();
    expected.as_object_mut()?.remove("usage");
    (event_json(&rewritten)? == expected).then_some(rewritten)
}

/// The span of the last `"usage" : null` in `event` (any spacing).
fn last_null_usage_member(event: &[u8]) -> Option<(usize, usize)> {
    const NAME: &[u8] = b"\"usage\"";
    let skip_ws = |mut i: usize| {
        while event.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    (0..event.len()).rev().find_map(|at| {
        if !event.get(at..)?.starts_with(NAME) {
            return None;
        }
        let colon = skip_ws(at + NAME.len());
        if event.get(colon) != Some(&b':') {
            return None;
        }
        let value = skip_ws(colon + 1);
        event.get(value..)?.starts_with(b"null").then_some((at, value + 4))
    })
}

/// Splits off the first complete event (with its terminating blank line).
fn split_event(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == b'\n' {
            match (data.get(i + 1), data.get(i + 2)) {
                (Some(b'\n'), _) => return Some(data.split_at(i + 2)),
                (Some(b'\r'), Some(b'\n')) => return Some(data.split_at(i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The JSON in an event's `data:` lines; `None` for `[DONE]`, comments and anything not JSON.
fn event_json(event: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    let mut data = String::new();
    for line in text.lines() {
        if let Some(payload) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(payload.strip_prefix(' ').unwrap_or(payload));
        }
    }
    if data.is_empty() || data == "[DONE]" {
        return None;
    }
    serde_json::from_slice(data.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::tokenize::Encoding;

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13}}\n\n",
        "data: [DONE]\n\n",
    );

    fn tok() -> Option<&'static Tokenizer> {
        Some(Tokenizer::of(Encoding::O200kBase))
    }

    /// Feeds `stream` in pieces of `size` bytes; returns what the client receives.
    fn run(scanner: &mut SseScanner, stream: &str, size: usize) -> String {
        let bytes = stream.as_bytes();
        let mut client = Vec::new();
        let chunks: Vec<&[u8]> = bytes.chunks(size.max(1)).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            match scanner.feed(chunk, i + 1 == chunks.len()) {
                Some(out) => client.extend_from_slice(&out),
                None => client.extend_from_slice(chunk),
            }
        }
        String::from_utf8(client).unwrap()
    }

    #[test]
    fn finds_usage_at_any_chunking_and_forwards_everything() {
        for size in [1, 2, 7, 64, 4096] {
            let mut s = SseScanner::new(tok(), false);
            assert_eq!(run(&mut s, STREAM, size), STREAM, "chunk size {size}");
            assert_eq!(s.usage().unwrap().total(), 13);
        }
    }

    #[test]
    fn strips_only_the_usage_chunk_when_asked() {
        let expected = STREAM.replace(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13}}\n\n",
            "",
        );
        for size in [1, 3, 50, 4096] {
            let mut s = SseScanner::new(tok(), true);
            assert_eq!(run(&mut s, STREAM, size), expected, "chunk size {size}");
            assert_eq!(s.usage().unwrap().prompt_tokens, 11);
        }
    }

    #[test]
    fn strips_null_usage_members_when_rewriting() {
        let stream = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
            "data: {\"usage\":null,\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":null\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n",
        );
        let expected = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":null\"}}]}\n\n",
            "data: [DONE]\n\n",
        );
        for size in [1, 7, 4096] {
            let mut s = SseScanner::new(tok(), true);
            assert_eq!(run(&mut s, stream, size), expected, "chunk size {size}");
        }
        // Any spacing, as Python's json.dumps writes it.
        let spaced = "data: {\"choices\": [{\"delta\": {\"content\": \"Hi\"}}], \"usage\": null}\n\n";
        let mut s = SseScanner::new(tok(), true);
        assert_eq!(run(&mut s, spaced, 3), "data: {\"choices\": [{\"delta\": {\"content\": \"Hi\"}}]}\n\n");
        // Not rewriting: byte-identical.
        let mut s = SseScanner::new(tok(), false);
        assert_eq!(run(&mut s, stream, 5), stream);
    }

    #[test]
    fn estimates_output_without_usage() {
        let cut = STREAM.split("data: {\"choices\":[],").next().unwrap();
        let mut s = SseScanner::new(tok(), false);
        run(&mut s, cut, 5);
        assert_eq!(s.usage(), None);
        assert_eq!(s.estimated_output_tokens(), 2);
    }

    #[test]
    fn crlf_events_and_responses_api_events() {
        let stream = "event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\r\n\r\nevent: response.completed\r\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\r\n\r\n";
        let mut s = SseScanner::new(tok(), true);
        assert_eq!(run(&mut s, stream, 9), stream, "responses API events are never dropped");
        assert_eq!(s.usage().unwrap().total(), 6);
        assert_eq!(s.estimated_output_tokens(), 1);
    }

    #[test]
    fn oversized_events_pass_through_unread_with_bounded_memory() {
        let big = format!("data: {{\"x\":\"{}\"}}\n\n", "a".repeat(3 * MAX_EVENT_BYTES));
        let stream = format!("{big}{}", &STREAM[STREAM.find("data: {\"choices\":[],").unwrap()..]);
        let mut s = SseScanner::new(tok(), true);
        let out = run(&mut s, &stream, 64 * 1024);
        assert!(out.starts_with(&big));
        assert!(s.pending.capacity() <= 2 * MAX_EVENT_BYTES + 64 * 1024);
        assert_eq!(s.usage().unwrap().total(), 13);
    }
}
