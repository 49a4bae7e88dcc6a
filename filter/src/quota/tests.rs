//! Quota engine tests over an in-memory CAS store with Envoy's shared-data semantics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::*;
use crate::config::Config;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_000 * SEC;

/// Envoy's semantics: every set bumps a global version; a CAS against a changed entry fails; a
/// set of a missing key always succeeds.
#[derive(Default)]
pub(crate) struct MemStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    /// Writes another writer makes right before our next `set` (to provoke CAS mismatches).
    interfere: RefCell<Vec<(String, Vec<u8>)>>,
}

impl Store for MemStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.map.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let pending: Vec<_> = self.interfere.borrow_mut().drain(..).collect();
        for (k, v) in pending {
            self.set(&k, &v, None)?;
        }
        let mut map = self.map.borrow_mut();
        if let (Some(cas), Some((_, current))) = (cas, map.get(key)) {
            if cas != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        self.next_cas.set(self.next_cas.get() + 1);
        map.insert(key.to_owned(), (value.to_vec(), self.next_cas.get()));
        Ok(())
    }
}

fn quota(json: &str) -> QuotaConfig {
    Config::from_json(format!(r#"{{"quota": {json}}}"#).as_bytes()).unwrap().quota.unwrap()
}

fn key(n: u32) -> KeyName {
    KeyName::Id(format!("{n:016x}"))
}

/// A charge of `tokens` prompt tokens at weight 1.
fn tokens(n: u64) -> Charge {
    Charge { input_milli: n * MILLI, output_milli: 0 }
}

fn admit(q: &Quotas<'_>, s: &MemStore, k: &KeyName, now: u64, n: u64) -> Admission {
    q.admit(s, k, now, tokens(n), &mut false).unwrap()
}

fn admitted(a: Admission) -> Snapshot {
    match a {
        Admission::Admitted(s) => s,
        other => panic!("expected admission, got {other:?}"),
    }
}

#[test]
fn admits_until_the_bucket_is_spent_then_refuses_with_the_wait() {
    let cfg = quota(r#"{"tokens_per_minute": 1000}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    let snap = admitted(admit(&q, &s, &key(1), T0, 600));
    assert_eq!(snap.tokens.unwrap().remaining, 400);
    assert_eq!(snap.requests, None);
    match admit(&q, &s, &key(1), T0, 500) {
        Admission::Refused { kind, refusal: Refusal::Wait { wait_ns, used }, limit, requested, snapshot } => {
            assert_eq!(kind, LimitKind::TokensPerMinute);
            assert_eq!((used, limit, requested), (600 * MILLI, 1000, 500 * MILLI), "used and requested in milli-tokens");
            assert_eq!(wait_ns, 6 * SEC);
            assert_eq!(snapshot.tokens.unwrap().remaining, 400);
        }
        other => panic!("{other:?}"),
    }
    // A refusal consumes nothing; another key is unaffected; the bucket refills.
    assert_eq!(admitted(admit(&q, &s, &key(1), T0, 400)).tokens.unwrap().remaining, 0);
    assert_eq!(admitted(admit(&q, &s, &key(2), T0, 1000)).tokens.unwrap().remaining, 0);
    assert_eq!(admitted(admit(&q, &s, &key(1), T0 + 30 * SEC, 500)).tokens.unwrap().remaining, 0);
}

#[test]
fn a_request_over_capacity_can_never_fit() {
    let cfg = quota(r#"{"tokens_per_minute": 1000}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    assert!(matches!(admit(&q, &s, &key(1), T0, 1001), Admission::Refused { refusal: Refusal::NeverFits, .. }));
}

#[test]
fn requests_per_minute_and_every_bucket_must_cover_the_cost() {
    let cfg = quota(r#"{"tokens_per_minute": 1000, "tokens_per_day": 1500, "requests_per_minute": 2}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    let snap = admitted(admit(&q, &s, &key(1), T0, 100));
    assert_eq!(snap.requests.unwrap().remaining, 1);
    admitted(admit(&q, &s, &key(1), T0, 100));
    match admit(&q, &s, &key(1), T0, 1) {
        Admission::Refused { kind, .. } => assert_eq!(kind, LimitKind::RequestsPerMinute),
        other => panic!("{other:?}"),
    }
    // A minute later the minute buckets are full again; the day bucket holds 1300 of 1500.
    let later = T0 + 60 * SEC;
    let snap = admitted(admit(&q, &s, &key(1), later, 1000));
    let binding = snap.tokens.unwrap();
    assert_eq!((binding.limit, binding.remaining), (1000, 0), "the token bucket that binds first is reported");
    let binding = q.peek(&s, &key(1), later + 60 * SEC).unwrap().tokens.unwrap();
    // 1500 per day refills about one token a minute.
    assert_eq!((binding.limit, binding.remaining), (1500, 302));
    match admit(&q, &s, &key(1), later + 60 * SEC, 900) {
        Admission::Refused { kind, .. } => assert_eq!(kind, LimitKind::TokensPerDay),
        other => panic!("{other:?}"),
    }
}

#[test]
fn overrides_and_the_anonymous_bucket() {
    let cfg = quota(r#"{"tokens_per_minute": 100, "overrides": {"0000000000000007": {"tokens_per_minute": 5000}}}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    assert!(matches!(admit(&q, &s, &key(1), T0, 1000), Admission::Refused { .. }));
    admitted(admit(&q, &s, &key(7), T0, 1000));
    admitted(admit(&q, &s, &KeyName::Anonymous, T0, 100));
    assert!(matches!(admit(&q, &s, &KeyName::Anonymous, T0, 1), Admission::Refused { .. }));
}

#[test]
fn settle_refunds_and_charges_overage() {
    let cfg = quota(r#"{"tokens_per_minute": 1000, "requests_per_minute": 10}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    admitted(admit(&q, &s, &key(1), T0, 800));
    q.settle(&s, &key(1), T0, -500 * 1000, 0).unwrap();
    let snap = q.peek(&s, &key(1), T0).unwrap();
    assert_eq!(snap.tokens.unwrap().remaining, 700);
    assert_eq!(snap.requests.unwrap().remaining, 9, "a refund gives tokens back, not the request");
    q.settle(&s, &key(1), T0, 900 * 1000, 0).unwrap();
    assert_eq!(q.peek(&s, &key(1), T0).unwrap().tokens.unwrap().remaining, 0);
    assert!(matches!(admit(&q, &s, &key(1), T0 + 5 * SEC, 1), Admission::Refused { .. }));
    // Settling a key that was never admitted changes nothing.
    q.settle(&s, &key(99), T0, -5 * 1000, 0).unwrap();
    assert_eq!(q.peek(&s, &key(99), T0).unwrap().tokens.unwrap().remaining, 1000);
}

#[test]
fn a_key_flood_stays_within_max_tracked_keys() {
    let cfg = quota(r#"{"tokens_per_minute": 1000, "max_tracked_keys": 64}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    let mut evictions = 0;
    for n in 0..10_000 {
        let mut evicted = false;
        let a = q.admit(&s, &key(n), T0 + u64::from(n), tokens(10), &mut evicted).unwrap();
        assert!(matches!(a, Admission::Admitted(_)));
        evictions += u32::from(evicted);
    }
    assert!(s.map.borrow().len() <= 64, "{} slots", s.map.borrow().len());
    assert!(evictions > 9_000, "{evictions}");
}

#[test]
fn idle_slots_are_reused_without_eviction() {
    let cfg = quota(r#"{"tokens_per_minute": 1000, "max_tracked_keys": 4}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    for n in 0..4 {
        admitted(admit(&q, &s, &key(n), T0, 10));
    }
    // A minute later every bucket is full again: new keys take idle slots, nobody is evicted.
    for n in 4..8 {
        let mut evicted = false;
        q.admit(&s, &key(n), T0 + 61 * SEC, tokens(10), &mut evicted).unwrap();
        assert!(!evicted);
    }
    assert!(s.map.borrow().len() <= 4);
}

#[test]
fn a_concurrent_write_makes_the_cas_retry_and_nothing_is_lost() {
    let cfg = quota(r#"{"tokens_per_minute": 1000}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    admitted(admit(&q, &s, &key(1), T0, 100));
    // Another VM admits 300 for the same key between our read and our write.
    let other = MemStore::default();
    *other.map.borrow_mut() = s.map.borrow().clone();
    other.next_cas.set(s.next_cas.get());
    admitted(admit(&q, &other, &key(1), T0, 300));
    let (slot, (bytes, _)) = other.map.borrow().iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
    s.interfere.borrow_mut().push((slot, bytes));
    let snap = admitted(admit(&q, &s, &key(1), T0, 200));
    assert_eq!(snap.tokens.unwrap().remaining, 400, "100 + 300 + 200 taken");
}

#[test]
fn admissions_never_exceed_what_is_left() {
    let cfg = quota(r#"{"tokens_per_minute": 10000}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    admitted(admit(&q, &s, &key(1), T0, 9_000));
    let mut taken = 0;
    for round in 0..50 {
        let a = q.admit(&s, &key(1), T0, tokens(37 + round), &mut false).unwrap();
        if let Admission::Admitted(_) = a {
            taken += 37 + round;
        }
    }
    assert!(taken <= 1_000, "admitted {taken} of the 1000 left");
    assert!(taken > 900, "{taken}");
}

#[test]
fn input_and_output_buckets_take_their_own_share_and_settle_apart() {
    let cfg = quota(r#"{"input_tokens_per_minute": 1000, "output_tokens_per_minute": 100, "tokens_per_day": 100000}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    let charge = Charge { input_milli: 600 * MILLI, output_milli: 80 * MILLI };
    let snap = admitted(q.admit(&s, &key(1), T0, charge, &mut false).unwrap());
    assert_eq!(snap.input_tokens.unwrap().remaining, 400);
    assert_eq!(snap.output_tokens.unwrap().remaining, 20);
    assert_eq!(snap.tokens.unwrap().remaining, 100000 - 680);
    // The output bucket refuses although the input bucket has room.
    match q.admit(&s, &key(1), T0, Charge { input_milli: MILLI, output_milli: 21 * MILLI }, &mut false).unwrap() {
        Admission::Refused { kind, limit, requested, .. } => {
            assert_eq!((kind, limit, requested), (LimitKind::OutputTokensPerMinute, 100, 21 * MILLI));
        }
        other => panic!("{other:?}"),
    }
    // Output came in at 30 of the 80 reserved, input as counted: only the output buckets and the
    // token total move.
    q.settle(&s, &key(1), T0, 0, -50 * 1000).unwrap();
    let snap = q.peek(&s, &key(1), T0).unwrap();
    assert_eq!((snap.input_tokens.unwrap().remaining, snap.output_tokens.unwrap().remaining), (400, 70));
    assert_eq!(snap.tokens.unwrap().remaining, 100000 - 630);
}

#[test]
fn fractional_weights_are_exact_to_the_milli_token() {
    let cfg = quota(r#"{"tokens_per_minute": 10}"#);
    let (q, s) = (Quotas::new(&cfg), MemStore::default());
    // 40 charges of 0.25 tokens spend the 10 tokens exactly: no rounding per charge.
    for _ in 0..40 {
        admitted(q.admit(&s, &key(1), T0, Charge { input_milli: 250, output_milli: 0 }, &mut false).unwrap());
    }
    assert!(matches!(q.admit(&s, &key(1), T0, Charge { input_milli: 1, output_milli: 0 }, &mut false).unwrap(), Admission::Refused { .. }));
    assert_eq!(q.peek(&s, &key(1), T0).unwrap().tokens.unwrap().remaining, 0);
}
