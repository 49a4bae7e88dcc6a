"""The filter's stats on the admin endpoint and its fields in the access log."""

from __future__ import annotations

import pytest

from harness import LIMITS_CONFIG, assert_openai_error, key_id

HELLO = [{"role": "user", "content": "Hello, world!"}]  # 11 tokens in o200k_base
KEY = "sk-observed-0123456789"


def test_allowed_request_stats(gateway):
    before = gateway.metrics()
    resp = gateway.post("/v1/chat/completions", {"model": "gpt-4o", "messages": HELLO})
    assert resp.status == 200, resp.text
    after = gateway.wait_for_metrics({
        "tokengate_requests_total": 1,
        "tokengate_allowed_total": 1,
        "tokengate_prompt_tokens_total": 11,
        "tokengate_prompt_tokens_count": 1,
        'tokengate_prompt_tokens_bucket{le="16"}': 1,
        "tokengate_tokenize_us_count": 1,
    }, before)
    assert after["tokengate_prompt_tokens_total"] - before.get("tokengate_prompt_tokens_total", 0) == 11
    assert after.get('tokengate_prompt_tokens_bucket{le="+Inf"}', 0) >= after["tokengate_prompt_tokens_count"]
    assert after["tokengate_tokenize_us_sum"] >= 0


# code -> (gateway fixture, body, headers, status)
REJECTIONS = {
    "context_length_exceeded": ("gateway", {"model": "gpt-4o", "messages": HELLO * 10}, {}, 400),
    "invalid_value": ("gateway", {"model": "gpt-4o", "messages": HELLO, "max_tokens": 100000}, {}, 400),
    "request_too_large": ("gateway", "x" * (LIMITS_CONFIG["max_body_bytes"] + 1),
                          {"content-type": "application/json"}, 413),
    "invalid_json": ("gateway", '{"messages": [', {"content-type": "application/json"}, 400),
    "missing_api_key": ("keyed_gateway", {"model": "gpt-4o", "messages": HELLO}, {}, 401),
}


@pytest.mark.parametrize("code", list(REJECTIONS))
def test_rejection_stats_and_access_log(request, code):
    fixture, body, headers, status = REJECTIONS[code]
    gw = request.getfixturevalue(fixture)
    before = gw.metrics()
    resp = gw.post("/v1/chat/completions", body, headers)
    assert_openai_error(resp, status, code)
    gw.wait_for_metrics({f"tokengate_rejected_{code}_total": 1}, before)
    assert gw.metrics().get("tokengate_allowed_total", 0) == before.get("tokengate_allowed_total", 0)
    entry = gw.access_log_entry(resp)
    assert entry["decision"] == code, entry["line"]
    assert entry["status"] == str(status)


def test_pass_through_stats(gateway):
    before = gateway.metrics()
    assert gateway.request("GET", "/v1/models").status == 200
    gateway.wait_for_metrics({"tokengate_passthrough_total": 1}, before)


def test_allowed_request_access_log(gateway):
    resp = gateway.post("/v1/chat/completions", {"model": "gpt-4o", "messages": HELLO},
                        {"authorization": f"Bearer {KEY}"})
    assert resp.status == 200, resp.text
    entry = gateway.access_log_entry(resp)
    assert entry["decision"] == "allowed", entry["line"]
    assert entry["prompt_tokens"] == "11", entry["line"]
    assert entry["encoding"] == "o200k_base", entry["line"]
    assert entry["key_id"] == key_id(KEY), entry["line"]
    assert entry["status"] == "200"
    assert KEY not in entry["line"]


def test_the_key_never_reaches_the_envoy_log(gateway):
    """Filter log lines (Envoy's log at info level) must not carry a raw API key either."""
    resp = gateway.post("/v1/chat/completions", {"model": "gpt-4o", "messages": HELLO},
                        {"authorization": f"Bearer {KEY}-log"})
    assert resp.status == 200, resp.text
    gateway.access_log_entry(resp)  # the request is finished
    assert f"{KEY}-log" not in gateway.process.log_path.read_text(errors="replace")
