//! The merges against each other: the array scan, the block-minima merge, the windowed merge
//! and the heap merge of a whole span are implementations of one function and must agree on
//! every span.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::blocks::Merger;
use super::small::{self, seed_solid};
use super::window::{self, merge_whole};
use super::*;
use crate::tokenize::tests::CORPUS;
use crate::tokenize::unicode::is_continuation;
use crate::tokenize::vocab::{CL100K, O200K};

/// How many parts `seed_solid` removes from `text` (at most `SMALL` bytes).
fn seeds<T: Tables>(v: &Vocab<T>, text: &[u8]) -> usize {
    let (mut next, mut prev) = ([0u8; SMALL], [0u8; SMALL]);
    for (k, x) in next.iter_mut().enumerate() {
        *x = (k + 1) as u8;
    }
    seed_solid(v, text, &mut next, &mut prev)
}

/// The array scan, the block-minima merge and the heap merge are three implementations of
/// tiktoken's merge: they must agree on every segment, whatever its length.
#[test]
fn the_three_merges_agree() {
    let alphabets: [&[u8]; 4] = [
        b"abcdefghijklmnopqrstuvwxyz",
        b"etaoin shrdlu",
        "日本語の文章한국어Жωक".as_bytes(),
        b"0123456789.,;:!?()[]{}<>=+-*/_'\"",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    let mut merger = Merger::default();
    for round in 0..24_000 {
        let alphabet = alphabets[round % alphabets.len()];
        // Mostly array-scan lengths; two rounds in ten up to a window, one in ten 2-3 bytes.
        let n = 2 + match round % 10 {
            3 | 7 => rng.usize(..WINDOW - 1),
            9 => rng.usize(..2),
            _ => rng.usize(..SMALL - 1),
        };
        let text: Vec<u8> = (0..n).map(|_| *rng.choice(alphabet).unwrap()).collect();
        for v in [&CL100K, &O200K] {
            let blocks = merger.merge(v, &text, 0, n, None) as u64;
            let heap = merge_whole(v, &text, 0, n);
            assert_eq!(blocks, heap, "{:?}", String::from_utf8_lossy(&text));
            if n <= SMALL {
                assert_eq!(small::merge(v, &text, 0, n), heap, "{:?}", String::from_utf8_lossy(&text));
            }
            if v.part_rank(&text, 0, n) == NONE {
                // What the counting path runs on a span that is no token.
                let mut scratch = Scratch::default();
                let unsplit = merge_span(v, &mut scratch, &text, 0, n, u64::MAX);
                assert_eq!(unsplit, heap, "{:?}", String::from_utf8_lossy(&text));
            }
        }
    }
}

/// Solid characters taken whole from the start (`seed_solid`) merge to the same count as
/// their bytes: spans of up to `SMALL` bytes cut from the corpus's letters run together
/// (words of 15 scripts, as the pre-tokenizer hands them over), now and then with a space or
/// a stray byte, through `small::merge` and the heap merge.
#[test]
fn solid_characters_merge_as_their_bytes() {
    let lines: Vec<Vec<char>> = CORPUS.iter().map(|line| line.chars().filter(|c| c.is_alphabetic()).collect()).collect();
    let mut rng = fastrand::Rng::with_seed(5);
    let mut seeded = [0usize; 2];
    for round in 0..60_000 {
        let line = rng.choice(&lines).unwrap();
        let mut text = Vec::new();
        for &c in line.iter().skip(rng.usize(..line.len().max(1))) {
            let mut buf = [0u8; 4];
            let piece: &[u8] = match rng.usize(..30) {
                0 => b" ",
                1 => &[0x80, 0xe4][rng.usize(..2)..][..1],
                _ => c.encode_utf8(&mut buf).as_bytes(),
            };
            if text.len() + piece.len() > SMALL {
                break;
            }
            text.extend_from_slice(piece);
        }
        let n = text.len();
        if n < 2 {
            continue;
        }
        for (i, v) in [&CL100K, &O200K].into_iter().enumerate() {
            if seeds(v, &text) > 0 {
                seeded[i] += 1;
            }
            assert_eq!(small::merge(v, &text, 0, n), merge_whole(v, &text, 0, n), "round {round}: {:?}", String::from_utf8_lossy(&text));
        }
    }
    // The seeded path ran, for both encodings.
    assert!(seeded.iter().all(|&k| k > 10_000), "{seeded:?}");
}

/// The tokens that start with a continuation byte then a lead byte are the ones that can
/// overtake a character's own merges from its last byte (the check `Vocab::solid` makes on
/// the last byte and the next lead byte). For each such token of rank below 2^16, characters
/// ending with its first byte, followed by the token's following bytes: where the character
/// is taken whole, the seeded merge agrees with the heap merge. (It fails without that check.)
#[test]
fn solid_characters_hold_against_tokens_starting_at_their_last_byte() {
    use crate::tokenize::tests::oracle;
    use crate::tokenize::Encoding;
    let mut rng = fastrand::Rng::with_seed(13);
    let mut seeded = 0;
    for (enc, v) in [(Encoding::Cl100kBase, &CL100K), (Encoding::O200kBase, &O200K)] {
        let bpe = &oracle(enc).bpe;
        for r in 0..1u32 << 16 {
            let Ok(tok) = bpe.decode_bytes(&[r]) else { continue };
            if tok.len() < 2 || !is_continuation(tok[0]) || !(0xc2..0xf0).contains(&tok[1]) {
                continue;
            }
            // The token's bytes after the first, completed to whole characters.
            let mut rest = tok[1..].to_vec();
            while std::str::from_utf8(&rest).is_err() && rest.len() < tok.len() + 3 {
                rest.push(if rest == [0xe0] { 0xa0 } else { 0x80 });
            }
            if std::str::from_utf8(&rest).is_err() {
                continue;
            }
            for _ in 0..24 {
                // A character ending with the token's first byte: 2 or 3 bytes.
                let c: Vec<u8> = if rng.usize(..4) == 0 {
                    vec![0xc2 + rng.usize(..30) as u8, tok[0]]
                } else {
                    vec![0xe1 + rng.usize(..12) as u8, 0x80 + rng.usize(..64) as u8, tok[0]]
                };
                let text = ["Ж".as_bytes(), &c, &rest].concat();
                if std::str::from_utf8(&text).is_err() {
                    continue;
                }
                if text.len() > SMALL || seeds(v, &text) == 0 {
                    continue;
                }
                seeded += 1;
                assert_eq!(small::merge(v, &text, 0, text.len()), merge_whole(v, &text, 0, text.len()), "{:?}", String::from_utf8_lossy(&text));
            }
        }
    }
    assert!(seeded > 1_000, "{seeded}");
}

/// The windowed merge of long pieces joins to the same count as one merge of the piece.
#[test]
fn windows_join_to_the_whole_merge() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut merger = Merger::default();
    for round in 0..40 {
        let alphabet: &[u8] = if round % 2 == 0 { b"abcdefghijklmnopqrstuvwxyz" } else { b"aab" };
        let n = WINDOW + rng.usize(..8 * WINDOW);
        let text: Vec<u8> = (0..n).map(|_| *rng.choice(alphabet).unwrap()).collect();
        for v in [&CL100K, &O200K] {
            let windowed = window::count(v, &mut merger, &text, 0, n, u64::MAX);
            assert_eq!(windowed, merge_whole(v, &text, 0, n), "{:?}", String::from_utf8_lossy(&text));
        }
    }
}
