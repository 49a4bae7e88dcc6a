//! The host side of every proxy-wasm 0.2.1 import, one module per family, each with `add_to_linker`.

pub(crate) mod buffers;
pub(crate) mod callouts;
pub(crate) mod foreign;
pub(crate) mod headers;
pub(crate) mod logging;
pub(crate) mod metrics;
pub mod properties;
pub(crate) mod shared_data;
pub(crate) mod stream;
pub(crate) mod time;
pub(crate) mod wasi;

use wasmtime::Linker;

use crate::state::HostState;

/// Registers every hostcall this harness implements.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    logging::add_to_linker(linker)?;
    time::add_to_linker(linker)?;
    headers::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    stream::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    shared_data::add_to_linker(linker)?;
    properties::add_to_linker(linker)?;
    callouts::add_to_linker(linker)?;
    foreign::add_to_linker(linker)?;
    wasi::add_to_linker(linker)?;
    Ok(())
}
