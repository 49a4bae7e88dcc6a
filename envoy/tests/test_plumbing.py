"""Envoy from envoy.yaml without the filter: routing to the mock, access log, admin (streaming: test_streaming)."""

from __future__ import annotations

import json

from harness import http_request

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world!"}]}


def test_admin_is_ready(plain_gateway):
    resp = plain_gateway.request("GET", "/ready")  # the listener routes everything upstream
    assert resp.status == 404  # ...where the mock does not know /ready
    assert http_request(f"{plain_gateway.admin_url}/ready").text.strip() == "LIVE"


def test_requests_reach_the_mock_unchanged(plain_gateway):
    resp = plain_gateway.post("/v1/chat/completions", CHAT, {"authorization": "Bearer sk-plain"})
    assert resp.status == 200, resp.text
    assert resp.headers["x-mock-backend"] == "pool-a"
    upstream = plain_gateway.upstream_request(resp)
    assert json.loads(upstream["body"]) == CHAT
    assert upstream["headers"]["authorization"] == "Bearer sk-plain"
    assert not [h for h in upstream["headers"] if h.startswith("x-tokengate-")]


def test_access_log_has_the_filter_fields_empty(plain_gateway):
    resp = plain_gateway.request("GET", "/v1/models")
    entry = plain_gateway.access_log_entry(resp)
    assert entry["status"] == "200"
    assert entry["decision"] == entry["prompt_tokens"] == entry["encoding"] == entry["key_id"] == "-"
    assert entry["reserved_tokens"] == entry["actual_tokens"] == "-"
    assert entry["upstream"] == f"127.0.0.1:{plain_gateway.mock.port}"
