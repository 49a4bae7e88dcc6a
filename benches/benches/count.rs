//! Placeholder bench: the tokenizer benches arrive with issue 4.
fn main() {}
