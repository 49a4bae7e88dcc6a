//! Callouts seen from the test: how the gateway answers the filter's HTTP and gRPC calls, and
//! the record of every call made.

use crate::calls::{GrpcCall, GrpcReply, HttpCall, HttpReply};

use super::exchange::Gateway;

impl Gateway {
    /// How HTTP callouts are answered; `None` means an unknown cluster (`BadArgument`).
    pub fn on_http_call(
        &mut self,
        responder: impl FnMut(&HttpCall) -> Option<HttpReply> + Send + 'static,
    ) {
        self.shared.callouts().http_responder = Some(Box::new(responder));
    }

    /// How gRPC calls are answered; `None` means the service could not be parsed (`ParseFailure`).
    pub fn on_grpc_call(
        &mut self,
        responder: impl FnMut(&GrpcCall) -> Option<GrpcReply> + Send + 'static,
    ) {
        self.shared.callouts().grpc_responder = Some(Box::new(responder));
    }

    /// Every HTTP callout dispatched so far.
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.shared.callouts().http_calls.clone()
    }

    /// Every gRPC call dispatched so far.
    pub fn grpc_calls(&self) -> Vec<GrpcCall> {
        self.shared.callouts().grpc_calls.clone()
    }
}
