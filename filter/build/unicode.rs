//! The character classes of the split patterns, from regex-syntax's Unicode tables (the tables
//! the oracle's regex engine uses), and the `[\p{P}\p{S}]` bit table of DeepSeek's pattern.

use super::fail;
use super::layout::*;

/// Class of every code point, from regex-syntax's Unicode tables: level 1 is one u16 block
/// number per 128 code points, level 2 the distinct blocks of 128 class bytes.
pub fn unicode_classes() -> Vec<u8> {
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
        for r in class_ranges(pattern) {
            for cp in r {
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

/// The code point ranges of a Unicode class, from regex-syntax.
fn class_ranges(pattern: &str) -> Vec<std::ops::RangeInclusive<u32>> {
    let hir = regex_syntax::Parser::new().parse(pattern).unwrap_or_else(|e| fail(e));
    let regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(cls)) = hir.kind() else {
        fail(format!("{pattern} is not a Unicode class"))
    };
    cls.ranges().iter().map(|r| r.start() as u32..=r.end() as u32).collect()
}

/// `[\p{P}\p{S}]` as a two-level bit table (`layout::PUNCT_LIMIT`): one byte per block of 256
/// code points, the block's number among the distinct blocks, then the blocks, 32 bytes each.
pub fn unicode_punct() -> Vec<u8> {
    let block_bytes = (1usize << PUNCT_BLOCK_BITS) / 8;
    let mut bits = vec![0u8; PUNCT_LIMIT as usize / 8];
    for r in class_ranges(r"[\p{P}\p{S}]") {
        for cp in r {
            if cp >= PUNCT_LIMIT {
                fail(format!("U+{cp:04X} (punctuation or symbol) is past the table's limit"));
            }
            bits[cp as usize / 8] |= 1 << (cp % 8);
        }
    }
    let mut blocks: Vec<&[u8]> = Vec::new();
    let mut index: Vec<u8> = Vec::new();
    for chunk in bits.chunks(block_bytes) {
        let id = blocks.iter().position(|b| *b == chunk).unwrap_or_else(|| {
            blocks.push(chunk);
            blocks.len() - 1
        });
        index.push(u8::try_from(id).unwrap_or_else(|_| fail("more than 256 distinct punctuation blocks")));
    }
    let mut out = index;
    for b in blocks {
        out.extend_from_slice(b);
    }
    out
}
