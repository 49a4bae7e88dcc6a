//! Property hostcalls. Paths are NUL-separated segments. `set_property` stores filter state as Envoy
//! does, under `wasm.<path>`, and only in a stream (Envoy answers `NotFound` in the root context).
//! `get_property` answers request attributes, then the gateway's properties, then that filter state.

use wasmtime::Caller;

use crate::abi::Status;
use crate::hostcalls::imports::Imports;
use crate::memory::{self, status, HostResult};
use crate::state::{HostState, Stream};

/// Envoy's prefix for filter state written by wasm (`CelStateKeyPrefix`).
pub const FILTER_STATE_PREFIX: &str = "wasm.";

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    imports.func(
        "env",
        "proxy_get_property",
        |mut caller: Caller<'_, HostState>,
         path_ptr: u32,
         path_len: u32,
         ptr_ptr: u32,
         size_ptr: u32| { status(get(&mut caller, path_ptr, path_len, ptr_ptr, size_ptr)) },
    )?;
    imports.func(
        "env",
        "proxy_set_property",
        |mut caller: Caller<'_, HostState>,
         path_ptr: u32,
         path_len: u32,
         value_ptr: u32,
         value_len: u32| {
            status(set(&mut caller, path_ptr, path_len, value_ptr, value_len))
        },
    )?;
    Ok(())
}

fn get(
    caller: &mut Caller<'_, HostState>,
    path_ptr: u32,
    path_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let path = memory::read(caller, path_ptr, path_len)?;
    let value = lookup(caller.data(), &path).ok_or(Status::NotFound)?;
    memory::return_bytes(caller, &value, ptr_ptr, size_ptr)
}

fn lookup(state: &HostState, path: &[u8]) -> Option<Vec<u8>> {
    let stream = state.streams.get(&state.current_context);
    if let Some(value) = stream.and_then(|s| stream_attribute(s, path)) {
        return Some(value);
    }
    if let Some(value) = state.properties.get(path) {
        return Some(value.clone());
    }
    let key = format!("{FILTER_STATE_PREFIX}{}", String::from_utf8_lossy(path));
    stream.and_then(|s| s.filter_state.get(&key).cloned())
}

/// The request/response attributes Envoy derives from the stream.
fn stream_attribute(stream: &Stream, path: &[u8]) -> Option<Vec<u8>> {
    let segments: Vec<&[u8]> = path.split(|b| *b == 0).collect();
    let header = |headers: &Option<Vec<(String, String)>>, name: &str| -> Option<Vec<u8>> {
        let headers = headers.as_ref()?;
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_bytes().to_vec())
    };
    let request = &stream.request.headers;
    match segments.as_slice() {
        [b"request", b"path"] => header(request, ":path"),
        [b"request", b"url_path"] => {
            let path = header(request, ":path")?;
            Some(
                path.split(|b| *b == b'?')
                    .next()
                    .unwrap_or_default()
                    .to_vec(),
            )
        }
        [b"request", b"host"] => header(request, ":authority"),
        [b"request", b"method"] => header(request, ":method"),
        [b"request", b"scheme"] => header(request, ":scheme"),
        [b"request", b"headers", name] => {
            header(request, &String::from_utf8_lossy(name).to_ascii_lowercase())
        }
        [b"response", b"code"] => {
            let code: i64 = std::str::from_utf8(&header(&stream.response.headers, ":status")?)
                .ok()?
                .parse()
                .ok()?;
            Some(code.to_le_bytes().to_vec())
        }
        [b"response", b"headers", name] => header(
            &stream.response.headers,
            &String::from_utf8_lossy(name).to_ascii_lowercase(),
        ),
        _ => None,
    }
}

fn set(
    caller: &mut Caller<'_, HostState>,
    path_ptr: u32,
    path_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> HostResult {
    let path = memory::read_string(caller, path_ptr, path_len)?;
    let value = memory::read(caller, value_ptr, value_len)?;
    let stream = caller.data_mut().current_stream().ok_or(Status::NotFound)?;
    stream
        .filter_state
        .insert(format!("{FILTER_STATE_PREFIX}{path}"), value);
    Ok(())
}
