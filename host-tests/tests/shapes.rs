//! Request shapes: chat, completions, embeddings, responses, images and tools, counted against
//! the fixtures and tiktoken-rs; bodies tokengate does not count pass through untouched.

use host_tests::{Action, Decision, Request};

use crate::support::{chat_body, chat_tokens, cl100k, fixture, gateway, o200k, post, send, CHAT};

fn prompt_tokens(config: &str, path: &str, body: &str) -> (u64, String, String) {
    let mut gw = gateway(config);
    let out = send(&mut gw, post(path, body));
    assert_eq!(out.decision, Decision::Forwarded, "{}", out.logs_text());
    let tokens = out
        .forwarded_header("x-tokengate-prompt-tokens")
        .unwrap_or_else(|| panic!("not counted: {out:#?}"));
    (
        tokens.parse().unwrap(),
        out.forwarded_header("x-tokengate-encoding")
            .unwrap()
            .to_string(),
        out.forwarded_header("x-tokengate-count")
            .unwrap()
            .to_string(),
    )
}

#[test]
fn fixtures_count_as_documented() {
    let cases = [
        ("chat_hello_gpt4o.json", CHAT, 11, "o200k_base"),
        ("chat_hello_gpt4.json", CHAT, 11, "cl100k_base"),
        ("chat_system_user.json", CHAT, 21, "o200k_base"),
        ("embeddings_hello.json", "/v1/embeddings", 4, "cl100k_base"),
        (
            "completions_token_arrays.json",
            "/v1/completions",
            5,
            "cl100k_base",
        ),
    ];
    for (name, path, tokens, encoding) in cases {
        let (got, enc, exactness) = prompt_tokens("{}", path, &fixture(name));
        assert_eq!(
            (got, enc.as_str(), exactness.as_str()),
            (tokens, encoding, "exact"),
            "{name}"
        );
    }
}

#[test]
fn chat_counts_match_tiktoken() {
    let prose = fixture("prose.txt");
    let messages = [
        ("system", "Answer briefly."),
        ("user", prose.as_str()),
        ("assistant", "Sure."),
        ("user", "Again, in French?"),
    ];
    for (model, count) in [
        ("gpt-4o-mini", o200k as fn(&str) -> u64),
        ("gpt-4.1", o200k),
        ("o3-mini", o200k),
        ("gpt-4-turbo", cl100k),
        ("gpt-3.5-turbo", cl100k),
    ] {
        let (got, _, _) = prompt_tokens("{}", CHAT, &chat_body(model, &messages));
        assert_eq!(got, chat_tokens(count, &messages), "{model}");
    }
}

#[test]
fn a_name_costs_its_tokens_plus_one() {
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","name":"alice","content":"Hello, world!"}]}"#;
    let (got, _, _) = prompt_tokens("{}", CHAT, body);
    assert_eq!(got, 11 + o200k("alice") + 1);
}

#[test]
fn special_token_text_counts_as_ordinary_text() {
    let content = "before <|endoftext|> after <|im_start|>";
    let (got, _, _) = prompt_tokens("{}", CHAT, &chat_body("gpt-4o", &[("user", content)]));
    assert_eq!(got, chat_tokens(o200k, &[("user", content)]));
    assert!(
        o200k(content) > 3,
        "the oracle counts the text, not one special token"
    );
}

#[test]
fn completions_and_embeddings_count_their_text() {
    let prose = fixture("prose.txt");
    let body = serde_json::json!({"model": "gpt-3.5-turbo-instruct", "prompt": prose}).to_string();
    assert_eq!(
        prompt_tokens("{}", "/v1/completions", &body).0,
        cl100k(&prose)
    );
    let body =
        serde_json::json!({"model": "text-embedding-3-large", "input": ["Hello, world!", prose]})
            .to_string();
    assert_eq!(
        prompt_tokens("{}", "/v1/embeddings", &body).0,
        cl100k("Hello, world!") + cl100k(&prose)
    );
}

#[test]
fn the_responses_api_is_counted() {
    let body = r#"{"model":"gpt-4o","input":"Hello, world!","instructions":"Be brief."}"#;
    let (got, encoding, _) = prompt_tokens("{}", "/v1/responses", body);
    assert_eq!(encoding, "o200k_base");
    assert!(got >= o200k("Hello, world!") + o200k("Be brief."), "{got}");
}

#[test]
fn model_rules_pick_the_encoding_user_rules_first() {
    let hello = |model: &str| chat_body(model, &[("user", "Hello, world!")]);
    assert_eq!(
        prompt_tokens("{}", CHAT, &hello("some-local-model")).1,
        "o200k_base",
        "default encoding"
    );
    assert_eq!(
        prompt_tokens(
            r#"{"encoding":"cl100k_base"}"#,
            CHAT,
            &hello("some-local-model")
        )
        .1,
        "cl100k_base"
    );
    assert_eq!(
        prompt_tokens(r#"{"encoding":"cl100k_base"}"#, CHAT, &hello("gpt-4o")).1,
        "o200k_base",
        "built-in rule beats the default"
    );
    let user_rule = r#"{"models":[{"match":"gpt-4o*","encoding":"cl100k_base"}]}"#;
    assert_eq!(
        prompt_tokens(user_rule, CHAT, &hello("gpt-4o-2024-08-06")).1,
        "cl100k_base",
        "user rules first"
    );
    let exact = r#"{"models":[{"match":"gpt-4o","encoding":"cl100k_base"}]}"#;
    assert_eq!(
        prompt_tokens(exact, CHAT, &hello("gpt-4o-mini")).1,
        "o200k_base",
        "an exact rule matches only that name"
    );
}

#[test]
fn images_tools_and_schemas_make_the_count_estimated() {
    let (got, _, exactness) = prompt_tokens("{}", CHAT, &fixture("chat_image.json"));
    assert_eq!(exactness, "estimated");
    assert_eq!(
        got,
        3 + 3 + o200k("user") + o200k("What is in this image?") + 765
    );
    let (got, _, _) = prompt_tokens(
        r#"{"image_tokens": 100}"#,
        CHAT,
        &fixture("chat_image.json"),
    );
    assert_eq!(
        got,
        3 + 3 + o200k("user") + o200k("What is in this image?") + 100
    );

    let (got, _, exactness) = prompt_tokens("{}", CHAT, &fixture("chat_tools.json"));
    assert_eq!(exactness, "estimated");
    assert!(
        got > chat_tokens(o200k, &[("user", "What's the weather in Paris?")]),
        "tools cost tokens: {got}"
    );

    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object"}}}}"#;
    assert_eq!(prompt_tokens("{}", CHAT, body).2, "estimated");
}

#[test]
fn bodies_tokengate_does_not_count_pass_through_untouched() {
    let cases: Vec<(&str, Request)> = vec![
        ("bodyless GET", Request::get("/v1/models")),
        (
            "plain text",
            Request::post("/v1/chat/completions")
                .header("content-type", "text/plain")
                .body("Hello, world!"),
        ),
        ("unrecognised JSON", post(CHAT, r#"{"hello":"world"}"#)),
        ("JSON array", post(CHAT, "[1,2,3]")),
        (
            "empty JSON body",
            Request::post(CHAT).header("content-type", "application/json"),
        ),
        (
            "multipart upload",
            Request::post("/v1/files")
                .header("content-type", "multipart/form-data; boundary=x")
                .body("--x\r\n\r\n{\"messages\":[]}\r\n--x--"),
        ),
    ];
    for (what, request) in cases {
        let mut gw = gateway("{}");
        let sent_body: Vec<u8> = request.body_chunks().concat();
        let out = send(&mut gw, request);
        assert_eq!(out.decision, Decision::Forwarded, "{what}");
        let forwarded = out.forwarded.as_ref().unwrap();
        assert_eq!(forwarded.body, sent_body, "{what}: body untouched");
        assert!(
            forwarded.headers_with_prefix("x-tokengate-").is_empty(),
            "{what}: {:?}",
            forwarded.headers
        );
        assert_eq!(
            out.filter_state_str("wasm.tokengate.decision").as_deref(),
            Some("passthrough"),
            "{what}"
        );
    }
}

#[test]
fn uploads_are_not_buffered() {
    let mut gw = gateway("{}");
    let out = send(
        &mut gw,
        Request::post("/v1/audio/transcriptions")
            .header("content-type", "audio/wav")
            .body(vec![0u8; 4096]),
    );
    assert_eq!(
        out.actions[0],
        ("proxy_on_request_headers", Action::Continue),
        "decided at the headers"
    );
}
