"""Renders variants of envoy/envoy.yaml (ports, upstream, .wasm path, filter config, log) and of
envoy/routing.yaml (--routing: ports, long-prompt threshold, .wasm path, filter config) by exact substitution."""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from dataclasses import dataclass
from typing import Callable
from pathlib import Path
from urllib.parse import urlsplit

ENVOY_DIR = Path(__file__).resolve().parent
REPO_ROOT = ENVOY_DIR.parent
TEMPLATE = ENVOY_DIR / "envoy.yaml"
ROUTING_TEMPLATE = ENVOY_DIR / "routing.yaml"
WASM_RELATIVE = "target/wasm32-wasip1/release/tokengate.wasm"
DEFAULT_WASM = REPO_ROOT / WASM_RELATIVE
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# The filter's own default when the configuration does not set max_body_bytes.
FILTER_DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Room above max_body_bytes so the filter, not Envoy's buffer limit, rejects an oversized body.
BUFFER_HEADROOM_BYTES = 1024 * 1024

# Values of envoy.yaml this module replaces; each must occur in the template as written here.
T_LISTENER = "socket_address: {address: 127.0.0.1, port_value: 10000}"
T_ADMIN = "socket_address: {address: 127.0.0.1, port_value: 9901}"
T_BACKEND = "socket_address: {address: 127.0.0.1, port_value: 8000}"
T_BUFFER_LIMIT = "per_connection_buffer_limit_bytes: 5242880  # 5 MiB"
T_WASM = f"filename: {WASM_RELATIVE}"
T_FILTER_CONFIG = """value: '{"max_prompt_tokens": 128000, "max_body_bytes": 4194304}'"""
T_FLUSH = "stats_flush_interval: 5s"
T_ROUTE = "route: {cluster: llm_backend, timeout: 300s}"
TEMPLATE_BUFFER_LIMIT = 5242880
# Values of routing.yaml render_routing() replaces (the .wasm path is T_WASM, once per listener).
R_SIZE_LISTENER = "socket_address: {address: 127.0.0.1, port_value: 10001}"
R_CLASS_LISTENER = "socket_address: {address: 127.0.0.1, port_value: 10002}"
R_ADMIN = "socket_address: {address: 127.0.0.1, port_value: 9902}"
R_POOL_A = "socket_address: {address: 127.0.0.1, port_value: 8001}"
R_POOL_B = "socket_address: {address: 127.0.0.1, port_value: 8002}"
R_LONG_RANGE = "range_match: {start: 4097, end: 1000000000}"
R_FILTER_CONFIG = ("""value: '{"routing": {"clear_route_cache": true, "classes": [{"name": "short", "max_tokens": 4096},"""
                   """ {"name": "long", "max_tokens": 131072}]}}'""")
RE_STDOUT_LOG_NAME = re.compile(r"^(\s*)- name: envoy\.access_loggers\.stdout$", re.M)
RE_STDOUT_LOG_TYPE = re.compile(
    r'^(\s*)"@type": type\.googleapis\.com/envoy\.extensions\.access_loggers\.stream\.v3\.StdoutAccessLog$', re.M)
RE_FILTER_BLOCK = re.compile(r"^\s*# tokengate:begin.*?^\s*# tokengate:end[^\n]*\n", re.M | re.S)
RE_TLS_MARKER = re.compile(r"^(\s*)# upstream-tls\b[^\n]*$", re.M)
RLS_CLUSTER = "ratelimit"


class RenderError(ValueError):
    """The template no longer has a value this renderer replaces, or an option is unusable."""


@dataclass(frozen=True)
class Upstream:
    """Where the llm_backend cluster sends requests."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> "Upstream":
        """`https://api.openai.com`, `http://10.0.0.5:8000` or `host:port` (plain HTTP)."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https"):
            raise RenderError(f"upstream {url!r}: scheme must be http or https")
        if parts.path not in ("", "/") or parts.query:
            raise RenderError(f"upstream {url!r}: give scheme://host[:port] only, clients send the /v1/... path")
        if not parts.hostname:
            raise RenderError(f"upstream {url!r}: no host")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError as err:
            raise RenderError(f"upstream {url!r}: {err}") from None
        return cls(parts.hostname, port, tls)

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def _sub(text: str, old: str, new: str, count: int = 1) -> str:
    found = text.count(old)
    if found != count:
        raise RenderError(f"template: expected {count} occurrence(s) of {old!r}, found {found}")
    return text.replace(old, new)


def _sub_re(text: str, pattern: re.Pattern, new: Callable[[re.Match], str]) -> str:
    result, found = pattern.subn(new, text)
    if found != 1:
        raise RenderError(f"template: expected one match of {pattern.pattern!r}, found {found}")
    return result


def buffer_limit_for(filter_config: str) -> int:
    """Envoy's per-connection buffer limit that lets the filter see bodies up to its max_body_bytes."""
    try:
        max_body = json.loads(filter_config).get("max_body_bytes", FILTER_DEFAULT_MAX_BODY_BYTES)
    except (ValueError, AttributeError):
        return TEMPLATE_BUFFER_LIMIT  # not a JSON object: the filter refuses it anyway
    if not isinstance(max_body, int) or isinstance(max_body, bool):
        return TEMPLATE_BUFFER_LIMIT
    return max(TEMPLATE_BUFFER_LIMIT, max_body + BUFFER_HEADROOM_BYTES)


def tls_block(indent: str, upstream: Upstream, ca_file: Path) -> str:
    lines = [
        "transport_socket:",
        "  name: envoy.transport_sockets.tls",
        "  typed_config:",
        '    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        "    common_tls_context:",
        "      validation_context:",
        f"        trusted_ca: {{filename: {json.dumps(str(ca_file))}}}",
    ]
    if not upstream.is_ip:  # SNI and the certificate check need a name; an IP gets the chain check only
        lines.insert(4, f"    sni: {json.dumps(upstream.host)}")
        lines += ["        match_typed_subject_alt_names:",
                  f"        - {{san_type: DNS, matcher: {{exact: {json.dumps(upstream.host)}}}}}"]
    return "\n".join(indent + line for line in lines)


def render(
    template: str | None = None,
    *,
    listen_address: str | None = None,
    listen_port: int | None = None,
    admin_port: int | None = None,
    upstream: str | None = None,
    wasm_path: str | Path | None = DEFAULT_WASM,
    filter_config: str | dict | None = None,
    with_filter: bool = True,
    access_log_path: str | Path | None = None,
    stats_flush_interval: str | None = None,
    ca_file: str | Path = SYSTEM_CA_BUNDLE,
    rls_port: int | None = None,
) -> str:
    """The template with the given values replaced; None keeps the template's value.

    `rls_port` adds the `ratelimit` cluster (HTTP/2, for quota.backend.rls) to a rate limit service
    on 127.0.0.1 at that port.

    `filter_config` is the filter's JSON configuration, passed through as is (a dict is dumped), so
    invalid configurations can be rendered on purpose. The listener and cluster buffer limits follow
    its max_body_bytes. `wasm_path` is made absolute so the config works from any directory.
    """
    text = TEMPLATE.read_text() if template is None else template
    if listen_address is not None or listen_port is not None:
        text = _sub(text, T_LISTENER, "socket_address: {address: %s, port_value: %d}" % (
            listen_address or "127.0.0.1", 10000 if listen_port is None else listen_port))
    if admin_port is not None:
        text = _sub(text, T_ADMIN, f"socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}")
    if upstream is not None:
        target = Upstream.parse(upstream)
        text = _sub(text, T_BACKEND, f"socket_address: {{address: {target.host}, port_value: {target.port}}}")
        if not target.is_ip:
            text = _sub(text, T_ROUTE, T_ROUTE[:-1] + ", auto_host_rewrite: true}")
        if target.tls:
            ca = Path(ca_file)
            if not ca.is_file():
                raise RenderError(f"CA bundle {ca} not found (apt-get install ca-certificates, or pass --ca-file)")
            text = _sub_re(text, RE_TLS_MARKER, lambda m: tls_block(m.group(1), target, ca))
    if filter_config is not None:
        config_text = filter_config if isinstance(filter_config, str) else json.dumps(filter_config)
        # A JSON string literal is also a valid YAML double-quoted scalar.
        text = _sub(text, T_FILTER_CONFIG, f"value: {json.dumps(config_text)}")
        limit = buffer_limit_for(config_text)
        text = _sub(text, T_BUFFER_LIMIT, f"per_connection_buffer_limit_bytes: {limit}  # {limit / 2**20:g} MiB",
                    count=2)
    if with_filter:
        if wasm_path is not None:
            text = _sub(text, T_WASM, f"filename: {json.dumps(str(Path(wasm_path).resolve()))}")
    else:
        text = _sub_re(text, RE_FILTER_BLOCK, lambda m: "")
    if access_log_path is not None:
        path = json.dumps(str(Path(access_log_path).resolve()))
        text = _sub_re(text, RE_STDOUT_LOG_NAME, lambda m: f"{m[1]}- name: envoy.access_loggers.file")
        text = _sub_re(text, RE_STDOUT_LOG_TYPE, lambda m: (
            f'{m[1]}"@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n'
            f"{m[1]}path: {path}"))
    if stats_flush_interval is not None:
        text = _sub(text, T_FLUSH, f"stats_flush_interval: {stats_flush_interval}")
    if rls_port is not None:
        text = text.rstrip("\n") + "\n" + rls_cluster(rls_port)
    return text


def rls_cluster(port: int, name: str = RLS_CLUSTER) -> str:
    """The cluster of a rate limit service (gRPC: HTTP/2) on 127.0.0.1:`port`, as the README shows it."""
    return f"""  - name: {name}
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: 127.0.0.1, port_value: {port}}}
"""


def _port(socket_address: str, port: int) -> str:
    return socket_address.rsplit("port_value: ", 1)[0] + f"port_value: {port}}}"


def render_routing(
    template: str | None = None,
    *,
    size_port: int | None = None,
    class_port: int | None = None,
    admin_port: int | None = None,
    pool_a_port: int | None = None,
    pool_b_port: int | None = None,
    long_prompt_tokens: int | None = None,
    wasm_path: str | Path | None = DEFAULT_WASM,
    filter_config: str | dict | None = None,
) -> str:
    """routing.yaml with the given values replaced; None keeps the template's value.

    `long_prompt_tokens`: the smallest x-tokengate-prompt-tokens the size-routed listener sends to
    pool B. `filter_config` (both listeners' filter) is passed through as is, a dict is dumped.
    """
    text = ROUTING_TEMPLATE.read_text() if template is None else template
    for old, port in ((R_SIZE_LISTENER, size_port), (R_CLASS_LISTENER, class_port), (R_ADMIN, admin_port),
                      (R_POOL_A, pool_a_port), (R_POOL_B, pool_b_port)):
        if port is not None:
            text = _sub(text, old, _port(old, port))
    if long_prompt_tokens is not None:
        text = _sub(text, R_LONG_RANGE, f"range_match: {{start: {long_prompt_tokens}, end: 1000000000}}")
    if filter_config is not None:
        config_text = filter_config if isinstance(filter_config, str) else json.dumps(filter_config)
        text = _sub(text, R_FILTER_CONFIG, f"value: {json.dumps(config_text)}", count=2)
    if wasm_path is not None:
        text = _sub(text, T_WASM, f"filename: {json.dumps(str(Path(wasm_path).resolve()))}", count=2)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--listen-address", help="listener address (default 127.0.0.1)")
    parser.add_argument("--listen-port", type=int, help="listener port (default 10000)")
    parser.add_argument("--admin-port", type=int, help="admin port (default 9901)")
    parser.add_argument("--upstream", help="backend: https://api.openai.com, http://host:port or host:port"
                                           " (default 127.0.0.1:8000, the mock)")
    parser.add_argument("--wasm", type=Path, default=DEFAULT_WASM, help=f"filter module (default {DEFAULT_WASM})")
    parser.add_argument("--filter-config", help="the filter's JSON configuration (default: the template's)")
    parser.add_argument("--no-filter", action="store_true", help="leave the tokengate filter out (baseline)")
    parser.add_argument("--access-log", type=Path, help="write the access log to this file instead of stdout")
    parser.add_argument("--stats-flush-interval", help="e.g. 1s (default 5s)")
    parser.add_argument("--ca-file", type=Path, default=SYSTEM_CA_BUNDLE, help="CA bundle for an https upstream")
    parser.add_argument("--rls-port", type=int,
                        help="add the `ratelimit` cluster (HTTP/2) to a rate limit service on 127.0.0.1 at this port")
    routing = parser.add_argument_group(
        "routing.yaml", "--routing renders envoy/routing.yaml instead (with --admin-port, --wasm, --filter-config)")
    routing.add_argument("--routing", action="store_true", help="render routing.yaml (default template: envoy/routing.yaml)")
    routing.add_argument("--size-port", type=int, help="listener routing on x-tokengate-prompt-tokens (default 10001)")
    routing.add_argument("--class-port", type=int, help="listener routing on x-tokengate-class (default 10002)")
    routing.add_argument("--pool-a-port", type=int, help="pool A backend on 127.0.0.1 (default 8001)")
    routing.add_argument("--pool-b-port", type=int, help="pool B backend on 127.0.0.1 (default 8002)")
    routing.add_argument("--long-prompt-tokens", type=int,
                         help="smallest prompt the size listener sends to pool B (default 4097)")
    args = parser.parse_args(argv)
    try:
        if args.routing:
            template = ROUTING_TEMPLATE if args.template == TEMPLATE else args.template
            text = render_routing(template.read_text(), size_port=args.size_port, class_port=args.class_port,
                                  admin_port=args.admin_port, pool_a_port=args.pool_a_port,
                                  pool_b_port=args.pool_b_port, long_prompt_tokens=args.long_prompt_tokens,
                                  wasm_path=args.wasm, filter_config=args.filter_config)
        else:
                text = render(args.template.read_text(), listen_address=args.listen_address,
                          listen_port=args.listen_port, admin_port=args.admin_port, upstream=args.upstream,
                          wasm_path=args.wasm, filter_config=args.filter_config, with_filter=not args.no_filter,
                          access_log_path=args.access_log, stats_flush_interval=args.stats_flush_interval,
                          ca_file=args.ca_file, rls_port=args.rls_port)
    except (RenderError, OSError) as err:
        print(f"render_config: {err}", file=sys.stderr)
        return 2
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
