//! Settlement of JSON responses: the backend's usage refunds the unused reservation or charges the
//! overage; a failed or missing response refunds all of it.

use host_tests::Response;
use serde_json::json;

use super::{
    admitted, chat, completion, costing, counter, forwarded_number, level, prompt, respond, spend,
    state, tokens, with_key, DEFAULT_RESERVATION, HELLO,
};
use crate::support::{gateway_with_vms, post};

#[test]
fn json_usage_settles_the_reservation_refunds_and_overage() {
    let mut gw = gateway_with_vms(r#"{"quota": {"tokens_per_minute": 1000}}"#, 2);
    let p = prompt(HELLO);
    assert_eq!(p, 11);

    // Default reservation; the backend used far less.
    let out = admitted(&mut gw, chat(Some("sk-alice"), HELLO, None).on_vm(0));
    let reserved = p + DEFAULT_RESERVATION;
    assert_eq!(
        forwarded_number(&out, "x-tokengate-reserved-tokens"),
        reserved
    );
    let usage = Response::ok().json(
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there!"}}],
               "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
                         "prompt_tokens_details": {"cached_tokens": 4}}})
        .to_string(),
    );
    let done = respond(&mut gw, &out, usage);
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(1000 - reserved),
        "the response's headers are as of admission"
    );
    assert_eq!(state(&done, "reserved_tokens"), Some(reserved.to_string()));
    assert_eq!(state(&done, "actual_tokens").as_deref(), Some("16"));
    assert_eq!(state(&done, "usage").as_deref(), Some("reported"));
    assert_eq!(counter(&gw, "refunded_tokens_total"), reserved - 16);
    assert_eq!(counter(&gw, "completion_tokens_total"), 5);
    assert_eq!(counter(&gw, "cached_prompt_tokens_total"), 4);
    assert_eq!(gw.histogram("tokengate.prompt_drift_tokens"), Some(vec![0]));
    assert_eq!(counter(&gw, "prompt_drift_negative_total"), 0);

    // The gateway's levels replace any the backend sent: one value each.
    let out = admitted(&mut gw, chat(Some("sk-bob"), HELLO, Some(89)).on_vm(1));
    let response = completion(11, 89)
        .header("x-ratelimit-remaining-tokens", "149990000")
        .header("x-ratelimit-limit-tokens", "150000000");
    let done = respond(&mut gw, &out, response);
    let client = done.response.as_ref().unwrap();
    assert_eq!(
        client.header_values("x-ratelimit-remaining-tokens"),
        ["900"]
    );
    assert_eq!(client.header_values("x-ratelimit-limit-tokens"), ["1000"]);

    // The refund shows in the next response, on another VM: 16 spent, 21 reserved.
    let out = admitted(&mut gw, chat(Some("sk-alice"), HELLO, Some(10)).on_vm(1));
    assert_eq!(forwarded_number(&out, "x-tokengate-reserved-tokens"), 21);
    // The backend counted 9 prompt tokens and wrote 100: 88 more than reserved are charged.
    let done = respond(&mut gw, &out, completion(9, 100));
    assert_eq!(tokens(&done).map(|t| t.1), Some(1000 - 16 - 21));
    assert_eq!(state(&done, "actual_tokens").as_deref(), Some("109"));
    assert_eq!(
        counter(&gw, "refunded_tokens_total"),
        reserved - 16,
        "an overage refunds nothing"
    );
    assert_eq!(counter(&gw, "completion_tokens_total"), 5 + 89 + 100);
    assert_eq!(
        gw.histogram("tokengate.prompt_drift_tokens"),
        Some(vec![0, 0, 2])
    );
    assert_eq!(counter(&gw, "prompt_drift_negative_total"), 1);

    // Responses API: input_tokens + output_tokens.
    let body = json!({"model": "gpt-4o", "input": HELLO, "max_output_tokens": 30}).to_string();
    let out = admitted(
        &mut gw,
        with_key(post("/v1/responses", &body), Some("sk-alice")).on_vm(0),
    );
    let input = forwarded_number(&out, "x-tokengate-prompt-tokens");
    assert_eq!(
        forwarded_number(&out, "x-tokengate-reserved-tokens"),
        input + 30
    );
    let response = Response::ok().json(
        json!({"object": "response", "output": [],
               "usage": {"input_tokens": input, "output_tokens": 3, "total_tokens": input + 3}})
        .to_string(),
    );
    let done = respond(&mut gw, &out, response);
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(1000 - 16 - 109 - (input + 30))
    );
    assert_eq!(counter(&gw, "refunded_tokens_total"), reserved - 16 + 27);

    let done = spend(&mut gw, costing("sk-alice", 100).on_vm(1));
    assert_eq!(
        tokens(&done).map(|t| t.1),
        Some(1000 - 16 - 109 - (input + 3) - 100)
    );
}

#[test]
fn a_failed_or_missing_response_refunds_the_whole_reservation() {
    let mut gw = gateway_with_vms(r#"{"quota": {"tokens_per_minute": 1000}}"#, 2);
    let error = r#"{"error":{"message":"upstream overloaded","type":"server_error"}}"#;
    let failures = [
        Response::new(500).json(error),
        Response::new(503)
            .header("content-type", "text/event-stream")
            .chunks(["data: {\"error\":{}}\n\n"]),
        Response::new(429).json(error),
    ];
    let mut refunded = 0;
    for (i, failure) in failures.into_iter().enumerate() {
        let out = admitted(&mut gw, costing("sk-alice", 300).on_vm(i % 2));
        let done = respond(&mut gw, &out, failure);
        assert_eq!(
            tokens(&done).map(|t| t.1),
            Some(700),
            "response {i}: as of admission"
        );
        refunded += 300;
        assert_eq!(
            counter(&gw, "refunded_tokens_total"),
            refunded,
            "response {i}"
        );
    }
    // The client goes away before any response.
    let out = admitted(&mut gw, costing("sk-alice", 300));
    gw.finish(out.stream).unwrap();
    assert_eq!(counter(&gw, "refunded_tokens_total"), 1200);
    assert_eq!(
        counter(&gw, "usage_missing_total"),
        0,
        "a failure is not missing usage"
    );
    let done = spend(&mut gw, costing("sk-alice", 1000));
    assert_eq!(
        tokens(&done),
        level(1000, 0, "1m0s"),
        "everything came back"
    );
}
