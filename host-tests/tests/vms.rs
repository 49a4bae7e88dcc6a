//! Several VMs, as Envoy runs one per worker: each configured alike, stats shared.

use host_tests::{Error, Gateway};

use crate::support::{fixture, gateway_with_vms, post, send, CHAT};

#[test]
fn requests_spread_over_vms_and_stats_add_up() {
    let mut gw = gateway_with_vms(r#"{"max_prompt_tokens": 15}"#, 4);
    assert_eq!(gw.vm_count(), 4);
    let mut served = [0; 4];
    for _ in 0..8 {
        let out = send(&mut gw, post(CHAT, &fixture("chat_hello_gpt4o.json")));
        assert_eq!(
            out.forwarded_header("x-tokengate-prompt-tokens"),
            Some("11")
        );
        served[out.stream.vm] += 1;
    }
    assert_eq!(served, [2, 2, 2, 2], "round-robin");
    let out = send(
        &mut gw,
        post(CHAT, &fixture("chat_system_user.json")).on_vm(3),
    );
    assert_eq!(out.stream.vm, 3);
    assert_eq!(
        out.local_status(),
        Some(400),
        "every VM has the configuration"
    );
    assert_eq!(gw.counter("tokengate.requests_total"), Some(9));
    assert_eq!(gw.counter("tokengate.allowed_total"), Some(8));
    assert_eq!(gw.counter("tokengate.prompt_tokens_total"), Some(88));
    assert_eq!(
        gw.histogram("tokengate.prompt_tokens").map(|s| s.len()),
        Some(8)
    );
}

#[test]
fn a_bad_configuration_is_refused_by_the_first_vm() {
    match Gateway::with_vms(r#"{"max_prompt_tokens": -1}"#, 3) {
        Err(Error::ConfigRejected { vm, .. }) => assert_eq!(vm, 0),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn gateways_are_independent() {
    let mut a = gateway_with_vms("{}", 2);
    let b = gateway_with_vms("{}", 2);
    send(&mut a, post(CHAT, &fixture("chat_hello_gpt4o.json")));
    assert_eq!(a.counter("tokengate.requests_total"), Some(1));
    assert_eq!(b.counter("tokengate.requests_total"), Some(0));
}
