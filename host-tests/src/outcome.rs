//! What tests read back: the outcome of a stream (what went upstream, the local reply, what the
//! client got), log lines, foreign calls.

use std::collections::BTreeMap;
use std::fmt;

use crate::abi::{find_header, Action, LogLevel, Pairs};
use crate::calls::{GrpcCall, HttpCall};
use crate::host_calls::StreamHostCalls;

/// One `proxy_log` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub vm: usize,
    /// The context that was current when the guest logged.
    pub context_id: u32,
    pub level: LogLevel,
    pub message: String,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[vm {} ctx {} {}] {}",
            self.vm, self.context_id, self.level, self.message
        )
    }
}

/// A `proxy_send_local_response` call: the reply Envoy sends instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    /// Headers as the filter gave them (Envoy adds `:status`, `content-length` and, for a body
    /// without one, `content-type: text/plain`; see `Outcome::response`).
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub details: String,
    pub grpc_status: i32,
    /// Sent by the proxy itself (a buffer over the limit), not by the filter.
    pub from_proxy: bool,
}

impl LocalReply {
    /// The first value of a header the filter set on the reply.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
    }
}

/// A `proxy_call_foreign_function` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignCall {
    pub name: String,
    pub args: Vec<u8>,
    /// The host knew the function (else the guest got `NotFound`).
    pub known: bool,
    /// The request headers as they stood when the call was made (what a re-run route match sees).
    pub request_headers: Pairs,
}

/// Headers, body and trailers as they went past the filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
}

impl Message {
    /// The first value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of a header, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Header names starting with `prefix`, in order (e.g. every `x-tokengate-` header).
    pub fn headers_with_prefix(&self, prefix: &str) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .filter(|(k, _)| {
                k.to_ascii_lowercase()
                    .starts_with(&prefix.to_ascii_lowercase())
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Which VM and context a stream lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamId {
    pub vm: usize,
    pub context_id: u32,
}

/// Where the request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Everything the client sent went upstream.
    Forwarded,
    /// The filter answered with `send_local_response`.
    LocalReply,
    /// The filter paused and nothing resumed it yet (Envoy would wait, then time out).
    Paused,
    /// The filter closed the stream (`close_stream`): Envoy resets it.
    Reset,
}

/// A snapshot of one stream after the harness drove it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub stream: StreamId,
    pub decision: Decision,
    /// The request as it went upstream (headers as they were when iteration continued past them).
    pub forwarded: Option<Message>,
    pub local_reply: Option<LocalReply>,
    /// The response as the client got it: the upstream response after the response callbacks, or
    /// the local reply as Envoy sends it (after the filter's response callbacks saw it, as in Envoy).
    pub response: Option<Message>,
    /// Filter state the stream set, keyed as Envoy keys it (`wasm.<path>`).
    pub filter_state: BTreeMap<String, Vec<u8>>,
    pub foreign_calls: Vec<ForeignCall>,
    pub http_calls: Vec<HttpCall>,
    pub grpc_calls: Vec<GrpcCall>,
    /// Log lines the guest wrote while this stream was the current context.
    pub logs: Vec<LogLine>,
    /// Every stream callback and what it returned, in order.
    pub actions: Vec<(&'static str, Action)>,
    /// `on_done`/`on_log`/`on_delete` ran: the stream is over.
    pub finished: bool,
    /// The guest's calls into the host during this stream's callbacks, request and response side.
    pub host_calls: StreamHostCalls,
}

impl Outcome {
    /// A header of the forwarded request.
    pub fn forwarded_header(&self, name: &str) -> Option<&str> {
        self.forwarded.as_ref()?.header(name)
    }

    /// The forwarded request body.
    pub fn forwarded_body(&self) -> Option<&[u8]> {
        self.forwarded.as_ref().map(|m| m.body.as_slice())
    }

    /// The local reply's status.
    pub fn local_status(&self) -> Option<u32> {
        self.local_reply.as_ref().map(|r| r.status)
    }

    /// The local reply's body as JSON (`None` without a local reply or when it is not JSON).
    pub fn local_json(&self) -> Option<serde_json::Value> {
        self.local_reply.as_ref()?.json().ok()
    }

    /// A filter state value as text, by its Envoy key (`wasm.tokengate.prompt_tokens`).
    pub fn filter_state_str(&self, key: &str) -> Option<String> {
        self.filter_state
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The log lines as text, one per line (handy in assertion messages).
    pub fn logs_text(&self) -> String {
        self.logs.iter().map(|l| format!("{l}\n")).collect()
    }
}
