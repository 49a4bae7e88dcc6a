"""Configuration: Envoy refuses a bad filter configuration, and envoy.yaml as shipped works end to end."""

from __future__ import annotations

import re
import subprocess

import pytest

from harness import REPO_ROOT, START_TIMEOUT_S, assert_openai_error, envoy_binary, run_envoy_to_exit

BAD_CONFIGS = {
    "wrong-type": ('{"max_prompt_tokens": "lots"}', ("max_prompt_tokens", "lots")),
    "unknown-field": ('{"max_prompt_tokens": 1000, "no_such_field": true}', ("no_such_field",)),
    "unknown-encoding": ('{"encoding": "p50k_nope"}', ("p50k_nope",)),
    "not-json": ("max_prompt_tokens = 1000", ("json", "JSON", "expected")),
}
FILTER_LOG_LINE = re.compile(r"\]\[(error|critical|warning)\]\[wasm\].*wasm log.*tokengate", re.IGNORECASE)


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_envoy_refuses_a_bad_filter_config(wasm, workdir, name):
    config, mentions = BAD_CONFIGS[name]
    status, log = run_envoy_to_exit(workdir, f"bad-{name}", config)
    assert status is not None and status != 0, f"Envoy accepted {config}:\n{log}"
    filter_lines = [line for line in log.splitlines() if FILTER_LOG_LINE.search(line)]
    assert filter_lines, f"no error line from the filter in Envoy's log:\n{log}"
    assert any(m in line for line in filter_lines for m in mentions), \
        f"the filter's error does not name the problem ({' / '.join(mentions)}):\n" + "\n".join(filter_lines)


def test_validate_mode_refuses_a_bad_filter_config(wasm, workdir):
    status, log = run_envoy_to_exit(workdir, "bad-validate", BAD_CONFIGS["unknown-field"][0], validate=True)
    assert status is not None and status != 0, log
    assert "tokengate" in log


def test_shipped_envoy_yaml_validates(wasm):
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", "envoy/envoy.yaml"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=START_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_shipped_config_allows_a_normal_request(default_gateway):
    resp = default_gateway.post("/v1/chat/completions",
                                {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello, world!"}]})
    assert resp.status == 200, resp.text
    assert default_gateway.upstream_request(resp)["headers"].get("x-tokengate-prompt-tokens") == "11"


def test_bodies_above_envoys_default_limit_reach_the_filter(default_gateway):
    """2 MiB is over Envoy's default 1 MiB buffer: the filter still reads it all and counts it."""
    text = "hello world " * (2 * 1024 * 1024 // 12)
    resp = default_gateway.post("/v1/chat/completions",
                                {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
    error = assert_openai_error(resp, 400, "context_length_exceeded", "messages")
    assert "128000" in error["message"], error["message"]
    default_gateway.assert_not_forwarded(resp)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_the_filter_not_envoy_answers_a_body_over_max_body_bytes(default_gateway, chunked):
    """4 MiB (max_body_bytes) < body < 5 MiB (buffer limit): the filter's JSON 413, not Envoy's plain one."""
    body = '{"model": "gpt-4o", "prompt": "%s"}' % ("x" * (4 * 1024 * 1024 + 65536))
    resp = default_gateway.post("/v1/completions", body, {"content-type": "application/json"}, chunked=chunked)
    assert_openai_error(resp, 413, "request_too_large")
    default_gateway.assert_not_forwarded(resp)
