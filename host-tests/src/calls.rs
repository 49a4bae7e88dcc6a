//! What callouts carry: the calls the guest dispatched, the replies tests script, and the
//! answers waiting to be delivered. Plain data: the hostcalls fill it, the VM delivers it.

use std::time::Duration;

use crate::abi::{find_header, Pairs};

/// An HTTP callout the guest dispatched.
#[derive(Clone, Debug)]
pub struct HttpCall {
    pub vm: usize,
    pub context_id: u32,
    pub token: u32,
    pub upstream: String,
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
    pub timeout: Duration,
}

impl HttpCall {
    /// The first value of a header of the call.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The response an HTTP callout gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallResponse {
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
}

/// How the host answers an HTTP callout.
#[derive(Clone, Debug)]
pub enum HttpReply {
    /// A response, delivered `after` the call (zero: right after the current callback).
    Response {
        response: CallResponse,
        after: Duration,
    },
    /// A failure (reset, no healthy upstream): `on_http_call_response` with no headers or body.
    Failure { after: Duration },
    /// No answer: the call fails when its timeout passes.
    Timeout,
}

impl HttpReply {
    /// An immediate response with `:status` and a body.
    pub fn status(code: u16, body: impl Into<Vec<u8>>) -> HttpReply {
        HttpReply::Response {
            response: CallResponse {
                headers: vec![(":status".to_string(), code.to_string())],
                body: body.into(),
                trailers: Vec::new(),
            },
            after: Duration::ZERO,
        }
    }

    /// The same reply, delivered `delay` later.
    pub fn delayed(self, delay: Duration) -> HttpReply {
        match self {
            HttpReply::Response { response, .. } => HttpReply::Response {
                response,
                after: delay,
            },
            HttpReply::Failure { .. } => HttpReply::Failure { after: delay },
            HttpReply::Timeout => HttpReply::Timeout,
        }
    }
}

/// A gRPC call (unary, or a stream opened with `proxy_grpc_stream`) the guest dispatched.
#[derive(Clone, Debug)]
pub struct GrpcCall {
    pub vm: usize,
    pub context_id: u32,
    pub token: u32,
    pub upstream: String,
    pub service: String,
    pub method: String,
    pub initial_metadata: Pairs,
    /// The request message (for streams, every message sent so far, concatenated).
    pub message: Vec<u8>,
    pub timeout: Duration,
    pub streaming: bool,
}

/// How the host answers a unary gRPC call.
#[derive(Clone, Debug)]
pub enum GrpcReply {
    /// A response message (`proxy_on_grpc_receive`).
    Message { message: Vec<u8>, after: Duration },
    /// A failure status (`proxy_on_grpc_close` with the code; message via `proxy_get_status`).
    Status {
        code: u32,
        message: String,
        after: Duration,
    },
    /// No answer: closes with DEADLINE_EXCEEDED (4) when the timeout passes.
    Timeout,
}

/// A callout answer waiting for its time.
#[derive(Clone, Debug)]
pub(crate) struct PendingCallout {
    pub(crate) token: u32,
    pub(crate) context_id: u32,
    pub(crate) due_nanos: u64,
    pub(crate) delivery: Delivery,
}

#[derive(Clone, Debug)]
pub(crate) enum Delivery {
    Http(CallResponse),
    GrpcMessage(Vec<u8>),
    GrpcClose { code: u32, message: String },
}

/// The gRPC data visible while a `proxy_on_grpc_*` callback runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct GrpcDelivery {
    pub(crate) message: Vec<u8>,
    pub(crate) status_code: u32,
    pub(crate) status_message: String,
}

/// How a test answers HTTP callouts (`None`: unknown cluster).
pub(crate) type HttpResponder = Box<dyn FnMut(&HttpCall) -> Option<HttpReply> + Send>;
/// How a test answers gRPC calls (`None`: the service cannot be parsed).
pub(crate) type GrpcResponder = Box<dyn FnMut(&GrpcCall) -> Option<GrpcReply> + Send>;
