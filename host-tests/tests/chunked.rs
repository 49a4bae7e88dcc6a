//! Bodies in several chunks: buffered until complete, counted as a whole, forwarded unchanged.

use host_tests::{Action, Decision, Request};

use crate::support::{chat_body, chat_tokens, fixture, gateway, o200k, post, send, CHAT};

#[test]
fn a_body_in_one_byte_chunks_counts_like_the_whole() {
    let body = fixture("chat_system_user.json");
    let mut gw = gateway("{}");
    let out = send(&mut gw, post(CHAT, &body).in_chunks(1));
    assert_eq!(out.decision, Decision::Forwarded);
    assert_eq!(
        out.forwarded_header("x-tokengate-prompt-tokens"),
        Some("21")
    );
    assert_eq!(out.forwarded_body(), Some(body.as_bytes()));
    let actions: Vec<Action> = out.actions.iter().map(|(_, a)| *a).collect();
    assert_eq!(actions.len(), body.len() + 1);
    assert!(
        actions[..body.len()].iter().all(|a| *a == Action::Pause),
        "paused until the last chunk"
    );
    assert_eq!(actions.last(), Some(&Action::Continue));
}

#[test]
fn chunked_transfer_without_content_length() {
    let text = fixture("prose.txt");
    let body = chat_body("gpt-4o", &[("user", &text)]);
    let chunks: Vec<&[u8]> = body.as_bytes().chunks(17).collect();
    let mut gw = gateway("{}");
    let out = send(
        &mut gw,
        Request::post(CHAT)
            .header("content-type", "application/json")
            .chunks(chunks),
    );
    let expected = chat_tokens(o200k, &[("user", &text)]).to_string();
    assert_eq!(
        out.forwarded_header("x-tokengate-prompt-tokens"),
        Some(expected.as_str())
    );
    assert_eq!(out.forwarded_header("content-length"), None);
    assert_eq!(out.forwarded_body(), Some(body.as_bytes()));
}

#[test]
fn a_body_followed_by_trailers_is_decided_at_the_trailers() {
    let body = fixture("chat_hello_gpt4o.json");
    let mut gw = gateway("{}");
    let out = send(
        &mut gw,
        post(CHAT, &body).in_chunks(10).trailer("x-checksum", "abc"),
    );
    assert_eq!(out.decision, Decision::Forwarded, "{}", out.logs_text());
    assert_eq!(
        out.forwarded_header("x-tokengate-prompt-tokens"),
        Some("11")
    );
    let forwarded = out.forwarded.unwrap();
    assert_eq!(forwarded.body_text(), body);
    assert_eq!(
        forwarded.trailers,
        [("x-checksum".to_string(), "abc".to_string())]
    );
}

#[test]
fn malformed_json_split_across_chunks_is_still_refused() {
    let mut gw = gateway("{}");
    let out = send(
        &mut gw,
        post(CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","#).in_chunks(5),
    );
    assert_eq!(out.local_status(), Some(400));
    assert_eq!(out.local_json().unwrap()["error"]["code"], "invalid_json");
}
