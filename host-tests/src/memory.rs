//! Guest memory for hostcalls: bounds-checked reads and writes, and host bytes handed to the guest
//! in memory it allocates. A wild pointer becomes `InvalidMemoryAccess`, never a host panic.

use wasmtime::{AsContextMut, Caller, Memory};

use crate::abi::Status;
use crate::state::HostState;

/// Why a hostcall stops early: a status for the guest, or a trap that ends the guest's call.
pub(crate) enum HostError {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for HostError {
    fn from(status: Status) -> Self {
        HostError::Status(status)
    }
}

impl From<wasmtime::Error> for HostError {
    fn from(error: wasmtime::Error) -> Self {
        HostError::Trap(error)
    }
}

pub(crate) type HostResult<T = ()> = Result<T, HostError>;

/// The i32 a hostcall returns: `Ok` or the status; traps propagate.
pub(crate) fn status(result: HostResult) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(Status::Ok as i32),
        Err(HostError::Status(status)) => Ok(status as i32),
        Err(HostError::Trap(error)) => Err(error),
    }
}

type Ctx<'a, 'b> = &'a mut Caller<'b, HostState>;

fn memory(caller: Ctx<'_, '_>) -> HostResult<Memory> {
    match &caller.data().guest {
        Some(guest) => Ok(guest.memory),
        None => Err(Status::InvalidMemoryAccess.into()),
    }
}

fn range(ptr: u32, len: u32) -> HostResult<std::ops::Range<usize>> {
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or(HostError::Status(Status::InvalidMemoryAccess))?;
    Ok(start..end)
}

/// Copies `len` bytes at `ptr` out of the guest.
pub(crate) fn read(caller: Ctx<'_, '_>, ptr: u32, len: u32) -> HostResult<Vec<u8>> {
    let memory = memory(caller)?;
    memory
        .data(&*caller)
        .get(range(ptr, len)?)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess.into())
}

/// Reads guest text; invalid UTF-8 is kept lossily (Envoy treats names and values as bytes).
pub(crate) fn read_string(caller: Ctx<'_, '_>, ptr: u32, len: u32) -> HostResult<String> {
    let bytes = read(caller, ptr, len)?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    })
}

/// Writes `bytes` at `ptr`.
pub(crate) fn write(caller: Ctx<'_, '_>, ptr: u32, bytes: &[u8]) -> HostResult {
    let memory = memory(caller)?;
    memory
        .data_mut(&mut *caller)
        .get_mut(range(ptr, bytes.len() as u32)?)
        .ok_or(HostError::Status(Status::InvalidMemoryAccess))?
        .copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(caller: Ctx<'_, '_>, ptr: u32, value: u32) -> HostResult {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: Ctx<'_, '_>, ptr: u32, value: u64) -> HostResult {
    write(caller, ptr, &value.to_le_bytes())
}

/// Fails with `InvalidMemoryAccess` unless `len` bytes at `ptr` are inside guest memory.
pub(crate) fn check(caller: Ctx<'_, '_>, ptr: u32, len: u32) -> HostResult {
    let memory = memory(caller)?;
    if memory.data(&*caller).get(range(ptr, len)?).is_some() {
        Ok(())
    } else {
        Err(Status::InvalidMemoryAccess.into())
    }
}

/// Allocates `size` bytes in the guest with its own allocator.
fn allocate(caller: Ctx<'_, '_>, size: u32) -> HostResult<u32> {
    let allocate = caller
        .data()
        .guest
        .as_ref()
        .and_then(|g| g.allocate.clone())
        .ok_or(HostError::Status(Status::InvalidMemoryAccess))?;
    let ptr = allocate.call(caller.as_context_mut(), size)?;
    if ptr == 0 {
        return Err(Status::InvalidMemoryAccess.into());
    }
    Ok(ptr)
}

/// Returns bytes the Envoy way: copied into guest-allocated memory, address and size written to
/// `ptr_ptr`/`size_ptr`; empty data writes a null address and size 0 without allocating.
pub(crate) fn return_bytes(
    caller: Ctx<'_, '_>,
    bytes: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    check(caller, ptr_ptr, 4)?;
    check(caller, size_ptr, 4)?;
    let ptr = if bytes.is_empty() {
        0
    } else {
        let ptr = allocate(caller, bytes.len() as u32)?;
        write(caller, ptr, bytes)?;
        ptr
    };
    write_u32(caller, ptr_ptr, ptr)?;
    write_u32(caller, size_ptr, bytes.len() as u32)
}
