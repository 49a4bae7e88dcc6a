"""Streamed (SSE) answers pass through the filter unchanged and as a stream."""

from __future__ import annotations

import json

import pytest

from harness import sse_events, timed_stream

HELLO = [{"role": "user", "content": "Hello, world!"}]


def test_chat_stream_through_the_filter(gateway):
    body = {"model": "gpt-4o", "messages": HELLO, "stream": True, "max_tokens": 5,
            "stream_options": {"include_usage": True}}
    resp = gateway.post("/v1/chat/completions", body)
    assert resp.status == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == \
        "Hello from mock backend pool-a."
    # The mock reports the filter's count as prompt_tokens: the request was counted before it left.
    assert chunks[-1]["usage"]["prompt_tokens"] == 11
    assert gateway.upstream_request(resp)["headers"].get("x-tokengate-prompt-tokens") == "11"


@pytest.mark.parametrize("fixture", ["plain_gateway", "gateway"], ids=["without-filter", "with-filter"])
def test_events_arrive_as_they_are_produced(request, fixture):
    """With 100 ms between events upstream, the first event arrives long before the last."""
    gateway = request.getfixturevalue(fixture)
    stream = timed_stream(f"{gateway.url}/v1/chat/completions",
                          {"model": "gpt-4o", "messages": HELLO, "stream": True, "max_tokens": 5},
                          {"x-mock-stream-delay": "0.1"})
    assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
    assert stream.first_line.startswith(b"data: {")
    assert sse_events(stream.body)[-1] == "[DONE]"
    assert stream.total >= 0.6 and stream.first_at < stream.total - 0.3, (stream.first_at, stream.total)


def test_responses_stream_through_the_filter(gateway):
    resp = gateway.post("/v1/responses", {"model": "gpt-4o", "input": "Hello, world!", "stream": True})
    assert resp.status == 200, resp.text
    events = [json.loads(e) for e in sse_events(resp.body)]
    assert [e["type"] for e in events][0] == "response.created"
    assert events[-1]["type"] == "response.completed"
    upstream_count = gateway.upstream_request(resp)["headers"].get("x-tokengate-prompt-tokens")
    assert events[-1]["response"]["usage"]["input_tokens"] == int(upstream_count)
