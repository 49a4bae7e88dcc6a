//! A wasmtime host of the proxy-wasm ABI 0.2.1 that runs the real `tokengate.wasm` off-proxy, the
//! way Envoy drives it, so its behaviour can be tested fast, in parallel, with a controlled clock.
//!
//! ```no_run
//! use host_tests::{Gateway, Request, Response};
//!
//! let mut gw = Gateway::new(r#"{"max_prompt_tokens": 100}"#)?;
//! let out = gw.request(
//!     Request::post("/v1/chat/completions")
//!         .header("authorization", "Bearer k")
//!         .json(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, world!"}]}"#),
//! )?;
//! assert_eq!(out.forwarded_header("x-tokengate-prompt-tokens"), Some("11"));
//! let done = gw.response(&out, Response::ok().json(r#"{"usage":{}}"#))?;
//! assert!(done.finished);
//! # Ok::<(), host_tests::Error>(())
//! ```
//!
//! Layout: `plugin` compiles the module (once per process), `vm` instantiates it
//! and calls its callbacks, `flow` moves streams through it like Envoy, `gateway` is the API tests
//! use. `hostcalls/` has one module per family of imports; `memory` is the only code that touches
//! guest memory. All host state lives in each `wasmtime::Store` (`state`), so tests run in parallel.
//! Each call of the guest into a host import is counted once (`hostcalls/imports` wraps every
//! import at registration) and given to the stream whose callback made it (`Outcome::host_calls`).
//! Imports go one way: `hostcalls/` use `state`, `memory`, `abi` and the plain data (`calls`,
//! `outcome`), none of which imports a hostcall module (`tests/layout.rs` checks it).
//!
//! What it assumes of Envoy: `allow_on_headers_stop_iteration: true` (a paused headers callback
//! still gets the body), StopIterationAndBuffer semantics (body callbacks see everything buffered
//! since the last `Continue`), the default 1 MiB `per_connection_buffer_limit_bytes`
//! (`GatewayBuilder::buffer_limit`), local replies run through the response callbacks, and
//! `on_done`, `on_log`, `on_delete` at the end of a stream. Not emulated: `on_queue_ready`
//! notifications (queues work, nobody is woken), replies on gRPC streams (calls are recorded).
//!
//! Benchmarks: build a `Gateway` once, then loop `Gateway::exchange` (or call
//! `Gateway::run_requests(n, &request, &response)`, which returns the wall time of `n` exchanges).

pub mod abi;
pub mod calls;
pub mod clock;
pub mod error;
mod flow;
pub mod gateway;
pub mod host_calls;
pub mod hostcalls;
mod memory;
pub mod outcome;
pub mod plugin;
mod state;
pub mod vm;

pub use abi::{Action, LogLevel, Status};
pub use calls::{CallResponse, GrpcCall, GrpcReply, HttpCall, HttpReply};
pub use clock::Clock;
pub use error::{Error, GuestExit, Result};
pub use gateway::{Gateway, GatewayBuilder, Request, Response};
pub use host_calls::{HostCalls, StreamHostCalls};
pub use hostcalls::properties::FILTER_STATE_PREFIX;
pub use outcome::{Decision, ForeignCall, LocalReply, LogLine, Message, Outcome, StreamId};
pub use plugin::{Plugin, BUILD_COMMAND};
pub use state::MetricValue;
pub use vm::Vm;
