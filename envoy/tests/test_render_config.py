"""render_config.py: each option changes only what it says, and Envoy accepts the rendered configs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import render_config
from harness import REPO_ROOT, START_TIMEOUT_S, envoy_binary

TEMPLATE = render_config.TEMPLATE.read_text()


def changed_lines(rendered: str) -> list[tuple[str, str]]:
    """(template line, rendered line) pairs that differ; the renderers here never add or drop lines."""
    old, new = TEMPLATE.splitlines(), rendered.splitlines()
    assert len(old) == len(new)
    return [(a.strip(), b.strip()) for a, b in zip(old, new) if a != b]


def envoy_validate(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warning"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=START_TIMEOUT_S)


def test_defaults_only_make_the_wasm_path_absolute():
    assert changed_lines(render_config.render()) == [
        ("code: {local: {filename: target/wasm32-wasip1/release/tokengate.wasm}}",
         f'code: {{local: {{filename: "{render_config.DEFAULT_WASM}"}}}}')]


def test_ports_upstream_and_flush_interval():
    rendered = render_config.render(listen_port=20000, admin_port=20001, upstream="http://10.1.2.3:9000",
                                    wasm_path=None, stats_flush_interval="1s")
    assert changed_lines(rendered) == [
        ("socket_address: {address: 127.0.0.1, port_value: 9901}",
         "socket_address: {address: 127.0.0.1, port_value: 20001}"),
        ("stats_flush_interval: 5s", "stats_flush_interval: 1s"),
        ("socket_address: {address: 127.0.0.1, port_value: 10000}",
         "socket_address: {address: 127.0.0.1, port_value: 20000}"),
        ("socket_address: {address: 127.0.0.1, port_value: 8000}",
         "socket_address: {address: 10.1.2.3, port_value: 9000}"),
    ]


def test_filter_config_and_buffer_limits_follow_max_body_bytes():
    config = '{"max_body_bytes": 10485760, "note": "it\'s \\"quoted\\""}'
    changes = changed_lines(render_config.render(filter_config=config, wasm_path=None))
    assert ("per_connection_buffer_limit_bytes: 5242880  # 5 MiB",
            "per_connection_buffer_limit_bytes: 11534336  # 11 MiB") in changes
    value_line = next(new for old, new in changes if old.startswith("value:"))
    assert json.loads(value_line.removeprefix("value: ")) == config  # a JSON string is a YAML scalar
    # Small limits keep the template's buffer limit; unparsable configs are passed through as they are.
    assert render_config.buffer_limit_for('{"max_body_bytes": 1000}') == 5242880
    assert render_config.buffer_limit_for('{"max_body_bytes": "big"}') == 5242880
    assert render_config.buffer_limit_for("not json") == 5242880


def test_no_filter_drops_exactly_the_wasm_filter():
    rendered = render_config.render(with_filter=False)
    assert "envoy.filters.http.wasm" not in rendered and "tokengate.wasm" not in rendered
    assert "envoy.filters.http.router" in rendered


def test_access_log_to_a_file(tmp_path):
    rendered = render_config.render(access_log_path=tmp_path / "a.log", wasm_path=None)
    assert "envoy.access_loggers.file" in rendered and "StdoutAccessLog" not in rendered
    assert f'path: "{tmp_path / "a.log"}"' in rendered


def test_https_upstream_gets_tls_with_sni_and_host_rewrite():
    rendered = render_config.render(upstream="https://api.openai.com", wasm_path=None)
    assert "socket_address: {address: api.openai.com, port_value: 443}" in rendered
    assert 'sni: "api.openai.com"' in rendered
    assert "UpstreamTlsContext" in rendered
    assert "auto_host_rewrite: true" in rendered
    assert "# upstream-tls" not in rendered


@pytest.mark.parametrize("url", ["ftp://x", "https://api.openai.com/v1", "http://", "http://h:notaport"])
def test_unusable_upstreams_are_refused(url):
    with pytest.raises(render_config.RenderError):
        render_config.render(upstream=url)


def test_a_changed_template_is_an_error_not_a_silent_no_op():
    with pytest.raises(render_config.RenderError, match="port_value: 9901"):
        render_config.render(TEMPLATE.replace("port_value: 9901", "port_value: 9902"), admin_port=1)


@pytest.mark.parametrize("options", [
    {"with_filter": False},
    {"with_filter": False, "upstream": "https://api.openai.com", "listen_address": "0.0.0.0"},
    {"with_filter": False, "upstream": "http://10.0.0.5:8000", "access_log_path": "/tmp/tokengate-access.log"},
], ids=["plain", "https-upstream", "http-upstream-file-log"])
def test_envoy_accepts_rendered_configs(tmp_path, options):
    result = envoy_validate(tmp_path, render_config.render(**options))
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_writes_a_file(tmp_path):
    out = tmp_path / "sub" / "envoy.yaml"
    subprocess.run([sys.executable, str(render_config.ENVOY_DIR / "render_config.py"), "--listen-port", "12345",
                    "--no-filter", "-o", str(out)], check=True, timeout=30)
    assert "port_value: 12345" in out.read_text()
    bad = subprocess.run([sys.executable, str(render_config.ENVOY_DIR / "render_config.py"), "--upstream", "ftp://x"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "scheme" in bad.stderr


# --- routing.yaml (render_config.render_routing, --routing) ---------------------------------------------

ROUTING_TEMPLATE = render_config.ROUTING_TEMPLATE.read_text()


def test_routing_yaml_as_shipped_is_valid(tmp_path):
    result = envoy_validate(tmp_path, ROUTING_TEMPLATE)  # run from the repo root: the relative .wasm path
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_routing_changes_only_what_it_is_given(tmp_path):
    config = {"routing": {"clear_route_cache": False, "classes": [{"name": "s", "max_tokens": 9}]}}
    rendered = render_config.render_routing(size_port=20001, class_port=20002, admin_port=20003, pool_a_port=20004,
                                            pool_b_port=20005, long_prompt_tokens=51, filter_config=config)
    old, new = ROUTING_TEMPLATE.splitlines(), rendered.splitlines()
    assert len(old) == len(new)
    changes = [(a.strip(), b.strip()) for a, b in zip(old, new) if a != b]
    wasm = f'code: {{local: {{filename: "{render_config.DEFAULT_WASM}"}}}}'
    value = f"value: {json.dumps(json.dumps(config))}"
    assert [b for _, b in changes] == [
        "socket_address: {address: 127.0.0.1, port_value: 20003}",
        "socket_address: {address: 127.0.0.1, port_value: 20001}",
        "range_match: {start: 51, end: 1000000000}",
        value, wasm,
        "socket_address: {address: 127.0.0.1, port_value: 20002}",
        value, wasm,
        "socket_address: {address: 127.0.0.1, port_value: 20004}",
        "socket_address: {address: 127.0.0.1, port_value: 20005}",
    ]
    result = envoy_validate(tmp_path, rendered)
    assert result.returncode == 0, result.stdout + result.stderr


def test_routing_cli(tmp_path):
    out = tmp_path / "routing.yaml"
    subprocess.run([sys.executable, str(render_config.ENVOY_DIR / "render_config.py"), "--routing",
                    "--class-port", "12346", "--long-prompt-tokens", "100", "-o", str(out)], check=True, timeout=30)
    text = out.read_text()
    assert "port_value: 12346" in text and "range_match: {start: 100," in text
    with pytest.raises(render_config.RenderError, match="port_value: 9902"):
        render_config.render_routing(ROUTING_TEMPLATE.replace("port_value: 9902", "port_value: 1"), admin_port=2)


def test_rls_port_adds_only_the_http2_ratelimit_cluster(tmp_path):
    rendered = render_config.render(rls_port=18081, wasm_path=None)
    assert rendered.startswith(TEMPLATE.rstrip("\n"))
    added = rendered[len(TEMPLATE.rstrip("\n")):]
    assert "- name: ratelimit" in added and "http2_protocol_options" in added and "port_value: 18081" in added
    result = envoy_validate(tmp_path, rendered)
    assert result.returncode == 0, result.stdout + result.stderr
