//! Tool parameters as openai-harmony writes them for gpt-oss: a JSON Schema as a TypeScript
//! type, with descriptions, titles, examples and defaults as `//` comments.
//!
//! The rules are harmony's renderer's (0.0.8, the version the fixtures pin), including its
//! quirks: an object's own description is written inside the property's line, `oneOf` variants
//! go one per line after ` | `, `nullable` adds `| null`, defaults print as JSON except strings
//! (quoted bare, or unquoted when the property is an enum). Properties keep the client's order.

use super::json::Json;
use super::pyjson::{dumps, Style};

/// The TypeScript type of `schema`, its nested lines indented by `indent`.
pub(super) fn type_of(schema: &Json<'_>, indent: &str) -> String {
    if let Some(Json::Array(variants)) = schema.get("oneOf") {
        let mut out = String::new();
        for variant in variants {
            out.push('\n');
            out.push_str(indent);
            out.push_str(" | ");
            out.push_str(&nullable(variant, type_of(variant, &format!("{indent}   "))));
            let mut comments = Vec::new();
            if let Some(description) = str_field(variant, "description") {
                comments.push(description.to_owned());
            }
            if let Some(default) = variant.get("default") {
                // Here an enum's string default prints as JSON (quoted), unlike elsewhere.
                comments.push(match default {
                    Json::Str(s) if !is_enum(variant) => format!("default: \"{s}\""),
                    other => format!("default: {}", dumps(other, Style::Compact)),
                });
            }
            if !comments.is_empty() {
                out.push_str(" // ");
                out.push_str(&comments.join(" "));
            }
        }
        return out;
    }
    if let Some(Json::Array(types)) = schema.get("type") {
        let names: Vec<&str> = types
            .iter()
            .filter_map(Json::as_str)
            .map(|t| if t == "integer" { "number" } else { t })
            .collect();
        if !names.is_empty() {
            return names.join(" | ");
        }
    }
    match schema.get("type").and_then(Json::as_str) {
        Some("object") => object(schema, indent),
        Some("string") => {
            if let Some(Json::Array(values)) = schema.get("enum") {
                let values: Vec<String> = values.iter().filter_map(Json::as_str).map(|v| format!("\"{v}\"")).collect();
                if !values.is_empty() {
                    return values.join(" | ");
                }
            }
            "string".to_owned()
        }
        Some("number" | "integer") => "number".to_owned(),
        Some("boolean") => "boolean".to_owned(),
        Some("array") => match schema.get("items") {
            Some(items) => format!("{}[]", type_of(items, indent)),
            None => "Array<any>".to_owned(),
        },
        _ => "any".to_owned(),
    }
}

fn object(schema: &Json<'_>, indent: &str) -> String {
    let mut out = String::new();
    if let Some(description) = str_field(schema, "description") {
        out.push_str(&format!("{indent}// {description}\n"));
    }
    out.push_str("{\n");
    if let Some(Json::Object(properties)) = schema.get("properties") {
        let required: Vec<&str> = match schema.get("required") {
            Some(Json::Array(names)) => names.iter().filter_map(Json::as_str).collect(),
            _ => Vec::new(),
        };
        for (key, property) in properties {
            let optional = if required.contains(&key.as_ref()) { "" } else { "?" };
            if let Some(title) = str_field(property, "title") {
                out.push_str(&format!("{indent}// {title}\n{indent}//\n"));
            }
            let one_of = property.get("oneOf");
            if one_of.is_none() {
                if let Some(description) = str_field(property, "description") {
                    out.push_str(&format!("{indent}// {description}\n"));
                }
            }
            if let Some(Json::Array(examples)) = property.get("examples") {
                if !examples.is_empty() {
                    out.push_str(&format!("{indent}// Examples:\n"));
                    for example in examples.iter().filter_map(Json::as_str) {
                        out.push_str(&format!("{indent}// - \"{example}\"\n"));
                    }
                }
            }
            if let Some(Json::Array(variants)) = one_of {
                one_of_property(&mut out, key, optional, property, variants, indent);
                continue;
            }
            out.push_str(&format!("{indent}{key}{optional}: "));
            out.push_str(&nullable(property, type_of(property, &format!("{indent}    "))));
            out.push(',');
            if one_of.is_none() {
                if let Some(default) = property.get("default") {
                    out.push_str(" // ");
                    out.push_str(&default_comment(property, default));
                }
            }
            out.push('\n');
        }
    }
    out.push_str(indent);
    out.push('}');
    out
}

/// A property whose type is a `oneOf`: its comments above it, then one variant per line.
fn one_of_property(out: &mut String, key: &str, optional: &str, property: &Json<'_>, variants: &[Json<'_>], indent: &str) {
    let description = str_field(property, "description");
    let first_says_the_same = description.is_some() && variants.first().and_then(|v| str_field(v, "description")) == description;
    let described_above = match description {
        Some(d) if !first_says_the_same => {
            out.push_str(&format!("{indent}// {d}\n"));
            true
        }
        _ => false,
    };
    if let Some(default) = property.get("default") {
        out.push_str(&format!("{indent}// {}\n", default_comment(property, default)));
    }
    out.push_str(&format!("{indent}{key}{optional}:\n"));
    for (i, variant) in variants.iter().enumerate() {
        out.push_str(&format!("{indent} | "));
        out.push_str(&nullable(variant, type_of(variant, &format!("{indent}   "))));
        let mut comments = Vec::new();
        if !(i == 0 && described_above) {
            if let Some(d) = str_field(variant, "description").filter(|d| Some(*d) != description) {
                comments.push(d.to_owned());
            }
        }
        if let Some(default) = variant.get("default") {
            comments.push(default_comment(variant, default));
        }
        if !comments.is_empty() {
            out.push_str(" // ");
            out.push_str(&comments.join(" "));
        }
        out.push('\n');
    }
    out.push_str(&format!("{indent},\n"));
}

/// `| null` added to a `nullable` schema's type that does not already say `null`.
fn nullable(schema: &Json<'_>, type_name: String) -> String {
    if matches!(schema.get("nullable"), Some(Json::Bool(true))) && !type_name.contains("null") {
        format!("{type_name} | null")
    } else {
        type_name
    }
}

/// `default: "text"`, `default: text` for an enum's string, else `default: <JSON>`.
fn default_comment(schema: &Json<'_>, default: &Json<'_>) -> String {
    match default {
        Json::Str(s) if is_enum(schema) => format!("default: {s}"),
        Json::Str(s) => format!("default: \"{s}\""),
        other => format!("default: {}", dumps(other, Style::Compact)),
    }
}

fn is_enum(schema: &Json<'_>) -> bool {
    matches!(schema.get("enum"), Some(Json::Array(values)) if !values.is_empty())
}

fn str_field<'j>(value: &'j Json<'_>, key: &str) -> Option<&'j str> {
    value.get(key).and_then(Json::as_str)
}
