//! A plan: everything one callback's decision asks of the host, as plain data the adapter
//! carries out in order (headers, body, route cache, stats, filter state, logs, then the reply).

use super::metric::Metric;

/// Whether the stream goes on after the callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Action {
    #[default]
    Continue,
    /// Hold the stream: more body is needed, or the plan's `reply` answers it.
    Pause,
}

/// Edits of one header map. Names are lower case, as Envoy keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Every value of these headers goes.
    pub remove: Vec<String>,
    /// Each replaces every value of its name.
    pub set: Vec<(&'static str, String)>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty()
    }

    // Out of line, like `Plan::state` and `Plan::log`: a plan is built at a few dozen places, and
    // a push inlined at each is code Envoy's V8 compiles at start-up.
    #[inline(never)]
    pub(crate) fn put(&mut self, name: &'static str, value: String) {
        self.set.push((name, value));
    }

    /// Applies the edits to a whole header map (what a single map write then sends to the host).
    /// Names match exactly: the host's are lower case, and so are tokengate's.
    pub fn apply_to(&self, map: &mut Vec<(String, String)>) {
        for name in &self.remove {
            drop_named(map, name);
        }
        for (name, value) in &self.set {
            drop_named(map, name);
            map.push(((*name).to_owned(), value.clone()));
        }
    }
}

fn drop_named(map: &mut Vec<(String, String)>, name: &str) {
    map.retain(|(n, _)| n != name);
}

/// A response tokengate sends itself instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// `content-type` first, then the rejection's own headers.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// A plan's counter increments and histogram samples, in the order they were made, and the
/// model label their per-model series carry. Counters never carry a zero: an increment by zero
/// would be a wasted host call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    moves: Vec<(Metric, u64)>,
    /// Index into `Config::labels` (0: `other`).
    pub label: u16,
}

impl Stats {
    /// Adds `value` to a counter, or records it as a histogram's sample.
    #[inline(never)]
    pub fn add(&mut self, metric: Metric, value: u64) {
        if value != 0 || metric.is_histogram() {
            self.moves.push((metric, value));
        }
    }

    /// What the plan adds to a counter (or its histogram sample), if anything.
    pub fn get(&self, metric: Metric) -> Option<u64> {
        let mut moved = self.moves.iter().filter(|(m, _)| *m == metric).map(|(_, v)| *v).peekable();
        moved.peek()?;
        Some(moved.sum())
    }

    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }

    pub(crate) fn extend(&mut self, other: Stats) {
        self.moves.extend(other.moves);
    }

    pub fn iter(&self) -> impl Iterator<Item = (Metric, u64)> + '_ {
        self.moves.iter().copied()
    }
}

/// The filter state a request leaves for access logs, each field loggable as
/// `%FILTER_STATE(wasm.tokengate.<name>:PLAIN)%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `allowed`, `passthrough` or the rejection's code.
    Decision,
    KeyId,
    PromptTokens,
    Encoding,
    ReservedTokens,
    /// What the request cost its key once the response is known (with a quota), in the limits'
    /// units: tokens weighted by the model's cost; prompt + completion at the default weights.
    ActualTokens,
    /// Where the response's counts come from: `reported` (the backend's usage), `estimated`
    /// (no usage: the output counted from the response) or `none` (failed without usage).
    Usage,
    /// The backend's prompt tokens, when it reported usage.
    BackendPromptTokens,
    /// Output tokens, reported or estimated.
    CompletionTokens,
    /// Cached prompt tokens, when the backend reported usage.
    CachedTokens,
    /// The backend's prompt tokens minus tokengate's count, when it reported usage.
    Drift,
    /// The rate limit service's part in the admission: `ok`, `over_limit`, or `failed_allow` /
    /// `failed_deny` (no verdict; `failure_mode` applied).
    Rls,
}

impl Field {
    /// The property path the host stores it under (Envoy prefixes `wasm.`).
    pub fn path(self) -> &'static str {
        match self {
            Field::Decision => "tokengate.decision",
            Field::KeyId => "tokengate.key_id",
            Field::PromptTokens => "tokengate.prompt_tokens",
            Field::Encoding => "tokengate.encoding",
            Field::ReservedTokens => "tokengate.reserved_tokens",
            Field::ActualTokens => "tokengate.actual_tokens",
            Field::Usage => "tokengate.usage",
            Field::BackendPromptTokens => "tokengate.backend_prompt_tokens",
            Field::CompletionTokens => "tokengate.completion_tokens",
            Field::CachedTokens => "tokengate.cached_tokens",
            Field::Drift => "tokengate.drift",
            Field::Rls => "tokengate.rls",
        }
    }
}

/// A charge to the rate limit service (`quota.backend.rls`): one `ShouldRateLimit` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub message: Vec<u8>,
    /// The stream waits for the answer ([`super::Exchange::on_rls_answer`]): an admission. Else
    /// a settlement, whose answer changes nothing.
    pub awaited: bool,
}

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Warn,
    Error,
}

/// One callback's plan. `Plan::default()` is "continue, change nothing".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub action: Action,
    pub request_headers: HeaderEdits,
    /// The whole buffered request body, replaced (its `content-length` is in `request_headers`).
    pub request_body: Option<Vec<u8>>,
    /// Ask Envoy to match the route again, after `request_headers` are applied.
    pub clear_route_cache: bool,
    pub response_headers: HeaderEdits,
    /// The response chunk of this callback, replaced.
    pub response_body: Option<Vec<u8>>,
    pub stats: Stats,
    pub filter_state: Vec<(Field, String)>,
    pub logs: Vec<(LogLevel, String)>,
    /// Sent last; the stream then stays paused.
    pub reply: Option<Reply>,
    /// Dispatched after the rest (an awaited call comes with `Action::Pause`).
    pub call: Option<Call>,
}

impl Plan {
    pub(crate) fn pause() -> Plan {
        Plan { action: Action::Pause, ..Plan::default() }
    }

    pub(crate) fn stat(&mut self, metric: Metric, value: u64) {
        self.stats.add(metric, value);
    }

    #[inline(never)]
    pub(crate) fn state(&mut self, field: Field, value: String) {
        self.filter_state.push((field, value));
    }

    #[inline(never)]
    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        self.logs.push((level, message));
    }

    /// Adds `later`'s stats, filter state and logs (a decision held for the rate limit service).
    pub(crate) fn merge(&mut self, later: Plan) {
        self.stats.extend(later.stats);
        self.filter_state.extend(later.filter_state);
        self.logs.extend(later.logs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_replace_every_value_of_a_name_and_keep_the_rest_in_order() {
        let mut map: Vec<(String, String)> = [(":path", "/v1"), ("x-a", "1"), ("x-tokengate-class", "spoof"), ("x-a", "2"), ("x-b", "3")]
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let edits = HeaderEdits { remove: vec!["x-b".to_owned()], set: vec![("x-a", "9".to_owned()), ("x-tokengate-class", "long".to_owned())] };
        edits.apply_to(&mut map);
        let names: Vec<(&str, &str)> = map.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(names, [(":path", "/v1"), ("x-a", "9"), ("x-tokengate-class", "long")]);
    }

    #[test]
    fn zero_increments_are_dropped_but_histogram_zeros_are_samples() {
        let mut plan = Plan::default();
        plan.stat(Metric::CachedPromptTokensTotal, 0);
        plan.stat(Metric::PromptDriftTokens, 0);
        plan.stat(Metric::RequestsTotal, 1);
        plan.stat(Metric::RequestsTotal, 2);
        let moved: Vec<(Metric, u64)> = plan.stats.iter().collect();
        assert_eq!(moved, [(Metric::PromptDriftTokens, 0), (Metric::RequestsTotal, 1), (Metric::RequestsTotal, 2)]);
        assert_eq!(plan.stats.get(Metric::RequestsTotal), Some(3));
        assert_eq!(plan.stats.get(Metric::CachedPromptTokensTotal), None);
    }
}
