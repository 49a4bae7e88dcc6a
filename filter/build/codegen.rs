//! The tables and the Rust registry of the vocabularies read from model files: one module per
//! vocabulary (its tables embedded with `include_bytes!`, its `Vocab`, its count loop and its
//! `Tokenizer`), and `EXTRA`, the list `Tokenizer::all` ends with. A vocabulary whose tokens and
//! pattern are a built-in encoding's gets no tables: it counts with the built-in's.

use std::fmt::Write as _;
use std::path::Path;

use super::files::{Engine, Split, Tokens, Vocabulary};
use super::layout::{O200K_RANK_BITS, O200K_RANK_SHIFT};
use super::tables::{inside, max_letter_run, pairs, solid_chars, span_filter, table, Field};
use super::write;

/// A vocabulary's tables, in `out/extra/<index>/`, and its module's source.
fn vocabulary_module(out: &Path, index: usize, v: &Vocabulary) -> String {
    match &v.engine {
        Engine::ByteLevel { tokens, split, nfc } => byte_level_module(out, index, v, tokens, *split, *nfc),
        Engine::SentencePiece(model) => {
            let dir = out.join("extra").join(index.to_string());
            let _ = std::fs::create_dir_all(&dir);
            let include = |file: &str| format!("&vocab::Aligned(*include_bytes!(concat!(env!(\"OUT_DIR\"), \"/extra/{index}/{file}\")))");
            format!(
                r#"
/// `{name}`: {format}, {tokens} token ids.
mod v{index} {{
    use super::*;
{items}
    pub(super) fn count(t: &[u8], limit: u64) -> Count {{
        MODEL.count(t, limit)
    }}

    pub static TOKENIZER: Tokenizer = Tokenizer {{ name: {name:?}, encoding: None, split: None, count, added: {added}, nfc_first: {nfc_first}, prefix_tokens: {prefix} }};
}}
"#,
                name = v.name,
                format = v.format,
                tokens = model.ids,
                items = super::spm::module(&dir, model, include),
                added = added_ref(out, index, v),
                nfc_first = nfc_first(v),
                prefix = v.prefix_tokens,
            )
        }
    }
}

/// A byte-level vocabulary's tables and module.
fn byte_level_module(out: &Path, index: usize, v: &Vocabulary, tokens: &Tokens, split: Split, nfc: bool) -> String {
    let dir = out.join("extra").join(index.to_string());
    let _ = std::fs::create_dir_all(&dir);
    let (table, front, tails, filter) = table(&[Field { tokens, shift: O200K_RANK_SHIFT, bits: O200K_RANK_BITS }]);
    let (solid, solid_pairs) = solid_chars(tokens);
    let files: [(&str, Vec<u8>); 9] = [
        ("table.bin", table),
        ("front.bin", front),
        ("filter.bin", filter),
        ("tails.bin", tails),
        ("span.bin", span_filter(&[(false, tokens)])),
        ("pairs.bin", pairs(tokens)),
        ("inside.bin", inside(tokens)),
        ("solid.bin", solid),
        ("solid_pairs.bin", solid_pairs),
    ];
    // The table's header word is log2 of its slot count.
    let bits = files[0].1.first().copied().unwrap_or(0);
    for (name, bytes) in &files {
        write(&dir.join(name), bytes);
    }
    let (split, next) = (split.name(), split.scanner());
    let count = if nfc {
        format!("normalize::nfc_then(t, |t| count_with(&VOCAB, t, limit, Split::{split}, pretokenize::{next}))")
    } else {
        format!("count_with(&VOCAB, t, limit, Split::{split}, pretokenize::{next})")
    };
    let bytes = |file: &str| format!("include_bytes!(concat!(env!(\"OUT_DIR\"), \"/extra/{index}/{file}\"))");
    let aligned = |file: &str| format!("&vocab::Aligned(*{})", bytes(file));
    format!(
        r#"
/// `{name}`: {format}, {tokens} tokens.
mod v{index} {{
    use super::*;
    use vocab::{{as_u32s, as_words, Aligned, Solid}};

    static TABLE: &Aligned<[u8]> = {table};
    static FRONT: &Aligned<[u8]> = {front};
    static FILTER: &Aligned<[u8]> = {filter};
    static TAILS: &[u8] = {tails};
    static SPAN: &Aligned<[u8]> = {span};
    static PAIRS: &Aligned<[u8]> = {pairs};
    static INSIDE: &Aligned<[u8]> = {inside};
    static SOLID: &Aligned<[u8]> = {solid};
    static SOLID_PAIRS: &[u8] = {solid_pairs};

    pub struct Files;

    impl vocab::Tables for Files {{
        const TABLE_BITS: u32 = {bits};
        #[inline(always)]
        fn table() -> &'static [u64] {{
            as_words(TABLE)
        }}
        #[inline(always)]
        fn front() -> &'static [u64] {{
            as_words(FRONT)
        }}
        #[inline(always)]
        fn filter() -> &'static [u64] {{
            as_words(FILTER)
        }}
        #[inline(always)]
        fn tails() -> &'static [u8] {{
            TAILS
        }}
        #[inline(always)]
        fn span() -> &'static [u64] {{
            as_words(SPAN)
        }}
    }}

    static VOCAB: Vocab<Files> = Vocab::new(
        {memo_id},
        false,
        layout::O200K_RANK_SHIFT,
        layout::O200K_RANK_BITS,
        as_u32s(PAIRS),
        as_words(INSIDE),
        Solid {{ chars: as_words(SOLID), pairs: SOLID_PAIRS }},
        {max_letter_run},
    );

    pub(super) fn count(t: &[u8], limit: u64) -> Count {{
        {count}
    }}

    pub static TOKENIZER: Tokenizer = Tokenizer {{ name: {name:?}, encoding: None, split: Some(Split::{split}), count, added: {added}, nfc_first: {nfc_first}, prefix_tokens: {prefix} }};
}}
"#,
        added = added_ref(out, index, v),
        nfc_first = nfc_first(v),
        prefix = v.prefix_tokens,
        name = v.name,
        format = v.format,
        tokens = tokens.iter().flatten().count(),
        table = aligned("table.bin"),
        front = aligned("front.bin"),
        filter = aligned("filter.bin"),
        tails = bytes("tails.bin"),
        span = aligned("span.bin"),
        pairs = aligned("pairs.bin"),
        inside = aligned("inside.bin"),
        solid = aligned("solid.bin"),
        solid_pairs = bytes("solid_pairs.bin"),
        memo_id = 2 + index,
        max_letter_run = max_letter_run(tokens),
    )
}

/// The `nfc_first` field of a vocabulary's `Tokenizer`.
fn nfc_first(v: &Vocabulary) -> &'static str {
    if v.nfc_first {
        "Some(normalize::nfc_text)"
    } else {
        "None"
    }
}

/// The `added` field of a vocabulary's `Tokenizer`: `None`, or a static `Added` with its trie (in
/// `out/extra/<index>/added_*.bin`).
fn added_ref(out: &Path, index: usize, v: &Vocabulary) -> String {
    if v.added.is_empty() {
        return "None".to_owned();
    }
    let trie = Trie::of(&v.added);
    let dir = out.join("extra").join(index.to_string());
    let _ = std::fs::create_dir_all(&dir);
    let words = |w: &[u32]| w.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    write(&dir.join("added_offsets.bin"), &words(&trie.offsets));
    write(&dir.join("added_bytes.bin"), &trie.bytes);
    write(&dir.join("added_next.bin"), &words(&trie.next));
    write(&dir.join("added_ends.bin"), &trie.ends.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>());
    let file = |f: &str| format!("concat!(env!(\"OUT_DIR\"), \"/extra/{index}/{f}\")");
    let aligned = |f: &str| format!("&vocab::Aligned(*include_bytes!({}))", file(f));
    format!(
        "Some({{ static O: &vocab::Aligned<[u8]> = {o}; static N: &vocab::Aligned<[u8]> = {n}; static E: &vocab::Aligned<[u8]> = {e}; \
         static A: added::Added = added::Added {{ first: {first:?}, starts: &{starts:?}, offsets: vocab::as_u32s(O), bytes: include_bytes!({b}), next: vocab::as_u32s(N), ends: vocab::as_words(E) }}; &A }})",
        first = trie.first,
        starts = trie.starts,
        o = aligned("added_offsets.bin"),
        b = file("added_bytes.bin"),
        n = aligned("added_next.bin"),
        e = aligned("added_ends.bin"),
    )
}

/// A byte trie of strings, flattened (see `src/tokenize/added.rs`).
struct Trie {
    first: [u64; 4],
    /// The distinct first bytes, when at most four of them (each costs the 8-byte skip of
    /// `src/tokenize/added.rs` a few instructions per word).
    starts: Vec<u8>,
    offsets: Vec<u32>,
    bytes: Vec<u8>,
    next: Vec<u32>,
    ends: Vec<u64>,
}

impl Trie {
    fn of(strings: &[Vec<u8>]) -> Trie {
        // Nodes as sorted edge maps, then numbered breadth-first.
        let mut children: Vec<std::collections::BTreeMap<u8, usize>> = vec![Default::default()];
        let mut end = vec![false];
        for s in strings {
            let mut node = 0;
            for &b in s {
                node = match children[node].get(&b) {
                    Some(&c) => c,
                    None => {
                        children.push(Default::default());
                        end.push(false);
                        let c = children.len() - 1;
                        children[node].insert(b, c);
                        c
                    }
                };
            }
            end[node] = true;
        }
        let mut first = [0u64; 4];
        for &b in children[0].keys() {
            first[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        let starts: Vec<u8> = if children[0].len() <= 4 { children[0].keys().copied().collect() } else { Vec::new() };
        let mut offsets = vec![0u32];
        let (mut bytes, mut next) = (Vec::new(), Vec::new());
        for edges in &children {
            for (&b, &c) in edges {
                bytes.push(b);
                next.push(c as u32);
            }
            offsets.push(bytes.len() as u32);
        }
        let mut ends = vec![0u64; children.len().div_ceil(64)];
        for (k, _) in end.iter().enumerate().filter(|(_, &e)| e) {
            ends[k / 64] |= 1 << (k % 64);
        }
        Trie { first, starts, offsets, bytes, next, ends }
    }
}

/// What a vocabulary counts as, if not as itself.
pub enum Same {
    /// A built-in encoding (its name): the same tokens and pattern.
    BuiltIn(&'static str),
    /// An earlier vocabulary of the list (its index): the same tokens and pattern.
    Earlier(usize),
}

/// Writes `out/extra_tokenizers.rs` (and the tables it embeds): the registry of `vocabs`, each
/// either counting as another (`Same`) or a vocabulary with tables of its own.
pub fn extra_tokenizers(out: &Path, vocabs: &[(Vocabulary, Option<Same>)]) {
    let mut code = String::from("// Generated by filter/build/codegen.rs from TOKENGATE_TOKENIZERS.\n");
    let mut list = Vec::new();
    for (index, (v, same_as)) in vocabs.iter().enumerate() {
        match same_as {
            Some(Same::Earlier(j)) => {
                let _ = write!(
                    code,
                    "\n/// `{name}`: {format}, the vocabulary and pattern of `{earlier}`.\nstatic V{index}: Tokenizer = Tokenizer {{ name: {name:?}, encoding: None, split: {split}, count: v{j}::count, added: {added}, nfc_first: {nfc_first}, prefix_tokens: {prefix} }};\n",
                    split = v.engine.split_field(),
                    name = v.name,
                    format = v.format,
                    earlier = vocabs.get(*j).map_or("", |(e, _)| e.name.as_str()),
                    added = added_ref(out, index, v),
                    nfc_first = nfc_first(v),
                    prefix = v.prefix_tokens,
                );
                list.push(format!("&V{index}"));
            }
            Some(Same::BuiltIn(encoding)) => {
                let (suffix, enc, split) = match *encoding {
                    "cl100k_base" => ("cl100k", "Cl100kBase", "Cl100k"),
                    _ => ("o200k", "O200kBase", "O200k"),
                };
                let _ = write!(
                    code,
                    "\n/// `{name}`: {format}, the vocabulary and pattern of {encoding}.\nstatic V{index}: Tokenizer = Tokenizer {{ name: {name:?}, encoding: Some(Encoding::{enc}), split: Some(Split::{split}), count: count_{suffix}, added: {added}, nfc_first: {nfc_first}, prefix_tokens: {prefix} }};\n",
                    name = v.name,
                    format = v.format,
                    added = added_ref(out, index, v),
                    nfc_first = nfc_first(v),
                    prefix = v.prefix_tokens,
                );
                list.push(format!("&V{index}"));
            }
            None => {
                code.push_str(&vocabulary_module(out, index, v));
                list.push(format!("&v{index}::TOKENIZER"));
            }
        }
    }
    let _ = write!(code, "\npub static EXTRA: [&Tokenizer; {}] = [{}];\n", list.len(), list.join(", "));
    write(&out.join("extra_tokenizers.rs"), code.as_bytes());
}
