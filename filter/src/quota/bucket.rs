//! Token-bucket arithmetic as a pure function of (limit, state, now, cost): no clock, no storage.
//!
//! A bucket of capacity C refilling C per period P is kept as one number, the theoretical arrival
//! time `tat` (GCRA): the bucket is full when `tat <= now`, and `tat - now` is how long it takes to
//! refill what is in use. Each token costs P/C of time. Integer nanoseconds, so refills never lose
//! fractions of a token to rounding, and one `u64` per bucket fits in shared data.

/// A limit: `capacity` units per `period_ns`, refilled continuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub capacity: u64,
    pub period_ns: u64,
}

/// Where a bucket stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub limit: u64,
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset_ns: u64,
}

/// Why a cost was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Enough will have refilled after `wait_ns`.
    Wait { wait_ns: u64, used: u64 },
    /// The cost exceeds the capacity: it can never be admitted.
    NeverFits,
}

impl Limit {
    /// Time the bucket needs to refill `units` (rounded up, so it never refills early).
    fn duration_of(self, units: u64) -> u64 {
        let ns = u128::from(units) * u128::from(self.period_ns);
        u64::try_from(ns.div_ceil(u128::from(self.capacity.max(1)))).unwrap_or(u64::MAX)
    }

    /// Units that refill in `ns` (rounded down).
    fn units_in(self, ns: u64) -> u64 {
        let units = u128::from(ns) * u128::from(self.capacity) / u128::from(self.period_ns.max(1));
        u64::try_from(units).unwrap_or(u64::MAX)
    }

    /// The bucket's level at `now`.
    pub fn level(self, tat: u64, now: u64) -> Level {
        let in_use_ns = tat.saturating_sub(now);
        // Round what is in use up, so `remaining` never promises a unit that has not refilled.
        let in_use = self.capacity.saturating_sub(self.units_in(self.period_ns.saturating_sub(in_use_ns)));
        Level {
            limit: self.capacity,
            remaining: self.capacity.saturating_sub(in_use),
            reset_ns: in_use_ns,
        }
    }

    /// Takes `cost` units at `now`: the new `tat`, or why not.
    pub fn admit(self, tat: u64, now: u64, cost: u64) -> Result<u64, Refusal> {
        if cost > self.capacity {
            return Err(Refusal::NeverFits);
        }
        let new_tat = tat.max(now).saturating_add(self.duration_of(cost));
        let horizon = now.saturating_add(self.period_ns);
        if new_tat <= horizon {
            Ok(new_tat)
        } else {
            let level = self.level(tat, now);
            Err(Refusal::Wait {
                wait_ns: new_tat - horizon,
                used: self.capacity - level.remaining,
            })
        }
    }

    /// Gives back `units` (a refund): never beyond a full bucket.
    pub fn refund(self, tat: u64, now: u64, units: u64) -> u64 {
        tat.saturating_sub(self.duration_of(units)).max(now.min(tat))
    }

    /// Charges `units` unconditionally (usage beyond the reservation); the bucket may go into
    /// debt, which later requests wait out.
    pub fn charge(self, tat: u64, now: u64, units: u64) -> u64 {
        tat.max(now).saturating_add(self.duration_of(units))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const MIN: u64 = 60_000_000_000;
    const SEC: u64 = 1_000_000_000;
    const TPM: Limit = Limit { capacity: 1000, period_ns: MIN };

    #[test]
    fn a_fresh_bucket_is_full() {
        assert_eq!(TPM.level(0, 5 * MIN), Level { limit: 1000, remaining: 1000, reset_ns: 0 });
    }

    #[test]
    fn admits_up_to_capacity_then_refuses_with_the_wait() {
        let now = 10 * MIN;
        let tat = TPM.admit(0, now, 600).unwrap();
        assert_eq!(TPM.level(tat, now).remaining, 400);
        let tat = TPM.admit(tat, now, 400).unwrap();
        assert_eq!(TPM.level(tat, now).remaining, 0);
        match TPM.admit(tat, now, 100) {
            // 100 tokens refill in 6 s at 1000/min.
            Err(Refusal::Wait { wait_ns, used }) => assert_eq!((wait_ns, used), (6 * SEC, 1000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(TPM.admit(tat, now, 1001), Err(Refusal::NeverFits));
    }

    #[test]
    fn refills_continuously() {
        let now = 10 * MIN;
        let tat = TPM.admit(0, now, 1000).unwrap();
        assert_eq!(TPM.level(tat, now + 6 * SEC).remaining, 100);
        assert_eq!(TPM.level(tat, now + 30 * SEC).remaining, 500);
        assert_eq!(TPM.level(tat, now + MIN).remaining, 1000);
        assert_eq!(TPM.level(tat, now + 30 * SEC).reset_ns, 30 * SEC);
        assert!(TPM.admit(tat, now + 6 * SEC, 100).is_ok());
        assert!(TPM.admit(tat, now + 6 * SEC, 101).is_err());
    }

    #[test]
    fn many_small_refills_lose_nothing() {
        // 1 token per 60 ms: 1000 admissions of 1 token spaced 60 ms apart never run dry.
        let mut tat = TPM.admit(0, MIN, 1000).unwrap();
        for i in 1..=1000 {
            tat = TPM.admit(tat, MIN + i * 60_000_000, 1).unwrap();
        }
    }

    #[test]
    fn refunds_and_overage_charges() {
        let now = 10 * MIN;
        let tat = TPM.admit(0, now, 800).unwrap();
        let back = TPM.refund(tat, now, 300);
        assert_eq!(TPM.level(back, now).remaining, 500);
        // Never beyond full.
        assert_eq!(TPM.level(TPM.refund(back, now, 10_000), now).remaining, 1000);
        // An overage may put the bucket in debt.
        let debt = TPM.charge(tat, now, 500);
        assert_eq!(TPM.level(debt, now).remaining, 0);
        assert!(TPM.admit(debt, now + 10 * SEC, 1).is_err());
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let big = Limit { capacity: u64::MAX / 2, period_ns: 86_400 * SEC };
        let tat = big.admit(u64::MAX - 1, u64::MAX - 1, 5).unwrap_or(u64::MAX);
        let _ = big.level(tat, u64::MAX);
        let tiny = Limit { capacity: 1, period_ns: 1 };
        assert!(tiny.admit(0, 0, 1).is_ok());
    }
}
