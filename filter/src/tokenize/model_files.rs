//! Every tokenizer the build read from a model file (`TOKENGATE_TOKENIZERS`) against that file's
//! own tokenizer: Hugging Face `tokenizers`, the library vLLM loads `tokenizer.json` with. In a
//! build without model files there is nothing to compare; the README's test command makes a
//! build with the test files of `tokenizers/manifest.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::tests::{random_text, CORPUS};
use super::Tokenizer;

/// A tokenizer of the build and its file's own.
struct Model {
    tokenizer: &'static Tokenizer,
    oracle: tokenizers::Tokenizer,
    /// The added tokens' texts, which Hugging Face matches anywhere in the input.
    added: Vec<String>,
}

impl Model {
    /// The file's count of `text`, as vLLM counts a prompt's text (no special tokens added).
    fn count(&self, text: &str) -> u64 {
        self.oracle.encode(text, false).unwrap().len() as u64
    }

    /// A generated text, now and then with added tokens (whole, cut short, or run together).
    fn text(&self, rng: &mut fastrand::Rng) -> String {
        let mut text = random_text(rng);
        if !self.added.is_empty() && rng.usize(..4) == 0 {
            for _ in 0..1 + rng.usize(..3) {
                let added = rng.choice(&self.added).unwrap();
                let cut = if rng.usize(..5) == 0 { rng.usize(1..added.len().max(2)) } else { added.len() };
                let at = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).nth(rng.usize(..=text.chars().count())).unwrap_or(0);
                text.insert_str(at, added.get(..cut).unwrap_or(added));
            }
        }
        text
    }

    /// An error naming the text when the two counts differ.
    fn check(&self, text: &str) -> Result<(), String> {
        let want = self.count(text);
        let got = self.tokenizer.count(text);
        if got == want {
            Ok(())
        } else {
            Err(format!("{}: {text:?}: counted {got}, the file's tokenizer {want}", self.tokenizer.name()))
        }
    }
}

/// The tokenizers of this build that came from Hugging Face files, with their oracles.
fn models() -> Vec<Model> {
    let files = env!("TOKENGATE_TOKENIZER_FILES");
    let mut out = Vec::new();
    for entry in files.split(',').filter(|e| !e.is_empty()) {
        let (name, path) = entry.split_once('=').unwrap();
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        if json.get("model").is_none() {
            continue;
        }
        let tokenizer = Tokenizer::by_name(name).unwrap_or_else(|| panic!("{name} is not in the build"));
        let oracle = tokenizers::Tokenizer::from_file(path).unwrap();
        let added = json["added_tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["content"].as_str().map(str::to_owned))
            .collect();
        out.push(Model { tokenizer, oracle, added });
    }
    out
}

fn differential(models: &[Model], seed: u64, cases: usize) -> (usize, Vec<String>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut mismatches = 0;
    let mut first = Vec::new();
    for _ in 0..cases {
        for m in models {
            let text = m.text(&mut rng);
            if let Err(e) = m.check(&text) {
                mismatches += 1;
                if first.len() < 5 {
                    first.push(e);
                }
            }
        }
    }
    (mismatches, first)
}

#[test]
fn model_files_count_as_their_own_tokenizer() {
    let models = models();
    for m in &models {
        for text in CORPUS {
            m.check(text).unwrap();
        }
        // Added tokens: alone, between text, run together, one inside another's text.
        for a in m.added.iter().take(40) {
            for text in [a.clone(), format!("x{a}y"), format!("{a}{a}"), format!(" {a} \n"), format!("<{a}>")] {
                m.check(&text).unwrap();
            }
        }
        // Long pieces: the windowed merge.
        for text in ["a".repeat(3000), "abcdefghij".repeat(300), "日本語".repeat(700), " ".repeat(2000), "1234567890".repeat(200)] {
            m.check(&text).unwrap();
        }
    }
    let (mismatches, first) = differential(&models, 3, 20_000);
    assert_eq!(mismatches, 0, "{}", first.join("\n"));
}

/// `cargo test -p tokengate --release --lib -- --ignored model_files_fuzz_1m --nocapture` in a
/// build with model files (FUZZ_CASES and FUZZ_SEED override the defaults).
#[test]
#[ignore]
fn model_files_fuzz_1m() {
    let cases: usize = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(43);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let per = cases.div_ceil(threads);
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| s.spawn(move || differential(&models(), seed.wrapping_add(k as u64 * 1_000_003), per)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mismatches: usize = results.iter().map(|r| r.0).sum();
    let first: Vec<String> = results.into_iter().flat_map(|r| r.1).take(5).collect();
    let names: Vec<&str> = models().iter().map(|m| m.tokenizer.name()).collect();
    println!("model files: {} inputs x {names:?}, {mismatches} mismatches", per * threads);
    assert_eq!(mismatches, 0, "{}", first.join("\n"));
}
