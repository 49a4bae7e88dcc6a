//! The high-level harness: a gateway of one or more VMs of the plugin, driven request by request
//! like Envoy drives a filter, with the clock, stats, shared data and logs in reach of the test.
//!
//! One concern per file: `message` (what tests send), `builder` (making a gateway),
//! `exchange` (the gateway and streams through it), `time` (clock, ticks, due callouts),
//! `callouts` (scripted answers, calls made), `readers` (logs, stats, shared data, VMs).

mod builder;
mod callouts;
mod exchange;
mod message;
mod readers;
mod time;

pub use builder::{GatewayBuilder, ENVOY_BUFFER_LIMIT};
pub use exchange::Gateway;
pub use message::{Request, Response, DEFAULT_AUTHORITY};
