//! Hugging Face tokenizer.json files of a SentencePiece-style BPE (Gemma 3's): characters as the
//! initial symbols, byte fallback for characters outside the vocabulary, a merge list applied by
//! merge index, and no pre-tokenizer split. `read` accepts only what the runtime engine
//! (`src/tokenize/spm/`) reproduces exactly and says what else it found; `module` writes the
//! engine's tables to OUT_DIR and the Rust items that embed them.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::Value;

use super::write;

/// Bits of each field of a merge entry (right id, merge index, new id): ids and indexes below
/// 2^21.
const FIELD_BITS: u32 = 21;

/// A SentencePiece-style BPE as the engine needs it: no token strings, only ids.
#[derive(Debug, PartialEq, Eq)]
pub struct Model {
    /// The single-character tokens: (code point, token id), sorted by code point. A character's
    /// index here is its "char index".
    pub chars: Vec<(u32, u32)>,
    /// The one character the normalizer replaces and its replacement (the same when there is no
    /// normalizer).
    pub replace: (char, char),
    /// (left id, right id) -> (merge index, new id); a pair listed twice keeps its last index,
    /// as `tokenizers` builds its merge map.
    pub merges: HashMap<(u32, u32), (u32, u32)>,
    /// (left, right) char indexes that stand side by side inside some token a merge makes. A
    /// boundary between two characters that is not here is crossed by no symbol, ever.
    pub follows: BTreeSet<(u32, u32)>,
    /// The most characters a token a merge makes holds.
    pub max_chars: u32,
    /// One more than the largest token id.
    pub ids: u32,
}

/// Whether a Hugging Face file is a BPE with byte fallback and no byte-level mapping.
pub fn is_sentencepiece(json: &Value) -> bool {
    let model = &json["model"];
    let byte_level = |p: &Value| p["type"] == "ByteLevel";
    let pre = &json["pre_tokenizer"];
    let any_byte_level = byte_level(pre) || pre["pretokenizers"].as_array().is_some_and(|s| s.iter().any(byte_level));
    model["type"] == "BPE" && model["byte_fallback"] == true && !any_byte_level
}

/// The model of a file `is_sentencepiece` accepted, or what the engine cannot reproduce.
pub fn read(json: &Value) -> Result<Model, String> {
    let model = &json["model"];
    if !(model["dropout"].is_null() || model["dropout"].as_f64() == Some(0.0)) {
        return Err("BPE dropout: not supported (counts would be random)".to_owned());
    }
    for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if !model[field].is_null() {
            return Err(format!("a SentencePiece-style BPE with a {field}: not supported yet"));
        }
    }
    if model["ignore_merges"] == true {
        return Err("a SentencePiece-style BPE with ignore_merges: not supported yet".to_owned());
    }
    let replace = normalizer(&json["normalizer"])?;
    pre_tokenizer(&json["pre_tokenizer"], replace)?;

    let vocab = model["vocab"].as_object().ok_or("model.vocab is not an object")?;
    let mut id_of: HashMap<&str, u32> = HashMap::with_capacity(vocab.len());
    for (token, id) in vocab {
        let id = id.as_u64().filter(|&i| i < 1 << FIELD_BITS).ok_or_else(|| format!("the id of {token:?} is not a number below 2^{FIELD_BITS}"))?;
        id_of.insert(token.as_str(), id as u32);
    }
    let ids = id_of.values().max().map_or(0, |m| m + 1);
    // With every byte a token, no character is unknown: `unk_token` and `fuse_unk` never act.
    let bytes: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
    if let Some(b) = bytes.iter().find(|b| !id_of.contains_key(b.as_str())) {
        return Err(format!("byte fallback without the token {b}: not supported"));
    }
    let mut chars: Vec<(u32, u32)> = id_of.iter().filter_map(|(t, &id)| single_char(t).map(|c| (c as u32, id))).collect();
    chars.sort_unstable();
    let index_of: HashMap<char, u32> = chars.iter().enumerate().filter_map(|(k, &(c, _))| char::from_u32(c).map(|c| (c, k as u32))).collect();

    let list = model["merges"].as_array().ok_or("model.merges is not a list")?;
    if list.len() >= 1 << FIELD_BITS {
        return Err(format!("{} merges (the engine holds fewer than 2^{FIELD_BITS})", list.len()));
    }
    let mut merges = HashMap::with_capacity(list.len());
    let mut follows = BTreeSet::new();
    let mut max_chars = 1;
    for (i, m) in list.iter().enumerate() {
        let (a, b) = merge_parts(m)?;
        let part = |s: &str| -> Result<u32, String> {
            if bytes.iter().any(|b| b == s) {
                return Err(format!("merge {i} joins the byte-fallback token {s}: not supported (the engine never merges fallback bytes)"));
            }
            id_of.get(s).copied().ok_or_else(|| format!("merge {i} joins {s:?}, which is no token"))
        };
        let (ia, ib) = (part(a)?, part(b)?);
        let joined = format!("{a}{b}");
        let new = *id_of.get(joined.as_str()).ok_or_else(|| format!("merge {i} makes {joined:?}, which is no token"))?;
        merges.insert((ia, ib), (i as u32, new));
        // A token with a character that is no single-character token is never made: that
        // character enters the merge as fallback bytes, which no merge joins.
        let Some(indexes) = joined.chars().map(|c| index_of.get(&c).copied()).collect::<Option<Vec<u32>>>() else { continue };
        max_chars = max_chars.max(indexes.len() as u32);
        follows.extend(indexes.windows(2).map(|w| (w[0], w[1])));
    }
    Ok(Model { chars, replace, merges, follows, max_chars, ids })
}

/// `None`, or `Replace` of one character by one character (Gemma's `" "` -> `"▁"`).
fn normalizer(n: &Value) -> Result<(char, char), String> {
    if n.is_null() {
        return Ok(('\0', '\0'));
    }
    let one = |v: &Value| v.as_str().and_then(single_char);
    match (n["type"].as_str(), one(&n["pattern"]["String"]), one(&n["content"])) {
        (Some("Replace"), Some(from), Some(to)) => Ok((from, to)),
        _ => Err(format!("the normalizer {n} of a SentencePiece-style BPE: not supported yet (Replace of one character by one is)")),
    }
}

/// `None`, or a `Split` on a string holding the character the normalizer replaced: it never
/// matches the normalized text, so each stretch between added tokens is merged whole.
fn pre_tokenizer(p: &Value, (from, to): (char, char)) -> Result<(), String> {
    if p.is_null() {
        return Ok(());
    }
    let pattern = p["pattern"]["String"].as_str();
    match (p["type"].as_str(), pattern) {
        (Some("Split"), Some(s)) if p["invert"] != true && from != to && s.contains(from) => Ok(()),
        _ => Err(format!("the pre-tokenizer {p} of a SentencePiece-style BPE: not supported yet (only a Split that never matches the normalized text is)")),
    }
}

fn single_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// A merge of the list: `"a b"` or `["a", "b"]`.
fn merge_parts(m: &Value) -> Result<(&str, &str), String> {
    match m {
        Value::String(s) => s.split_once(' ').ok_or_else(|| format!("the merge {s:?} is not two parts")),
        Value::Array(pair) => match pair.as_slice() {
            [Value::String(a), Value::String(b)] => Ok((a.as_str(), b.as_str())),
            _ => Err(format!("the merge {m} is not two parts")),
        },
        _ => Err(format!("the merge {m} is not two parts")),
    }
}

/// The tables of `model` in `dir` and the Rust items of its vocabulary module: `static MODEL:
/// spm::Model`. `include` turns a file name into an expression of its aligned bytes.
pub fn module(dir: &Path, model: &Model, include: impl Fn(&str) -> String) -> String {
    let u32s = |w: &mut dyn Iterator<Item = u32>| w.flat_map(u32::to_le_bytes).collect::<Vec<u8>>();
    let n = model.chars.len() as u32;
    // Follows as CSR by left char index.
    let mut follow_offsets = vec![0u32; n as usize + 1];
    for &(a, _) in &model.follows {
        follow_offsets[a as usize + 1] += 1;
    }
    for k in 0..n as usize {
        follow_offsets[k + 1] += follow_offsets[k];
    }
    // Merges as CSR by left id, each entry `right << 42 | index << 21 | new`, sorted by right.
    let mut entries: Vec<(u32, u64)> =
        model.merges.iter().map(|(&(a, b), &(i, new))| (a, u64::from(b) << (2 * FIELD_BITS) | u64::from(i) << FIELD_BITS | u64::from(new))).collect();
    entries.sort_unstable();
    let mut merge_offsets = vec![0u32; model.ids as usize + 1];
    for &(a, _) in &entries {
        merge_offsets[a as usize + 1] += 1;
    }
    for k in 0..model.ids as usize {
        merge_offsets[k + 1] += merge_offsets[k];
    }
    let files: [(&str, Vec<u8>); 6] = [
        ("chars.bin", u32s(&mut model.chars.iter().map(|c| c.0))),
        ("char_ids.bin", u32s(&mut model.chars.iter().map(|c| c.1))),
        ("follow_offsets.bin", u32s(&mut follow_offsets.into_iter())),
        ("follow.bin", u32s(&mut model.follows.iter().map(|f| f.1))),
        ("merge_offsets.bin", u32s(&mut merge_offsets.into_iter())),
        ("merges.bin", entries.iter().flat_map(|e| e.1.to_le_bytes()).collect()),
    ];
    for (name, bytes) in &files {
        write(&dir.join(name), bytes);
    }
    let (from, to) = model.replace;
    let index = |c: char| model.chars.binary_search_by_key(&(c as u32), |e| e.0).map_or(u32::MAX, |k| k as u32);
    let ascii: Vec<String> = (0..128u8).map(|b| index(if char::from(b) == from { to } else { char::from(b) }).to_string()).collect();
    let sizes: Vec<String> = files.iter().map(|(name, bytes)| format!("{name} {} B", bytes.len())).collect();
    format!(
        r#"
    // Tables: {sizes}.
    static CHARS: &vocab::Aligned<[u8]> = {chars};
    static CHAR_IDS: &vocab::Aligned<[u8]> = {char_ids};
    static FOLLOW_OFFSETS: &vocab::Aligned<[u8]> = {follow_offsets};
    static FOLLOW: &vocab::Aligned<[u8]> = {follow};
    static MERGE_OFFSETS: &vocab::Aligned<[u8]> = {merge_offsets};
    static MERGES: &vocab::Aligned<[u8]> = {merges};
    static MODEL: spm::Model = spm::Model {{
        ascii: [{ascii}],
        replace: ({from}, {to}),
        chars: vocab::as_u32s(CHARS),
        char_ids: vocab::as_u32s(CHAR_IDS),
        follow_offsets: vocab::as_u32s(FOLLOW_OFFSETS),
        follow: vocab::as_u32s(FOLLOW),
        merge_offsets: vocab::as_u32s(MERGE_OFFSETS),
        merges: vocab::as_words(MERGES),
        max_chars: {max_chars},
    }};
"#,
        sizes = sizes.join(", "),
        ascii = ascii.join(", "),
        from = from as u32,
        to = to as u32,
        chars = include("chars.bin"),
        char_ids = include("char_ids.bin"),
        follow_offsets = include("follow_offsets.bin"),
        follow = include("follow.bin"),
        merge_offsets = include("merge_offsets.bin"),
        merges = include("merges.bin"),
        max_chars = model.max_chars,
    )
}
