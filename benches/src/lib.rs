//! Shared inputs for the benchmarks (prose, code, CJK, adversarial text).
