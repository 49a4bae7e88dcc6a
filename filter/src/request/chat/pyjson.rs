//! JSON text as the backend prints it: Python's `json.dumps(value, ensure_ascii=False)` (what
//! Jinja's `tojson` is in transformers, and what mistral-common writes), with or without
//! `indent`, and serde_json's compact form (what openai-harmony writes).
//!
//! Python's separators are `", "` and `": "` (`","` and `": "` with an indent); strings escape
//! only `"`, `\`, and control characters; floats print as Python's `repr` (`100.0`, `1e+16`,
//! `1e-05`), integers as written.

use std::fmt::Write;

use super::json::Json;

/// How a value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `json.dumps(v, ensure_ascii=False)`.
    Python,
    /// `json.dumps(v, ensure_ascii=False, indent=n)`.
    PythonIndent(usize),
    /// serde_json's `to_string`: no spaces, floats in Rust's shortest form.
    Compact,
}

/// `value` printed in `style`.
pub(crate) fn dumps(value: &Json<'_>, style: Style) -> String {
    let mut out = String::new();
    write_value(value, style, 0, &mut out);
    out
}

/// A string as a JSON string literal (the same escapes in Python and serde_json).
pub(crate) fn write_str(s: &str, out: &mut String) {
    out.push('"');
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
        from = i + 1;
    }
    out.push_str(&s[from..]);
    out.push('"');
}

fn write_value(value: &Json<'_>, style: Style, level: usize, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Int(literal) => out.push_str(python_int(literal)),
        Json::Float(f) => match style {
            Style::Compact => out.push_str(&serde_json::Value::from(*f).to_string()),
            _ => out.push_str(&python_float(*f)),
        },
        Json::Str(s) => write_str(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(style, level + 1, i == 0, out);
                write_value(item, style, level + 1, out);
            }
            close(style, level, items.is_empty(), out);
            out.push(']');
        }
        Json::Object(fields) => {
            out.push('{');
            for (i, (key, item)) in fields.iter().enumerate() {
                separator(style, level + 1, i == 0, out);
                write_str(key, out);
                out.push_str(if style == Style::Compact { ":" } else { ": " });
                write_value(item, style, level + 1, out);
            }
            close(style, level, fields.is_empty(), out);
            out.push('}');
        }
    }
}

/// What comes before an item: a comma unless first, then a newline and indent or a space.
fn separator(style: Style, level: usize, first: bool, out: &mut String) {
    match style {
        Style::Python => {
            if !first {
                out.push_str(", ");
            }
        }
        Style::Compact => {
            if !first {
                out.push(',');
            }
        }
        Style::PythonIndent(n) => {
            if !first {
                out.push(',');
            }
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * level));
        }
    }
}

/// What comes before a closing bracket: with an indent, a newline and the outer indent (an
/// empty container stays `[]`/`{}`).
fn close(style: Style, level: usize, empty: bool, out: &mut String) {
    if let (Style::PythonIndent(n), false) = (style, empty) {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * level));
    }
}

/// An integer literal as Python prints it back: `-0` is `0`; JSON allows no other change.
fn python_int(literal: &str) -> &str {
    if literal == "-0" {
        "0"
    } else {
        literal
    }
}

/// Python's `repr(float)`: the shortest digits that read back the same, positional when the
/// decimal exponent is in -4..16 (always with a fraction, `100.0`), else `d.ddde±XX`.
pub(crate) fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    // Rust's `{:e}` prints the same shortest digits: `1.5e-5`, `-1e16`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::from(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() > int_len {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            } else {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    }
    out
}

/// Python's `str(value)` of a JSON value, as `{{ value | string }}` prints it: strings bare,
/// `True`/`False`/`None`, containers in Python's `repr` (not modelled: `None`).
pub(crate) fn python_str(value: &Json<'_>) -> Option<String> {
    Some(match value {
        Json::Str(s) => s.to_string(),
        Json::Null => "None".to_owned(),
        Json::Bool(true) => "True".to_owned(),
        Json::Bool(false) => "False".to_owned(),
        Json::Int(literal) => python_int(literal).to_owned(),
        Json::Float(f) if f.is_nan() => "nan".to_owned(),
        Json::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.to_owned(),
        Json::Float(f) => python_float(*f),
        Json::Array(_) | Json::Object(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::super::json::parse;
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        // Expected strings from CPython 3.11 `repr(float(x))`.
        for (f, want) in [
            (100.0, "100.0"),
            (1.5, "1.5"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (2.5e100, "2.5e+100"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (12345.678, "12345.678"),
            (f64::INFINITY, "Infinity"),
        ] {
            assert_eq!(python_float(f), want, "{f}");
        }
    }

    #[test]
    fn dumps_like_python() {
        let v = parse(r#"{"b": [1, -0, 2.0, "é\n\u0001\"", {}], "a": {"x": null, "y": [], "z": true}}"#).unwrap();
        assert_eq!(
            dumps(&v, Style::Python),
            r#"{"b": [1, 0, 2.0, "é\n\u0001\"", {}], "a": {"x": null, "y": [], "z": true}}"#
        );
        assert_eq!(
            dumps(&v, Style::PythonIndent(2)),
            "{\n  \"b\": [\n    1,\n    0,\n    2.0,\n    \"é\\n\\u0001\\\"\",\n    {}\n  ],\n  \"a\": {\n    \"x\": null,\n    \"y\": [],\n    \"z\": true\n  }\n}"
        );
        assert_eq!(dumps(&v, Style::Compact), r#"{"b":[1,0,2.0,"é\n\u0001\"",{}],"a":{"x":null,"y":[],"z":true}}"#);
    }
}
