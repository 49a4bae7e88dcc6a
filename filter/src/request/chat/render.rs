//! A rendered prompt as the backend tokenizes it: special tokens (one token each) and the runs
//! of text between them, each run tokenized as one string.
//!
//! Exactness rests on the runs: a tokenizer's pieces can span the joint of two texts the
//! template wrote one after the other (`"system\n" + content`), so adjacent text always joins
//! into one run, and a run ends only at a special token or where the backend itself encodes
//! two texts apart (mistral-common and openai-harmony encode some pieces separately: [`Prompt::cut`]).

/// One piece of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A special token, written as its text.
    Special(&'static str),
    /// A maximal run of text, tokenized as one string.
    Text(String),
    /// The backend encodes the texts on either side apart (no token of its own).
    Cut,
}

/// A prompt being rendered: its segments, and whether anything in it was approximated.
#[derive(Debug, Default)]
pub(crate) struct Prompt {
    pub(crate) segments: Vec<Segment>,
    /// Part of the request was rendered approximately (images, unmodelled options).
    pub(crate) estimated: bool,
    /// Tokens of parts not rendered as text (images, at the configured estimate each).
    pub(crate) images: u64,
}

impl Prompt {
    pub(crate) fn special(&mut self, token: &'static str) {
        self.segments.push(Segment::Special(token));
    }

    /// Appends text to the current run (or starts one).
    pub(crate) fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        match self.segments.last_mut() {
            Some(Segment::Text(run)) => run.push_str(text),
            _ => self.segments.push(Segment::Text(text.to_owned())),
        }
    }

    /// Ends the current run: the next text is encoded on its own.
    pub(crate) fn cut(&mut self) {
        if matches!(self.segments.last(), Some(Segment::Text(_))) {
            self.segments.push(Segment::Cut);
        }
    }

    /// The rendered text, special tokens written out: what the backend's template produces.
    #[cfg(test)]
    pub(crate) fn rendered_text(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Special(s) => out.push_str(s),
                Segment::Text(t) => out.push_str(t),
                Segment::Cut => {}
            }
        }
        out
    }
}

/// Python's `str.strip()` (Jinja's `trim`): Unicode white space and U+001C..U+001F, which
/// Python counts as white space and Rust's `char::is_whitespace` does not.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_text_joins_and_cuts_split() {
        let mut p = Prompt::default();
        p.special("<s>");
        p.text("a");
        p.text("");
        p.text("b");
        p.cut();
        p.cut();
        p.text("c");
        p.special("</s>");
        p.cut();
        assert_eq!(
            p.segments,
            vec![
                Segment::Special("<s>"),
                Segment::Text("ab".into()),
                Segment::Cut,
                Segment::Text("c".into()),
                Segment::Special("</s>")
            ]
        );
        assert_eq!(p.rendered_text(), "<s>abc</s>");
    }

    #[test]
    fn strip_is_pythons() {
        assert_eq!(py_strip("\u{1f} \u{3000}a b\u{85}\n"), "a b");
        assert_eq!(py_strip("\u{200b}a"), "\u{200b}a");
    }
}
