//! The character classes of the split patterns, from regex-syntax's Unicode tables (the tables
//! the oracle's regex engine uses).

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
