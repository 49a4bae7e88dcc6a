//! Counting inside wasm (wasmtime, cranelift): the engine alone (benches/wasm-count) per input,
//! and the real tokengate.wasm per request (4 KB chat body) through the host-tests harness.
//! Build first: the two `cargo build` commands in benches/README.md.
//! `cargo bench -p tokengate-benches --bench wasm [-- FILTER]`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use host_tests::{Gateway, Plugin, Request, Response};

#[allow(dead_code)] // the early-exit and memory calls are for the table bench
#[path = "support/wasm_counter.rs"]
mod wasm_counter;

fn engine_in_wasm(c: &mut Criterion) {
    let mut w = wasm_counter::WasmCounter::load().unwrap_or_else(|e| panic!("{e:#}"));
    for (enc_id, enc) in [(0u32, "cl100k_base"), (1, "o200k_base")] {
        let mut g = c.benchmark_group(format!("wasm/{enc}"));
        g.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
        for (name, text) in tokengate_benches::inputs() {
            let at = w.put(&text).unwrap_or_else(|e| panic!("{e:#}"));
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_function(BenchmarkId::new("tokengate", &name), |b| b.iter(|| w.count(enc_id, at)));
        }
        g.finish();
    }
}

fn request_in_wasm(c: &mut Criterion) {
    let plugin = Plugin::tokengate().unwrap_or_else(|e| panic!("{e}"));
    let mut gw = Gateway::builder().plugin(plugin).config("{}").build().unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("wasm/request");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    for model in ["gpt-4", "gpt-4o"] {
        let body = tokengate_benches::chat_body(model, &tokengate_benches::prose(4000));
        let request = Request::post("/v1/chat/completions").header("authorization", "Bearer sk-bench").json(&body);
        let response = Response::ok().json(r#"{"usage":{"prompt_tokens":900}}"#);
        g.bench_function(BenchmarkId::new("4 KB chat exchange", model), |b| {
            b.iter_custom(|n| gw.run_requests(n as usize, &request, &response).unwrap_or_else(|e| panic!("{e}")))
        });
    }
    g.finish();
}

criterion_group!(benches, engine_in_wasm, request_in_wasm);
criterion_main!(benches);
