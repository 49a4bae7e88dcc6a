//! Shared inputs for the benchmarks: English prose (4 KB, 64 KB, 1 MB), CJK, code, a 1 MB mixed
//! document and the adversarial set of issue 4 (1 MB each), all generated deterministically
//! (seeded `fastrand`).

const SENTENCES: &[&str] = &[
    "The committee met on Tuesday to review the proposal for the new library, which had been delayed twice by budget disputes.",
    "Most of the members agreed that the building should open before the end of the year, although a few worried about the cost.",
    "She walked along the river until the path turned north, then followed the old railway line past the abandoned station.",
    "In the spring of 1887, the town's population doubled as workers arrived to build the bridge across the valley.",
    "If you're going to write a program that handles money, don't use floating-point numbers for the amounts.",
    "The results, published last month in a peer-reviewed journal, suggest that the effect is smaller than previously thought.",
    "Nobody could explain why the clock in the tower had stopped at exactly twenty past three.",
    "He'd never seen a storm like it: the wind tore shingles from the roofs and the rain came sideways for hours.",
    "Researchers measured the temperature of the lake every morning for three years and found a steady upward trend.",
    "\"We can't promise anything,\" the manager said, \"but we'll do our best to have it fixed by Friday.\"",
    "The recipe calls for two cups of flour, a pinch of salt, three eggs, and enough milk to make a smooth batter.",
    "Children in the village learned to swim in the cold water of the bay, where the current was weak near the shore.",
    "According to the report, the company's revenue grew by 12 percent while its operating costs remained flat.",
    "They argued about politics, philosophy, and football late into the night, and nobody changed their mind.",
    "The museum's collection includes paintings, sculptures, manuscripts, and a remarkable set of medieval maps.",
    "When the train finally arrived, it was crowded with tourists, students, and commuters heading into the city.",
    "A good explanation starts from what the reader already knows and adds one new idea at a time.",
    "The software update fixed several security vulnerabilities, but it also introduced a bug in the printing dialog.",
    "Farmers in the region have switched to crops that need less water, as the summers have grown longer and drier.",
    "It was the kind of quiet afternoon when the only sound was the ticking of the kitchen clock.",
];

/// English prose of at least `len` bytes (sentences in a seeded random order, paragraphs of 3 to 7
/// sentences), cut at a character boundary.
pub fn prose(len: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(1);
    let mut s = String::with_capacity(len + 200);
    while s.len() < len {
        let n = 3 + rng.usize(..5);
        for k in 0..n {
            if k > 0 {
                s.push(' ');
            }
            s.push_str(SENTENCES[rng.usize(..SENTENCES.len())]);
        }
        s.push_str("\n\n");
    }
    truncate(s, len)
}

fn truncate(mut s: String, len: usize) -> String {
    let mut cut = len.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

const CJK: &str = "人工智能正在改变我们的生活方式。研究人员在过去十年里取得了显著的进展，但仍有许多问题需要解决。\
東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。春には桜が咲き、多くの観光客が訪れます。\
한국어는 한글이라는 고유한 문자를 사용합니다. 세종대왕이 1443년에 창제하였습니다. ";

/// Chinese, Japanese and Korean prose of about `len` bytes.
pub fn cjk(len: usize) -> String {
    truncate(CJK.repeat(len / CJK.len() + 1), len)
}

const CODE: &str = r#"fn parse_config(input: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_json::from_str(input).map_err(|e| ConfigError::Json(e.to_string()))?;
    if raw.max_prompt_tokens == 0 || raw.max_prompt_tokens > 10_000_000 {
        return Err(ConfigError::InvalidLimit { field: "max_prompt_tokens", reason: "must be 1..=10000000" });
    }
    let mut models = HashMap::new();
    for (name, spec) in raw.models.iter() {
        models.insert(name.to_ascii_lowercase(), Encoding::from_name(&spec.encoding).ok_or(ConfigError::UnknownEncoding)?);
    }
    Ok(Config { max_prompt_tokens: raw.max_prompt_tokens, models })
}

def tokenize(text: str) -> list[int]:
    # Split on whitespace, then map each word to its id; unknown words become <unk>.
    return [vocab.get(w, UNK) for w in text.split()]

"#;

/// Source code (Rust and Python) of about `len` bytes.
pub fn code(len: usize) -> String {
    truncate(CODE.repeat(len / CODE.len() + 1), len)
}

/// A mixed document: prose, code, CJK, numbers and some Cyrillic and emoji, in blocks.
pub fn mixed(len: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut s = String::with_capacity(len + 4096);
    while s.len() < len {
        match rng.usize(..6) {
            0 | 1 | 2 => s.push_str(&prose(600 + rng.usize(..600))),
            3 => s.push_str(&code(400 + rng.usize(..400))),
            4 => s.push_str(&cjk(300 + rng.usize(..300))),
            _ => s.push_str("Итоги квартала: выручка 1 234 567 ₽ (+12,5%) 📈 — подробности в таблице ниже.\n| Q1 | 2024-03-31 | 98.6% |\n"),
        }
        s.push('\n');
    }
    truncate(s, len)
}

/// Random lowercase ASCII letters: one long piece that is no token, the merge's worst case.
pub fn random_letters(len: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(99);
    (0..len).map(|_| rng.lowercase()).collect()
}

/// Random decimal digits.
pub fn random_digits(len: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(98);
    (0..len).map(|_| rng.digit(10)).collect()
}

/// Letters of ten scripts in random order, without spaces: a split point every few bytes.
pub fn mixed_scripts(len: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(97);
    let scripts = ['a', 'Ж', 'ω', '日', 'ا', 'क', 'Z', 'é', 'ñ', '한'];
    let mut s = String::with_capacity(len + 4);
    while s.len() < len {
        s.push(scripts[rng.usize(..scripts.len())]);
    }
    s
}

/// The adversarial inputs of issue 4, about `len` bytes each, with their names.
pub fn adversarial(len: usize) -> Vec<(&'static str, String)> {
    vec![
        ("random letters", random_letters(len)),
        ("one repeated char", "a".repeat(len)),
        ("digits", random_digits(len)),
        ("spaces", " ".repeat(len)),
        ("whitespace mix", " \n\t".repeat(len / 3)),
        ("4-byte emoji", "😀".repeat(len / 4)),
        ("mixed scripts", mixed_scripts(len)),
    ]
}

/// Every named input of the benches: (name, text).
pub fn inputs() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        ("prose 4 KB".into(), prose(4096)),
        ("prose 64 KB".into(), prose(64 << 10)),
        ("prose 1 MB".into(), prose(1 << 20)),
        ("CJK 64 KB".into(), cjk(64 << 10)),
        ("code 64 KB".into(), code(64 << 10)),
        ("mixed 1 MB".into(), mixed(1 << 20)),
    ];
    for (name, text) in adversarial(1 << 20) {
        v.push((format!("adversarial: {name} 1 MB"), text));
    }
    v
}

/// An OpenAI chat body with `content` as the user message (JSON-escaped).
pub fn chat_body(model: &str, content: &str) -> String {
    let mut escaped = String::with_capacity(content.len() + 16);
    for c in content.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if (c as u32) < 0x20 => escaped.push_str(&format!("\\u{:04x}", c as u32)),
            c => escaped.push(c),
        }
    }
    format!(r#"{{"model":"{model}","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{escaped}"}}]}}"#)
}
