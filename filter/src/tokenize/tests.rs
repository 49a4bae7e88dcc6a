//! The engine against the oracle: tiktoken-rs for counts, its split patterns (with fancy-regex,
//! the engine tiktoken-rs runs them with) for pieces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use super::*;

const ENCODINGS: [Encoding; 2] = [Encoding::Cl100kBase, Encoding::O200kBase];

/// tiktoken-rs 0.12.1's cl100k_base pattern (not exported by the crate).
const CL100K_PAT: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

pub(crate) struct Oracle {
    pub bpe: tiktoken_rs::CoreBPE,
    pub pattern: fancy_regex::Regex,
}

pub(crate) fn oracle(enc: Encoding) -> &'static Oracle {
    static CL: OnceLock<Oracle> = OnceLock::new();
    static O: OnceLock<Oracle> = OnceLock::new();
    match enc {
        Encoding::Cl100kBase => CL.get_or_init(|| Oracle {
            bpe: tiktoken_rs::cl100k_base().unwrap(),
            pattern: fancy_regex::Regex::new(CL100K_PAT).unwrap(),
        }),
        Encoding::O200kBase => O.get_or_init(|| Oracle {
            bpe: tiktoken_rs::o200k_base().unwrap(),
            pattern: fancy_regex::Regex::new(tiktoken_rs::O200K_BASE_PAT_STR).unwrap(),
        }),
    }
}

fn tok(enc: Encoding) -> &'static Tokenizer {
    Tokenizer::of(enc)
}

/// Compares pieces and count of `text` with the oracle; returns a description of the first
/// difference.
fn check(enc: Encoding, text: &str) -> Result<(), String> {
    let o = oracle(enc);
    let t = tok(enc);
    let ours: Vec<&str> = t.pieces(text).collect();
    let theirs: Vec<&str> = o.pattern.find_iter(text).map(|m| m.unwrap().as_str()).collect();
    if ours != theirs {
        return Err(format!("{enc}: pieces of {text:?}\n ours   {ours:?}\n oracle {theirs:?}"));
    }
    let want = o.bpe.count_ordinary(text) as u64;
    let got = t.count(text);
    if got != want {
        let mut detail = String::new();
        for p in ours {
            let (a, b) = (t.count(p), o.bpe.count_ordinary(p) as u64);
            if a != b {
                detail = format!(" (piece {p:?}: {a} vs {b})");
                break;
            }
        }
        return Err(format!("{enc}: count of {text:?}: {got}, oracle {want}{detail}"));
    }
    Ok(())
}

fn assert_same(text: &str) {
    for enc in ENCODINGS {
        if let Err(e) = check(enc, text) {
            panic!("{e}");
        }
    }
}

#[test]
fn names_round_trip() {
    for enc in ENCODINGS {
        assert_eq!(Encoding::from_name(enc.name()), Some(enc));
    }
    assert_eq!(Encoding::from_name("p50k_base"), None);
}

#[test]
fn known_counts() {
    for enc in ENCODINGS {
        let t = tok(enc);
        assert_eq!(t.count(""), 0);
        assert_eq!(t.count("Hello, world!"), 4);
        assert_eq!(t.count("user"), 1);
        // A special token in user text is ordinary text: several tokens, not one.
        assert!(t.count("<|endoftext|>") > 1);
    }
}

#[test]
fn early_exit_stops_near_the_limit() {
    for enc in ENCODINGS {
        let t = tok(enc);
        let text = "word ".repeat(200_000);
        match t.count_until(&text, 1000) {
            Count::Over { counted, complete } => {
                assert_eq!(counted, 1001);
                assert!(!complete);
            }
            other => panic!("expected Over, got {other:?}"),
        }
        assert_eq!(t.count_until("Hello, world!", 4), Count::Within(4));
        assert_eq!(t.count_until("Hello, world!", 3), Count::Over { counted: 4, complete: true });
        // Inside one long piece too (letters with an accent: no lower bound applies, the
        // windowed merge stops soon after the limit).
        let letters = "abcdéfghij".repeat(10_000);
        match t.count_until(&letters, 1000) {
            Count::Over { counted, complete } => {
                assert!(counted > 1000 && counted < 1500, "{counted}");
                assert!(!complete);
            }
            other => panic!("expected Over, got {other:?}"),
        }
    }
}

/// A piece of ASCII letters far longer than the limit is decided from its length: no token
/// holds more than `max_letter_run` letters in a row. The bound is a true lower bound.
#[test]
fn long_letter_runs_are_over_by_their_length() {
    for enc in ENCODINGS {
        let t = tok(enc);
        let run = t.vocab().max_letter_run();
        for (text, limit) in [
            // The alphabet is one token in both encodings: the bound comes close to the count.
            ("abcdefghijklmnopqrstuvwxyz".repeat(4_000), 1000u64),
            (format!(" {}", "xq".repeat(30_000)), 500),
            (format!("«{}", "Zebra".repeat(20_000)), 2000),
        ] {
            let exact = t.count(&text);
            match t.count_until(&text, limit) {
                Count::Over { counted, complete } => {
                    assert!(counted > limit && counted <= exact, "{enc:?} {counted} vs {exact}");
                    if t.pieces(&text).count() == 1 {
                        // (o200k cuts "ZebraZebra" before each capital.)
                        assert!(counted >= (text.len() as u64 - 2) / run as u64, "the bound was used");
                    }
                    assert!(!complete);
                }
                other => panic!("expected Over, got {other:?}"),
            }
        }
        // Not all ASCII letters after the first character: no bound, the merge decides.
        let accent_inside = format!("{}é{}", "ab".repeat(20_000), "cd".repeat(20_000));
        assert!(matches!(t.count_until(&accent_inside, 100), Count::Over { counted, .. } if counted < 1000));
    }
}

/// The generated `max_letter_run` is the vocabulary's.
#[test]
fn max_letter_run_matches_the_vocabulary() {
    for (enc, n) in [(Encoding::Cl100kBase, 100_256u32), (Encoding::O200kBase, 199_998)] {
        let oracle = oracle(enc);
        let run = (0..n)
            .filter_map(|r| oracle.bpe.decode_bytes(&[r]).ok())
            .flat_map(|b| b.split(|c| !c.is_ascii_alphabetic()).map(<[u8]>::len).max())
            .max();
        assert_eq!(run, Some(tok(enc).vocab().max_letter_run()), "{enc:?}");
    }
}

/// Texts in many scripts and shapes (the multilingual corpus).
pub(crate) const CORPUS: &[&str] = &[
    "Hello, world! How's it going? I'm fine, they'll see, we've been, you're right, he'd go.",
    "HELLO WORLD'S END, I'M HERE, THEY'LL, WE'VE, YOU'RE, HE'D",
    "The quick brown fox jumps over the lazy dog.\n\nSecond paragraph\r\nwith CRLF.\n   \n",
    "Привет, как дела? Это тест на русском языке. ЗАГЛАВНЫЕ БУКВЫ и строчные.",
    "日本語のテキストです。東京は日本の首都です。カタカナとひらがな。",
    "中文文本测试：人工智能正在改变世界。我们今天去公园散步吧！",
    "한국어 텍스트입니다. 안녕하세요, 세계!",
    "العربية: مرحبا بالعالم! هذه جملة اختبار.",
    "עברית: שלום עולם, זה משפט בדיקה.",
    "हिन्दी: नमस्ते दुनिया, यह एक परीक्षण वाक्य है।",
    "ไทย: สวัสดีชาวโลก นี่คือประโยคทดสอบ",
    "Ελληνικά: Γειά σου Κόσμε! ΑΒΓΔ αβγδ ς",
    "Tiếng Việt: Xin chào thế giới, đây là câu kiểm tra.",
    "Emoji 😀😃😄 👩‍👩‍👧‍👦 🇺🇸 ✔️ ❤️ 1️⃣",
    "Combining: e\u{301} a\u{308} n\u{303} \u{301}\u{302} x\u{20dd} Å A\u{30a}",
    "Numbers: 1 12 123 1234 12345 3.14159 1,000,000 ½ ² ³ Ⅻ ١٢٣ ߁",
    "Code: fn main() { let x = vec![1, 2, 3]; println!(\"{:?}\", x); } // comment\n\tindented\n",
    "def f(x):\n    return x ** 2  # square\n\n\n    \n",
    "<html><body class=\"a\">&nbsp;&amp;</body></html>\n",
    "URLs: https://example.com/path/to/page?q=1&r=2#frag //double/slash\n/root\n\n/x",
    "Spaces:  two   three    four\t\ttabs \u{a0}nbsp \u{3000}ideographic \u{2028}ls \u{85}nel",
    "Trailing whitespace at the end   \n  \n   ",
    "ſ 'ſ 'ſs Kelvin \u{212a} 'K 'S 'T 'D 'M 'LL 'Ll 'lL 'VE 'Re",
    "don't DON'T Don'T can'ſ it'S they'RE",
    "mixedCASE camelCase PascalCase snake_case SCREAMING_CASE kebab-case",
    "ǅ ǈ ǋ ǲ titlecase ǅungla",
    "ʰʲʷ modifier ˆ ˇ ᴬᴮᴰ",
    "\u{200b}zero\u{200b}width\u{feff}bom\u{200d}zwj",
    "<|endoftext|> <|fim_prefix|> <|endofprompt|>",
    "a\r\n\r\nb\r\r\n\n\rc",
    "   leading spaces and trailing   ",
    "\n\n\n",
    " ",
    "x",
    "!!!???...---___***",
    "' '' ''' 's 'll",
];

#[test]
fn corpus_matches_the_oracle() {
    for text in CORPUS {
        assert_same(text);
    }
    assert_same(&CORPUS.join(""));
    assert_same(&CORPUS.join("\n"));
}

/// Atoms biased toward the edges of the split patterns.
const ATOMS: &[&str] = &[
    "a", "Z", "word", "Hello", "HELLO", "hELLo", "ſ", "é", "e\u{301}", "\u{301}", "\u{308}\u{301}", "日本", "Ж", "ж",
    "ا", "ǅ", "ʰ", "ᴬ", "1", "12", "123", "4567", "½", "²", "Ⅻ", "١", " ", "  ", "   ", "\n", "\r\n", "\r", "\n\n", " \n",
    "\n ", "\t", "\u{a0}", "\u{3000}", "\u{2028}", "\u{85}", "\u{b}", "\u{c}", "/", "//", ".", ",", "!", "?", "'", "'s",
    "'S", "'ſ", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL", "'d", "'D", "'x",
    "(", ")", "😀", "👩‍👧", "\u{200b}", "\u{200d}", "\u{feff}", "-", "_", "x/y", "\n/", "/\n", "<|endoftext|>", "$",
    "€", "©", "™", "\u{212a}", "K", "k", "s", "S", "ll", "ve", "re",
];

/// A random code point from ranges that exercise the class tables.
fn random_char(rng: &mut fastrand::Rng) -> char {
    const RANGES: &[(u32, u32)] = &[
        (0x20, 0x7e),
        (0x00, 0x20),
        (0x80, 0x2ff),
        (0x300, 0x36f),
        (0x370, 0x52f),
        (0x590, 0x6ff),
        (0x900, 0xdff),
        (0x1100, 0x11ff),
        (0x1e00, 0x1fff),
        (0x2000, 0x206f),
        (0x2070, 0x2bff),
        (0x3000, 0x30ff),
        (0x4e00, 0x4eff),
        (0xac00, 0xacff),
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

pub(crate) fn random_text(rng: &mut fastrand::Rng) -> String {
    let mut s = String::new();
    let n = rng.usize(..24);
    for _ in 0..n {
        match rng.usize(..10) {
            0..=5 => s.push_str(rng.choice(ATOMS).unwrap()),
            6 | 7 => s.push(random_char(rng)),
            8 => {
                // A run of one class, to reach the long-piece paths now and then.
                let atom = *rng.choice(&["a", "Zz", " ", "\n", "9", "!", "é", "😀", "日", "\u{301}", "ab"]).unwrap();
                s.push_str(&atom.repeat(1 + rng.usize(..40)));
            }
            _ => {
                let c = random_char(rng);
                s.push(' ');
                s.push(c);
            }
        }
    }
    // Trailing whitespace after newlines at the end of input.
    if rng.usize(..6) == 0 {
        let tail = rng.choice(&["\n", " ", "\n ", " \n", "\n\n  ", "\r\n", "\t"]).unwrap();
        s.push_str(tail);
    }
    s
}

/// Runs `cases` generated inputs per encoding; returns the number of mismatches and the first
/// few descriptions.
pub(crate) fn differential(seed: u64, cases: usize) -> (usize, Vec<String>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut mismatches = 0;
    let mut first = Vec::new();
    for _ in 0..cases {
        let text = random_text(&mut rng);
        for enc in ENCODINGS {
            if let Err(e) = check(enc, &text) {
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
fn fuzz_differential_quick() {
    let (mismatches, first) = differential(1, 20_000);
    assert_eq!(mismatches, 0, "{}", first.join("\n"));
}

/// The long run: `cargo test -p tokengate --release -- --ignored fuzz_differential_1m --nocapture`
/// (FUZZ_CASES and FUZZ_SEED override the defaults). Runs on every core.
#[test]
#[ignore]
fn fuzz_differential_1m() {
    let cases: usize = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(42);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let per = cases.div_ceil(threads);
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..threads).map(|k| s.spawn(move || differential(seed.wrapping_add(k as u64 * 1_000_003), per))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mismatches: usize = results.iter().map(|r| r.0).sum();
    let first: Vec<String> = results.into_iter().flat_map(|r| r.1).take(5).collect();
    println!("fuzz_differential: {} inputs x 2 encodings, {mismatches} mismatches", per * threads);
    assert_eq!(mismatches, 0, "{}", first.join("\n"));
}

/// Long single pieces (the windowed merge) and the adversarial shapes, against the oracle.
#[test]
fn long_pieces_match_the_oracle() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut texts: Vec<String> = Vec::new();
    for len in [100, 513, 600, 1500, 5000, 20_000] {
        let letters: String = (0..len).map(|_| (b'a' + rng.usize(..26) as u8) as char).collect();
        texts.push(letters);
        let mixed: String = (0..len).map(|_| *rng.choice(&['a', 'B', 'é', 'ж', 'Ω', '日', 'ß']).unwrap()).collect();
        texts.push(mixed);
        // Split points (no token holds two neighbouring bytes) in every context: both cases
        // of ASCII letters, and letters of many scripts with marks, CJK and emoji in between.
        let cased: String = (0..len).map(|_| (if rng.usize(..2) == 0 { b'a' } else { b'A' } + rng.usize(..26) as u8) as char).collect();
        texts.push(cased);
        let scripts: String = (0..len / 2)
            .map(|_| *rng.choice(&['q', 'X', 'ё', 'ψ', '中', '語', 'ש', 'ب', 'ก', '\u{301}', 'Ǆ', '😀', '🇫', 'ꙮ', 'ℵ']).unwrap())
            .collect();
        texts.push(scripts);
    }
    for shape in adversarial(30_000) {
        texts.push(shape);
    }
    for t in &texts {
        for enc in ENCODINGS {
            let want = oracle(enc).bpe.count_ordinary(t) as u64;
            assert_eq!(tok(enc).count(t), want, "{enc}: {} bytes starting {:?}", t.len(), &t[..t.len().min(40)]);
        }
    }
}

/// The adversarial inputs of issue 4, about `len` bytes each.
pub fn adversarial(len: usize) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(99);
    let letters: String = (0..len).map(|_| (b'a' + rng.usize(..26) as u8) as char).collect();
    let mixed: String = {
        let mut s = String::new();
        while s.len() < len {
            s.push(*rng.choice(&['a', 'Ж', 'ω', '日', 'ا', 'क', 'Z', 'é', 'ñ', '한']).unwrap());
        }
        s
    };
    let digits: String = (0..len).map(|_| (b'0' + rng.usize(..10) as u8) as char).collect();
    vec![
        letters,
        "a".repeat(len),
        digits,
        " ".repeat(len),
        " \n\t".repeat(len / 3),
        "😀".repeat(len / 4),
        mixed,
    ]
}

/// The span filter may only ever say "no token spans here" where that is true: every boundary
/// inside every token of both encodings must test as spannable.
#[test]
fn span_filter_holds_every_token_boundary() {
    let encodings = [(Encoding::Cl100kBase, &super::vocab::CL100K, 100_256), (Encoding::O200kBase, &super::vocab::O200K, 199_998)];
    for (enc, vocab, ordinary) in encodings {
        let bpe = &oracle(enc).bpe;
        let mut boundaries = 0u64;
        for rank in 0..ordinary {
            let Ok(token) = bpe.decode_bytes(&[rank]) else { continue };
            for j in 1..token.len() {
                assert!(vocab.spans(&token, j), "{enc}: token {rank} {token:?} at {j}");
                boundaries += 1;
            }
        }
        assert!(boundaries > 400_000, "{enc}: only {boundaries} boundaries checked");
    }
}

/// Scripts run together without spaces (one long piece each), cut at random characters: the
/// pieces are cut where the span filter allows, merged in parts, and must count as the oracle.
#[test]
fn run_together_scripts_match_the_oracle() {
    let chars: Vec<Vec<char>> = CORPUS.iter().map(|line| line.chars().filter(|c| c.is_alphabetic()).collect()).collect();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut mismatches = Vec::new();
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..1 + rng.usize(..4) {
            let line = rng.choice(&chars).unwrap();
            if line.is_empty() {
                continue;
            }
            let a = rng.usize(..line.len());
            let b = (a + 1 + rng.usize(..40)).min(line.len());
            text.extend(&line[a..b]);
        }
        for enc in ENCODINGS {
            if let Err(e) = check(enc, &text) {
                mismatches.push(e);
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches, first: {}", mismatches.len(), mismatches[0]);
}

/// The memo of merged pieces (`bpe::memo`) against counting each piece on its own: texts of
/// pieces drawn again and again from a small pool, among them pieces that differ only past
/// their 8th byte or only by trailing NUL bytes (equal when zero-padded), and pieces longer
/// than the memo takes. Fails when the memo's key drops the length or the second word.
#[test]
fn memo_of_merged_pieces_matches_fresh_counts() {
    let mut rng = fastrand::Rng::with_seed(9);
    const BYTES: &[&str] = &["\0", "\u{1}", "\u{2}", "!", "~", "§", "¤", "\u{7f}", "�"];
    for round in 0..600 {
        let mut pool: Vec<String> = Vec::new();
        while pool.len() < 12 {
            let base: String = (0..2 + rng.usize(..18)).map(|_| *rng.choice(BYTES).unwrap()).collect();
            pool.push(format!("{base}\0"));
            pool.push(format!("{base}\0\0"));
            pool.push(base);
        }
        let mut text = String::new();
        for _ in 0..40 {
            text.push_str(rng.choice(&pool).unwrap());
            text.push_str(rng.choice(&[" a ", " x", "\n", "b"]).unwrap());
        }
        for enc in ENCODINGS {
            let t = tok(enc);
            let fresh: u64 = t.pieces(&text).map(|p| t.count(p)).sum();
            assert_eq!(t.count(&text), fresh, "{enc}: {text:?}");
            if round % 20 == 0 {
                check(enc, &text).unwrap();
            }
        }
    }
}

/// The memo of span answers (`vocab::spans`, shared by both encodings and every count)
/// answers as the filter does: each window asked of both encodings in turn, twice (the second
/// time from the memo), over the corpus's characters and random bytes. Fails when the memo's
/// key drops the encoding or a byte of the window.
#[test]
fn span_memo_answers_as_the_filter() {
    let mut rng = fastrand::Rng::with_seed(5);
    let mut texts: Vec<Vec<u8>> = CORPUS.iter().map(|line| line.as_bytes().to_vec()).collect();
    for _ in 0..200 {
        texts.push((0..64).map(|_| rng.usize(..256) as u8).collect());
    }
    let (mut asked, mut differ) = (0u64, 0u64);
    for text in &texts {
        for i in 1..text.len() {
            let (c, o) = (vocab::CL100K.spans(text, i), vocab::O200K.spans(text, i));
            differ += u64::from(c != o);
            for _ in 0..2 {
                assert_eq!(vocab::CL100K.spans_memo(text, i), c, "cl100k_base: {text:?} at {i}");
                assert_eq!(vocab::O200K.spans_memo(text, i), o, "o200k_base: {text:?} at {i}");
                asked += 1;
            }
        }
    }
    assert!(asked > 20_000 && differ > 100, "{asked} windows asked, {differ} differ between encodings");
}
