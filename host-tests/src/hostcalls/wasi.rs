//! The WASI preview1 calls a Rust `wasm32-wasip1` module imports, by hand: stdout/stderr captured,
//! no arguments or environment, clocks from the gateway clock, deterministic `random_get`,
//! `proc_exit` as a trap, no files.

use wasmtime::Caller;

use crate::error::GuestExit;
use crate::hostcalls::imports::Imports;
use crate::memory::{self, HostError, HostResult};
use crate::state::HostState;

const MODULE: &str = "wasi_snapshot_preview1";

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const INVAL: i32 = 28;
const NOSYS: i32 = 52;
const SPIPE: i32 = 70;

/// WASI's return value: memory faults become `EFAULT`, traps propagate.
fn errno(result: HostResult<i32>) -> wasmtime::Result<i32> {
    match result {
        Ok(code) => Ok(code),
        Err(HostError::Status(_)) => Ok(FAULT),
        Err(HostError::Trap(error)) => Err(error),
    }
}

pub(crate) fn add_to_linker(imports: &mut Imports<'_>) -> wasmtime::Result<()> {
    // No arguments and no environment: both lists are empty.
    for name in ["args_sizes_get", "environ_sizes_get"] {
        imports.func(
            MODULE,
            name,
            |mut caller: Caller<'_, HostState>, count_ptr: u32, size_ptr: u32| {
                errno((|| -> HostResult<i32> {
                    memory::write_u32(&mut caller, count_ptr, 0)?;
                    memory::write_u32(&mut caller, size_ptr, 0)?;
                    Ok(SUCCESS)
                })())
            },
        )?;
    }
    for name in ["args_get", "environ_get"] {
        imports.func(
            MODULE,
            name,
            |_: Caller<'_, HostState>, _list: u32, _buf: u32| SUCCESS,
        )?;
    }
    imports.func(
        MODULE,
        "clock_res_get",
        |mut caller: Caller<'_, HostState>, id: u32, res_ptr: u32| {
            errno(match id {
                0..=3 => memory::write_u64(&mut caller, res_ptr, 1).map(|()| SUCCESS),
                _ => Ok(INVAL),
            })
        },
    )?;
    imports.func(
        MODULE,
        "clock_time_get",
        |mut caller: Caller<'_, HostState>, id: u32, _precision: u64, time_ptr: u32| {
            let clock = &caller.data().shared.clock;
            let now = match id {
                0 => clock.now_nanos(),
                // Monotonic and CPU-time clocks: time since the clock was made.
                1..=3 => clock.monotonic_nanos(),
                _ => return Ok(INVAL),
            };
            errno(memory::write_u64(&mut caller, time_ptr, now).map(|()| SUCCESS))
        },
    )?;
    imports.func(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, HostState>, fd: u32, iovs: u32, iovs_len: u32, written_ptr: u32| {
            errno(fd_write(&mut caller, fd, iovs, iovs_len, written_ptr))
        },
    )?;
    imports.func(
        MODULE,
        "fd_read",
        |mut caller: Caller<'_, HostState>, fd: u32, _iovs: u32, _iovs_len: u32, read_ptr: u32| {
            // stdin is empty; nothing else is open.
            errno(match fd {
                0 => memory::write_u32(&mut caller, read_ptr, 0).map(|()| SUCCESS),
                _ => Ok(BADF),
            })
        },
    )?;
    imports.func(
        MODULE,
        "fd_close",
        |_: Caller<'_, HostState>, fd: u32| {
            if fd <= 2 {
                SUCCESS
            } else {
                BADF
            }
        },
    )?;
    imports.func(
        MODULE,
        "fd_seek",
        |_: Caller<'_, HostState>, fd: u32, _offset: i64, _whence: u32, _new_offset_ptr: u32| {
            if fd <= 2 {
                SPIPE
            } else {
                BADF
            }
        },
    )?;
    imports.func(
        MODULE,
        "fd_fdstat_get",
        |mut caller: Caller<'_, HostState>, fd: u32, stat_ptr: u32| {
            if fd > 2 {
                return Ok(BADF);
            }
            // filetype CHARACTER_DEVICE, no flags, every right.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            stat[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
            errno(memory::write(&mut caller, stat_ptr, &stat).map(|()| SUCCESS))
        },
    )?;
    imports.func(
        MODULE,
        "fd_fdstat_set_flags",
        |_: Caller<'_, HostState>, fd: u32, _flags: u32| {
            if fd <= 2 {
                SUCCESS
            } else {
                BADF
            }
        },
    )?;
    // No preopened directories: the scan for them stops at the first fd.
    imports.func(
        MODULE,
        "fd_prestat_get",
        |_: Caller<'_, HostState>, _fd: u32, _ptr: u32| BADF,
    )?;
    imports.func(
        MODULE,
        "fd_prestat_dir_name",
        |_: Caller<'_, HostState>, _fd: u32, _ptr: u32, _len: u32| BADF,
    )?;
    imports.func(
        MODULE,
        "random_get",
        |mut caller: Caller<'_, HostState>, buf: u32, len: u32| {
            let mut bytes = vec![0u8; len as usize];
            let state = caller.data_mut();
            for chunk in bytes.chunks_mut(8) {
                let word = splitmix64(&mut state.rng).to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            errno(memory::write(&mut caller, buf, &bytes).map(|()| SUCCESS))
        },
    )?;
    imports.func(MODULE, "sched_yield", |_: Caller<'_, HostState>| SUCCESS)?;
    imports.func(
        MODULE,
        "poll_oneoff",
        |_: Caller<'_, HostState>, _in: u32, _out: u32, _subscriptions: u32, _events_ptr: u32| {
            NOSYS
        },
    )?;
    imports.func(
        MODULE,
        "proc_exit",
        |mut caller: Caller<'_, HostState>, code: i32| -> wasmtime::Result<()> {
            caller.data_mut().exit_code = Some(code);
            Err(wasmtime::Error::new(GuestExit(code)))
        },
    )?;
    Ok(())
}

fn fd_write(
    caller: &mut Caller<'_, HostState>,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
    written_ptr: u32,
) -> HostResult<i32> {
    if !(1..=2).contains(&fd) {
        return Ok(BADF);
    }
    let iovs = memory::read(caller, iovs, iovs_len.saturating_mul(8))?;
    let mut data = Vec::new();
    for iov in iovs.chunks_exact(8) {
        let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        data.extend(memory::read(caller, ptr, len)?);
    }
    memory::write_u32(caller, written_ptr, data.len() as u32)?;
    let state = caller.data_mut();
    if fd == 1 {
        &mut state.stdout
    } else {
        &mut state.stderr
    }
    .extend_from_slice(&data);
    Ok(SUCCESS)
}

/// SplitMix64: small, deterministic, good enough for hash seeds.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
