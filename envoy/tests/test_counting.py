"""Allowed requests: the filter's token counts and the x-tokengate-* headers the backend receives."""

from __future__ import annotations

import json

import pytest

HELLO = [{"role": "user", "content": "Hello, world!"}]
SYSTEM_AND_HELLO = [{"role": "system", "content": "You are a helpful assistant."}] + HELLO


def forwarded(gateway, path, body, headers=None) -> dict[str, str]:
    """Sends an allowed request; returns the headers the backend received."""
    resp = gateway.post(path, body, headers)
    assert resp.status == 200, resp.text
    assert resp.headers.get("x-mock-backend") == "pool-a"
    return gateway.upstream_request(resp)["headers"]


@pytest.mark.parametrize("path, body, tokens, encoding", [
    ("/v1/chat/completions", {"model": "gpt-4o", "messages": HELLO}, 11, "o200k_base"),
    ("/v1/chat/completions", {"model": "gpt-4", "messages": HELLO}, 11, "cl100k_base"),
    ("/v1/chat/completions", {"model": "gpt-4o", "messages": SYSTEM_AND_HELLO}, 21, "o200k_base"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "Hello, world!"}, 4, "cl100k_base"),
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": [[1, 2, 3], [4, 5]]}, 5, "cl100k_base"),
], ids=["chat-o200k", "chat-cl100k", "chat-system", "embeddings", "completions-token-arrays"])
def test_exact_counts(gateway, path, body, tokens, encoding):
    headers = forwarded(gateway, path, body)
    assert headers.get("x-tokengate-prompt-tokens") == str(tokens)
    assert headers.get("x-tokengate-encoding") == encoding
    assert headers.get("x-tokengate-count") == "exact"


def test_the_backend_gets_the_body_unchanged(gateway):
    body = json.dumps({"model": "gpt-4o", "messages": HELLO, "temperature": 0.2}, indent=2)
    resp = gateway.post("/v1/chat/completions", body, {"content-type": "application/json"})
    assert resp.status == 200, resp.text
    assert gateway.upstream_request(resp)["body"] == body


def test_responses_api_input_is_counted(gateway):
    short = forwarded(gateway, "/v1/responses", {"model": "gpt-4o", "input": "Hello, world!"})
    longer = forwarded(gateway, "/v1/responses", {"model": "gpt-4o", "input": "Hello, world! " * 5})
    assert short.get("x-tokengate-encoding") == "o200k_base"
    assert int(short["x-tokengate-prompt-tokens"]) > 0
    assert int(longer["x-tokengate-prompt-tokens"]) > int(short["x-tokengate-prompt-tokens"])


@pytest.mark.parametrize("path, field", [
    ("/v1/chat/completions", "messages"), ("/v1/completions", "prompt"), ("/v1/embeddings", "input")])
def test_a_longer_prompt_counts_more(gateway, path, field):
    def count(text):
        value = [{"role": "user", "content": text}] if field == "messages" else text
        return int(forwarded(gateway, path, {"model": "gpt-4o", field: value})["x-tokengate-prompt-tokens"])
    assert 0 < count("one two") < count("one two three four five six")


@pytest.mark.parametrize("model, encoding", [
    ("gpt-4o-mini-2024-07-18", "o200k_base"), ("gpt-4.1-nano", "o200k_base"), ("gpt-5", "o200k_base"),
    ("o1-preview", "o200k_base"), ("o3-mini", "o200k_base"), ("o4-mini", "o200k_base"),
    ("gpt-4-turbo", "cl100k_base"), ("gpt-3.5-turbo-0125", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"), ("text-embedding-3-large", "cl100k_base"),
    ("custom-cl", "cl100k_base"),  # a rule of LIMITS_CONFIG
    ("mystery-model", "o200k_base"),  # no rule: the default encoding
])
def test_model_picks_the_encoding(gateway, model, encoding):
    headers = forwarded(gateway, "/v1/chat/completions", {"model": model, "messages": HELLO})
    assert headers.get("x-tokengate-encoding") == encoding
    assert headers.get("x-tokengate-prompt-tokens") == "11"


def test_default_encoding_from_the_config(keyed_gateway):
    headers = forwarded(keyed_gateway, "/v1/chat/completions", {"model": "mystery-model", "messages": HELLO},
                        {"x-api-key": "sk-keyed"})
    assert headers.get("x-tokengate-encoding") == "cl100k_base"


@pytest.mark.parametrize("path, field, extra", [
    ("/v1/chat/completions", "max_tokens", {"messages": HELLO}),
    ("/v1/chat/completions", "max_completion_tokens", {"messages": HELLO}),
    ("/v1/completions", "max_tokens", {"prompt": "Hello"}),
    ("/v1/responses", "max_output_tokens", {"input": "Hello"}),
])
def test_requested_output_is_forwarded(gateway, path, field, extra):
    headers = forwarded(gateway, path, {"model": "gpt-4o", field: 60, **extra})
    assert headers.get("x-tokengate-max-output-tokens") == "60"


def test_no_max_output_header_when_not_requested(gateway):
    headers = forwarded(gateway, "/v1/chat/completions", {"model": "gpt-4o", "messages": HELLO})
    assert "x-tokengate-max-output-tokens" not in headers


IMAGE = [{"role": "user", "content": [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
    "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}


@pytest.mark.parametrize("body", [
    {"model": "gpt-4o", "messages": IMAGE},
    {"model": "gpt-4o", "messages": HELLO, "tools": TOOLS},
    {"model": "gpt-4o", "messages": HELLO, "response_format": SCHEMA},
], ids=["image", "tools", "response_format-json_schema"])
def test_estimated_counts(default_gateway, body):
    headers = forwarded(default_gateway, "/v1/chat/completions", body)
    assert headers.get("x-tokengate-count") == "estimated"
    assert int(headers["x-tokengate-prompt-tokens"]) > 11


def test_json_mode_response_format_is_estimated(default_gateway):
    """The contract: a count is estimated whenever response_format is involved, JSON mode included."""
    body = {"model": "gpt-4o", "messages": HELLO, "response_format": {"type": "json_object"}}
    headers = forwarded(default_gateway, "/v1/chat/completions", body)
    assert headers.get("x-tokengate-count") == "estimated"


def test_an_image_costs_the_configured_image_tokens(default_gateway):
    headers = forwarded(default_gateway, "/v1/chat/completions", {"model": "gpt-4o", "messages": IMAGE})
    assert int(headers["x-tokengate-prompt-tokens"]) >= 765
