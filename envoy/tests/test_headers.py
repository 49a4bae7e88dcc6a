"""API key ids, removal of client-sent x-tokengate-* headers, and requests the filter lets through untouched."""

from __future__ import annotations

import json

import pytest

from harness import key_id

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world!"}]}


def tokengate_headers(upstream: dict) -> dict[str, str]:
    return {k: v for k, v in upstream["headers"].items() if k.startswith("x-tokengate-")}


@pytest.mark.parametrize("authorization", ["Bearer sk-test-1234567890", "sk-test-1234567890"],
                         ids=["bearer", "bare"])
def test_key_id_is_a_hash_of_the_key(gateway, authorization):
    resp = gateway.post("/v1/chat/completions", CHAT, {"authorization": authorization})
    assert resp.status == 200, resp.text
    upstream = gateway.upstream_request(resp)
    assert upstream["headers"].get("x-tokengate-key-id") == key_id("sk-test-1234567890")
    assert upstream["headers"]["authorization"] == authorization  # the backend still gets its credential
    assert not [v for v in tokengate_headers(upstream).values() if "sk-test" in v]


def test_no_key_no_key_id(gateway):
    resp = gateway.post("/v1/chat/completions", CHAT)
    assert resp.status == 200, resp.text
    assert "x-tokengate-key-id" not in gateway.upstream_request(resp)["headers"]


def test_key_from_the_configured_header(keyed_gateway):
    resp = keyed_gateway.post("/v1/chat/completions", CHAT, {"x-api-key": "sk-keyed-abc"})
    assert resp.status == 200, resp.text
    assert keyed_gateway.upstream_request(resp)["headers"].get("x-tokengate-key-id") == key_id("sk-keyed-abc")


def test_client_cannot_spoof_tokengate_headers(gateway):
    spoofed = {"x-tokengate-prompt-tokens": "1", "x-tokengate-anything": "x", "x-tokengate-key-id": "0" * 16,
               "x-tokengate-encoding": "r50k_base", "x-tokengate-count": "exact",
               "x-tokengate-max-output-tokens": "1"}
    resp = gateway.post("/v1/chat/completions", CHAT, spoofed)
    assert resp.status == 200, resp.text
    assert tokengate_headers(gateway.upstream_request(resp)) == {
        "x-tokengate-prompt-tokens": "11", "x-tokengate-encoding": "o200k_base", "x-tokengate-count": "exact"}


def test_spoofed_headers_are_removed_from_pass_through_requests_too(gateway):
    resp = gateway.request("GET", "/v1/models", headers={"x-tokengate-prompt-tokens": "1",
                                                          "x-tokengate-anything": "x"})
    assert resp.status == 200, resp.text
    assert tokengate_headers(gateway.upstream_request(resp)) == {}


@pytest.mark.parametrize("method, path, body, content_type", [
    ("GET", "/v1/models", None, None),
    ("POST", "/v1/chat/completions", "Hello, world! Just some text.", "text/plain"),
    ("POST", "/v1/audio/transcriptions",
     '--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b--\r\n',
     "multipart/form-data; boundary=b"),
    ("POST", "/v1/chat/completions", '{"model": "gpt-4o", "nothing": "to count"}', "application/json"),
], ids=["get-models", "text-plain", "multipart", "json-without-prompt"])
def test_unrecognised_requests_pass_through_untouched(gateway, method, path, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    resp = gateway.request(method, path, body, headers)
    assert resp.headers.get("x-mock-backend") == "pool-a", (resp.status, resp.text)  # the backend answered
    upstream = gateway.upstream_request(resp)
    assert tokengate_headers(upstream) == {}
    assert upstream["body"] == (body or "")
    if method == "GET":
        assert resp.status == 200 and json.loads(resp.body)["object"] == "list"
