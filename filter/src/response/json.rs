//! A JSON response body: a bounded copy kept while it passes unchanged, then its top-level
//! `usage` read without building the body's tree (every other field is skipped as it is
//! parsed), since the meter reads every response and most of a body is choices it never needs.

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::{output_texts, usage_fields, Usage};
use crate::tokenize::Tokenizer;

/// A copy of a JSON response body, kept while it streams through unchanged, up to `limit` bytes.
#[derive(Debug)]
pub struct JsonTap {
    bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

/// What a complete JSON body says about its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonUsage {
    /// The body's top-level `usage`.
    Reported(Usage),
    /// No usage: the output tokens counted from the body's generated text.
    Estimated(u64),
    /// Too large to keep, or not JSON.
    Unread,
}

impl JsonTap {
    pub fn new(limit: usize) -> JsonTap {
        JsonTap { bytes: Vec::new(), limit, overflowed: false }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.overflowed || self.bytes.len() + chunk.len() > self.limit {
            self.overflowed = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(chunk);
        }
    }

    /// The usage of the whole body; when it has none, its output counted with `tokenizer`.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> JsonUsage {
        let bytes = std::mem::take(&mut self.bytes);
        if self.overflowed {
            return JsonUsage::Unread;
        }
        match serde_json::from_slice::<TopLevel>(&bytes) {
            Ok(TopLevel(Some(usage))) => match usage_fields(&usage) {
                Some(usage) => JsonUsage::Reported(usage),
                None => estimate(&bytes, tokenizer),
            },
            Ok(TopLevel(None)) => estimate(&bytes, tokenizer),
            Err(_) => JsonUsage::Unread,
        }
    }
}

/// The rare body without usage: parsed again, whole, for its generated text.
#[cold]
fn estimate(bytes: &[u8], tokenizer: &Tokenizer) -> JsonUsage {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => JsonUsage::Estimated(output_texts(&value).iter().map(|text| tokenizer.count(text)).sum()),
        Err(_) => JsonUsage::Unread,
    }
}

/// A top-level object's `usage` object, if it has one; any other JSON value has none.
struct TopLevel(Option<Value>);

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TopLevel, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut usage = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Usage => {
                    let value: Value = map.next_value()?;
                    usage = value.is_object().then_some(value);
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(TopLevel(usage))
    }

    // Arrays and scalars are JSON without usage (skipped whole, still validated).
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<TopLevel, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| TopLevel(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }

    fn visit_unit<E>(self) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }
}

/// A top-level key: `usage` or another, compared without allocating.
enum Key {
    Usage,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(if key == "usage" { Key::Usage } else { Key::Other })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tokenize::{Encoding, Tokenizer};

    fn read(body: &str) -> JsonUsage {
        let mut tap = JsonTap::new(1 << 20);
        for chunk in body.as_bytes().chunks(7) {
            tap.feed(chunk);
        }
        tap.finish(Tokenizer::of(Encoding::O200kBase))
    }

    #[test]
    fn reads_the_top_level_usage_and_skips_the_rest() {
        let body = r#"{"id":"x","choices":[{"message":{"content":"a \"usage\": {} inside text","tool_calls":[{"usage":{"prompt_tokens":99}}]}}],
                       "usage":{"prompt_tokens":11,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}},"service_tier":"default"}"#;
        assert_eq!(read(body), JsonUsage::Reported(Usage { prompt_tokens: 11, completion_tokens: 5, cached_prompt_tokens: 4, reasoning_tokens: 0 }));
        // Escaped key names are still keys.
        assert_eq!(read(r#"{"us\u0061ge":{"input_tokens":7,"output_tokens":3}}"#), JsonUsage::Reported(Usage { prompt_tokens: 7, completion_tokens: 3, ..Usage::default() }));
    }

    #[test]
    fn without_usage_the_output_is_counted_and_bad_bodies_are_unread() {
        assert_eq!(read(r#"{"choices":[{"message":{"content":"Hello there"}}]}"#), JsonUsage::Estimated(2));
        assert_eq!(read(r#"{"choices":[{"message":{"content":"Hello there"}}],"usage":null}"#), JsonUsage::Estimated(2));
        assert_eq!(read(r#"{"usage":{"completion_tokens":3}}"#), JsonUsage::Estimated(0), "no prompt count: not a usage");
        assert_eq!(read("[1, 2]"), JsonUsage::Estimated(0));
        assert_eq!(read(r#"{"usage": {"prompt_tokens": 1}"#), JsonUsage::Unread);
        assert_eq!(read("not json"), JsonUsage::Unread);
        let mut tap = JsonTap::new(4);
        tap.feed(b"{\"a\":1}");
        assert_eq!(tap.finish(Tokenizer::of(Encoding::O200kBase)), JsonUsage::Unread);
    }
}
