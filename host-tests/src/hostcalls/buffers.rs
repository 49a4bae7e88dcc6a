//! Buffer hostcalls: bodies, configuration, call responses. `set` follows Envoy: at start 0 with
//! size 0 it prepends, at 0 covering the whole buffer it replaces, at or past the end it appends;
//! any other range is `BadArgument`.

use wasmtime::Caller;

use crate::abi::{buffer, Status};
use crate::hostcalls::imports::Imports;
use crate::memory::{self, status, HostResult};
use crate::state::HostState;

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    imports.func(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         kind: u32,
         start: u32,
         max_size: u32,
         ptr_ptr: u32,
         size_ptr: u32| {
            status(get(&mut caller, kind, start, max_size, ptr_ptr, size_ptr))
        },
    )?;
    imports.func(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         kind: u32,
         start: u32,
         size: u32,
         ptr: u32,
         len: u32| { status(set(&mut caller, kind, start, size, ptr, len)) },
    )?;
    Ok(())
}

/// The buffer `kind` names in the current context; `None` when it does not exist there.
fn buffer_of(state: &HostState, kind: u32) -> Result<&[u8], Status> {
    let stream = state.streams.get(&state.current_context);
    let found = match kind {
        buffer::HTTP_REQUEST_BODY => stream.and_then(|s| s.request.body.as_deref()),
        buffer::HTTP_RESPONSE_BODY => stream.and_then(|s| s.response.body.as_deref()),
        buffer::HTTP_CALL_RESPONSE_BODY => state.call_response.as_ref().map(|r| r.body.as_slice()),
        buffer::GRPC_RECEIVE_BUFFER => state.grpc_delivery.as_ref().map(|d| d.message.as_slice()),
        buffer::VM_CONFIGURATION => Some(state.vm_configuration.as_slice()),
        buffer::PLUGIN_CONFIGURATION => Some(state.plugin_configuration.as_slice()),
        buffer::DOWNSTREAM_DATA | buffer::UPSTREAM_DATA | buffer::CALL_DATA => None,
        _ => return Err(Status::BadArgument),
    };
    found.ok_or(Status::NotFound)
}

fn get(
    caller: &mut Caller<'_, HostState>,
    kind: u32,
    start: u32,
    max_size: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let data = buffer_of(caller.data(), kind)?;
    let start = start as usize;
    if start > data.len() {
        return Err(Status::BadArgument.into());
    }
    let end = start.saturating_add(max_size as usize).min(data.len());
    let bytes = data[start..end].to_vec();
    memory::return_bytes(caller, &bytes, ptr_ptr, size_ptr)
}

fn set(
    caller: &mut Caller<'_, HostState>,
    kind: u32,
    start: u32,
    size: u32,
    ptr: u32,
    len: u32,
) -> HostResult {
    let data = memory::read(caller, ptr, len)?;
    let state = caller.data_mut();
    let current = state.current_context;
    let body = match kind {
        buffer::HTTP_REQUEST_BODY | buffer::HTTP_RESPONSE_BODY => {
            let stream = state.streams.get_mut(&current).ok_or(Status::NotFound)?;
            let side = if kind == buffer::HTTP_REQUEST_BODY {
                &mut stream.request
            } else {
                &mut stream.response
            };
            side.body.as_mut().ok_or(Status::NotFound)?
        }
        buffer::HTTP_CALL_RESPONSE_BODY => {
            &mut state.call_response.as_mut().ok_or(Status::NotFound)?.body
        }
        buffer::GRPC_RECEIVE_BUFFER => {
            &mut state
                .grpc_delivery
                .as_mut()
                .ok_or(Status::NotFound)?
                .message
        }
        buffer::VM_CONFIGURATION | buffer::PLUGIN_CONFIGURATION => {
            return Err(Status::BadArgument.into())
        }
        buffer::DOWNSTREAM_DATA | buffer::UPSTREAM_DATA | buffer::CALL_DATA => {
            return Err(Status::NotFound.into())
        }
        _ => return Err(Status::BadArgument.into()),
    };
    let (start, size) = (start as usize, size as usize);
    if start == 0 && size == 0 {
        body.splice(0..0, data);
    } else if start == 0 && size >= body.len() {
        *body = data;
    } else if start >= body.len() {
        body.extend_from_slice(&data);
    } else {
        return Err(Status::BadArgument.into());
    }
    Ok(())
}
