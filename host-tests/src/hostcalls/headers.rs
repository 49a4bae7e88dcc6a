//! Header and trailer map hostcalls, with Envoy's semantics: names are lowercased, `get` returns the
//! first value, `replace` keeps one entry, `remove` drops every entry, `set_pairs` replaces the map.

use wasmtime::Caller;

use crate::abi::{self, map, Pairs, Status};
use crate::hostcalls::imports::Imports;
use crate::memory::{self, status, HostResult};
use crate::state::HostState;

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    imports.func(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, HostState>, map_type: u32, ptr_ptr: u32, size_ptr: u32| {
            status(get_pairs(&mut caller, map_type, ptr_ptr, size_ptr))
        },
    )?;
    imports.func(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: Caller<'_, HostState>, map_type: u32, ptr: u32, len: u32| {
            status(set_pairs(&mut caller, map_type, ptr, len))
        },
    )?;
    imports.func(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: u32,
         key_ptr: u32,
         key_len: u32,
         ptr_ptr: u32,
         size_ptr: u32| {
            status(get_value(
                &mut caller,
                map_type,
                key_ptr,
                key_len,
                ptr_ptr,
                size_ptr,
            ))
        },
    )?;
    imports.func(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: Caller<'_, HostState>, map_type: u32, key_ptr: u32, key_len: u32| {
            status(edit(
                &mut caller,
                map_type,
                key_ptr,
                key_len,
                None,
                |map, key, _| map.retain(|(k, _)| k != key),
            ))
        },
    )?;
    imports.func(
        "env",
        "proxy_replace_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: u32,
         key_ptr: u32,
         key_len: u32,
         value_ptr: u32,
         value_len: u32| {
            status(edit(
                &mut caller,
                map_type,
                key_ptr,
                key_len,
                Some((value_ptr, value_len)),
                replace,
            ))
        },
    )?;
    imports.func(
        "env",
        "proxy_add_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: u32,
         key_ptr: u32,
         key_len: u32,
         value_ptr: u32,
         value_len: u32| {
            status(edit(
                &mut caller,
                map_type,
                key_ptr,
                key_len,
                Some((value_ptr, value_len)),
                |map, key, value| map.push((key.to_string(), value.to_string())),
            ))
        },
    )?;
    Ok(())
}

/// The map `map_type` names in the current context, if it exists there.
fn map_of(state: &mut HostState, map_type: u32) -> Result<&mut Pairs, Status> {
    let missing = Status::BadArgument;
    match map_type {
        map::HTTP_REQUEST_HEADERS
        | map::HTTP_REQUEST_TRAILERS
        | map::HTTP_RESPONSE_HEADERS
        | map::HTTP_RESPONSE_TRAILERS => {
            let stream = state.current_stream().ok_or(missing)?;
            let map = match map_type {
                map::HTTP_REQUEST_HEADERS => &mut stream.request.headers,
                map::HTTP_REQUEST_TRAILERS => &mut stream.request.trailers,
                map::HTTP_RESPONSE_HEADERS => &mut stream.response.headers,
                _ => &mut stream.response.trailers,
            };
            map.as_mut().ok_or(missing)
        }
        map::HTTP_CALL_RESPONSE_HEADERS => state
            .call_response
            .as_mut()
            .map(|r| &mut r.headers)
            .ok_or(missing),
        map::HTTP_CALL_RESPONSE_TRAILERS => state
            .call_response
            .as_mut()
            .map(|r| &mut r.trailers)
            .ok_or(missing),
        map::GRPC_RECEIVE_INITIAL_METADATA | map::GRPC_RECEIVE_TRAILING_METADATA => Err(missing),
        _ => Err(Status::BadArgument),
    }
}

fn get_pairs(
    caller: &mut Caller<'_, HostState>,
    map_type: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let encoded = abi::encode_pairs(map_of(caller.data_mut(), map_type)?);
    memory::return_bytes(caller, &encoded, ptr_ptr, size_ptr)
}

fn set_pairs(caller: &mut Caller<'_, HostState>, map_type: u32, ptr: u32, len: u32) -> HostResult {
    let bytes = memory::read(caller, ptr, len)?;
    let pairs = abi::decode_pairs(&bytes).ok_or(Status::BadArgument)?;
    let map = map_of(caller.data_mut(), map_type)?;
    *map = pairs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    Ok(())
}

fn get_value(
    caller: &mut Caller<'_, HostState>,
    map_type: u32,
    key_ptr: u32,
    key_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let key = memory::read_string(caller, key_ptr, key_len)?.to_ascii_lowercase();
    let map = map_of(caller.data_mut(), map_type).map_err(|_| Status::NotFound)?;
    let value = map
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone())
        .ok_or(Status::NotFound)?;
    memory::return_bytes(caller, value.as_bytes(), ptr_ptr, size_ptr)
}

fn replace(map: &mut Pairs, key: &str, value: &str) {
    match map.iter().position(|(k, _)| k == key) {
        Some(first) => {
            map[first].1 = value.to_string();
            let mut index = 0;
            map.retain(|(k, _)| {
                index += 1;
                index - 1 == first || k != key
            });
        }
        None => map.push((key.to_string(), value.to_string())),
    }
}

/// Reads the key (and value) from the guest, then applies `op` to the map.
fn edit(
    caller: &mut Caller<'_, HostState>,
    map_type: u32,
    key_ptr: u32,
    key_len: u32,
    value: Option<(u32, u32)>,
    op: impl FnOnce(&mut Pairs, &str, &str),
) -> HostResult {
    let key = memory::read_string(caller, key_ptr, key_len)?.to_ascii_lowercase();
    let value = match value {
        Some((ptr, len)) => memory::read_string(caller, ptr, len)?,
        None => String::new(),
    };
    op(map_of(caller.data_mut(), map_type)?, &key, &value);
    Ok(())
}
