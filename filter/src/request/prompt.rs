//! Counts a recognized request's prompt tokens: OpenAI's chat rule, tool and schema
//! approximations, and the plain forms of completions and embeddings, stopping at the limit.
//!
//! Chat (OpenAI cookbook, current models): 3 tokens per message, the tokens of every string field
//! of the message, 1 more per `name`, and 3 priming the reply. Tool definitions follow the
//! cookbook's `num_tokens_for_tools`; images count the configured `image_tokens`; anything
//! approximated marks the count [`Exactness::Estimated`].

use serde_json::{Map, Value};

use super::{Api, LlmRequest};
use crate::tokenize::{Count, Encoding, Tokenizer};

const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_NAME: u64 = 1;
const REPLY_PRIMING_TOKENS: u64 = 3;

/// Whether a count is exact under the documented rules or involves an approximation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exactness {
    Exact,
    Estimated,
}

impl Exactness {
    pub fn name(self) -> &'static str {
        match self {
            Exactness::Exact => "exact",
            Exactness::Estimated => "estimated",
        }
    }
}

/// The outcome of counting a prompt against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptCount {
    /// Tokens counted. When `over_limit` and `stopped_early`, a lower bound of the true total.
    pub tokens: u64,
    pub over_limit: bool,
    /// Counting stopped before the end of the prompt because the limit was already passed.
    pub stopped_early: bool,
    pub exactness: Exactness,
}

/// Counts the prompt of `request` with `tokenizer`. Counting goes on to twice `limit`, so a
/// prompt a little over the limit gets its exact size in the error, and stops there, so a huge
/// prompt costs about twice the limit, not its length.
pub fn count_prompt(request: &LlmRequest<'_>, tokenizer: &Tokenizer, limit: u64, image_tokens: u64) -> PromptCount {
    let mut c = Counter {
        tokenizer,
        limit: limit.saturating_mul(2),
        image_tokens,
        total: 0,
        stopped: false,
        skipped: false,
        estimated: false,
    };
    let body = request.body;
    match request.api {
        Api::ChatCompletions => {
            if let Some(Value::Array(messages)) = body.get("messages") {
                for m in messages {
                    c.fixed(TOKENS_PER_MESSAGE);
                    c.chat_message(m);
                }
            }
            c.fixed(REPLY_PRIMING_TOKENS);
            c.tool_definitions(body.get("tools"));
            c.tool_definitions(body.get("functions"));
            if let Some(Value::Object(format)) = body.get("response_format") {
                // JSON modes steer the model with text the edge does not see.
                if format.get("type").and_then(Value::as_str) != Some("text") {
                    c.estimated = true;
                }
                c.response_format(format.get("json_schema"));
            }
        }
        Api::Completions => {
            c.plain_input(body.get("prompt"));
            if let Some(Value::String(suffix)) = body.get("suffix") {
                c.text(suffix);
            }
        }
        Api::Embeddings => c.plain_input(body.get("input")),
        Api::Responses => {
            // The responses API's framing is not documented; count it as chat and say so.
            c.estimated = true;
            if let Some(Value::String(instructions)) = body.get("instructions") {
                c.fixed(TOKENS_PER_MESSAGE);
                c.text("system");
                c.text(instructions);
            }
            match body.get("input") {
                Some(Value::String(input)) => {
                    c.fixed(TOKENS_PER_MESSAGE);
                    c.text("user");
                    c.text(input);
                }
                Some(Value::Array(items)) => items.iter().for_each(|item| c.responses_item(item)),
                _ => {}
            }
            c.fixed(REPLY_PRIMING_TOKENS);
            c.tool_definitions(body.get("tools"));
            if let Some(Value::Object(text)) = body.get("text") {
                if let Some(Value::Object(format)) = text.get("format") {
                    if format.get("type").and_then(Value::as_str) == Some("json_schema") {
                        c.response_format(format.get("schema"));
                    }
                }
            }
        }
    }
    PromptCount {
        tokens: c.total,
        over_limit: c.total > limit,
        stopped_early: c.skipped,
        exactness: if c.estimated { Exactness::Estimated } else { Exactness::Exact },
    }
}

struct Counter<'t> {
    tokenizer: &'t Tokenizer,
    /// Where counting stops (twice the admission limit).
    limit: u64,
    image_tokens: u64,
    total: u64,
    /// The total passed the limit: nothing more is counted.
    stopped: bool,
    /// Some of the prompt was left uncounted because of that.
    skipped: bool,
    estimated: bool,
}

impl Counter<'_> {
    // Out of line: it is called from a dozen places, and each inlined copy was code that Envoy's
    // V8 compiles before the filter is ready; the call costs nothing next to counting the text.
    #[inline(never)]
    fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.stopped {
            self.skipped = true;
            return;
        }
        match self.tokenizer.count_until(text, self.limit.saturating_sub(self.total)) {
            Count::Within(n) => self.total += n,
            Count::Over { counted, complete } => {
                self.total += counted;
                self.stopped = true;
                self.skipped |= !complete;
            }
        }
    }

    /// Framing tokens cost nothing to add, so they are added even past the limit.
    fn fixed(&mut self, tokens: u64) {
        self.total = self.total.saturating_add(tokens);
        self.stopped |= self.total > self.limit;
    }

    /// An approximation: the compact JSON text of `value`.
    fn json(&mut self, value: &Value) {
        self.estimated = true;
        if self.stopped {
            self.skipped = true;
        } else {
            self.text(&value.to_string());
        }
    }

    fn chat_message(&mut self, message: &Value) {
        let Value::Object(fields) = message else {
            self.json(message);
            return;
        };
        for (key, value) in fields {
            match (key.as_str(), value) {
                (_, Value::Null) => {}
                (key, Value::String(s)) => {
                    self.text(s);
                    if key == "name" {
                        self.fixed(TOKENS_PER_NAME);
                    }
                }
                ("content", Value::Array(parts)) => parts.iter().for_each(|p| self.content_part(p)),
                ("tool_calls", Value::Array(calls)) => {
                    for call in calls {
                        self.function_call(call.get("function").and_then(Value::as_object));
                    }
                }
                ("function_call", Value::Object(call)) => self.function_call(Some(call)),
                (_, other) => self.json(other),
            }
        }
    }

    /// Tool calls the assistant made: their name and arguments are in the prompt; the framing
    /// around them is not documented.
    fn function_call(&mut self, call: Option<&Map<String, Value>>) {
        self.estimated = true;
        let Some(call) = call else { return };
        for field in ["name", "arguments"] {
            if let Some(Value::String(s)) = call.get(field) {
                self.text(s);
            }
        }
    }

    fn content_part(&mut self, part: &Value) {
        let Value::Object(part) = part else {
            match part {
                Value::String(s) => self.text(s),
                other => self.json(other),
            }
            return;
        };
        match part.get("type").and_then(Value::as_str) {
            Some("text" | "input_text" | "output_text") => {
                if let Some(Value::String(t)) = part.get("text") {
                    self.text(t);
                }
            }
            Some("refusal") => {
                if let Some(Value::String(t)) = part.get("refusal") {
                    self.text(t);
                }
            }
            Some("image_url" | "input_image" | "image") => {
                self.estimated = true;
                self.fixed(self.image_tokens);
            }
            // Audio and files are tokenized by the model from data the edge cannot measure.
            _ => {
                self.estimated = true;
                if let Some(Value::String(t)) = part.get("text") {
                    self.text(t);
                }
            }
        }
    }

    /// `prompt` of completions and `input` of embeddings: a string, strings, or token arrays.
    /// A completions prompt or embeddings input: a text, or a list of texts (each a prompt of
    /// its own) or token ids. A backend encodes each text with special tokens, so each gets the
    /// tokenizer's prefix (a BOS for some model files; none for OpenAI's encodings).
    fn plain_input(&mut self, input: Option<&Value>) {
        let prefix = self.tokenizer.prefix_tokens();
        match input {
            Some(Value::String(s)) => {
                self.fixed(prefix);
                self.text(s);
            }
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::String(s) => {
                            self.fixed(prefix);
                            self.text(s);
                        }
                        Value::Number(_) => self.fixed(1),
                        Value::Array(tokens) => self.fixed(tokens.len() as u64),
                        other => self.json(other),
                    }
                }
            }
            _ => {}
        }
    }

    fn responses_item(&mut self, item: &Value) {
        let Value::Object(fields) = item else {
            self.json(item);
            return;
        };
        let kind = fields.get("type").and_then(Value::as_str);
        if fields.contains_key("role") && matches!(kind, None | Some("message")) {
            self.fixed(TOKENS_PER_MESSAGE);
            if let Some(Value::String(role)) = fields.get("role") {
                self.text(role);
            }
            match fields.get("content") {
                Some(Value::String(s)) => self.text(s),
                Some(Value::Array(parts)) => parts.iter().for_each(|p| self.content_part(p)),
                _ => {}
            }
            return;
        }
        match kind {
            Some("function_call") => self.function_call(Some(fields)),
            Some("function_call_output") => {
                self.fixed(TOKENS_PER_MESSAGE);
                match fields.get("output") {
                    Some(Value::String(s)) => self.text(s),
                    Some(Value::Array(parts)) => parts.iter().for_each(|p| self.content_part(p)),
                    _ => {}
                }
            }
            _ => {
                if let Some(Value::String(t)) = fields.get("text") {
                    self.text(t);
                }
            }
        }
    }

    /// OpenAI cookbook `num_tokens_for_tools`: per function its name and description, per
    /// parameter its name, type, description and enum values, with the cookbook's constants for
    /// the encoding's model family. Nested schemas (not covered by the cookbook) count as JSON.
    fn tool_definitions(&mut self, tools: Option<&Value>) {
        let Some(Value::Array(tools)) = tools else { return };
        if tools.is_empty() {
            return;
        }
        self.estimated = true;
        let k = ToolConstants::for_encoding(self.tokenizer.encoding());
        let mut framing: i64 = 0;
        for tool in tools {
            let function = tool.get("function").unwrap_or(tool);
            let Some(name) = function.get("name").and_then(Value::as_str) else {
                // Built-in tools (web search, file search, ...): their prompt is the provider's.
                continue;
            };
            framing += k.func_init;
            let description = str_field(function, "description");
            self.text(&format!("{name}:{}", trim_period(description)));
            let properties = function
                .get("parameters")
                .and_then(|p| p.get("properties"))
                .and_then(Value::as_object);
            let Some(properties) = properties.filter(|p| !p.is_empty()) else { continue };
            framing += k.prop_init;
            for (key, property) in properties {
                framing += k.prop_key;
                if let Some(Value::Array(values)) = property.get("enum") {
                    framing += k.enum_init;
                    for value in values {
                        framing += k.enum_item;
                        match value {
                            Value::String(s) => self.text(s),
                            other => self.text(&other.to_string()),
                        }
                    }
                }
                let kind = match property.get("type") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let description = trim_period(str_field(property, "description"));
                self.text(&format!("{key}:{kind}:{description}"));
                for nested in ["properties", "items"] {
                    if let Some(schema) = property.get(nested) {
                        self.json(schema);
                    }
                }
            }
        }
        framing += k.func_end;
        self.fixed(u64::try_from(framing).unwrap_or(0));
    }

    /// A structured-output schema: sent to the model as JSON text.
    fn response_format(&mut self, schema: Option<&Value>) {
        if let Some(schema) = schema {
            self.json(schema);
        }
    }
}

/// The cookbook's per-family constants for tool definitions.
struct ToolConstants {
    func_init: i64,
    prop_init: i64,
    prop_key: i64,
    enum_init: i64,
    enum_item: i64,
    func_end: i64,
}

impl ToolConstants {
    /// The cookbook's constants for the encoding; o200k_base's for tokenizers of other models,
    /// whose tool rendering the OpenAI rule only estimates anyway.
    fn for_encoding(encoding: Option<Encoding>) -> ToolConstants {
        let func_init = match encoding {
            Some(Encoding::Cl100kBase) => 10,
            _ => 7,
        };
        ToolConstants { func_init, prop_init: 3, prop_key: 3, enum_init: -3, enum_item: 3, func_end: 12 }
    }
}

fn str_field<'v>(value: &'v Value, field: &str) -> &'v str {
    value.get(field).and_then(Value::as_str).unwrap_or("")
}

fn trim_period(s: &str) -> &str {
    s.strip_suffix('.').unwrap_or(s)
}

#[cfg(test)]
mod tests;
