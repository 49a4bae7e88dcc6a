//! Config validation tests: defaults, every field's range, and the messages an operator reads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;


fn defaults() -> Config {
    Config::from_json(b"").unwrap()
}

fn err(json: &str) -> String {
    Config::from_json(json.as_bytes()).unwrap_err().to_string()
}

#[test]
fn empty_and_default_configs_agree() {
    let empty = Config::from_json(b"").unwrap();
    let braces = Config::from_json(b" {} ").unwrap();
    assert_eq!(empty, braces);
    assert_eq!(empty.default_tokenizer, Tokenizer::of(Encoding::O200kBase));
    assert_eq!(empty.max_prompt_tokens, 128_000);
    assert_eq!(empty.max_output_tokens, None);
    assert_eq!(empty.max_body_bytes, 1_048_576);
    assert_eq!(empty.image_tokens, 765);
    assert_eq!(empty.api_key.header, "authorization");
    assert!(!empty.api_key.required);
}

#[test]
fn full_config_parses() {
    let c = Config::from_json(
        br#"{"encoding":"cl100k_base","models":[{"match":"llama-3*","encoding":"o200k_base","max_prompt_tokens":8192},{"match":"tiny","max_prompt_tokens":10}],
            "max_prompt_tokens":1000,"max_output_tokens":500,"max_body_bytes":2048,
            "api_key":{"header":"X-Api-Key","required":true},"image_tokens":100}"#,
    )
    .unwrap();
    assert_eq!(c.default_tokenizer, Tokenizer::of(Encoding::Cl100kBase));
    assert_eq!(c.max_output_tokens, Some(500));
    assert_eq!(c.api_key.header, "x-api-key");
    assert!(c.api_key.required);
    assert_eq!(
        c.policy_for(Some("llama-3.1-70b")),
        ModelPolicy { tokenizer: Tokenizer::of(Encoding::O200kBase), max_prompt_tokens: 8192, label: 1, cost: Cost::UNIT }
    );
    assert_eq!(
        c.policy_for(Some("tiny")),
        ModelPolicy { tokenizer: Tokenizer::of(Encoding::Cl100kBase), max_prompt_tokens: 10, label: 2, cost: Cost::UNIT }
    );
    assert_eq!(
        c.policy_for(Some("tiny-2")),
        ModelPolicy { tokenizer: Tokenizer::of(Encoding::Cl100kBase), max_prompt_tokens: 1000, label: 0, cost: Cost::UNIT }
    );
}

#[test]
fn builtin_rules_choose_the_openai_encoding() {
    let c = defaults();
    for (model, enc) in [
        ("gpt-4o", Encoding::O200kBase),
        ("gpt-4o-mini-2024-07-18", Encoding::O200kBase),
        ("gpt-4.1-nano", Encoding::O200kBase),
        ("gpt-5", Encoding::O200kBase),
        ("o1-preview", Encoding::O200kBase),
        ("o3-mini", Encoding::O200kBase),
        ("o4-mini", Encoding::O200kBase),
        ("gpt-4", Encoding::Cl100kBase),
        ("gpt-4-turbo", Encoding::Cl100kBase),
        ("gpt-3.5-turbo-instruct", Encoding::Cl100kBase),
        ("text-embedding-3-large", Encoding::Cl100kBase),
        ("text-embedding-ada-002", Encoding::Cl100kBase),
        ("llama-3", Encoding::O200kBase),
    ] {
        assert_eq!(c.policy_for(Some(model)).tokenizer, Tokenizer::of(enc), "{model}");
    }
    assert_eq!(c.policy_for(None).tokenizer, Tokenizer::of(Encoding::O200kBase));
}

#[test]
fn user_rules_come_before_builtins() {
    let c = Config::from_json(br#"{"models":[{"match":"gpt-4o*","encoding":"cl100k_base"}]}"#)
        .unwrap();
    assert_eq!(c.policy_for(Some("gpt-4o")).tokenizer, Tokenizer::of(Encoding::Cl100kBase));
}

#[test]
fn rejects_unknown_fields_and_wrong_types() {
    assert!(err(r#"{"max_prompt_token": 5}"#).contains("unknown field `max_prompt_token`"));
    assert_eq!(
        err(r#"{"max_prompt_tokens": "lots"}"#),
        "invalid tokengate configuration: `max_prompt_tokens`: invalid type: expected an unsigned integer, got string \"lots\""
    );
    assert!(err(r#"{"quota": {"overrides": {"0123456789abcdef": {"tokens_per_day": "x"}}}}"#)
        .contains("`quota.overrides.0123456789abcdef.tokens_per_day`: invalid type"));
    assert!(err(r#"{} trailing"#).contains("trailing characters"));
    assert!(err(r#"{"api_key": {"header": "x", "requird": true}}"#).contains("unknown field"));
    assert!(err(r#"{"models": [{"match": "a", "encodin": "x"}]}"#).contains("unknown field"));
    assert!(err("not json").contains("invalid tokengate configuration"));
    assert!(err(r#"{"max_prompt_tokens": -1}"#).contains("invalid"));
}

#[test]
fn read_errors_name_the_path_and_what_was_found() {
    for (config, message) in [
        ("[]", "invalid type: expected an object, got an array"),
        (r#"{"models": {}}"#, "`models`: invalid type: expected an array, got an object"),
        (
            r#"{"models": [{"match": "a", "max_prompt_tokens": 1.5}]}"#,
            "`models[0].max_prompt_tokens`: invalid type: expected an unsigned integer, got a fractional number",
        ),
        (r#"{"max_body_bytes": -3}"#, "`max_body_bytes`: invalid type: expected an unsigned integer, got -3"),
        (r#"{"routing": {"classes": [{"name": "a"}]}}"#, "`routing.classes[0]`: missing field `max_tokens`"),
        (
            r#"{"api_key": {"header": "x", "requird": true}}"#,
            "`api_key`: unknown field `requird`, expected one of `header`, `required`",
        ),
    ] {
        assert_eq!(err(config), format!("invalid tokengate configuration: {message}"), "{config}");
    }
    assert!(err(r#"{"quota": {"tokens_per_minute": 5, "overrides": []}}"#)
        .contains("`quota.overrides`: invalid type: expected an object of key ids, got an array"));
    assert!(err(r#"{"api_key": {"required": "yes"}}"#).contains("`api_key.required`: invalid type: expected a boolean"));
    let long = "x".repeat(100);
    assert!(err(&format!(r#"{{"encoding": 7, "models": [{{"match": 1}}], "x": "{long}"}}"#)).contains("unknown field `x`"));
    assert!(err(r#"{"models": [{"match": 1}]}"#).ends_with("`models[0].match`: invalid type: expected a string, got 1"));
}

#[test]
fn null_is_an_absent_field_except_for_quota_limits() {
    let c = Config::from_json(br#"{"encoding": null, "models": null, "max_prompt_tokens": null, "api_key": null,
        "routing": null, "quota": null}"#)
        .unwrap();
    assert_eq!(c, defaults());
    // In quota limits, null removes a limit the key would otherwise inherit.
    let c = Config::from_json(br#"{"quota": {"tokens_per_minute": 10, "tokens_per_day": 100,
        "overrides": {"0123456789abcdef": {"tokens_per_day": null}}}}"#)
        .unwrap();
    let q = c.quota.unwrap();
    assert_eq!(q.limits_for("0123456789abcdef").tokens_per_day, None);
    assert_eq!(q.limits_for("0123456789abcdef").tokens_per_minute, Some(10));
    assert_eq!(q.limits_for("ffffffffffffffff").tokens_per_day, Some(100));
}

#[test]
fn routing_classes() {
    let c = Config::from_json(br#"{"routing": {"clear_route_cache": true, "classes": [
        {"name": "short", "max_tokens": 4096}, {"name": "long", "max_tokens": 131072}]}}"#)
        .unwrap();
    assert!(c.routing.clear_route_cache);
    assert_eq!(c.routing.class_for(0), Some("short"));
    assert_eq!(c.routing.class_for(4096), Some("short"));
    assert_eq!(c.routing.class_for(4097), Some("long"));
    assert_eq!(c.routing.class_for(131_073), None);
    assert_eq!(defaults().routing.class_for(1), None);
    assert!(!defaults().routing.clear_route_cache);
    assert!(err(r#"{"routing": {"classes": [{"name": "a", "max_tokens": 10}, {"name": "b", "max_tokens": 10}]}}"#)
        .contains("`routing.classes[1].max_tokens` must be larger than the previous class's 10"));
    assert!(err(r#"{"routing": {"classes": [{"name": "has space", "max_tokens": 10}]}}"#)
        .contains("`routing.classes[0].name`"));
    assert!(err(r#"{"routing": {"classes": [{"name": "a", "max_tokens": 0}]}}"#)
        .contains("`routing.classes[0].max_tokens`"));
    assert!(err(r#"{"routing": {"classes": [{"name": "a", "max_tokens": 1}, {"name": "a", "max_tokens": 2}]}}"#)
        .contains("used twice"));
    assert!(err(r#"{"routing": {"clear_route_cache": "yes"}}"#).contains("invalid type"));
    assert!(err(r#"{"routing": {"classes": [{"name": "a"}]}}"#).contains("missing field `max_tokens`"));
}

#[test]
fn quota_with_overrides() {
    let c = Config::from_json(br#"{"quota": {"tokens_per_minute": 100000, "requests_per_minute": 60,
        "overrides": {"0123456789abcdef": {"tokens_per_minute": 500000, "requests_per_minute": null}}}}"#)
        .unwrap();
    let q = c.quota.unwrap();
    assert_eq!(q.default_output_reservation, 256);
    assert_eq!(q.max_tracked_keys, 100_000);
    assert_eq!(
        q.limits_for("ffffffffffffffff"),
        KeyLimits { tokens_per_minute: Some(100_000), requests_per_minute: Some(60), ..KeyLimits::default() }
    );
    assert_eq!(
        q.limits_for("0123456789abcdef"),
        KeyLimits { tokens_per_minute: Some(500_000), ..KeyLimits::default() }
    );
    assert!(defaults().quota.is_none());
}

#[test]
fn quota_errors() {
    assert!(err(r#"{"quota": {}}"#).contains("`quota` sets no limit"));
    assert!(err(r#"{"quota": {"tokens_per_minute": 0}}"#).contains("`quota.tokens_per_minute` must be between"));
    assert!(err(r#"{"quota": {"tokens_per_minute": 10, "overrides": {"sk-live-123": {}}}}"#)
        .contains("is not a key id"));
    assert!(err(r#"{"quota": {"tokens_per_minute": 10, "max_tracked_keys": 0}}"#).contains("`quota.max_tracked_keys`"));
    assert!(err(r#"{"quota": {"tokens_per_minut": 10}}"#).contains("unknown field"));
    assert!(err(r#"{"quota": {"tokens_per_minute": 10, "overrides": {"0123456789abcdef": {"tokens_per_mnute": 1}}}}"#)
        .contains("unknown field"));
}

#[test]
fn rejects_out_of_range_values_naming_the_field() {
    assert_eq!(
        err(r#"{"max_prompt_tokens": 0}"#),
        "invalid tokengate configuration: `max_prompt_tokens` must be between 1 and 100000000, got 0"
    );
    assert!(err(r#"{"max_output_tokens": 0}"#).contains("`max_output_tokens`"));
    assert!(err(r#"{"max_body_bytes": 1000000000}"#).contains("`max_body_bytes`"));
    assert!(err(r#"{"encoding": "p50k_base"}"#).contains("`encoding` must be"));
    assert!(err(r#"{"models": [{"match": "a*b"}]}"#).contains("`models[0].match`"));
    assert!(err(r#"{"models": [{"match": ""}]}"#).contains("must not be empty"));
    assert!(err(r#"{"models": [{"match": "a", "max_prompt_tokens": 0}]}"#)
        .contains("`models[0].max_prompt_tokens`"));
    assert!(err(r#"{"api_key": {"header": "bad header"}}"#).contains("`api_key.header`"));
    assert!(err(r#"{"api_key": {"header": ":path"}}"#).contains("`api_key.header`"));
}

#[test]
fn tokenizer_names_any_tokenizer_of_the_build_and_encoding_is_its_synonym_for_the_built_ins() {
    let c = Config::from_json(br#"{"tokenizer": "cl100k_base", "models": [{"match": "m1", "tokenizer": "o200k_base"}, {"match": "m2", "encoding": "cl100k_base"}]}"#).unwrap();
    assert_eq!(c.default_tokenizer.name(), "cl100k_base");
    assert_eq!(c.policy_for(Some("m1")).tokenizer.name(), "o200k_base");
    assert_eq!(c.policy_for(Some("m2")).tokenizer.name(), "cl100k_base");
    // A name the build does not contain is refused, naming the rule's field, the name and what
    // the build has.
    let e = err(r#"{"models": [{"match": "Qwen/*", "tokenizer": "no-such-tokenizer"}]}"#);
    assert!(e.contains("`models[0].tokenizer` names \"no-such-tokenizer\", which this build does not contain"), "{e}");
    assert!(e.contains("cl100k_base, o200k_base"), "{e}");
    assert!(err(r#"{"tokenizer": "p50k_base"}"#).contains("`tokenizer` names \"p50k_base\""));
    // `encoding` stays the two built-in names; both fields at once is ambiguous.
    assert!(err(r#"{"models": [{"match": "m", "encoding": "llama3"}]}"#).contains("`models[0].encoding` must be"));
    let e = err(r#"{"tokenizer": "o200k_base", "encoding": "o200k_base"}"#);
    assert!(e.contains("`encoding` is a synonym of `tokenizer`"), "{e}");
}

#[test]
fn chat_names_a_format_of_the_build() {
    let c = Config::from_json(br#"{"models": [{"match": "gpt-4o*", "chat": "openai"}]}"#).unwrap();
    assert_eq!(c.chat_format_for(Some("gpt-4o-mini")), ChatFormat::OpenAi);
    assert_eq!(c.chat_format_for(None), ChatFormat::OpenAi);
    let e = err(r#"{"models": [{"match": "m", "chat": "vicuna"}]}"#);
    assert!(e.contains("`models[0].chat` names \"vicuna\", which is not a chat format (known: openai, llama3"), "{e}");
    let qwen = Config::from_json(br#"{"models": [{"match": "Qwen/Qwen3-*", "chat": "qwen3"}]}"#);
    if cfg!(tokengate_chat) {
        assert_eq!(qwen.unwrap().chat_format_for(Some("Qwen/Qwen3-8B")), ChatFormat::Qwen3);
    } else {
        let e = qwen.unwrap_err().to_string();
        assert!(e.contains("`models[0].chat` names the chat format \"qwen3\", which this build does not have"), "{e}");
    }
}

#[test]
fn open_weight_model_names_pick_the_build_tokenizer_of_their_family() {
    let c = defaults();
    let cases = [
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3.1", ChatFormat::Llama31),
        ("meta-llama/Llama-3.3-70B-Instruct", "llama3.1", ChatFormat::Llama31),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3", ChatFormat::Llama3),
        ("Qwen/Qwen3-32B", "qwen3", ChatFormat::Qwen3),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen3", ChatFormat::Qwen25),
        ("Qwen/Qwen3.6-35B-A3B", "qwen3.6", ChatFormat::Qwen35),
        ("deepseek-ai/DeepSeek-V3-0324", "deepseek-v3", ChatFormat::DeepseekV3),
        ("mistralai/Mistral-Nemo-Instruct-2407", "mistral-tekken", ChatFormat::Mistral),
        ("google/gemma-3-27b-it", "gemma3", ChatFormat::Gemma3),
        ("openai/gpt-oss-120b", "gpt-oss", ChatFormat::Harmony),
        ("gpt-oss-20b", "gpt-oss", ChatFormat::Harmony),
    ];
    for (model, tokenizer, chat) in cases {
        let policy = c.policy_for(Some(model));
        match Tokenizer::by_name(tokenizer).filter(|_| chat.in_build()) {
            Some(t) => {
                assert_eq!(policy.tokenizer, t, "{model}");
                assert_eq!(c.chat_format_for(Some(model)), chat, "{model}");
            }
            // A build without the family's tokenizer: the default (or gpt-oss's built-in o200k rule).
            None => {
                assert_eq!(policy.tokenizer, Tokenizer::of(Encoding::O200kBase), "{model}");
                assert_eq!(c.chat_format_for(Some(model)), ChatFormat::OpenAi, "{model}");
            }
        }
    }
}

#[test]
fn input_and_output_limits_inherit_and_override() {
    let c = Config::from_json(br#"{"quota": {"input_tokens_per_minute": 1000, "output_tokens_per_day": 50,
        "overrides": {"0123456789abcdef": {"input_tokens_per_minute": null, "output_tokens_per_minute": 7}}}}"#)
    .unwrap();
    let q = c.quota.unwrap();
    assert_eq!(q.limits, KeyLimits { input_tokens_per_minute: Some(1000), output_tokens_per_day: Some(50), ..KeyLimits::default() });
    assert_eq!(
        q.limits_for("0123456789abcdef"),
        KeyLimits { output_tokens_per_minute: Some(7), output_tokens_per_day: Some(50), ..KeyLimits::default() }
    );
    assert!(err(r#"{"quota": {"output_tokens_per_day": 0}}"#).contains("`quota.output_tokens_per_day` must be between"));
    assert!(err(r#"{"quota": {"input_tokens_per_hour": 5}}"#).contains("unknown field `input_tokens_per_hour`"));
}

#[test]
fn labels_and_costs_of_model_rules() {
    let c = Config::from_json(
        br#"{"models": [{"match": "meta-llama/Llama-3.1-8B*", "cost": {"input": 0.5, "output": 2, "cached_input": 0.125}},
                        {"match": "big", "label": "premium", "cost": {"input": 3}},
                        {"match": "big-2", "label": "premium"}]}"#,
    )
    .unwrap();
    assert_eq!(c.operator_labels, 2, "two distinct labels: a shared label is one series");
    let llama = c.policy_for(Some("meta-llama/Llama-3.1-8B-Instruct"));
    assert_eq!(c.labels.get(llama.label), "meta-llama/Llama-3.1-8B*");
    assert_eq!(llama.cost, Cost { input: 500, cached_input: 125, output: 2000 });
    let big = c.policy_for(Some("big"));
    assert_eq!((c.labels.get(big.label), big.cost), ("premium", Cost { input: 3000, cached_input: 3000, output: 1000 }));
    assert_eq!(c.policy_for(Some("big-2")).label, big.label);
    assert_eq!(c.policy_for(Some("unknown")).label, 0);
    assert_eq!(c.policy_for(None).label, 0);
    assert_eq!(c.labels.get(0), "other");
    // Cost arithmetic: cached prompt tokens at their own rate, all in milli-tokens.
    assert_eq!(llama.cost.input_milli(100, 40), 60 * 500 + 40 * 125);
    assert_eq!(llama.cost.input_milli(10, 40), 10 * 125, "cached never exceeds the prompt");
    assert_eq!(llama.cost.output_milli(3), 6000);

    assert!(err(r#"{"models": [{"match": "a b"}]}"#).contains("`models[0].match` \"a b\" cannot label the rule's stats"));
    assert!(err(r#"{"models": [{"match": "x", "label": "a..b"}]}"#).contains("`models[0].label` must be"));
    assert!(err(r#"{"models": [{"match": "x", "label": ""}]}"#).contains("`models[0].label` must be"));
    assert!(err(r#"{"models": [{"match": "x", "cost": {"input": -1}}]}"#).contains("`models[0].cost.input` must be a weight"));
    assert!(err(r#"{"models": [{"match": "x", "cost": {"output": 0.0005}}]}"#).contains("`models[0].cost.output` has more than three decimals"));
    assert!(err(r#"{"models": [{"match": "x", "cost": {"outptu": 1}}]}"#).contains("unknown field `outptu`"));
    assert!(err(r#"{"models": [{"match": "x", "cost": {"input": "1"}}]}"#).contains("`models[0].cost.input`: invalid type: expected a number"));
}

#[test]
fn metering_defaults_and_bounds() {
    assert_eq!(defaults().metering, Metering { stream_usage: true, drift_warn_ppm: Some(20_000) });
    let c = Config::from_json(br#"{"metering": {"stream_usage": false, "drift_warn_ratio": 0.005}}"#).unwrap();
    assert_eq!(c.metering, Metering { stream_usage: false, drift_warn_ppm: Some(5_000) });
    let c = Config::from_json(br#"{"metering": {"drift_warn_ratio": null}}"#).unwrap();
    assert_eq!(c.metering.drift_warn_ppm, None);
    assert!(err(r#"{"metering": {"drift_warn_ratio": 2}}"#).contains("`metering.drift_warn_ratio` must be a share between 0 and 1"));
    assert!(err(r#"{"metering": {"stream_usage": "yes"}}"#).contains("`metering.stream_usage`: invalid type"));
}
