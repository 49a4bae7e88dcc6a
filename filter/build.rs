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

    let (table, front, tails, filter) = table(&cl100k, &o200k);
    write(&out.join("vocab_table.bin"), &table);
    write(&out.join("vocab_filter.bin"), &filter);
    write(&out.join("vocab_front.bin"), &front);
    write(&out.join("vocab_tails.bin"), &tails);
    write(&out.join("unicode_classes.bin"), &unicode_classes());
    write(&out.join("cl100k_pairs.bin"), &pairs(&cl100k));
    write(&out.join("o200k_pairs.bin"), &pairs(&o200k));
    write(&out.join("cl100k_inside.bin"), &inside(&cl100k));
    write(&out.join("o200k_inside.bin"), &inside(&o200k));
    write(&out.join("span_filter.bin"), &span_filter(&cl100k, &o200k));
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

/// The shared hash table (a `u64` holding log2 of the slot count, a `u64` 0, then the slots),
/// its front table (the same header, then 2-way sets holding the two most frequent tokens of
/// each index) and the tail pool (bytes 8.. of every token longer than 8 bytes, each
/// distinct token once), and the miss filter (a bit per hash value: no token there).
fn table(cl100k: &[Option<Vec<u8>>], o200k: &[Option<Vec<u8>>]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let none_cl = (1u64 << CL100K_RANK_BITS) - 1;
    let none_o = (1u64 << O200K_RANK_BITS) - 1;
    // Distinct tokens with their rank in each encoding (in a fixed order: o200k's, then
    // cl100k's own), so the output is reproducible.
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut ranks: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
    for (rank, t) in o200k.iter().enumerate() {
        let Some(t) = t else { continue };
        order.push(t.clone());
        ranks.insert(t.clone(), (none_cl, rank as u64));
    }
    for (rank, t) in cl100k.iter().enumerate() {
        let Some(t) = t else { continue };
        let e = ranks.entry(t.clone()).or_insert_with(|| {
            order.push(t.clone());
            (none_cl, none_o)
        });
        e.0 = rank as u64;
    }
    assert!(cl100k.len() < none_cl as usize && o200k.len() < none_o as usize, "ranks out of layout");
    let mut tails: Vec<u8> = Vec::new();
    let bits = (order.len() as f64 / 0.85).log2().ceil() as u32;
    let size = 1usize << bits;
    let mask = size - 1;
    // Robin Hood insertion: (home, key, meta without distance) per occupied index.
    let mut entries: Vec<Option<(usize, u64, u64)>> = vec![None; size];
    // Front table: tokens by rank (in either encoding; a low rank is a frequent token), each
    // taking one of the two slots of its set if two more frequent tokens have not.
    let mut by_rank: Vec<&Vec<u8>> = order.iter().collect();
    by_rank.sort_by_key(|t| ranks[*t].0.min(ranks[*t].1));
    let mut front: Vec<(u64, u64)> = vec![(0, EMPTY_META); 1 << FRONT_BITS];
    let mut metas: HashMap<&Vec<u8>, (u64, u64)> = HashMap::new();
    for t in &order {
        let (cl, o) = ranks[t];
        let mut tail = 0u64;
        if t.len() > 8 {
            tail = tails.len() as u64;
            tails.extend_from_slice(&t[8..]);
        }
        assert!(tail < 1 << TAIL_BITS, "tail pool too large for the slot layout");
        let h = hash_bytes(t);
        let mut key = read_u64_le(t);
        let mut meta = (cl << CL100K_RANK_SHIFT)
            | (o << O200K_RANK_SHIFT)
            | (((t.len() - 1) as u64) << LEN_SHIFT)
            | (tail << TAIL_SHIFT);
        metas.insert(t, (key, meta));
        let mut home = (h >> (64 - bits)) as usize;
        let mut i = home;
        loop {
            match entries[i] {
                None => {
                    entries[i] = Some((home, key, meta));
                    break;
                }
                Some((other_home, other_key, other_meta)) => {
                    let mine = (i.wrapping_sub(home)) & mask;
                    let theirs = (i.wrapping_sub(other_home)) & mask;
                    if theirs < mine {
                        entries[i] = Some((home, key, meta));
                        (home, key, meta) = (other_home, other_key, other_meta);
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }
    let mut front_tokens = 0;
    for t in by_rank {
        // Two ways per set: slots 2k and 2k + 1.
        let set = (hash_bytes(t) >> (64 - FRONT_BITS + 1)) as usize * 2;
        if let Some(f) = front[set..set + 2].iter_mut().find(|f| f.1 == EMPTY_META) {
            *f = metas[t];
            front_tokens += 1;
        }
    }
    let mut front_out = Vec::with_capacity(front.len() * 16 + 16);
    front_out.extend_from_slice(&(FRONT_BITS as u64).to_le_bytes());
    front_out.extend_from_slice(&0u64.to_le_bytes());
    for (key, meta) in front {
        front_out.extend_from_slice(&key.to_le_bytes());
        front_out.extend_from_slice(&meta.to_le_bytes());
    }
    let mut out = Vec::with_capacity(size * 16 + 16);
    out.extend_from_slice(&(bits as u64).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let mut longest = 0;
    let mut sum = 0;
    for (i, e) in entries.iter().enumerate() {
        let (key, meta) = match e {
            Some((home, key, meta)) => {
                let dist = ((i.wrapping_sub(*home)) & mask) as u64;
                longest = longest.max(dist);
                sum += dist;
                (*key, meta | (dist.min(DIST_SATURATED) << DIST_SHIFT))
            }
            None => (0, EMPTY_META),
        };
        assert!(e.is_none() || meta != EMPTY_META);
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&meta.to_le_bytes());
    }
    // Probe lengths for the record (build.rs output in target/): mean 2.2, longest 23.
    println!(
        "vocab table: {} tokens, 2^{bits} slots, longest probe {longest}, mean {:.2}; front: {front_tokens} tokens",
        order.len(),
        sum as f64 / order.len() as f64
    );
    // The miss filter: one bit per top-FILTER_BITS hash value, set for every token.
    let mut filter = vec![0u64; (1 << FILTER_BITS) / 64];
    for t in &order {
        let b = (hash_bytes(t) >> (64 - FILTER_BITS)) as usize;
        filter[b / 64] |= 1 << (b % 64);
    }
    let filter: Vec<u8> = filter.iter().flat_map(|w| w.to_le_bytes()).collect();
    (out, front_out, tails, filter)
}

/// One bit per 2-byte string (index `b0 << 8 | b1`, LE u64 words): set when some token holds
/// the two bytes next to each other. Where it is clear, no token spans the two bytes, so the
/// byte-pair merge never joins them: a boundary every encoding of the text has.
fn inside(tokens: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut bits = vec![0u64; 1 << 10];
    for t in tokens.iter().flatten() {
        for w in t.windows(2) {
            let i = (w[0] as usize) << 8 | w[1] as usize;
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    bits.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The span filter (`layout::span_hash`): for every token of each encoding and every boundary
/// inside it, the window of up to 2 bytes on each side, with how many bytes the token has on
/// each side (1, or 2 for "2 or more"). A token spanning a boundary of a text puts exactly one of
/// these keys there; the 2-byte tokens (1 and 1) are left to the pair table, so where neither it
/// nor the filter holds one of the four, no token spans the boundary.
fn span_filter(cl100k: &[Option<Vec<u8>>], o200k: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut bits = vec![0u64; (1 << SPAN_BITS) / 64];
    let mut keys = std::collections::HashSet::new();
    for (o, tokens) in [(false, cl100k), (true, o200k)] {
        for t in tokens.iter().flatten() {
            for j in 1..t.len() {
                let (left, right) = (j.min(2), (t.len() - j).min(2));
                if left == 1 && right == 1 {
                    continue;
                }
                let window = t[j - left..j + right].iter().rev().fold(0u32, |w, &b| w << 8 | b as u32);
                keys.insert((o, window, left, right));
            }
        }
    }
    for &(o, window, left, right) in &keys {
        let (a, b) = span_hash(o, window, left, right);
        bits[a / 64] |= 1 << (a % 64);
        bits[b / 64] |= 1 << (b % 64);
    }
    let set: u32 = bits.iter().map(|w| w.count_ones()).sum();
    // For the record (build.rs output in target/).
    println!("span filter: {} keys, {:.1} % of bits set", keys.len(), 100.0 * set as f64 / (1u64 << SPAN_BITS) as f64);
    bits.iter().flat_map(|w| w.to_le_bytes()).collect()
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
