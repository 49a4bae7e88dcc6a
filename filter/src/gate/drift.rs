//! The drift between tokengate's prompt count and the backend's: when it is over
//! `metering.drift_warn_ratio`, a counter moves for the model rule and, at most once a minute per
//! VM, a log line names the rule and the numbers. A rule naming the wrong tokenizer or chat
//! format shows here first.

use std::cell::Cell;

const MINUTE_NS: u64 = 60_000_000_000;

/// Whether `backend` differs from `edge` by more than `ppm` parts per million of `edge` (any
/// difference at all when `edge` is 0).
pub(super) fn is_over(edge: u64, backend: u64, ppm: u32) -> bool {
    let diff = u128::from(edge.abs_diff(backend));
    diff * 1_000_000 > u128::from(edge) * u128::from(ppm)
}

/// One VM's memory of the last drift line: the time it was written and the drifting responses
/// not logged since.
#[derive(Debug, Default)]
pub struct DriftLog {
    last_ns: Cell<Option<u64>>,
    unlogged: Cell<u64>,
}

impl DriftLog {
    /// A drifting response at `now`: `Some(n)` when a line may be written now (`n` drifting
    /// responses went unlogged since the last line), `None` within a minute of the last line.
    pub(super) fn admit(&self, now: u64) -> Option<u64> {
        match self.last_ns.get() {
            Some(last) if now.saturating_sub(last) < MINUTE_NS => {
                self.unlogged.set(self.unlogged.get().saturating_add(1));
                None
            }
            _ => {
                self.last_ns.set(Some(now));
                Some(self.unlogged.replace(0))
            }
        }
    }
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
    fn one_line_a_minute_counting_the_rest() {
        let log = DriftLog::default();
        assert_eq!(log.admit(5 * MINUTE_NS), Some(0));
        assert_eq!(log.admit(5 * MINUTE_NS + 1), None);
        assert_eq!(log.admit(6 * MINUTE_NS - 1), None);
        assert_eq!(log.admit(6 * MINUTE_NS), Some(2));
        assert_eq!(log.admit(6 * MINUTE_NS), None);
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
