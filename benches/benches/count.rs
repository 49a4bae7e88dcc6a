//! Native counting speed: tokengate's engine vs tiktoken-rs vs bpe-openai, same inputs, bytes/s.
//! `cargo bench -p tokengate-benches --bench count [-- FILTER]`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokengate::tokenize::{Encoding, Tokenizer};

fn count(c: &mut Criterion) {
    let inputs = tokengate_benches::inputs();
    for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
        let ours = Tokenizer::of(enc);
        let (tk, bpe) = match enc {
            Encoding::O200kBase => (tiktoken_rs::o200k_base(), bpe_openai::o200k_base()),
            _ => (tiktoken_rs::cl100k_base(), bpe_openai::cl100k_base()),
        };
        let tk = tk.unwrap_or_else(|e| panic!("{e}"));
        let mut g = c.benchmark_group(format!("count/{enc}"));
        g.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
        for (name, text) in &inputs {
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_with_input(BenchmarkId::new("tokengate", name), text, |b, t| b.iter(|| ours.count(t)));
            g.bench_with_input(BenchmarkId::new("tiktoken-rs", name), text, |b, t| b.iter(|| tk.count_ordinary(t)));
            g.bench_with_input(BenchmarkId::new("bpe-openai", name), text, |b, t| b.iter(|| bpe.count(t)));
        }
        g.finish();
    }
}

criterion_group!(benches, count);
criterion_main!(benches);
