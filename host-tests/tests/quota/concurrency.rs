//! Reservations racing across VMs: many requests in flight on every VM, answered in random order,
//! never admit more than the bucket holds.

use std::time::Duration;

use host_tests::{Decision, Outcome};

use super::{completion, costing, counter, prompt, rate_limited, respond, tokens, HELLO};
use crate::support::{gateway_with_vms, send};

#[test]
fn concurrent_reservations_across_vms_never_admit_more_than_is_left() {
    const VMS: usize = 4;
    const Q: u64 = 1000;
    let mut gw = gateway_with_vms(r#"{"quota": {"tokens_per_minute": 1000}}"#, VMS);
    let p = prompt(HELLO);
    // The model: tokens in use in the key's bucket (1000 a minute: one token refills per 60 ms).
    let mut in_use = 0u64;
    // Requests admitted and not answered yet: (outcome, reserved, remaining as of admission).
    let mut in_flight: Vec<(Outcome, u64, u64)> = Vec::new();

    // Many requests in flight at once, spread over the VMs, before any response.
    let mut admitted_cost = 0;
    for i in 0..40 {
        let cost = p + 40 + (i as u64 * 37) % 90;
        let out = send(&mut gw, costing("sk-shared", cost).on_vm(i % VMS));
        if out.decision == Decision::Forwarded {
            assert!(
                in_use + cost <= Q,
                "request {i}: admitted {cost} with {in_use} in use"
            );
            in_use += cost;
            admitted_cost += cost;
            in_flight.push((out, cost, Q - in_use));
        } else {
            rate_limited(&out, "tokens");
            assert!(
                in_use + cost > Q,
                "request {i}: refused {cost} with {in_use} in use"
            );
        }
    }
    assert!(admitted_cost <= Q, "{admitted_cost} admitted in flight");
    assert!(in_flight.len() >= 7 && in_flight.len() < 40);
    let vms: std::collections::BTreeSet<usize> =
        in_flight.iter().map(|(o, ..)| o.stream.vm).collect();
    assert_eq!(vms.len(), VMS, "admitted on every VM");

    // Then a random mix, the same every run (a fixed seed): new requests on any VM, responses in
    // any order (refunds, exact usage, overage), and the clock moving on now and then.
    let mut rng = fastrand::Rng::with_seed(0x5eed_1234_abcd);
    let (mut admissions, mut refusals) = (0, 0);
    for step in 0..400 {
        match rng.u64(..10) {
            0 => {
                let ticks = rng.u64(..300);
                gw.advance(Duration::from_millis(60 * ticks)).unwrap();
                in_use = in_use.saturating_sub(ticks);
            }
            1..=5 => {
                let cost = p + 1 + rng.u64(..150);
                let vm = rng.usize(..VMS);
                let out = send(&mut gw, costing("sk-shared", cost).on_vm(vm));
                if out.decision == Decision::Forwarded {
                    assert!(
                        in_use + cost <= Q,
                        "step {step}: admitted {cost} with {in_use} in use"
                    );
                    in_use += cost;
                    in_flight.push((out, cost, Q - in_use));
                    admissions += 1;
                } else {
                    rate_limited(&out, "tokens");
                    assert!(
                        in_use + cost > Q,
                        "step {step}: refused {cost} with {in_use} in use"
                    );
                    refusals += 1;
                }
            }
            _ if in_flight.is_empty() => {}
            _ => {
                let (out, cost, remaining) = in_flight.swap_remove(rng.usize(..in_flight.len()));
                let actual = match rng.u64(..4) {
                    0 => cost,
                    1 => cost + rng.u64(..60),
                    _ => p + rng.u64(..cost - p),
                };
                let done = respond(&mut gw, &out, completion(p, actual - p));
                assert_eq!(tokens(&done).map(|t| t.1), Some(remaining), "step {step}");
                if actual < cost {
                    in_use = in_use.saturating_sub(cost - actual);
                } else {
                    in_use += actual - cost;
                }
            }
        }
    }
    assert!(
        admissions > 20 && refusals > 20,
        "{admissions} admitted, {refusals} refused"
    );
    assert_eq!(counter(&gw, "quota_errors_total"), 0);
}
