//! Callout hostcalls: `proxy_http_call`, gRPC calls/streams and `proxy_get_status`. Tests script
//! the answers (`Gateway::on_http_call`/`on_grpc_call`); answers are delivered after the guest
//! callback returns, or later when the clock passes their delay or the call's timeout.

use std::time::Duration;

use wasmtime::Caller;

use crate::abi::{self, Pairs, Status};
use crate::calls::{
    CallResponse, Delivery, GrpcCall, GrpcReply, HttpCall, HttpReply, PendingCallout,
};
use crate::hostcalls::imports::Imports;
use crate::memory::{self, status, HostResult};
use crate::state::HostState;

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    imports.func(
        "env",
        "proxy_http_call",
        |mut caller: Caller<'_, HostState>,
         upstream_ptr: u32,
         upstream_len: u32,
         headers_ptr: u32,
         headers_len: u32,
         body_ptr: u32,
         body_len: u32,
         trailers_ptr: u32,
         trailers_len: u32,
         timeout_ms: u32,
         token_ptr: u32| {
            let call = (|| -> HostResult<HttpCall> {
                let (vm, context_id) = (caller.data().vm, caller.data().current_context);
                Ok(HttpCall {
                    vm,
                    context_id,
                    token: 0,
                    upstream: memory::read_string(&mut caller, upstream_ptr, upstream_len)?,
                    headers: read_pairs(&mut caller, headers_ptr, headers_len)?,
                    body: memory::read(&mut caller, body_ptr, body_len)?,
                    trailers: read_pairs(&mut caller, trailers_ptr, trailers_len)?,
                    timeout: Duration::from_millis(timeout_ms.into()),
                })
            })();
            status(call.and_then(|call| http_call(&mut caller, call, token_ptr)))
        },
    )?;
    imports.func(
        "env",
        "proxy_grpc_call",
        |mut caller: Caller<'_, HostState>,
         upstream_ptr: u32,
         upstream_len: u32,
         service_ptr: u32,
         service_len: u32,
         method_ptr: u32,
         method_len: u32,
         metadata_ptr: u32,
         metadata_len: u32,
         message_ptr: u32,
         message_len: u32,
         timeout_ms: u32,
         token_ptr: u32| {
            let call = read_grpc_call(
                &mut caller,
                [
                    upstream_ptr,
                    upstream_len,
                    service_ptr,
                    service_len,
                    method_ptr,
                    method_len,
                    metadata_ptr,
                    metadata_len,
                ],
                (message_ptr, message_len),
                timeout_ms,
            );
            status(call.and_then(|call| grpc_call(&mut caller, call, token_ptr)))
        },
    )?;
    imports.func(
        "env",
        "proxy_grpc_stream",
        |mut caller: Caller<'_, HostState>,
         upstream_ptr: u32,
         upstream_len: u32,
         service_ptr: u32,
         service_len: u32,
         method_ptr: u32,
         method_len: u32,
         metadata_ptr: u32,
         metadata_len: u32,
         token_ptr: u32| {
            let call = read_grpc_call(
                &mut caller,
                [
                    upstream_ptr,
                    upstream_len,
                    service_ptr,
                    service_len,
                    method_ptr,
                    method_len,
                    metadata_ptr,
                    metadata_len,
                ],
                (0, 0),
                0,
            );
            status(call.and_then(|mut call| {
                memory::check(&mut caller, token_ptr, 4)?;
                call.streaming = true;
                call.token = next_token(caller.data());
                let token = call.token;
                caller.data().shared.callouts().grpc_calls.push(call);
                memory::write_u32(&mut caller, token_ptr, token)
            }))
        },
    )?;
    imports.func(
        "env",
        "proxy_grpc_send",
        |mut caller: Caller<'_, HostState>,
         token: u32,
         message_ptr: u32,
         message_len: u32,
         _end_stream: u32| {
            let result = memory::read(&mut caller, message_ptr, message_len).and_then(|message| {
                let mut callouts = caller.data().shared.callouts();
                let call = callouts
                    .grpc_calls
                    .iter_mut()
                    .find(|c| c.token == token && c.streaming)
                    .ok_or(Status::NotFound)?;
                call.message.extend_from_slice(&message);
                Ok(())
            });
            status(result)
        },
    )?;
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        imports.func(
            "env",
            name,
            |mut caller: Caller<'_, HostState>, token: u32| {
                let known = caller
                    .data()
                    .shared
                    .callouts()
                    .grpc_calls
                    .iter()
                    .any(|c| c.token == token);
                caller
                    .data_mut()
                    .pending_callouts
                    .retain(|p| p.token != token);
                status(if known {
                    Ok(())
                } else {
                    Err(Status::NotFound.into())
                })
            },
        )?;
    }
    imports.func(
        "env",
        "proxy_get_status",
        |mut caller: Caller<'_, HostState>, code_ptr: u32, ptr_ptr: u32, size_ptr: u32| {
            let (code, message) = match &caller.data().grpc_delivery {
                Some(d) => (d.status_code, d.status_message.clone()),
                None => (0, String::new()),
            };
            let result = memory::check(&mut caller, code_ptr, 4)
                .and_then(|()| {
                    memory::return_bytes(&mut caller, message.as_bytes(), ptr_ptr, size_ptr)
                })
                .and_then(|()| memory::write_u32(&mut caller, code_ptr, code));
            status(result)
        },
    )?;
    Ok(())
}

fn read_pairs(caller: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> HostResult<Pairs> {
    let bytes = memory::read(caller, ptr, len)?;
    Ok(abi::decode_pairs(&bytes).ok_or(Status::BadArgument)?)
}

fn read_grpc_call(
    caller: &mut Caller<'_, HostState>,
    [upstream_ptr, upstream_len, service_ptr, service_len, method_ptr, method_len, metadata_ptr, metadata_len]: [u32; 8],
    (message_ptr, message_len): (u32, u32),
    timeout_ms: u32,
) -> HostResult<GrpcCall> {
    Ok(GrpcCall {
        vm: caller.data().vm,
        context_id: caller.data().current_context,
        token: 0,
        upstream: memory::read_string(caller, upstream_ptr, upstream_len)?,
        service: memory::read_string(caller, service_ptr, service_len)?,
        method: memory::read_string(caller, method_ptr, method_len)?,
        initial_metadata: read_pairs(caller, metadata_ptr, metadata_len)?,
        message: memory::read(caller, message_ptr, message_len)?,
        timeout: Duration::from_millis(timeout_ms.into()),
        streaming: false,
    })
}

fn next_token(state: &HostState) -> u32 {
    let mut callouts = state.shared.callouts();
    callouts.next_token += 1;
    callouts.next_token
}

fn due(state: &HostState, after: Duration) -> u64 {
    state
        .shared
        .clock
        .now_nanos()
        .saturating_add(after.as_nanos() as u64)
}

fn http_call(caller: &mut Caller<'_, HostState>, mut call: HttpCall, token_ptr: u32) -> HostResult {
    memory::check(caller, token_ptr, 4)?;
    let state = caller.data_mut();
    call.token = next_token(state);
    let reply = {
        let mut callouts = state.shared.callouts();
        let reply = callouts
            .http_responder
            .as_mut()
            .and_then(|respond| respond(&call));
        callouts.http_calls.push(call.clone());
        // Envoy refuses a call to a cluster it does not know; here, one nobody scripted.
        reply.ok_or(Status::BadArgument)?
    };
    let (delivery, after) = match reply {
        HttpReply::Response { response, after } => (Delivery::Http(response), after),
        HttpReply::Failure { after } => (Delivery::Http(CallResponse::default()), after),
        HttpReply::Timeout => (Delivery::Http(CallResponse::default()), call.timeout),
    };
    let due_nanos = due(state, after);
    state.pending_callouts.push(PendingCallout {
        token: call.token,
        context_id: call.context_id,
        due_nanos,
        delivery,
    });
    memory::write_u32(caller, token_ptr, call.token)
}

fn grpc_call(caller: &mut Caller<'_, HostState>, mut call: GrpcCall, token_ptr: u32) -> HostResult {
    memory::check(caller, token_ptr, 4)?;
    let state = caller.data_mut();
    call.token = next_token(state);
    let reply = {
        let mut callouts = state.shared.callouts();
        let reply = callouts
            .grpc_responder
            .as_mut()
            .and_then(|respond| respond(&call));
        callouts.grpc_calls.push(call.clone());
        reply.ok_or(Status::ParseFailure)?
    };
    let (delivery, after) = match reply {
        GrpcReply::Message { message, after } => (Delivery::GrpcMessage(message), after),
        GrpcReply::Status {
            code,
            message,
            after,
        } => (Delivery::GrpcClose { code, message }, after),
        GrpcReply::Timeout => (
            Delivery::GrpcClose {
                code: 4,
                message: "deadline exceeded".to_string(),
            },
            call.timeout,
        ),
    };
    let due_nanos = due(state, after);
    state.pending_callouts.push(PendingCallout {
        token: call.token,
        context_id: call.context_id,
        due_nanos,
        delivery,
    });
    memory::write_u32(caller, token_ptr, call.token)
}
