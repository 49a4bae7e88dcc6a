//! Time hostcalls: the controllable clock and the tick period.

use std::time::Duration;

use wasmtime::Caller;

use crate::hostcalls::imports::Imports;
use crate::memory::{self, status};
use crate::state::HostState;

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    imports.func(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, HostState>, time_ptr: u32| {
            let now = caller.data().shared.clock.now_nanos();
            status(memory::write_u64(&mut caller, time_ptr, now))
        },
    )?;
    imports.func(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: Caller<'_, HostState>, period: u32| {
            // Envoy keeps one period per root context; 0 turns ticks off.
            caller.data_mut().tick_period =
                (period > 0).then(|| Duration::from_millis(period.into()));
            status(Ok(()))
        },
    )?;
    Ok(())
}
