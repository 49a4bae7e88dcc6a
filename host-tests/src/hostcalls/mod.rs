//! The host side of every proxy-wasm 0.2.1 import, one module per family, each with `add_to_linker`.

pub(crate) mod buffers;
pub(crate) mod callouts;
pub(crate) mod foreign;
pub(crate) mod headers;
pub(crate) mod imports;
pub(crate) mod logging;
pub(crate) mod metrics;
pub mod properties;
pub(crate) mod shared_data;
pub(crate) mod stream;
pub(crate) mod time;
pub(crate) mod wasi;

use wasmtime::Linker;

use crate::host_calls::ImportNames;
use crate::state::HostState;

use self::imports::Imports;

/// Registers every hostcall this harness implements, each wrapped to be counted (`imports`);
/// returns the counters' names.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<ImportNames> {
    let mut imports = Imports::new(linker);
    logging::add_to_linker(&mut imports)?;
    time::add_to_linker(&mut imports)?;
    headers::add_to_linker(&mut imports)?;
    buffers::add_to_linker(&mut imports)?;
    stream::add_to_linker(&mut imports)?;
    metrics::add_to_linker(&mut imports)?;
    shared_data::add_to_linker(&mut imports)?;
    properties::add_to_linker(&mut imports)?;
    callouts::add_to_linker(&mut imports)?;
    foreign::add_to_linker(&mut imports)?;
    wasi::add_to_linker(&mut imports)?;
    Ok(imports.names())
}
