//! An order-preserving JSON reader for the values a chat template prints back (tool definitions,
//! tool-call arguments, tool results), read as Python's `json.loads` reads them.
//!
//! `serde_json::Value` (built without `preserve_order`) sorts an object's keys, while the backend
//! prints them in the order the client sent, so these values are read again from their text.
//! What Python keeps is kept: the key order (a repeated key keeps its first place and takes the
//! last value), integers exactly as written, `NaN` and `±Infinity`. Nesting deeper than
//! [`MAX_DEPTH`] and lone surrogates are refused (`None`), and the caller estimates.

use std::borrow::Cow;

/// Deepest nesting read: the request body itself was parsed by serde_json, which stops at 128.
pub(crate) const MAX_DEPTH: u32 = 128;

/// A JSON value with its object keys in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    /// An integer literal as written (Python's integers are exact at any size).
    Int(Cow<'a, str>),
    /// A number with a fraction or an exponent (a Python float), or `NaN`/`Infinity`.
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// The value of `key` in an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Reads a whole JSON text (surrounding whitespace allowed), as `json.loads` does.
pub(crate) fn parse(text: &str) -> Option<Json<'_>> {
    let mut p = Parser { text, bytes: text.as_bytes(), at: 0, depth: 0 };
    p.space();
    let value = p.value()?;
    p.space();
    (p.at == p.bytes.len()).then_some(value)
}

/// The value of `name` in a top-level JSON object, the other fields skipped unread. `None`
/// when the text is not an object, has no such field, or the value cannot be read.
pub(crate) fn top_level_field<'a>(text: &'a str, name: &str) -> Option<Json<'a>> {
    let mut p = Parser { text, bytes: text.as_bytes(), at: 0, depth: 0 };
    p.space();
    p.eat(b'{')?;
    let mut found = None;
    loop {
        p.space();
        if p.eat(b'}').is_some() {
            return found;
        }
        let key = p.string()?;
        p.space();
        p.eat(b':')?;
        p.space();
        if key == name {
            // The last occurrence wins, as in Python's dict.
            found = Some(p.value()?);
        } else {
            p.skip()?;
        }
        p.space();
        if p.eat(b',').is_none() {
            p.eat(b'}')?;
            return found;
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: u32,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.at += 1)
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let matched = self.bytes.get(self.at..self.at + word.len()) == Some(word.as_bytes());
        if matched {
            self.at += word.len();
        }
        matched
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Option<Json<'a>> {
        match self.peek()? {
            b'{' => self.nested(Parser::object),
            b'[' => self.nested(Parser::array),
            b'"' => self.string().map(Json::Str),
            b'-' | b'0'..=b'9' => self.number(),
            _ if self.eat_word("true") => Some(Json::Bool(true)),
            _ if self.eat_word("false") => Some(Json::Bool(false)),
            _ if self.eat_word("null") => Some(Json::Null),
            _ if self.eat_word("NaN") => Some(Json::Float(f64::NAN)),
            _ if self.eat_word("Infinity") => Some(Json::Float(f64::INFINITY)),
            _ => None,
        }
    }

    fn nested(&mut self, read: fn(&mut Self) -> Option<Json<'a>>) -> Option<Json<'a>> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let value = read(self);
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Option<Json<'a>> {
        self.eat(b'{')?;
        let mut fields: Vec<(Cow<'a, str>, Json<'a>)> = Vec::new();
        self.space();
        if self.eat(b'}').is_some() {
            return Some(Json::Object(fields));
        }
        loop {
            self.space();
            let key = self.string()?;
            self.space();
            self.eat(b':')?;
            self.space();
            let value = self.value()?;
            match fields.iter_mut().find(|(k, _)| *k == key) {
                Some(field) => field.1 = value,
                None => fields.push((key, value)),
            }
            self.space();
            if self.eat(b',').is_none() {
                self.eat(b'}')?;
                return Some(Json::Object(fields));
            }
        }
    }

    fn array(&mut self) -> Option<Json<'a>> {
        self.eat(b'[')?;
        let mut items = Vec::new();
        self.space();
        if self.eat(b']').is_some() {
            return Some(Json::Array(items));
        }
        loop {
            self.space();
            items.push(self.value()?);
            self.space();
            if self.eat(b',').is_none() {
                self.eat(b']')?;
                return Some(Json::Array(items));
            }
        }
    }

    fn number(&mut self) -> Option<Json<'a>> {
        let start = self.at;
        self.eat(b'-');
        if self.eat_word("Infinity") {
            return Some(Json::Float(f64::NEG_INFINITY));
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut float = false;
        if self.eat(b'.').is_some() {
            float = true;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            float = true;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.some_digits()?;
        }
        let literal = self.text.get(start..self.at)?;
        if float {
            literal.parse::<f64>().ok().map(Json::Float)
        } else {
            Some(Json::Int(Cow::Borrowed(literal)))
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// A string literal, borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.at;
        loop {
            match self.peek()? {
                b'"' => {
                    let s = self.text.get(start..self.at)?;
                    self.at += 1;
                    return Some(Cow::Borrowed(s));
                }
                b'\\' => break,
                0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        let mut out = String::from(self.text.get(start..self.at)?);
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    self.at += 1;
                    let escaped = match self.peek()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            self.at += 1;
                            out.push(self.unicode_escape()?);
                            continue;
                        }
                        _ => return None,
                    };
                    self.at += 1;
                    out.push(escaped);
                }
                0..=0x1f => return None,
                _ => {
                    // Copy up to the next quote or backslash in one piece (UTF-8 stays whole).
                    let from = self.at;
                    while !matches!(self.peek()?, b'"' | b'\\' | 0..=0x1f) {
                        self.at += 1;
                    }
                    out.push_str(self.text.get(from..self.at)?);
                }
            }
        }
    }

    /// The four hex digits after `\u` (and a low surrogate's escape after a high one).
    fn unicode_escape(&mut self) -> Option<char> {
        let high = self.hex4()?;
        if !(0xD800..0xDC00).contains(&high) {
            return char::from_u32(high);
        }
        if !self.eat_word("\\u") {
            return None;
        }
        let low = self.hex4()?;
        if !(0xDC00..0xE000).contains(&low) {
            return None;
        }
        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + 4)?;
        let value = u32::from_str_radix(digits, 16).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        Some(value)
    }

    /// Passes over one value without building it: brackets are matched outside strings, which
    /// is enough for text serde_json has already accepted.
    fn skip(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    loop {
                        match self.peek()? {
                            b'\\' => self.at += 2,
                            b'"' => break,
                            _ => self.at += 1,
                        }
                    }
                    self.at += 1;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.at += 1;
                }
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    self.at += 1;
                }
                b',' | b'}' | b']' if depth == 0 => return Some(()),
                _ => self.at += 1,
            }
            if depth == 0 && matches!(self.peek(), Some(b',' | b'}' | b']') | None) {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn keeps_key_order_and_the_last_of_repeated_keys() {
        let v = parse(r#" {"b": 1, "a": [true, null, 1.5e2], "b": "x\u00e9\ud83d\ude00"} "#).unwrap();
        let Json::Object(fields) = v else { panic!() };
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0], (Cow::Borrowed("b"), Json::Str(Cow::Owned("xé😀".into()))));
        assert_eq!(fields[1].1, Json::Array(vec![Json::Bool(true), Json::Null, Json::Float(150.0)]));
    }

    #[test]
    fn reads_python_extensions_and_refuses_what_python_cannot_print() {
        assert_eq!(parse("NaN").map(|v| matches!(v, Json::Float(f) if f.is_nan())), Some(true));
        assert_eq!(parse("-Infinity"), Some(Json::Float(f64::NEG_INFINITY)));
        assert_eq!(parse("-0"), Some(Json::Int("-0".into())));
        assert_eq!(parse("123456789012345678901234567890"), Some(Json::Int("123456789012345678901234567890".into())));
        assert_eq!(parse(r#""\ud800""#), None);
        assert_eq!(parse("\"a\u{1}\""), None);
        assert_eq!(parse("{\"a\": 1} x"), None);
        assert_eq!(parse("01"), None);
        assert_eq!(parse(&"[".repeat(200)), None);
    }

    #[test]
    fn finds_a_top_level_field_skipping_the_rest() {
        let body = r#"{"messages": [{"content": "a \"}]\" b"}], "tools": [{"x": {"y": [1, 2]}}], "n": 3}"#;
        let tools = top_level_field(body, "tools").unwrap();
        assert_eq!(tools.get("x"), None);
        let Json::Array(items) = tools else { panic!() };
        assert_eq!(items[0].get("x").and_then(|x| x.get("y")), Some(&Json::Array(vec![Json::Int("1".into()), Json::Int("2".into())])));
        assert_eq!(top_level_field(body, "absent"), None);
        assert_eq!(top_level_field("[1]", "tools"), None);
    }
}
