"""The mock backend alone: OpenAI shapes, usage, SSE, request recording, robustness."""

from __future__ import annotations

import json

import pytest

from harness import http_request, sse_events

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world!"}]}


def test_chat_completion_shape_and_usage(mock):
    resp = http_request(f"{mock.url}/v1/chat/completions", "POST", dict(CHAT, max_tokens=5),
                        {"x-tokengate-prompt-tokens": "11"})
    assert resp.status == 200
    assert resp.headers["x-mock-backend"] == "pool-a"
    body = resp.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-4o" and isinstance(body["created"], int)
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert "pool-a" in body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == 11
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == 16
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_prompt_tokens_estimated_without_the_gateway_header(mock):
    text = json.dumps(CHAT)
    resp = http_request(f"{mock.url}/v1/chat/completions", "POST", text, {"content-type": "application/json"})
    assert resp.json()["usage"]["prompt_tokens"] == len(text) // 4
    assert resp.json()["usage"]["completion_tokens"] == 16


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_completion_tokens_follow_the_requested_limit(mock, field):
    for asked, expected in ((3, 3), (100, 16)):
        resp = http_request(f"{mock.url}/v1/chat/completions", "POST", dict(CHAT, **{field: asked}))
        assert resp.json()["usage"]["completion_tokens"] == expected


@pytest.mark.parametrize("path", ["/openai/v1/chat/completions", "/deployments/x/v1/chat/completions"])
def test_any_prefix_before_v1(mock, path):
    assert http_request(f"{mock.url}{path}", "POST", CHAT).json()["object"] == "chat.completion"


def test_completions_embeddings_responses_models(mock):
    hdr = {"x-tokengate-prompt-tokens": "5"}
    completion = http_request(f"{mock.url}/v1/completions", "POST", {"model": "m", "prompt": [[1, 2], [3]]}, hdr)
    assert completion.json()["object"] == "text_completion"
    assert completion.json()["usage"] == {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21}

    embeddings = http_request(f"{mock.url}/v1/embeddings", "POST", {"model": "e", "input": ["a", "b", "c"]}, hdr)
    assert embeddings.json()["object"] == "list"
    assert [d["index"] for d in embeddings.json()["data"]] == [0, 1, 2]
    assert embeddings.json()["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    one = http_request(f"{mock.url}/v1/embeddings", "POST", {"model": "e", "input": [1, 2, 3]}).json()
    assert len(one["data"]) == 1

    response = http_request(f"{mock.url}/v1/responses", "POST",
                            {"model": "gpt-4o", "input": "hi", "max_output_tokens": 7}, hdr).json()
    assert response["object"] == "response"
    assert response["output"][0]["content"][0]["type"] == "output_text"
    assert response["usage"]["input_tokens"] == 5 and response["usage"]["output_tokens"] == 7
    assert response["usage"]["total_tokens"] == 12

    models = http_request(f"{mock.url}/v1/models").json()
    assert models["object"] == "list" and any(m["id"] == "gpt-4o" for m in models["data"])


def test_chat_stream_with_usage(mock):
    body = dict(CHAT, stream=True, max_tokens=4, stream_options={"include_usage": True})
    resp = http_request(f"{mock.url}/v1/chat/completions", "POST", body, {"x-tokengate-prompt-tokens": "11"})
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello from mock backend"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 11 and chunks[-1]["usage"]["completion_tokens"] == 4


def test_chat_stream_without_usage(mock):
    resp = http_request(f"{mock.url}/v1/chat/completions", "POST", dict(CHAT, stream=True))
    chunks = [json.loads(e) for e in sse_events(resp.body)[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)


def test_responses_stream(mock):
    resp = http_request(f"{mock.url}/v1/responses", "POST", {"model": "gpt-4o", "input": "hi", "stream": True})
    events = [json.loads(e) for e in sse_events(resp.body)]
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["output_tokens"] == 16


def test_records_requests_and_resets(mock):
    mock.reset()
    resp = http_request(f"{mock.url}/v1/chat/completions", "POST", CHAT, {"X-Custom": "A"})
    http_request(f"{mock.url}/v1/embeddings", "POST", '{"input": "x"}', chunked=True)
    seen = mock.requests()
    assert [(r["method"], r["path"]) for r in seen] == [("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings")]
    assert seen[0]["headers"]["x-custom"] == "A"
    assert seen[0]["headers"]["x-request-id"] == resp.request_id
    assert json.loads(seen[0]["body"]) == CHAT
    assert seen[1]["body"] == '{"input": "x"}'  # chunked request bodies are decoded
    mock.reset()
    assert mock.requests() == []


@pytest.mark.parametrize("body, status, code", [
    ('{"messages": [', 400, "invalid_json"),
    ("[1, 2]", 400, "invalid_json"),
    ('{"model": "gpt-4o"}', 400, "missing_required_parameter"),
    ('{"messages": "x", "max_tokens": "lots"}', 400, "missing_required_parameter"),
])
def test_bad_requests_get_openai_errors(mock, body, status, code):
    resp = http_request(f"{mock.url}/v1/chat/completions", "POST", body, {"content-type": "application/json"})
    assert resp.status == status
    assert resp.json()["error"]["code"] == code
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert http_request(f"{mock.url}/healthz").status == 200  # still serving


def test_unknown_path_and_method(mock):
    assert http_request(f"{mock.url}/v1/nope", "POST", {}).status == 404
    assert http_request(f"{mock.url}/v1/chat/completions").status == 405
    patch = http_request(f"{mock.url}/v1/chat/completions", "PATCH", {})
    assert patch.status == 501 and patch.json()["error"]["message"]  # JSON, not the stdlib's HTML page
