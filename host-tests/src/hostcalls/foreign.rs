//! `proxy_call_foreign_function`: calls are recorded per stream, with the request headers as they
//! stood at the call; `clear_route_cache` answers `Ok` with no result, as Envoy does; any other
//! name is `NotFound`.

use wasmtime::Caller;

use crate::abi::Status;
use crate::hostcalls::imports::Imports;
use crate::memory::{self, status, HostResult};
use crate::outcome::ForeignCall;
use crate::state::HostState;

/// Foreign functions this host answers.
const KNOWN: &[&str] = &["clear_route_cache"];

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    imports.func(
        "env",
        "proxy_call_foreign_function",
        |mut caller: Caller<'_, HostState>,
         name_ptr: u32,
         name_len: u32,
         args_ptr: u32,
         args_len: u32,
         ptr_ptr: u32,
         size_ptr: u32| {
            status(call(
                &mut caller,
                name_ptr,
                name_len,
                args_ptr,
                args_len,
                ptr_ptr,
                size_ptr,
            ))
        },
    )?;
    Ok(())
}

fn call(
    caller: &mut Caller<'_, HostState>,
    name_ptr: u32,
    name_len: u32,
    args_ptr: u32,
    args_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let name = memory::read_string(caller, name_ptr, name_len)?;
    let args = memory::read(caller, args_ptr, args_len)?;
    let known = KNOWN.contains(&name.as_str());
    if let Some(stream) = caller.data_mut().current_stream() {
        let request_headers = stream.request.headers.clone().unwrap_or_default();
        stream.foreign_calls.push(ForeignCall {
            name,
            args,
            known,
            request_headers,
        });
    }
    if !known {
        return Err(Status::NotFound.into());
    }
    memory::return_bytes(caller, &[], ptr_ptr, size_ptr)
}
