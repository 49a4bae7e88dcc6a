//! Turns the tiktoken vocabularies (from tiktoken-rs, a build dependency only) and the Unicode
//! classes the split patterns use (from regex-syntax, the tables tiktoken-rs's regex engine uses)
//! into compact binary tables in OUT_DIR. The runtime embeds them with `include_bytes!`: nothing
//! is parsed or allocated per token when a VM starts. Layout: `src/tokenize/layout.rs`.

#[path = "src/tokenize/layout.rs"]
#[allow(dead_code)]
mod layout;

use std::collections::HashMap;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use layout::*;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/tokenize/layout.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());

    // Ordinary tokens only: special tokens (<|endoftext|> ...) are counted as text.
    let cl100k = ordinary_tokens(&tiktoken_rs::cl100k_base().unwrap_or_else(|e| fail(e)), 100_256);
    let o200k = ordinary_tokens(&tiktoken_rs::o200k_base().unwrap_or_else(|e| fail(e)), 199_998);

    // One pool for both encodings: a token they share is stored once.
    let mut pool: Vec<u8> = Vec::new();
    let mut at: HashMap<Vec<u8>, u32> = HashMap::new();
    for tokens in [&o200k, &cl100k] {
        for t in tokens.iter().flatten() {
            at.entry(t.clone()).or_insert_with(|| {
                let off = pool.len() as u32;
                pool.extend_from_slice(t);
                off
            });
        }
    }
    assert!(pool.len() < 1 << OFFSET_BITS, "pool too large for the slot layout");
    write(&out.join("vocab_pool.bin"), &pool);
    write(&out.join("cl100k_table.bin"), &table(&cl100k, &at));
    write(&out.join("o200k_table.bin"), &table(&o200k, &at));
    write(&out.join("unicode_classes.bin"), &unicode_classes());
    write(&out.join("cl100k_pairs.bin"), &pairs(&cl100k));
    write(&out.join("o200k_pairs.bin"), &pairs(&o200k));
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("build.rs: {e}");
    std::process::exit(1)
}

fn write(path: &Path, bytes: &[u8]) {
    if fs::read(path).ok().as_deref() != Some(bytes) {
        fs::write(path, bytes).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
    }
}

/// Token bytes by rank for ranks `0..n` (a missing rank is `None`).
fn ordinary_tokens(bpe: &tiktoken_rs::CoreBPE, n: u32) -> Vec<Option<Vec<u8>>> {
    let tokens: Vec<Option<Vec<u8>>> = (0..n).map(|r| bpe.decode_bytes(&[r]).ok()).collect();
    for t in tokens.iter().flatten() {
        assert!(!t.is_empty() && t.len() <= MAX_TOKEN_LEN, "token length {} out of layout", t.len());
    }
    for b in 0..=255u8 {
        assert!(tokens.iter().flatten().any(|t| t.as_slice() == [b]), "byte {b} is not a token");
    }
    tokens
}

/// The hash table of one encoding: little-endian u64 slots, a power of two of them.
fn table(tokens: &[Option<Vec<u8>>], at: &HashMap<Vec<u8>, u32>) -> Vec<u8> {
    let count = tokens.iter().flatten().count();
    let bits = (count as f64 / 0.8).log2().ceil() as u32;
    let size = 1usize << bits;
    let mask = size - 1;
    // Robin Hood insertion: (home, slot without distance) per occupied index.
    let mut entries: Vec<Option<(usize, u64)>> = vec![None; size];
    for (rank, t) in tokens.iter().enumerate() {
        let Some(t) = t else { continue };
        let h = hash_bytes(t);
        let mut slot = (at[t] as u64)
            | (((t.len() - 1) as u64) << LEN_SHIFT)
            | ((rank as u64) << RANK_SHIFT)
            | (tag_of(h) << TAG_SHIFT);
        let mut home = (h >> (64 - bits)) as usize;
        let mut i = home;
        loop {
            match entries[i] {
                None => {
                    entries[i] = Some((home, slot));
                    break;
                }
                Some((other_home, other_slot)) => {
                    let mine = (i.wrapping_sub(home)) & mask;
                    let theirs = (i.wrapping_sub(other_home)) & mask;
                    if theirs < mine {
                        entries[i] = Some((home, slot));
                        home = other_home;
                        slot = other_slot;
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }
    let mut slots = vec![EMPTY_SLOT; size];
    for (i, e) in entries.iter().enumerate() {
        if let Some((home, slot)) = e {
            let dist = ((i.wrapping_sub(*home)) & mask) as u64;
            slots[i] = slot | (dist.min(DIST_SATURATED) << DIST_SHIFT);
            assert!(slots[i] != EMPTY_SLOT);
        }
    }
    let mut out = Vec::with_capacity(size * 8 + 8);
    out.extend_from_slice(&(bits as u64).to_le_bytes());
    for s in slots {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Rank of every 2-byte string (u32 LE, index `b0 << 8 | b1`, u32::MAX when not a token): the
/// first lookups of every merge, without hashing.
fn pairs(tokens: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut ranks = vec![u32::MAX; 1 << 16];
    for (rank, t) in tokens.iter().enumerate() {
        if let Some(t) = t {
            if t.len() == 2 {
                ranks[(t[0] as usize) << 8 | t[1] as usize] = rank as u32;
            }
        }
    }
    ranks.iter().flat_map(|r| r.to_le_bytes()).collect()
}

/// Class of every code point, from regex-syntax's Unicode tables: level 1 is one u16 block
/// number per 128 code points, level 2 the distinct blocks of 128 class bytes.
fn unicode_classes() -> Vec<u8> {
    let mut class = vec![C_OTHER; 0x11_0000];
    // Later sets win; the sets are disjoint anyway except \r\n inside \s.
    let sets: [(&str, u8); 7] = [
        (r"\p{N}", C_NUMBER),
        (r"[\p{Lu}\p{Lt}]", C_UPPER),
        (r"\p{Ll}", C_LOWER),
        (r"[\p{Lm}\p{Lo}]", C_LETTER),
        (r"\p{M}", C_MARK),
        (r"\s", C_SPACE),
        (r"[\r\n]", C_CRLF),
    ];
    for (pattern, c) in sets {
        let hir = regex_syntax::Parser::new().parse(pattern).unwrap_or_else(|e| fail(e));
        let regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(cls)) = hir.kind() else {
            fail(format!("{pattern} is not a Unicode class"))
        };
        for r in cls.ranges() {
            for cp in r.start() as u32..=r.end() as u32 {
                if c != C_OTHER && class[cp as usize] != C_OTHER && !(c == C_CRLF && class[cp as usize] == C_SPACE) {
                    fail(format!("U+{cp:04X} is in two classes"));
                }
                class[cp as usize] = c;
            }
        }
    }
    let block = 1usize << UNICODE_BLOCK_BITS;
    let mut blocks: Vec<&[u8]> = Vec::new();
    let mut index: Vec<u16> = Vec::new();
    for chunk in class.chunks(block) {
        let id = match blocks.iter().position(|b| *b == chunk) {
            Some(i) => i,
            None => {
                blocks.push(chunk);
                blocks.len() - 1
            }
        };
        index.push(id as u16);
    }
    let mut out = Vec::new();
    for i in &index {
        out.extend_from_slice(&i.to_le_bytes());
    }
    for b in blocks {
        out.extend_from_slice(b);
    }
    out
}
