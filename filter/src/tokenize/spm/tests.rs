//! The engine on a small handmade vocabulary against a plain reference merge (whole text, no
//! cuts, no early exit): the cuts, the scan and the heap must not change a count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};

use super::merge::Merger;
use super::Model;
use crate::tokenize::Count;

/// A vocabulary of the characters `a b c ▁ x` and the merges listed (strings), `' '` -> `'▁'`.
struct Small {
    model: Model,
    /// Token strings by id.
    strings: Vec<String>,
    merges: HashMap<(u32, u32), (u32, u32)>,
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

fn small(merges: &[(&str, &str)]) -> Small {
    let mut strings: Vec<String> = ["a", "b", "c", "x", "▁"].iter().map(|s| s.to_string()).collect();
    let mut map = HashMap::new();
    for (i, (a, b)) in merges.iter().enumerate() {
        let joined = format!("{a}{b}");
        if !strings.contains(&joined) {
            strings.push(joined.clone());
        }
        let id = |s: &str| strings.iter().position(|t| t == s).unwrap() as u32;
        map.insert((id(a), id(b)), (i as u32, id(&joined)));
    }
    let mut chars: Vec<(u32, u32)> = strings.iter().enumerate().filter(|(_, s)| s.chars().count() == 1).map(|(id, s)| (s.chars().next().unwrap() as u32, id as u32)).collect();
    chars.sort();
    let index = |c: char| chars.iter().position(|e| e.0 == c as u32).unwrap() as u32;
    let mut follows = BTreeSet::new();
    let mut max_chars = 1;
    for &(_, new) in map.values() {
        let s: Vec<u32> = strings[new as usize].chars().map(index).collect();
        max_chars = max_chars.max(s.len() as u32);
        follows.extend(s.windows(2).map(|w| (w[0], w[1])));
    }
    let mut follow_offsets = vec![0u32; chars.len() + 1];
    for &(a, _) in &follows {
        follow_offsets[a as usize + 1] += 1;
    }
    for k in 0..chars.len() {
        follow_offsets[k + 1] += follow_offsets[k];
    }
    let mut entries: Vec<(u32, u64)> = map.iter().map(|(&(a, b), &(i, new))| (a, u64::from(b) << 42 | u64::from(i) << 21 | u64::from(new))).collect();
    entries.sort();
    let mut merge_offsets = vec![0u32; strings.len() + 1];
    for &(a, _) in &entries {
        merge_offsets[a as usize + 1] += 1;
    }
    for k in 0..strings.len() {
        merge_offsets[k + 1] += merge_offsets[k];
    }
    let mut ascii = [u32::MAX; 128];
    for c in ['a', 'b', 'c', 'x'] {
        ascii[c as usize] = index(c);
    }
    ascii[b' ' as usize] = index('▁');
    let model = Model {
        ascii,
        replace: (' ' as u32, '▁' as u32),
        chars: leak(chars.iter().map(|c| c.0).collect()),
        char_ids: leak(chars.iter().map(|c| c.1).collect()),
        follow_offsets: leak(follow_offsets),
        follow: leak(follows.iter().map(|f| f.1).collect()),
        merge_offsets: leak(merge_offsets),
        merges: leak(entries.into_iter().map(|e| e.1).collect()),
        max_chars,
    };
    Small { model, strings, merges: map }
}

impl Small {
    /// The reference: the whole text as one word, merges by lowest index then leftmost.
    fn reference(&self, text: &str) -> u64 {
        let mut fallback = 0;
        let mut ids: Vec<Option<u32>> = Vec::new();
        for c in text.replace(' ', "▁").chars() {
            match self.strings.iter().position(|s| s.chars().count() == 1 && s.starts_with(c)) {
                Some(id) => ids.push(Some(id as u32)),
                None => {
                    fallback += c.len_utf8() as u64;
                    // Fallback bytes never merge: a barrier.
                    ids.push(None);
                }
            }
        }
        loop {
            let best = ids
                .windows(2)
                .enumerate()
                .filter_map(|(k, w)| Some((self.merges.get(&(w[0]?, w[1]?))?, k)))
                .min_by_key(|(m, k)| (m.0, *k));
            let Some((&(_, new), k)) = best else { break };
            ids[k] = Some(new);
            ids.remove(k + 1);
        }
        ids.iter().flatten().count() as u64 + fallback
    }
}

const MERGES: &[(&str, &str)] = &[
    ("a", "b"),
    ("▁", "a"),
    ("b", "c"),
    ("ab", "c"),
    ("▁a", "bc"),
    ("a", "a"),
    ("aa", "aa"),
    ("c", "▁"),
    ("▁", "▁"),
    ("aa", "a"),
    ("x", "x"),
    ("xx", "x"),
    ("▁▁", "▁▁"),
    ("c▁", "ab"),
];

#[test]
fn counts_as_the_reference_merge() {
    let s = small(MERGES);
    let mut rng = fastrand::Rng::with_seed(7);
    let alphabet = ['a', 'b', 'c', 'x', ' ', '▁', 'é', '日'];
    for round in 0..20_000 {
        let len = if round % 50 == 0 { 40 + rng.usize(..200) } else { rng.usize(..24) };
        let text: String = (0..len).map(|_| alphabet[rng.usize(..alphabet.len())]).collect();
        let want = s.reference(&text);
        assert_eq!(s.model.count(text.as_bytes(), u64::MAX), Count::Within(want), "{text:?}");
        // Every limit below the count is passed, and the count at the exit never exceeds it.
        let limit = rng.u64(..want.max(1));
        match s.model.count(text.as_bytes(), limit) {
            Count::Over { counted, complete } => {
                assert!(counted > limit && counted <= want, "{text:?} limit {limit}: {counted} of {want}");
                assert!(!complete || counted == want);
            }
            Count::Within(n) => assert!(n <= limit && n == want, "{text:?}"),
        }
    }
}

#[test]
fn scan_and_heap_agree() {
    let s = small(MERGES);
    let mut rng = fastrand::Rng::with_seed(11);
    let ids: Vec<u32> = s.model.char_ids.to_vec();
    let mut merger = Merger::default();
    for _ in 0..5_000 {
        let part: Vec<u32> = (0..2 + rng.usize(..30)).map(|_| ids[rng.usize(..ids.len())]).collect();
        let mut a = part.clone();
        let scanned = merger.count(&s.model, &mut a);
        // Padded past SCAN_MAX with an id that has no merges (the one just past the vocabulary),
        // the same part goes through the heap.
        let pad = 40 - part.len();
        let mut padded = part.clone();
        padded.extend(std::iter::repeat_n(s.strings.len() as u32, pad));
        let heaped = merger.count(&s.model, &mut padded) - pad;
        assert_eq!(scanned, heaped, "{part:?}");
    }
}

#[test]
fn a_long_run_without_cuts_stops_at_its_lower_bound() {
    let s = small(MERGES);
    let run = "a".repeat(100_000);
    let exact = s.reference(&"a".repeat(1000)) * 100;
    assert_eq!(s.model.count(run.as_bytes(), u64::MAX), Count::Within(exact));
    match s.model.count(run.as_bytes(), 10) {
        Count::Over { counted, complete: false } => assert!(counted > 10 && counted <= exact),
        other => panic!("{other:?}"),
    }
    // Spaces: `▁▁▁▁` is a token, so a run of spaces is one part too.
    assert_eq!(s.model.count(" ".repeat(4003).as_bytes(), u64::MAX), Count::Within(s.reference(&" ".repeat(4003))));
}
