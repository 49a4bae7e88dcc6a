//! Measures the harness: compiling tokengate.wasm with cranelift, starting a gateway, and the
//! time per exchange through one VM for the `Hello, world!` chat body.
//!
//! `cargo run --release -p host-tests --example measure [requests]`

use std::time::{Duration, Instant};

use host_tests::{Gateway, Plugin, Request, Response};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let path = Plugin::tokengate_path();
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "{}: {e}; build it: {}",
            path.display(),
            host_tests::BUILD_COMMAND
        )
    })?;
    println!(
        "module: {} ({:.1} MB)",
        path.display(),
        bytes.len() as f64 / 1e6
    );

    let plugin = Plugin::from_bytes("tokengate.wasm", &bytes)?;
    println!("cranelift compile: {:.2?}", plugin.compile_time());

    let started = Instant::now();
    let mut gw = Gateway::builder().plugin(plugin).config("{}").build()?;
    println!(
        "gateway start (instantiate, _initialize, on_vm_start, on_configure): {:.2?}",
        started.elapsed()
    );

    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, world!"}]}"#;
    let request = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer sk-test")
        .json(body);
    let response = Response::ok().json(r#"{"usage":{"prompt_tokens":11}}"#);
    gw.run_requests(100, &request, &response)?;
    let elapsed: Duration = gw.run_requests(requests, &request, &response)?;
    println!(
        "{requests} exchanges (request + response): {:.2?} total, {:.1} µs per exchange",
        elapsed,
        elapsed.as_secs_f64() * 1e6 / requests as f64
    );
    let out = gw.request(request)?;
    println!(
        "check: x-tokengate-prompt-tokens = {:?}",
        out.forwarded_header("x-tokengate-prompt-tokens")
    );
    Ok(())
}
