//! Settlement of SSE streams: usage the client asked for passes untouched, usage the filter asked
//! for is hidden from the client, and a stream without usage is charged the counted estimate.

use host_tests::{Request, Response};
use serde_json::{json, Value};

use super::{
    admitted, costing, counter, forwarded_number, prompt, respond, spend, state, tokens, with_key,
    HELLO,
};
use crate::support::{gateway, gateway_with_vms, o200k, post, CHAT};

/// One `data:` event of a chat completion stream.
fn event(data: Value) -> String {
    format!("data: {data}\n\n")
}

const DELTAS: [&str; 3] = ["Hello", " there,", " how can I help?"];

/// A chat completion stream: role, content deltas, finish, then (when given) the usage-only
/// chunk, then `[DONE]`. Returns the events in order.
fn stream_events(usage: Option<(u64, u64)>) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        event(
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    events.extend(
        DELTAS
            .iter()
            .map(|d| chunk(json!({"content": d}), Value::Null)),
    );
    events.push(chunk(json!({}), json!("stop")));
    if let Some((prompt_tokens, completion_tokens)) = usage {
        events.push(event(
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
            "model": "gpt-4o", "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}),
        ));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

fn sse(chunks: Vec<String>) -> Response {
    Response::ok()
        .header("content-type", "text/event-stream")
        .chunks(chunks)
}

fn streaming_chat(key: &str, stream_options: Option<Value>) -> (Request, String) {
    let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": HELLO}],
                          "stream": true, "max_tokens": 100});
    if let Some(options) = stream_options {
        body["stream_options"] = options;
    }
    let body = body.to_string();
    (with_key(post(CHAT, &body), Some(key)), body)
}

#[test]
fn a_stream_whose_client_asked_for_usage_passes_untouched_and_settles() {
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 1000}}"#);
    let (request, body) = streaming_chat("sk-alice", Some(json!({"include_usage": true})));
    let out = admitted(&mut gw, request);
    assert_eq!(
        out.forwarded_body(),
        Some(body.as_bytes()),
        "nothing to ask for"
    );
    assert_eq!(
        out.forwarded_header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(forwarded_number(&out, "x-tokengate-reserved-tokens"), 111);

    let stream: String = stream_events(Some((11, 7))).concat();
    let chunks: Vec<String> = stream
        .as_bytes()
        .chunks(37)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let done = respond(&mut gw, &out, sse(chunks));
    let client = done.response.as_ref().unwrap();
    assert_eq!(
        client.body_text(),
        stream,
        "the client asked for the usage chunk: it keeps it"
    );
    assert_eq!(state(&done, "actual_tokens").as_deref(), Some("18"));
    assert_eq!(state(&done, "usage").as_deref(), Some("reported"));
    assert_eq!(counter(&gw, "refunded_tokens_total"), 111 - 18);
    assert_eq!(counter(&gw, "usage_missing_total"), 0);
    let done = spend(&mut gw, costing("sk-alice", 100));
    assert_eq!(tokens(&done).map(|t| t.1), Some(1000 - 18 - 100));

    // The responses API always reports usage at the end of a stream: nothing to ask or hide.
    let body = json!({"model": "gpt-4o", "input": HELLO, "stream": true, "max_output_tokens": 50})
        .to_string();
    let out = admitted(
        &mut gw,
        with_key(post("/v1/responses", &body), Some("sk-bob")),
    );
    assert_eq!(out.forwarded_body(), Some(body.as_bytes()));
    let input = forwarded_number(&out, "x-tokengate-prompt-tokens");
    let stream = [
        event(json!({"type": "response.created", "response": {"status": "in_progress"}})),
        event(json!({"type": "response.output_text.delta", "delta": "Hi"})),
        event(
            json!({"type": "response.completed", "response": {"status": "completed",
            "usage": {"input_tokens": input, "output_tokens": 4, "total_tokens": input + 4}}}),
        ),
    ]
    .concat();
    let done = respond(
        &mut gw,
        &out,
        sse(vec![stream[..60].to_string(), stream[60..].to_string()]),
    );
    assert_eq!(done.response.as_ref().unwrap().body_text(), stream);
    assert_eq!(state(&done, "actual_tokens"), Some((input + 4).to_string()));
    assert_eq!(state(&done, "usage").as_deref(), Some("reported"));
}

#[test]
fn a_stream_gets_usage_asked_for_and_the_usage_chunk_hidden_from_the_client() {
    let mut gw = gateway_with_vms(r#"{"quota": {"tokens_per_minute": 1000}}"#, 2);
    let (request, body) = streaming_chat("sk-alice", None);
    let out = admitted(&mut gw, request);
    let forwarded = out.forwarded_body().unwrap();
    assert_eq!(
        out.forwarded_header("content-length"),
        Some(forwarded.len().to_string().as_str()),
        "content-length follows the rewritten body"
    );
    let text = std::str::from_utf8(forwarded).unwrap();
    assert!(
        text.contains(r#""stream_options":{"include_usage":true}"#),
        "{text}"
    );
    let mut expected: Value = serde_json::from_str(&body).unwrap();
    expected["stream_options"] = json!({"include_usage": true});
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), expected);

    // The usage event is cut three ways across chunks; every other byte must come through as is.
    let events = stream_events(Some((11, 9)));
    let usage_event = &events[5];
    assert!(usage_event.contains(r#""choices":[]"#) && usage_event.ends_with("}\n\n"));
    let (u1, rest) = usage_event.split_at(10);
    // The last cut falls between the two newlines that end the event.
    let (u2, u3) = rest.split_at(rest.len() - 1);
    let chunks = vec![
        events[..2].concat(),
        events[2..4].concat() + &events[4][..20],
        events[4][20..].to_string() + u1,
        u2.to_string(),
        u3.to_string() + &events[6],
    ];
    assert_eq!(chunks.concat(), events.concat());
    let done = respond(&mut gw, &out, sse(chunks));
    let client = done.response.as_ref().unwrap();
    let without_usage: String = events
        .iter()
        .filter(|e| *e != usage_event)
        .map(String::as_str)
        .collect();
    assert_eq!(client.body_text(), without_usage);
    if let Some(length) = client.header("content-length") {
        assert_eq!(
            length,
            client.body.len().to_string(),
            "a content-length must match the body"
        );
    }
    assert_eq!(state(&done, "usage").as_deref(), Some("reported"));
    assert_eq!(state(&done, "actual_tokens").as_deref(), Some("20"));
    assert_eq!(counter(&gw, "completion_tokens_total"), 9);
    let done = spend(&mut gw, costing("sk-alice", 100));
    assert_eq!(tokens(&done).map(|t| t.1), Some(1000 - 20 - 100));

    // A stream the backend sent with a content-length: the client must not get a stale one.
    let (request, _) = streaming_chat("sk-carol", None);
    let out = admitted(&mut gw, request);
    let response = Response::ok()
        .header("content-type", "text/event-stream")
        .body(events.concat())
        .in_chunks(40);
    assert!(response
        .headers()
        .iter()
        .any(|(k, _)| k == "content-length"));
    let done = respond(&mut gw, &out, response);
    let client = done.response.as_ref().unwrap();
    assert_eq!(client.body_text(), without_usage);
    if let Some(length) = client.header("content-length") {
        assert_eq!(
            length,
            client.body.len().to_string(),
            "a content-length must match the body"
        );
    }

    // The legacy completions API streams the same way; a request body in pieces is no different.
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": HELLO, "stream": true, "max_tokens": 20}).to_string();
    let chunks: Vec<Vec<u8>> = body.as_bytes().chunks(16).map(<[u8]>::to_vec).collect();
    let request = Request::post("/v1/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-dave")
        .chunks(chunks);
    let out = admitted(&mut gw, request);
    let forwarded = out.forwarded_body().unwrap();
    let mut expected: Value = serde_json::from_str(&body).unwrap();
    expected["stream_options"] = json!({"include_usage": true});
    assert_eq!(
        serde_json::from_slice::<Value>(forwarded).unwrap(),
        expected
    );
    // Sent in pieces without a content-length: none is invented for the rewritten body.
    assert_eq!(out.forwarded_header("content-length"), None);

    // stream_options present without include_usage (or set false): asked for all the same.
    for options in [json!({}), json!({"include_usage": false})] {
        let (request, body) = streaming_chat("sk-bob", Some(options.clone()));
        let out = admitted(&mut gw, request);
        let forwarded = out.forwarded_body().unwrap();
        assert_eq!(
            out.forwarded_header("content-length"),
            Some(forwarded.len().to_string().as_str()),
            "{options}"
        );
        let mut expected: Value = serde_json::from_str(&body).unwrap();
        expected["stream_options"]["include_usage"] = json!(true);
        assert_eq!(
            serde_json::from_slice::<Value>(forwarded).unwrap(),
            expected
        );
        let done = respond(&mut gw, &out, sse(vec![events.concat()]));
        assert_eq!(
            done.response.as_ref().unwrap().body_text(),
            without_usage,
            "{options}"
        );
    }
}

#[test]
fn a_stream_without_usage_is_charged_the_counted_estimate() {
    let mut gw = gateway(r#"{"quota": {"tokens_per_minute": 1000}}"#);
    let (request, _) = streaming_chat("sk-alice", None);
    let out = admitted(&mut gw, request);
    let events = stream_events(None);
    let stream = events.concat();
    let chunks: Vec<String> = stream
        .as_bytes()
        .chunks(50)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let done = respond(&mut gw, &out, sse(chunks));
    assert_eq!(
        done.response.as_ref().unwrap().body_text(),
        stream,
        "nothing to hide"
    );
    let output: u64 = DELTAS.iter().map(|d| o200k(d)).sum();
    let actual = prompt(HELLO) + output;
    assert_eq!(state(&done, "usage").as_deref(), Some("estimated"));
    assert_eq!(state(&done, "actual_tokens"), Some(actual.to_string()));
    assert_eq!(counter(&gw, "usage_missing_total"), 1);
    assert_eq!(counter(&gw, "completion_tokens_total"), output);
    assert_eq!(counter(&gw, "refunded_tokens_total"), 111 - actual);
    let done = spend(&mut gw, costing("sk-alice", 100));
    assert_eq!(tokens(&done).map(|t| t.1), Some(1000 - actual - 100));
}
