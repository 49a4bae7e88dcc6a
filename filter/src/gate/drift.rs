//! The drift between tokengate's prompt count and the backend's: when it is over
//! `metering.drift_warn_ratio`, a counter moves for the model rule and, at most once a minute per
//! VM, a log line names the rule and the numbers. A rule naming the wrong tokenizer or chat
//! format shows here first.

/// Whether `backend` differs from `edge` by more than `ppm` parts per million of `edge` (any
/// difference at all when `edge` is 0).
pub(super) fn is_over(edge: u64, backend: u64, ppm: u32) -> bool {
    let diff = u128::from(edge.abs_diff(backend));
    diff * 1_000_000 > u128::from(edge) * u128::from(ppm)
}

/// The warning line (percentages with two decimals, in integer arithmetic).
pub(super) fn message(label: &str, edge: u64, backend: u64, ppm: u32, unlogged: u64) -> String {
    let sign = if backend >= edge { "+" } else { "-" };
    let diff = edge.abs_diff(backend);
    let share = if edge == 0 {
        "of a zero count".to_owned()
    } else {
        let basis_points = u128::from(diff) * 10_000 / u128::from(edge);
        format!("{sign}{}.{:02}%", basis_points / 100, basis_points % 100)
    };
    let threshold = format!("{}.{:02}%", ppm / 10_000, ppm / 100 % 100);
    let more = if unlogged > 0 { format!("; {unlogged} more drifting responses since the last line") } else { String::new() };
    format!(
        "prompt count drift on model rule `{label}`: the backend counted {backend} prompt tokens, tokengate {edge} ({share}, over the {threshold} of metering.drift_warn_ratio){more}; check the rule's tokenizer and chat format"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_a_share_of_the_edge_count() {
        assert!(!is_over(1000, 1020, 20_000), "2 % of 1000 is not over 2 %");
        assert!(is_over(1000, 1021, 20_000));
        assert!(is_over(1000, 979, 20_000));
        assert!(!is_over(0, 0, 0));
        assert!(is_over(0, 1, 20_000));
        assert!(!is_over(u64::MAX, u64::MAX, 0));
    }

    #[test]
    fn the_line_names_the_rule_and_the_numbers() {
        let line = message("llama3*", 1000, 1234, 20_000, 3);
        assert!(line.contains("`llama3*`"), "{line}");
        assert!(line.contains("counted 1234 prompt tokens, tokengate 1000 (+23.40%, over the 2.00%"), "{line}");
        assert!(line.contains("3 more drifting responses"), "{line}");
        assert!(message("x", 100, 90, 5_000, 0).contains("(-10.00%, over the 0.50%"));
    }
}
