//! Configuration: defaults, every field accepted, and every bad value refused at configure time
//! with a log line naming the field.

use host_tests::{Error, Gateway};

use crate::support::{chat_body, gateway, post, send, CHAT};

fn rejected(config: &str) -> Vec<String> {
    match Gateway::new(config) {
        Err(Error::ConfigRejected { logs, .. }) => logs,
        Err(other) => panic!("{config}: expected a rejected config, got {other}"),
        Ok(_) => panic!("{config}: accepted"),
    }
}

#[test]
fn no_configuration_and_empty_object_mean_defaults() {
    for config in ["", "  ", "{}"] {
        let mut gw = gateway(config);
        let out = send(
            &mut gw,
            post(CHAT, &chat_body("gpt-4o", &[("user", "Hello, world!")])),
        );
        assert_eq!(
            out.forwarded_header("x-tokengate-prompt-tokens"),
            Some("11"),
            "config {config:?}"
        );
        assert_eq!(
            out.forwarded_header("x-tokengate-encoding"),
            Some("o200k_base")
        );
    }
}

#[test]
fn every_documented_field_is_accepted() {
    let config = r#"{
        "encoding": "cl100k_base",
        "models": [{"match": "gpt-4o*", "encoding": "o200k_base", "max_prompt_tokens": 1000},
                   {"match": "my-model", "encoding": "cl100k_base"}],
        "max_prompt_tokens": 64000,
        "max_output_tokens": 4096,
        "max_body_bytes": 2097152,
        "api_key": {"header": "x-api-key", "required": false},
        "image_tokens": 500
    }"#;
    let mut gw = gateway(config);
    let out = send(
        &mut gw,
        post(CHAT, &chat_body("my-model", &[("user", "Hello, world!")])),
    );
    assert_eq!(
        out.forwarded_header("x-tokengate-encoding"),
        Some("cl100k_base")
    );
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    let cases = [
        (r#"{"max_promt_tokens": 5}"#, "max_promt_tokens"),
        (r#"{"encoding": "p50k_base"}"#, "encoding"),
        (r#"{"max_prompt_tokens": 0}"#, "max_prompt_tokens"),
        (r#"{"max_body_bytes": 0}"#, "max_body_bytes"),
        (r#"{"max_output_tokens": 0}"#, "max_output_tokens"),
        (
            r#"{"models": [{"match": "gpt-*x", "encoding": "o200k_base"}]}"#,
            "match",
        ),
        (
            r#"{"models": [{"match": "m", "encoding": "gpt2"}]}"#,
            "encoding",
        ),
        (r#"{"models": [{"match": "m", "colour": "red"}]}"#, "colour"),
        (
            r#"{"api_key": {"header": "authorization", "requried": true}}"#,
            "requried",
        ),
        (
            r#"{"api_key": {"header": "bad header name"}}"#,
            "api_key.header",
        ),
    ];
    for (config, field) in cases {
        let logs = rejected(config);
        assert!(
            logs.iter()
                .any(|l| l.starts_with("error") && l.contains(field)),
            "{config}: no error line naming {field}: {logs:?}"
        );
    }
}

#[test]
fn values_of_the_wrong_type_are_refused_naming_the_field() {
    for (config, field) in [
        (r#"{"max_prompt_tokens": "lots"}"#, "max_prompt_tokens"),
        (r#"{"image_tokens": -1}"#, "image_tokens"),
        (r#"{"api_key": {"required": "yes"}}"#, "required"),
    ] {
        let logs = rejected(config);
        assert!(
            logs.iter().any(|l| l.contains(field)),
            "{config}: no line naming {field}: {logs:?}"
        );
    }
}

#[test]
fn malformed_json_configuration_is_refused() {
    let logs = rejected("{not json");
    assert!(logs.iter().any(|l| l.contains("tokengate")), "{logs:?}");
}
