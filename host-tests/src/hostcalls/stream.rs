//! Stream control hostcalls: `send_local_response`, `continue_stream`, `close_stream`, the
//! effective context and `proxy_done`.

use wasmtime::Caller;

use crate::abi::{self, stream_type, Status};
use crate::hostcalls::imports::Imports;
use crate::memory::{self, status, HostResult};
use crate::outcome::LocalReply;
use crate::state::HostState;

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    imports.func(
        "env",
        "proxy_send_local_response",
        |mut caller: Caller<'_, HostState>,
         status_code: u32,
         details_ptr: u32,
         details_len: u32,
         body_ptr: u32,
         body_len: u32,
         headers_ptr: u32,
         headers_len: u32,
         grpc_status: i32| {
            let reply = (|| -> HostResult<LocalReply> {
                Ok(LocalReply {
                    status: status_code,
                    details: memory::read_string(&mut caller, details_ptr, details_len)?,
                    body: memory::read(&mut caller, body_ptr, body_len)?,
                    headers: abi::decode_pairs(&memory::read(
                        &mut caller,
                        headers_ptr,
                        headers_len,
                    )?)
                    .ok_or(Status::BadArgument)?,
                    grpc_status,
                    from_proxy: false,
                })
            })();
            status(reply.and_then(|reply| send_local_response(caller.data_mut(), reply)))
        },
    )?;
    imports.func(
        "env",
        "proxy_continue_stream",
        |mut caller: Caller<'_, HostState>, kind: u32| {
            status(with_stream(caller.data_mut(), kind, |side| {
                side.resume = true
            }))
        },
    )?;
    imports.func(
        "env",
        "proxy_close_stream",
        |mut caller: Caller<'_, HostState>, kind: u32| {
            let state = caller.data_mut();
            let result = match (kind, state.current_stream()) {
                (stream_type::HTTP_REQUEST | stream_type::HTTP_RESPONSE, Some(stream)) => {
                    stream.reset = true;
                    Ok(())
                }
                (stream_type::HTTP_REQUEST | stream_type::HTTP_RESPONSE, None) => {
                    Err(Status::NotFound.into())
                }
                _ => Err(Status::BadArgument.into()),
            };
            status(result)
        },
    )?;
    imports.func(
        "env",
        "proxy_set_effective_context",
        |mut caller: Caller<'_, HostState>, context_id: u32| {
            let state = caller.data_mut();
            if context_id == state.root_context_id || state.streams.contains_key(&context_id) {
                state.current_context = context_id;
                status(Ok(()))
            } else {
                status(Err(Status::BadArgument.into()))
            }
        },
    )?;
    // The root context finished a deferred `on_done`; nothing is waiting on it here.
    imports.func("env", "proxy_done", |_: Caller<'_, HostState>| {
        status(Ok(()))
    })?;
    Ok(())
}

fn send_local_response(state: &mut HostState, reply: LocalReply) -> HostResult {
    let stream = state.current_stream().ok_or(Status::NotFound)?;
    if stream.local_reply.is_some() {
        // Envoy sends only the first; later ones are dropped.
        stream.extra_local_replies += 1;
    } else {
        stream.local_reply = Some(reply);
    }
    Ok(())
}

fn with_stream(
    state: &mut HostState,
    kind: u32,
    op: impl FnOnce(&mut crate::state::Side),
) -> HostResult {
    let stream = state.current_stream().ok_or(Status::NotFound)?;
    match kind {
        stream_type::HTTP_REQUEST => op(&mut stream.request),
        stream_type::HTTP_RESPONSE => op(&mut stream.response),
        stream_type::DOWNSTREAM | stream_type::UPSTREAM => return Err(Status::NotFound.into()),
        _ => return Err(Status::BadArgument.into()),
    }
    Ok(())
}
