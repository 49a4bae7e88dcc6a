//! Logging hostcalls: `proxy_log` into the gateway's log, `proxy_get_log_level`.

use wasmtime::Caller;

use crate::abi::{LogLevel, Status};
use crate::hostcalls::imports::Imports;
use crate::memory::{self, status, HostResult};
use crate::state::HostState;

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    imports.func(
        "env",
        "proxy_log",
        |mut caller: Caller<'_, HostState>, level: u32, ptr: u32, len: u32| {
            status(log(&mut caller, level, ptr, len))
        },
    )?;
    imports.func(
        "env",
        "proxy_get_log_level",
        |mut caller: Caller<'_, HostState>, level_ptr: u32| {
            let level = caller.data().log_level as u32;
            status(memory::write_u32(&mut caller, level_ptr, level))
        },
    )?;
    Ok(())
}

fn log(caller: &mut Caller<'_, HostState>, level: u32, ptr: u32, len: u32) -> HostResult {
    let level = LogLevel::from_code(level).ok_or(Status::BadArgument)?;
    let message = memory::read_string(caller, ptr, len)?;
    caller.data().log(level, message);
    Ok(())
}
