//! tokengate: an edge token gate for LLM traffic, as a proxy-wasm HTTP filter.
//!
//! The core (config, request shapes, tokenizer, decisions) is plain Rust, tested natively; only
//! `proxy` touches the proxy-wasm ABI and it exists only on wasm32.

pub mod config;
pub mod gate;
pub mod key;
pub mod quota;
pub mod reject;
pub mod request;
pub mod response;
pub mod rls;
pub mod tokenize;

#[cfg(target_arch = "wasm32")]
mod proxy;
