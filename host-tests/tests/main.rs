//! Integration tests, one binary: the harness against WAT guests, then the real tokengate.wasm
//! feature by feature (build it first: `cargo build --release --target wasm32-wasip1 -p tokengate`).

mod support;

mod harness;
mod layout;

mod chunked;
mod config;
mod headers;
mod host_calls;
mod limits;
mod metering;
mod quota;
mod rls;
mod routing;
mod shapes;
mod stats;
mod vms;
