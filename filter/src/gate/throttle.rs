//! At most one log line a minute per VM for a condition that may hold for every request (prompt
//! drift, a failing rate limit service): the line says how many occurrences went unlogged since.

use std::cell::Cell;

const MINUTE_NS: u64 = 60_000_000_000;

/// One VM's memory of a condition's last line: the time it was written and the occurrences not
/// logged since.
#[derive(Debug, Default)]
pub struct LogThrottle {
    last_ns: Cell<Option<u64>>,
    unlogged: Cell<u64>,
}

impl LogThrottle {
    /// An occurrence at `now`: `Some(n)` when a line may be written now (`n` occurrences went
    /// unlogged since the last line), `None` within a minute of the last line.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_minute_counting_the_rest() {
        let log = LogThrottle::default();
        assert_eq!(log.admit(5 * MINUTE_NS), Some(0));
        assert_eq!(log.admit(5 * MINUTE_NS + 1), None);
        assert_eq!(log.admit(6 * MINUTE_NS - 1), None);
        assert_eq!(log.admit(6 * MINUTE_NS), Some(2));
        assert_eq!(log.admit(6 * MINUTE_NS), None);
    }
}
