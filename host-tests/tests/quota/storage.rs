//! Where buckets live: a bounded number of shared-data slots, an idle slot reused, a busy one
//! evicted closest to full first.

use std::time::Duration;

use host_tests::{Decision, Gateway};
use serde_json::json;

use super::{completion, costing, counter, spend, tokens, with_key};
use crate::support::{gateway, gateway_with_vms, post, CHAT};

#[test]
fn a_flood_of_keys_never_tracks_more_than_max_tracked_keys() {
    let mut gw = gateway_with_vms(
        r#"{"quota": {"tokens_per_minute": 1000, "max_tracked_keys": 50}}"#,
        4,
    );
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}).to_string();
    let quota_entries = |gw: &Gateway| -> Vec<String> {
        gw.shared_data_keys()
            .into_iter()
            .filter(|k| k.starts_with("tokengate.quota"))
            .collect()
    };
    for i in 0..2000 {
        let request = with_key(post(CHAT, &body), Some(&format!("sk-flood-{i}")));
        let out = gw.exchange(request, completion(8, 2)).unwrap();
        assert_eq!(
            out.decision,
            Decision::Forwarded,
            "request {i}: every new key starts full"
        );
        if i % 500 == 499 {
            assert!(
                quota_entries(&gw).len() <= 50,
                "after {i} keys: {:?}",
                quota_entries(&gw)
            );
        }
    }
    let entries = quota_entries(&gw);
    assert!(
        !entries.is_empty() && entries.len() <= 50,
        "{} entries: {entries:?}",
        entries.len()
    );
    for entry in &entries {
        let slot: u64 = entry
            .strip_prefix("tokengate.quota.")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected entry {entry}"));
        assert!(slot < 50, "{entry}");
    }
    let evictions = counter(&gw, "quota_evictions_total");
    assert!(
        (2000 - 50..2000).contains(&evictions),
        "every busy slot taken over is counted: {evictions}"
    );
    assert_eq!(counter(&gw, "quota_errors_total"), 0);
}

#[test]
fn an_idle_slot_is_reused_and_a_busy_one_evicted_closest_to_full_first() {
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 1000, "max_tracked_keys": 1}}"#);
    spend(&mut gw, costing("sk-a", 100));
    assert_eq!(gw.shared_data_keys(), ["tokengate.quota.0"]);
    // A minute later a's bucket is full: its slot holds nothing worth keeping.
    gw.advance(Duration::from_secs(60)).unwrap();
    spend(&mut gw, costing("sk-b", 100));
    assert_eq!(counter(&gw, "quota_evictions_total"), 0);
    // b's bucket is busy: c takes its slot, and b starts over.
    spend(&mut gw, costing("sk-c", 100));
    assert_eq!(counter(&gw, "quota_evictions_total"), 1);
    let done = spend(&mut gw, costing("sk-b", 100));
    assert_eq!(tokens(&done).map(|t| t.1), Some(900), "b was forgotten");
    assert_eq!(gw.shared_data_keys(), ["tokengate.quota.0"]);

    // With two slots, both busy, the bucket closest to full goes.
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 1000, "max_tracked_keys": 2}}"#);
    spend(&mut gw, costing("sk-a", 500));
    spend(&mut gw, costing("sk-b", 100));
    spend(&mut gw, costing("sk-c", 100));
    assert_eq!(counter(&gw, "quota_evictions_total"), 1);
    let done = spend(&mut gw, costing("sk-a", 100));
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(400),
        "a, the busier, was kept"
    );
    let done = spend(&mut gw, costing("sk-b", 100));
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(900),
        "b, closest to full, was evicted"
    );
    assert_eq!(counter(&gw, "quota_evictions_total"), 2);
    assert_eq!(gw.shared_data_keys().len(), 2);
}
