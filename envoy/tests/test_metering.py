"""The meter in a real Envoy: usage read for every admitted request (JSON and SSE, no quota needed), one
Prometheus series per model rule through envoy.yaml's stats tag extraction, drift warnings, cost weights and
input/output limits."""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor

from harness import model_labels, poll, sse_events

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello, world!"}]  # 11 tokens in o200k_base
HELLO_TOKENS = 11
_keys = itertools.count()


def bearer(name: str) -> dict[str, str]:
    """A key no other test uses (buckets are per key)."""
    return {"authorization": f"Bearer sk-metering-{name}-{next(_keys)}"}


def rate_limited(resp) -> dict:
    """The error of an OpenAI-shaped 429 (type `tokens`)."""
    assert resp.status == 429, f"expected 429, got {resp.status}: {resp.text[:500]}"
    error = resp.json()["error"]
    assert (error["code"], error["type"], error["param"]) == ("rate_limit_exceeded", "tokens", None), error
    return error


def stream_chunks(body: bytes) -> list[dict]:
    events = sse_events(body)
    assert events and events[-1] == "[DONE]", body[-300:]
    return [json.loads(e) for e in events[:-1]]


def test_json_and_streams_are_metered_without_a_quota(default_gateway):
    """envoy.yaml as shipped: no quota, and still every response's usage is read and logged."""
    gw = default_gateway
    before = gw.metrics()
    resp = gw.post(CHAT, {"model": "gpt-4o", "messages": HELLO, "max_tokens": 7}, {"x-mock-cached-tokens": "3"})
    assert resp.status == 200, resp.text
    entry = gw.access_log_entry(resp)
    fields = {k: entry[k] for k in ("prompt_tokens", "backend_prompt_tokens", "completion_tokens", "cached_tokens",
                                    "drift", "usage", "actual_tokens")}
    assert fields == {"prompt_tokens": "11", "backend_prompt_tokens": "11", "completion_tokens": "7",
                      "cached_tokens": "3", "drift": "0", "usage": "reported", "actual_tokens": "-"}, entry["line"]

    # A stream whose client did not ask for usage: asked for on its behalf, hidden from it.
    resp = gw.post(CHAT, {"model": "gpt-4o", "messages": HELLO, "stream": True, "max_tokens": 5})
    assert resp.status == 200, resp.text
    assert json.loads(gw.upstream_request(resp)["body"])["stream_options"] == {"include_usage": True}
    assert not [c for c in stream_chunks(resp.body) if "usage" in c], "usage reached a client that did not ask"
    entry = gw.access_log_entry(resp)
    assert (entry["usage"], entry["completion_tokens"], entry["drift"]) == ("reported", "5", "0"), entry["line"]

    # A backend that never reports usage: the output is counted from the deltas.
    resp = gw.post(CHAT, {"model": "gpt-4o", "messages": HELLO, "stream": True, "max_tokens": 4},
                   {"x-mock-usage": "omit"})
    assert resp.status == 200, resp.text
    entry = gw.access_log_entry(resp)
    assert (entry["usage"], entry["backend_prompt_tokens"], entry["drift"]) == ("estimated", "-", "-"), entry["line"]
    assert int(entry["completion_tokens"]) > 0, entry["line"]

    after = gw.wait_for_metrics({
        'tokengate_completion_tokens_total{model="gpt-4o*"}': 7 + 5 + int(entry["completion_tokens"]),
        'tokengate_backend_prompt_tokens_total{model="gpt-4o*"}': 2 * HELLO_TOKENS,
        'tokengate_cached_prompt_tokens_total{model="gpt-4o*"}': 3,
        'tokengate_usage_missing_total{model="gpt-4o*"}': 1,
        'tokengate_completion_tokens_count{model="gpt-4o*"}': 3,
    }, before)
    assert after['tokengate_prompt_tokens_total{model="gpt-4o*"}'] >= 3 * HELLO_TOKENS


def test_series_stay_bounded_whatever_model_names_clients_send(metering_gateway):
    """1,000 distinct model names: every request is metered, under `other` or a configured rule's label."""
    gw = metering_gateway
    gw.post(CHAT, {"model": "warm-up", "messages": HELLO}, bearer("warm-up"))
    poll(lambda: gw.metrics().get('tokengate_allowed_total{model="other"}', 0) >= 1, "the warm-up's stats")
    before_text = gw.stats_prometheus()
    before = gw.metrics()

    def send(i: int) -> int:
        model = f"gpt-4o-mini" if i % 10 == 0 else f"client-model-{i}-{'x' * (i % 7)}"
        return gw.post(CHAT, {"model": model, "messages": HELLO, "max_tokens": 1}, bearer("flood")).status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(1000)))
    assert statuses == [200] * 1000
    gw.wait_for_metrics({'tokengate_allowed_total{model="other"}': 900,
                         'tokengate_allowed_total{model="mini"}': 100,
                         "tokengate_completion_tokens_total": 1000}, before)
    after_text = gw.stats_prometheus()
    assert model_labels(after_text) == model_labels(before_text) == {"other", "four-o", "mini"}
    series = lambda text: sum(1 for line in text.splitlines() if line.startswith("tokengate_"))  # noqa: E731
    assert series(after_text) == series(before_text), "no new series"


def test_drift_over_the_ratio_is_counted_per_rule_and_logged_at_most_once_a_minute(metering_gateway):
    gw = metering_gateway
    before = gw.metrics()
    for _ in range(6):
        resp = gw.post(CHAT, {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 1},
                       {**bearer("drift"), "x-mock-prompt-offset": "4"})
        assert resp.status == 200, resp.text
        entry = gw.access_log_entry(resp)
        assert (entry["backend_prompt_tokens"], entry["drift"]) == ("15", "4"), entry["line"]
    resp = gw.post(CHAT, {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 1},
                   {**bearer("drift"), "x-mock-prompt-offset": "-2"})
    assert gw.access_log_entry(resp)["drift"] == "-2"
    gw.wait_for_metrics({'tokengate_prompt_drift_warnings_total{model="mini"}': 7,
                         'tokengate_prompt_drift_negative_total{model="mini"}': 1}, before)
    lines = poll(lambda: [line for line in gw.process.log(10_000).splitlines()
                          if "prompt count drift on model rule `mini`" in line], "the drift warning in Envoy's log")
    # One line a minute per worker VM (two workers), whatever the number of drifting responses.
    assert 1 <= len(lines) <= 2, lines
    assert "the backend counted 15 prompt tokens, tokengate 11 (+36.36%, over the 5.00%" in lines[0], lines[0]


def test_cost_weights_charge_cached_and_output_tokens_at_their_rates(metering_gateway):
    gw = metering_gateway
    key = bearer("weights")
    # four-o: input 2, cached 0.5, output 4. Reserved: 11 × 2 + 5 × 4 = 42.
    resp = gw.post(CHAT, {"model": "gpt-4o", "messages": HELLO, "max_tokens": 5}, {**key, "x-mock-cached-tokens": "4"})
    assert resp.status == 200, resp.text
    assert gw.upstream_request(resp)["headers"]["x-tokengate-reserved-tokens"] == "42"
    assert resp.headers["x-ratelimit-remaining-tokens"] == str(1000 - 42)
    assert resp.headers["x-ratelimit-remaining-input-tokens"] == str(300 - 22)
    entry = gw.access_log_entry(resp)
    # Used: 7 × 2 + 4 × 0.5 + 5 × 4 = 36.
    assert (entry["reserved_tokens"], entry["actual_tokens"], entry["cached_tokens"]) == ("42", "36", "4"), entry["line"]
    # The next request sees the settled cost: 1000 - 36 - its own 42 (less what refilled meanwhile, under a token).
    resp = gw.post(CHAT, {"model": "gpt-4o", "messages": HELLO, "max_tokens": 5}, key)
    assert int(resp.headers["x-ratelimit-remaining-tokens"]) in (1000 - 36 - 42, 1000 - 36 - 42 + 1, 1000 - 36 - 42 + 2)


def test_input_and_output_limits_refuse_on_their_own_bucket(metering_gateway):
    gw = metering_gateway
    key = bearer("input")
    long_prompt = [{"role": "user", "content": "word " * 150}]  # 158 tokens: two are over 300
    resp = gw.post(CHAT, {"model": "gpt-4o-mini", "messages": long_prompt, "max_tokens": 1}, key)
    assert resp.status == 200, resp.text
    resp = gw.post(CHAT, {"model": "gpt-4o-mini", "messages": long_prompt, "max_tokens": 1}, key)
    error = rate_limited(resp)
    assert "on input tokens per min (ITPM): Limit 300" in error["message"], error
    assert resp.headers["retry-after"] and resp.headers["x-ratelimit-limit-input-tokens"] == "300"
    gw.assert_not_forwarded(resp)
    # Output: more than the output bucket can ever hold.
    resp = gw.post(CHAT, {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 101}, bearer("output"))
    error = rate_limited(resp)
    assert "output tokens per min (OTPM): Limit 100, Requested 101. It can never fit" in error["message"], error
    entry = gw.access_log_entry(resp)
    assert entry["decision"] == "rate_limit_exceeded", entry["line"]
