//! The vocabulary tables (layout: `src/tokenize/layout.rs`): the hash table with its front
//! table, tail pool and miss filter, the pair and inside tables, the span filter and the
//! solid-character tables, from the tokens of one or more vocabularies by rank.

use std::collections::HashMap;

use super::fail;
use super::layout::*;

/// The longest run of ASCII letters inside any token (cl100k_base: 41, o200k_base: 26).
pub fn max_letter_run(tokens: &[Option<Vec<u8>>]) -> usize {
    tokens.iter().flatten().flat_map(|t| t.split(|b| !b.is_ascii_alphabetic()).map(<[u8]>::len)).max().unwrap_or(0)
}

/// A vocabulary's tokens by rank, and the field of the slots' meta word its ranks go in.
pub struct Field<'a> {
    pub tokens: &'a [Option<Vec<u8>>],
    pub shift: u32,
    pub bits: u32,
}

/// The tail pool: the bytes past the first 8 of every token, each distinct string stored once,
/// and one that starts another (`"ization"`, `"izations"`) stored inside it; with the offset of
/// each string.
fn tail_pool(tokens: &[Vec<u8>]) -> (Vec<u8>, HashMap<&[u8], u64>) {
    let mut rests: Vec<&[u8]> = tokens.iter().filter_map(|t| t.get(8..)).filter(|r| !r.is_empty()).collect();
    rests.sort_unstable();
    rests.dedup();
    // In sorted order, a string that starts another starts the one right after it.
    let mut pool = Vec::new();
    let mut at = HashMap::with_capacity(rests.len());
    let mut next: Option<(&[u8], u64)> = None;
    for &r in rests.iter().rev() {
        let offset = match next {
            Some((n, o)) if n.starts_with(r) => o,
            _ => {
                pool.extend_from_slice(r);
                (pool.len() - r.len()) as u64
            }
        };
        at.insert(r, offset);
        next = Some((r, offset));
    }
    (pool, at)
}

/// The hash table of one or more vocabularies (a `u64` holding log2 of the slot count, a `u64`
/// 0, then the slots), its front table (the same header, then 2-way sets holding the two most
/// frequent tokens of each index), the tail pool (bytes 8.. of every token longer than 8
/// bytes, each distinct token once) and the miss filter (a bit per hash value: no token there).
/// Tokens are inserted in a fixed order (the first vocabulary's, then each next one's own), so
/// the output is reproducible.
pub fn table(fields: &[Field<'_>]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let none = |f: &Field<'_>| (1u64 << f.bits) - 1;
    // A token's meta word starts with "no rank" in every field of the layout.
    let no_ranks = (((1u64 << CL100K_RANK_BITS) - 1) << CL100K_RANK_SHIFT) | (((1u64 << O200K_RANK_BITS) - 1) << O200K_RANK_SHIFT);
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut ranks: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
    for (i, f) in fields.iter().enumerate() {
        assert!(f.tokens.len() < none(f) as usize, "ranks out of layout");
        for (rank, t) in f.tokens.iter().enumerate() {
            let Some(t) = t else { continue };
            let e = ranks.entry(t.clone()).or_insert_with(|| {
                order.push(t.clone());
                fields.iter().map(none).collect()
            });
            e[i] = rank as u64;
        }
    }
    let ranks_of = |t: &Vec<u8>| -> &Vec<u64> { &ranks[t] };
    let (tails, tail_at) = tail_pool(&order);
    let bits = (order.len() as f64 / 0.85).log2().ceil() as u32;
    let size = 1usize << bits;
    let mask = size - 1;
    // Robin Hood insertion: (home, key, meta without distance) per occupied index.
    let mut entries: Vec<Option<(usize, u64, u64)>> = vec![None; size];
    // Front table: tokens by rank (in either encoding; a low rank is a frequent token), each
    // taking one of the two slots of its set if two more frequent tokens have not.
    let mut by_rank: Vec<&Vec<u8>> = order.iter().collect();
    by_rank.sort_by_key(|t| ranks_of(t).iter().copied().min().unwrap_or(u64::MAX));
    let mut front: Vec<(u64, u64)> = vec![(0, EMPTY_META); 1 << FRONT_BITS];
    let mut metas: HashMap<&Vec<u8>, (u64, u64)> = HashMap::new();
    for t in &order {
        let tail = t.get(8..).filter(|r| !r.is_empty()).map_or(0, |r| tail_at[r]);
        assert!(tail < 1 << TAIL_BITS, "tail pool too large for the slot layout");
        let h = hash_bytes(t);
        let mut key = read_u64_le(t);
        let mut meta = no_ranks | (((t.len() - 1) as u64) << LEN_SHIFT) | (tail << TAIL_SHIFT);
        for (f, &r) in fields.iter().zip(ranks_of(t)) {
            meta = meta & !(none(f) << f.shift) | r << f.shift;
        }
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
pub fn inside(tokens: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut bits = vec![0u64; 1 << 10];
    for t in tokens.iter().flatten() {
        for w in t.windows(2) {
            let i = (w[0] as usize) << 8 | w[1] as usize;
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    bits.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The span filter (`layout::span_hash`): for every token of each vocabulary (each keyed by its
/// flag) and every boundary
/// inside it, the window of up to 2 bytes on each side, with how many bytes the token has on
/// each side (1, or 2 for "2 or more"). A token spanning a boundary of a text puts exactly one of
/// these keys there; the 2-byte tokens (1 and 1) are left to the pair table, so where neither it
/// nor the filter holds one of the four, no token spans the boundary.
pub fn span_filter(vocabs: &[(bool, &[Option<Vec<u8>>])]) -> Vec<u8> {
    let mut bits = vec![0u64; (1 << SPAN_BITS) / 64];
    let mut keys = std::collections::HashSet::new();
    for &(o, tokens) in vocabs {
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

/// The solid-character tables of an encoding (`bpe::seed_solid`): four bits per code point below
/// U+10000 (LE u64 words, bits `4 cp ..`), and 4,096 bytes, one per (continuation byte, lead
/// byte) pair, index `(x & 0x3f) << 6 | (y & 0x3f)`.
///
/// A 2- or 3-byte character is solid when the byte-pair merge of it alone ends in one token and
/// every token that could join part of it to a neighbouring character ranks after every merge
/// inside it. The tokens that could: those that end with a prefix of its bytes after a
/// continuation byte (the previous character's last one), and those that start with a suffix
/// of its bytes followed by the next character's lead byte. Bits 0 and 1 hold the first
/// condition and the second for suffixes of 2 or 3 bytes, before a lead byte of a 2-byte /
/// 3-byte character; bits 2-3 the character's level (`SOLID_LEVELS`: the highest rank
/// its own merges reach is below `SOLID_LEVELS[level]`). The 1-byte suffix (its last byte, a
/// continuation byte) depends on the exact next lead byte: the pair table holds, for each
/// (continuation byte, lead byte), how many levels every token starting with the two bytes
/// reaches, and the character is solid there if that is more than its level.
pub fn solid_chars(tokens: &[Option<Vec<u8>>]) -> (Vec<u8>, Vec<u8>) {
    let rank: HashMap<&[u8], u32> =
        tokens.iter().enumerate().filter_map(|(r, t)| t.as_deref().map(|t| (t, r as u32))).collect();
    // The lowest rank of a token starting with these 2-3 bytes then a lead byte of a 2-byte
    // (`starts[0]`) or 3-byte (`starts[1]`) character; of a token ending with 1-3 bytes after a
    // continuation byte; of a token starting with a continuation byte then a lead byte.
    let mut starts: [HashMap<&[u8], u32>; 2] = [HashMap::new(), HashMap::new()];
    let mut ends: HashMap<&[u8], u32> = HashMap::new();
    let mut pair_start = vec![u32::MAX; 1 << 12];
    fn lower<'a>(map: &mut HashMap<&'a [u8], u32>, key: &'a [u8], r: u32) {
        let e = map.entry(key).or_insert(u32::MAX);
        *e = (*e).min(r);
    }
    for (r, t) in tokens.iter().enumerate() {
        let Some(t) = t.as_deref() else { continue };
        let r = r as u32;
        if t.len() >= 2 && (0x80..0xc0).contains(&t[0]) && t[1] >= 0xc0 {
            let i = usize::from(t[0] & 0x3f) << 6 | usize::from(t[1] & 0x3f);
            pair_start[i] = pair_start[i].min(r);
        }
        for k in 1..t.len().min(4) {
            match t[k] {
                0xc0..=0xdf if k >= 2 => lower(&mut starts[0], &t[..k], r),
                0xe0..=0xef if k >= 2 => lower(&mut starts[1], &t[..k], r),
                _ => {}
            }
            if (0x80..0xc0).contains(&t[t.len() - k - 1]) {
                lower(&mut ends, &t[t.len() - k..], r);
            }
        }
    }
    let level = |r: u32| SOLID_LEVELS.iter().position(|&l| r < l).unwrap_or_else(|| fail(format!("rank {r} past the levels")));
    let mut bits = vec![0u64; (1 << 18) / 64];
    let mut count = [0; 2];
    for cp in 0x80..0x1_0000u32 {
        let Some(c) = char::from_u32(cp) else { continue };
        let mut buf = [0u8; 4];
        let b = c.encode_utf8(&mut buf).as_bytes();
        let Some(highest) = merge_alone(&rank, b) else { continue };
        let ending = (1..=b.len()).filter_map(|k| ends.get(&b[..k])).copied().min().unwrap_or(u32::MAX);
        let mut nibble = (level(highest) as u64) << 2;
        for (class, starts) in starts.iter().enumerate() {
            let starting = (2..=b.len()).filter_map(|k| starts.get(&b[b.len() - k..])).copied().min().unwrap_or(u32::MAX);
            if highest < ending.min(starting) {
                nibble |= 1 << class;
                count[class] += 1;
            }
        }
        let i = 4 * cp as usize;
        bits[i / 64] |= nibble << (i % 64);
    }
    println!("solid characters (before the last-byte check): {} before 2-byte, {} before 3-byte characters", count[0], count[1]);
    let chars = bits.iter().flat_map(|w| w.to_le_bytes()).collect();
    (chars, pair_start.iter().map(|&r| SOLID_LEVELS.iter().filter(|&&l| r >= l).count() as u8).collect())
}

/// Rank levels of the solid-character tables (`solid_chars`): a character's level
/// `l` says its own merges rank below `SOLID_LEVELS[l]`; a (continuation byte, lead byte) entry
/// `k` that every token starting with those two bytes ranks at or above `SOLID_LEVELS[k - 1]`
/// (0: no such bound). So `k > l` proves that no such token can overtake the character's merges.
const SOLID_LEVELS: [u32; 4] = [1 << 12, 1 << 14, 1 << 16, 1 << 18];

/// tiktoken's byte-pair merge of `b` alone: the highest rank it merges at, if it ends in one token.
fn merge_alone(rank: &HashMap<&[u8], u32>, b: &[u8]) -> Option<u32> {
    let mut parts: Vec<Vec<u8>> = b.iter().map(|&x| vec![x]).collect();
    let mut highest = 0;
    while parts.len() > 1 {
        let best = (0..parts.len() - 1)
            .filter_map(|i| rank.get([parts[i].as_slice(), &parts[i + 1]].concat().as_slice()).map(|&r| (r, i)))
            .min()?;
        highest = highest.max(best.0);
        let next = parts.remove(best.1 + 1);
        parts[best.1].extend_from_slice(&next);
    }
    Some(highest)
}

/// Rank of every 2-byte string (u32 LE, index `b0 << 8 | b1`, u32::MAX when not a token): the
/// first lookups of every merge, without hashing.
pub fn pairs(tokens: &[Option<Vec<u8>>]) -> Vec<u8> {
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
