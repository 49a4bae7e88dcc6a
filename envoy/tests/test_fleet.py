"""Fleet-wide quotas (quota.backend.rls) end to end: two Envoys with tokengate, one rate limit service
(Limitador's counting behind Envoy's RLS v3 API, envoy/rls), one Redis (Debian's redis-server).

A key's quota is consumed across both proxies; the service's failures (killed, hung, Redis gone, no such
cluster) apply `failure_mode` within `timeout_ms`; quotas resume when the service comes back. Every test
uses its own API keys, so the counters in Redis never carry over between tests.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest

from harness import Gateway, RateLimitService, Redis, key_id, poll

CHAT = "/v1/chat/completions"
LIMIT = 1000  # tokens per minute per key, in the service's limits file
TIMEOUT_MS = 200
LIMITS_YAML = f"""
- namespace: tokengate
  max_value: {LIMIT}
  seconds: 60
  conditions: []
  variables: ["descriptors[0].api_key"]
"""
# 40 prompt tokens + max_tokens 10: the mock answers 10 tokens, so each request costs 50 in all.
BIG = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world! " * 8}], "max_tokens": 10}
BIG_PROMPT, BIG_OUTPUT = 40, 10


def rls_config(failure_mode: str = "allow", cluster: str = "ratelimit") -> dict:
    return {"quota": {"default_output_reservation": 16, "backend": {"rls": {
        "cluster": cluster, "domain": "tokengate", "timeout_ms": TIMEOUT_MS, "failure_mode": failure_mode,
        "descriptors": [{"key": "model", "from": "model"}]}}}}


@pytest.fixture(scope="module")
def redis(workdir):
    server = Redis(workdir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rls(workdir, redis):
    service = RateLimitService(workdir, redis, LIMITS_YAML)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def fleet(workdir, mock, wasm, rls):
    """Two proxies, one service: requests alternate between them."""
    proxies = []
    try:
        for name in ("fleet-a", "fleet-b"):
            proxies.append(Gateway(workdir, name, mock, filter_config=rls_config(), rls_port=rls.port))
        yield proxies
    finally:
        for proxy in proxies:
            proxy.stop()


@pytest.fixture(scope="module")
def deny_gateway(workdir, mock, wasm, rls):
    gateway = Gateway(workdir, "fleet-deny", mock, filter_config=rls_config("deny"), rls_port=rls.port)
    try:
        yield gateway
    finally:
        gateway.stop()


def new_key(label: str) -> str:
    return f"sk-{label}-{uuid.uuid4().hex}"


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def timed_post(gateway: Gateway, key: str, body=None):
    start = time.monotonic()
    resp = gateway.post(CHAT, body or BIG, auth(key))
    return resp, time.monotonic() - start


def test_a_keys_quota_is_consumed_across_both_proxies(fleet):
    key = new_key("fleet")
    admitted, refused = 0, None
    for i in range(LIMIT // (BIG_PROMPT + BIG_OUTPUT) + 5):
        resp = fleet[i % 2].post(CHAT, BIG, auth(key))
        if resp.status == 200:
            admitted += 1
            assert resp.headers["x-ratelimit-limit-tokens"] == str(LIMIT), resp.headers
            continue
        refused = resp
        break
    assert refused is not None, "the key was never refused"
    # Admission charges the prompt; the output follows when the response ends. The sum admitted stays
    # within the limit plus the output of the requests in flight (one at a time here: one output).
    consumed = admitted * (BIG_PROMPT + BIG_OUTPUT)
    assert consumed <= LIMIT + BIG_OUTPUT, (admitted, consumed)
    assert consumed + BIG_PROMPT > LIMIT, f"refused early: {admitted} admitted ({consumed} tokens)"
    assert refused.status == 429, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "tokens"), error
    assert f"key {key_id(key)}" in error["message"] and "fleet-wide" in error["message"], error
    assert 1 <= int(refused.headers["retry-after"]) <= 60, refused.headers
    assert refused.headers["x-ratelimit-limit-tokens"] == str(LIMIT)
    # Both proxies refuse it now, and both counted their own share of the admissions.
    for proxy in fleet:
        assert proxy.post(CHAT, BIG, auth(key)).status == 429
    shares = [proxy.metrics().get("tokengate_allowed_total", 0) for proxy in fleet]
    assert all(share >= admitted // 2 for share in shares), shares
    # Another key is untouched.
    assert fleet[0].post(CHAT, BIG, auth(new_key("other"))).status == 200


def test_concurrent_requests_overshoot_by_at_most_the_output_in_flight(fleet):
    """Eight clients at once on both proxies: the admitted sum is bounded by the limit plus the outputs not yet
    charged when the last request was admitted: each client's request in flight, and its previous one, whose
    settlement call may still be on its way when the client's next request is admitted."""
    from concurrent.futures import ThreadPoolExecutor
    key = new_key("burst")
    clients = 8

    def client(i: int) -> int:
        ok = 0
        for j in range(20):
            if fleet[(i + j) % 2].post(CHAT, BIG, auth(key)).status == 200:
                ok += 1
        return ok
    with ThreadPoolExecutor(clients) as pool:
        admitted = sum(pool.map(client, range(clients)))
    consumed = admitted * (BIG_PROMPT + BIG_OUTPUT)
    assert consumed <= LIMIT + 2 * clients * BIG_OUTPUT, (admitted, consumed)
    assert consumed >= LIMIT - BIG_PROMPT - BIG_OUTPUT, f"refused early: {admitted} admitted"


def test_a_killed_service_applies_the_failure_mode_and_quotas_resume(fleet, rls, deny_gateway):
    key = new_key("outage")
    while fleet[0].post(CHAT, BIG, auth(key)).status == 200:
        pass
    before = [proxy.metrics() for proxy in fleet]
    rls.stop()
    try:
        for proxy in fleet:
            resp, took = timed_post(proxy, key)
            assert resp.status == 200, f"failure_mode allow admits: {resp.status} {resp.text}"
            assert took < TIMEOUT_MS / 1000 + 1.0, took
        resp, took = timed_post(deny_gateway, key)
        assert resp.status == 503, resp.text
        assert resp.json()["error"]["code"] == "quota_unavailable"
        assert resp.headers["retry-after"] == "1"
        for proxy, b in zip(fleet, before):
            proxy.wait_for_metrics({"tokengate_rls_failures_total": 1}, b)
    finally:
        rls.start()
    # The counters live in Redis: the exhausted key is still refused, on both proxies.
    for proxy in fleet:
        resp = poll(lambda: (r := proxy.post(CHAT, BIG, auth(key))).status == 429 and r, "quotas to resume", 10)
        assert resp.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_hung_service_times_out_within_timeout_ms(fleet, rls, deny_gateway):
    key = new_key("hung")
    rls.pause()
    try:
        allowed, took = timed_post(fleet[1], key)
        assert allowed.status == 200, allowed.text
        assert TIMEOUT_MS / 1000 * 0.9 <= took < TIMEOUT_MS / 1000 + 1.0, took
        denied, took = timed_post(deny_gateway, key)
        assert denied.status == 503 and took < TIMEOUT_MS / 1000 + 1.0, (denied.status, took)
        fleet[1].wait_for_metrics({"tokengate_rls_timeouts_total": 1}, {})
        assert fleet[1].access_log_entry(allowed)["rls"] == "failed_allow"
        assert deny_gateway.access_log_entry(denied)["decision"] == "quota_unavailable"
    finally:
        rls.resume()
    assert fleet[1].post(CHAT, BIG, auth(key)).status == 200


def test_a_client_that_leaves_while_the_service_decides_leaks_nothing(fleet, rls):
    key = new_key("gone")
    rls.pause()
    try:
        for _ in range(5):
            parts = urlsplit(fleet[0].url)
            with contextlib.closing(socket.create_connection((parts.hostname, parts.port))) as sock:
                body = ('{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}').encode()
                sock.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                             + f"authorization: Bearer {key}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
                time.sleep(0.02)  # the filter is waiting for the service; the client leaves
    finally:
        rls.resume()
    time.sleep(TIMEOUT_MS / 1000 + 0.2)
    # Envoy is fine and the key works; nothing was forwarded for the abandoned requests.
    resp = fleet[0].post(CHAT, BIG, auth(key))
    assert resp.status == 200, resp.text
    assert fleet[0].process.alive()
    assert "panicked" not in fleet[0].process.log(400)


def test_redis_down_is_the_services_failure_and_tokengate_applies_the_failure_mode(fleet, redis, rls):
    key = new_key("redis")
    before = fleet[0].metrics()
    redis.stop()
    try:
        resp = fleet[0].post(CHAT, BIG, auth(key))
        # The service answers UNAVAILABLE (as Limitador does on a storage error): allow admits.
        assert resp.status == 200, resp.text
        fleet[0].wait_for_metrics({"tokengate_rls_failures_total": 1}, before)
        assert fleet[0].access_log_entry(resp)["rls"] == "failed_allow"
    finally:
        redis.start()
    # Redis came back (empty): the service counts again once it reconnects.
    def counted():
        resp = fleet[0].post(CHAT, BIG, auth(key))
        return resp.status == 200 and fleet[0].access_log_entry(resp)["rls"] == "ok"
    poll(counted, "the service to count again after Redis restarted", 15)


def test_a_missing_cluster_is_accepted_by_envoy_and_each_request_fails_per_the_mode(workdir, mock, wasm):
    gateway = Gateway(workdir, "fleet-nocluster", mock, filter_config=rls_config("deny", cluster="no-such-cluster"))
    try:
        resp = gateway.post(CHAT, BIG, auth(new_key("nocluster")))
        assert resp.status == 503, resp.text
        poll(lambda: "Envoy has no cluster named \"no-such-cluster\"" in gateway.process.log(200), "the log line", 5)
    finally:
        gateway.stop()
