"""Per-key token quotas (issue 5) through a real Envoy with 2 workers (QUOTA_CONFIG: 600 tokens/min).

The bucket of a key refills continuously (10 tokens/s here), so assertions across requests allow
for the refill of the time that passed instead of expecting exact remaining values.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from urllib.parse import quote

from harness import QUOTA_CONFIG, Response, http_request, key_id, sse_events

CHAT = "/v1/chat/completions"
LIMIT = QUOTA_CONFIG["quota"]["tokens_per_minute"]
DEFAULT_RESERVATION = QUOTA_CONFIG["quota"]["default_output_reservation"]
REFILL_PER_S = LIMIT / 60
MS_PER_TOKEN = 60_000 / LIMIT
MOCK_MAX_COMPLETION = 16  # the mock's completion_tokens: min(max_tokens, 16)

HELLO = [{"role": "user", "content": "Hello, world!"}]  # 11 tokens in o200k_base
HELLO_TOKENS = 11
# 40 prompt tokens + max_tokens 10: reserves 50; the mock answers 10 tokens, so it also costs 50.
BIG = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world! " * 8}], "max_tokens": 10}
BIG_PROMPT, BIG_COST = 40, 50
assert LIMIT % BIG_COST == 0 and BIG["max_tokens"] <= MOCK_MAX_COMPLETION

RATE_LIMIT_MESSAGE = re.compile(
    r"Rate limit reached for key (?P<key>[0-9a-f]{16}) on tokens per min \(TPM\): Limit (?P<limit>\d+), "
    r"Used (?P<used>\d+), Requested (?P<requested>\d+)\. Please try again in (?P<wait>\S+)\.")


def new_key(label: str) -> str:
    return f"sk-{label}-{uuid.uuid4().hex}"


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def seconds(duration: str) -> float:
    """An OpenAI-style duration (`250ms`, `1.5s`, `6m0s`, `1h2m3.04s`) in seconds."""
    if re.fullmatch(r"\d+ms", duration):
        return int(duration[:-2]) / 1000
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d+)?)s", duration)
    assert m, f"not a duration: {duration!r}"
    return int(m[1] or 0) * 3600 + int(m[2] or 0) * 60 + float(m[3])


def ratelimit(resp: Response) -> tuple[int, int, float]:
    """(limit, remaining, reset seconds) from the x-ratelimit-*-tokens headers."""
    h = resp.headers
    for name in ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"):
        assert name in h, f"{resp.status} response without {name}: {h}"
    return int(h["x-ratelimit-limit-tokens"]), int(h["x-ratelimit-remaining-tokens"]), \
        seconds(h["x-ratelimit-reset-tokens"])


def worker_connections(gateway) -> dict[str, int]:
    """Connections each Envoy worker accepted on the gateway's listener so far."""
    pattern = rf"^listener\.127\.0\.0\.1_{gateway.listen_port}\.worker_[0-9]+\.downstream_cx_total$"
    text = http_request(f"{gateway.admin_url}/stats?filter={quote(pattern)}").text
    counts = dict(line.split(": ") for line in text.strip().splitlines())
    assert len(counts) == 2, f"expected 2 workers: {text}"
    return {name: int(value) for name, value in counts.items()}


def test_key_limited_across_both_workers_then_admitted_after_retry_after(quota_gateway):
    gw = quota_gateway
    key, other = new_key("exhaust"), new_key("bystander")
    cx_before, metrics_before = worker_connections(gw), gw.metrics()
    start = time.monotonic()
    admitted: list[tuple[float, Response]] = []
    for _ in range(2 * LIMIT // BIG_COST + 2):  # per-worker buckets would admit twice as many
        resp = gw.post(CHAT, BIG, bearer(key))  # a fresh connection each: both workers serve some
        if resp.status != 200:
            break
        admitted.append((time.monotonic() - start, resp))
    else:
        raise AssertionError(f"{len(admitted)} requests of {BIG_COST} tokens admitted, never limited")
    refused, refused_after = resp, time.monotonic() - start

    upstream = gw.upstream_request(admitted[0][1])["headers"]
    assert upstream["x-tokengate-prompt-tokens"] == str(BIG_PROMPT), "the test prompt's count changed"
    assert upstream["x-tokengate-reserved-tokens"] == str(BIG_COST)

    # One bucket for the key, shared by both workers' VMs: the limit holds across them.
    cx_after = worker_connections(gw)
    assert all(cx_after[w] > cx_before[w] for w in cx_before), (cx_before, cx_after)
    assert LIMIT // BIG_COST <= len(admitted) <= (LIMIT + REFILL_PER_S * refused_after) // BIG_COST, \
        (len(admitted), refused_after)
    for i, (elapsed, resp) in enumerate(admitted, start=1):
        limit, remaining, _ = ratelimit(resp)
        low = max(LIMIT - i * BIG_COST, 0)
        assert limit == LIMIT and low <= remaining <= low + REFILL_PER_S * elapsed + 1, (i, remaining, elapsed)

    # The refusal: OpenAI's 429, nothing forwarded.
    assert refused.status == 429, refused.text
    gw.assert_not_forwarded(refused)
    assert refused.headers.get("content-type", "").startswith("application/json"), refused.headers
    error = refused.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("tokens", None, "rate_limit_exceeded"), error
    m = RATE_LIMIT_MESSAGE.fullmatch(error["message"])
    assert m, error["message"]
    assert (m["key"], int(m["limit"]), int(m["requested"])) == (key_id(key), LIMIT, BIG_COST)
    limit, remaining, reset = ratelimit(refused)
    used = int(m["used"])
    assert limit == LIMIT and remaining < BIG_COST and used + remaining == LIMIT, (used, remaining)
    assert (used - 1) * MS_PER_TOKEN / 1000 < reset <= used * MS_PER_TOKEN / 1000 + 0.001, (used, reset)
    retry_ms, retry_s = int(refused.headers["retry-after-ms"]), int(refused.headers["retry-after"])
    # Waiting until the missing tokens have refilled: (BIG_COST - remaining) tokens, give or take one.
    assert (BIG_COST - remaining - 1) * MS_PER_TOKEN < retry_ms <= (BIG_COST - remaining) * MS_PER_TOKEN, \
        (remaining, retry_ms)
    assert retry_s == math.ceil(retry_ms / 1000), refused.headers
    assert abs(seconds(m["wait"]) * 1000 - retry_ms) <= 1, (m["wait"], retry_ms)
    entry = gw.access_log_entry(refused)
    assert (entry["status"], entry["decision"], entry["key_id"]) == ("429", "rate_limit_exceeded", key_id(key))
    after = gw.wait_for_metrics({"tokengate_rejected_rate_limit_exceeded_total": 1}, metrics_before)
    assert after["tokengate_rejected_rate_limit_exceeded_total"] \
        - metrics_before.get("tokengate_rejected_rate_limit_exceeded_total", 0) == 1

    # Another key has its own bucket.
    resp = gw.post(CHAT, BIG, bearer(other))
    assert resp.status == 200, resp.text
    assert ratelimit(resp)[:2] == (LIMIT, LIMIT - BIG_COST)

    # After retry-after (the precise retry-after-ms, plus a margin) the same request is admitted.
    assert retry_s <= math.ceil(BIG_COST * MS_PER_TOKEN / 1000)
    time.sleep(retry_ms / 1000 + 0.25)
    resp = gw.post(CHAT, BIG, bearer(key))
    assert resp.status == 200, resp.text
    assert ratelimit(resp)[1] < BIG_COST


def test_allowed_responses_carry_the_quota_and_usage_replaces_the_reservation(quota_gateway):
    gw = quota_gateway
    key = new_key("reconcile")
    before = gw.metrics()
    # 11 prompt + max_tokens 30 reserved; the mock reports 16 completion tokens: 14 come back.
    first = gw.post(CHAT, {"model": "gpt-4o", "messages": HELLO, "max_tokens": 30}, bearer(key))
    sent_at = time.monotonic()
    assert first.status == 200, first.text
    reserved = HELLO_TOKENS + 30
    actual = HELLO_TOKENS + MOCK_MAX_COMPLETION
    assert ratelimit(first) == (LIMIT, LIMIT - reserved, reserved * MS_PER_TOKEN / 1000)  # a fresh key: exact
    upstream = gw.upstream_request(first)["headers"]
    assert upstream["x-tokengate-reserved-tokens"] == str(reserved)
    assert upstream["x-tokengate-prompt-tokens"] == str(HELLO_TOKENS)
    assert first.json()["usage"]["total_tokens"] == actual
    entry = gw.access_log_entry(first)
    assert (entry["reserved_tokens"], entry["actual_tokens"]) == (str(reserved), str(actual)), entry["line"]

    # No max_tokens: the default reservation. The bucket shows the first request's real cost only.
    second = gw.post(CHAT, {"model": "gpt-4o", "messages": HELLO}, bearer(key))
    elapsed = time.monotonic() - sent_at
    assert second.status == 200, second.text
    assert gw.upstream_request(second)["headers"]["x-tokengate-reserved-tokens"] == \
        str(HELLO_TOKENS + DEFAULT_RESERVATION)
    low = LIMIT - actual - (HELLO_TOKENS + DEFAULT_RESERVATION)
    assert low <= ratelimit(second)[1] <= low + REFILL_PER_S * elapsed + 1, (ratelimit(second), elapsed)

    after = gw.wait_for_metrics({
        "tokengate_completion_tokens_total": 2 * MOCK_MAX_COMPLETION,
        "tokengate_refunded_tokens_total": reserved - actual,
        "tokengate_prompt_drift_tokens_count": 2,
        'tokengate_prompt_drift_tokens_bucket{le="0.5"}': 2,  # the mock reports the filter's own count
    }, before)
    for name, delta in {"tokengate_completion_tokens_total": 2 * MOCK_MAX_COMPLETION,
                        "tokengate_refunded_tokens_total": reserved - actual,
                        "tokengate_usage_missing_total": 0}.items():
        assert after.get(name, 0) - before.get(name, 0) == delta, name


def test_a_response_without_usage_is_charged_the_counted_prompt(quota_gateway):
    """The mock's /healthz answers 200 with a JSON body that has no usage."""
    gw = quota_gateway
    before = gw.metrics()
    resp = gw.post("/healthz", {"model": "gpt-4o", "messages": HELLO}, bearer(new_key("nousage")))
    assert resp.status == 200 and "usage" not in resp.json(), resp.text
    entry = gw.access_log_entry(resp)
    reserved = HELLO_TOKENS + DEFAULT_RESERVATION
    assert (entry["reserved_tokens"], entry["actual_tokens"]) == (str(reserved), str(HELLO_TOKENS)), entry["line"]
    gw.wait_for_metrics({"tokengate_usage_missing_total": 1, "tokengate_refunded_tokens_total": DEFAULT_RESERVATION},
                        before)


def stream_chunks(resp: Response) -> list[dict]:
    events = sse_events(resp.body)
    assert events and events[-1] == "[DONE]", resp.text[-500:]
    return [json.loads(e) for e in events[:-1]]


def test_stream_without_include_usage_asks_the_backend_and_hides_the_usage_chunk(quota_gateway):
    gw = quota_gateway
    before = gw.metrics()
    body = {"model": "gpt-4o", "messages": HELLO, "stream": True, "max_tokens": 5}
    resp = gw.post(CHAT, body, bearer(new_key("stream")))
    assert resp.status == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert ratelimit(resp)[0] == LIMIT
    sent = json.loads(gw.upstream_request(resp)["body"])
    assert sent == {**body, "stream_options": {"include_usage": True}}
    chunks = stream_chunks(resp)
    assert all(c["choices"] for c in chunks), "the usage-only chunk reached the client"
    assert not [c for c in chunks if "usage" in c], "usage (even null) reached a client that did not ask for it"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello from mock backend pool-a."
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    # The hidden chunk still settled the reservation.
    entry = gw.access_log_entry(resp)
    assert (entry["reserved_tokens"], entry["actual_tokens"]) == (str(HELLO_TOKENS + 5),) * 2, entry["line"]
    after = gw.wait_for_metrics({"tokengate_completion_tokens_total": 5}, before)
    assert after.get("tokengate_usage_missing_total", 0) == before.get("tokengate_usage_missing_total", 0)


def test_stream_with_include_usage_keeps_the_usage_chunk(quota_gateway):
    gw = quota_gateway
    body = {"model": "gpt-4o", "messages": HELLO, "stream": True, "max_tokens": 5,
            "stream_options": {"include_usage": True}}
    resp = gw.post(CHAT, body, bearer(new_key("stream-usage")))
    assert resp.status == 200, resp.text
    assert json.loads(gw.upstream_request(resp)["body"]) == body
    chunks = stream_chunks(resp)
    assert chunks[-1]["choices"] == [], chunks[-1]
    assert chunks[-1]["usage"]["prompt_tokens"] == HELLO_TOKENS
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    entry = gw.access_log_entry(resp)
    assert entry["actual_tokens"] == str(HELLO_TOKENS + 5), entry["line"]
