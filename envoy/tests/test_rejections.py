"""Local replies of the filter: OpenAI-shaped errors for each limit, and the backend never sees the request."""

from __future__ import annotations

import pytest

from harness import LIMITS_CONFIG, assert_openai_error

HELLO = {"role": "user", "content": "Hello, world!"}  # 3 + 1 + 4 = 8 tokens as a chat message
MAX_PROMPT = LIMITS_CONFIG["max_prompt_tokens"]
MAX_OUTPUT = LIMITS_CONFIG["max_output_tokens"]
MAX_BODY = LIMITS_CONFIG["max_body_bytes"]
LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 20  # ~200 tokens in either encoding


def test_chat_over_the_prompt_limit(gateway):
    resp = gateway.post("/v1/chat/completions", {"model": "gpt-4o", "messages": [HELLO] * 7})  # 7 * 8 + 3
    error = assert_openai_error(resp, 400, "context_length_exceeded", "messages")
    assert str(MAX_PROMPT) in error["message"] and "59" in error["message"], error["message"]
    gateway.assert_not_forwarded(resp)


def test_a_model_rule_sets_its_own_limit(gateway):
    """LIMITS_CONFIG gives tiny-* 12 tokens: 11 passes, 21 does not."""
    ok = gateway.post("/v1/chat/completions", {"model": "tiny-1", "messages": [HELLO]})
    assert ok.status == 200, ok.text
    system = {"role": "system", "content": "You are a helpful assistant."}
    resp = gateway.post("/v1/chat/completions", {"model": "tiny-1", "messages": [system, HELLO]})
    error = assert_openai_error(resp, 400, "context_length_exceeded", "messages")
    assert "12" in error["message"] and "21" in error["message"], error["message"]
    gateway.assert_not_forwarded(resp)


@pytest.mark.parametrize("path, field, value", [
    ("/v1/completions", "prompt", LONG_TEXT),
    ("/v1/completions", "prompt", ["short", LONG_TEXT]),
    ("/v1/embeddings", "input", LONG_TEXT),
    ("/v1/embeddings", "input", list(range(MAX_PROMPT + 1))),
    ("/v1/responses", "input", LONG_TEXT),
    ("/v1/responses", "input", [{"role": "user", "content": LONG_TEXT}]),
], ids=["completions", "completions-list", "embeddings", "embeddings-token-array", "responses",
        "responses-messages"])
def test_other_apis_over_the_prompt_limit(gateway, path, field, value):
    resp = gateway.post(path, {"model": "gpt-4o", field: value})
    error = assert_openai_error(resp, 400, "context_length_exceeded", field)
    assert str(MAX_PROMPT) in error["message"], error["message"]
    gateway.assert_not_forwarded(resp)


@pytest.mark.parametrize("path, field, extra", [
    ("/v1/chat/completions", "max_tokens", {"messages": [HELLO]}),
    ("/v1/chat/completions", "max_completion_tokens", {"messages": [HELLO]}),
    ("/v1/responses", "max_output_tokens", {"input": "Hello"}),
])
def test_requested_output_over_the_limit(gateway, path, field, extra):
    at_limit = gateway.post(path, {"model": "gpt-4o", field: MAX_OUTPUT, **extra})
    assert at_limit.status == 200, at_limit.text
    resp = gateway.post(path, {"model": "gpt-4o", field: MAX_OUTPUT + 1, **extra})
    error = assert_openai_error(resp, 400, "invalid_value", field)
    assert str(MAX_OUTPUT) in error["message"], error["message"]
    gateway.assert_not_forwarded(resp)


def oversized_chat() -> str:
    filler = "x" * (MAX_BODY + 4096)
    return '{"model": "gpt-4o", "messages": [{"role": "user", "content": "%s"}]}' % filler


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_max_body_bytes(gateway, chunked):
    resp = gateway.post("/v1/chat/completions", oversized_chat(), {"content-type": "application/json"},
                        chunked=chunked)
    assert_openai_error(resp, 413, "request_too_large")
    gateway.assert_not_forwarded(resp)


@pytest.mark.parametrize("body", ['{"messages": [', '{"model": "gpt-4o", "messages": [}]}', "{"])
def test_malformed_json(gateway, body):
    resp = gateway.post("/v1/chat/completions", body, {"content-type": "application/json"})
    assert_openai_error(resp, 400, "invalid_json")
    gateway.assert_not_forwarded(resp)


def test_missing_api_key(keyed_gateway):
    body = {"model": "gpt-4o", "messages": [HELLO]}
    for headers in ({}, {"authorization": "Bearer sk-in-the-wrong-header"}):
        resp = keyed_gateway.post("/v1/chat/completions", body, headers)
        assert_openai_error(resp, 401, "missing_api_key")
        keyed_gateway.assert_not_forwarded(resp)
    resp = keyed_gateway.post("/v1/chat/completions", body, {"x-api-key": "sk-keyed"})
    assert resp.status == 200, resp.text


def test_the_gateway_keeps_serving_after_rejections(gateway):
    resp = gateway.post("/v1/chat/completions", {"model": "gpt-4o", "messages": [HELLO]})
    assert resp.status == 200, resp.text
