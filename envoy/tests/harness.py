"""e2e test plumbing: filter configurations, the mock and Envoy on free loopback ports, HTTP, stats, logs."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

ENVOY_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ENVOY_DIR))

import render_config  # noqa: E402  (lives in envoy/, beside this directory)

REPO_ROOT = render_config.REPO_ROOT
WASM = Path(os.environ.get("TOKENGATE_WASM") or render_config.DEFAULT_WASM)  # override: a prebuilt module
MOCK_BACKEND = ENVOY_DIR / "mock_backend.py"
BUILD_COMMAND = "cargo build --release --target wasm32-wasip1 -p tokengate"
# A build with the test tokenizers of the open-weight models (test.sh makes it; override: a prebuilt module).
MODELS_WASM = Path(os.environ.get("TOKENGATE_MODELS_WASM") or REPO_ROOT / "target/tokengate-models.wasm")
MODELS_BUILD_COMMAND = "./test.sh (its step 'build the filter with the models' tokenizers')"
# The rate limit service of the fleet tests (envoy/rls: Limitador's counting on Redis behind Envoy's RLS v3 API).
RLS_BINARY = Path(os.environ.get("TOKENGATE_TEST_RLS") or REPO_ROOT / "target/rls/release/tokengate-test-rls")
RLS_BUILD_COMMAND = "envoy/rls/build.sh"

# The filter configurations the gateways run; tests read their limits from here.
LIMITS_CONFIG = {
    "max_prompt_tokens": 50,
    "max_output_tokens": 100,
    "max_body_bytes": 65536,
    "models": [
        {"match": "tiny-*", "encoding": "o200k_base", "max_prompt_tokens": 12},
        {"match": "custom-cl", "encoding": "cl100k_base", "max_prompt_tokens": 50},
    ],
}
KEYED_CONFIG = {"encoding": "cl100k_base", "api_key": {"header": "x-api-key", "required": True}}
# Two labelled rules (one with cost weights), drift warnings over 5 %, and per-key input, output and total
# limits in weighted tokens.
METERING_CONFIG = {
    "models": [{"match": "gpt-4o", "label": "four-o", "cost": {"input": 2, "cached_input": 0.5, "output": 4}},
               {"match": "gpt-4o-mini", "label": "mini"}],
    "metering": {"drift_warn_ratio": 0.05},
    "quota": {"tokens_per_minute": 1000, "input_tokens_per_minute": 300, "output_tokens_per_minute": 100,
              "default_output_reservation": 16},
}
# 600 tokens per minute refill 10 per second; requests without max_tokens reserve 16 output tokens.
QUOTA_CONFIG = {"quota": {"tokens_per_minute": 600, "default_output_reservation": 16}}
# Small classes so small prompts cross them: needing at most 50 tokens (prompt + reserved output)
# is "short". The size-routed listener of routing.yaml sends prompts of ROUTING_LONG_PROMPT tokens
# and more to pool B.
ROUTING_CLASSES = [{"name": "short", "max_tokens": 50}, {"name": "long", "max_tokens": 131072}]
ROUTING_LONG_PROMPT = 51

HTTP_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_TIMEOUT_S = 8.0  # stats are merged every second here; the access log is flushed every 100 ms
POLL_INTERVAL_S = 0.05
PORT_ATTEMPTS = 3


def envoy_binary() -> str:
    """The venv's envoy (beside the running python), else the one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file():
        return str(beside)
    found = shutil.which("envoy")
    if not found:
        raise RuntimeError("envoy not found: run envoy/setup.sh and use .venv/bin/pytest")
    return found


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now (all held open together so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def key_id(api_key: str) -> str:
    """What the filter reports for a key: the first 16 hex chars of SHA-256 of the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def poll(check: Callable[[], object], what: str, timeout: float = POLL_TIMEOUT_S) -> object:
    """Calls `check` until it returns something truthy (returned) or `timeout` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


# --- HTTP -------------------------------------------------------------------------------------------------

@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lowercase names
    body: bytes
    request_id: str

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def http_request(url: str, method: str = "GET", body: bytes | str | dict | list | None = None,
                 headers: dict[str, str] | None = None, *, chunked: bool = False,
                 timeout: float = HTTP_TIMEOUT_S) -> Response:
    """One request on a fresh connection, with an `x-request-id` to find it later in logs and the mock.

    A dict/list body is sent as JSON (content-type application/json unless given). `chunked` sends the
    body with Transfer-Encoding: chunked and no Content-Length.
    """
    parts = urlsplit(url)
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    headers.setdefault("x-request-id", f"test-{uuid.uuid4().hex}")
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers.setdefault("content-type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    payload: bytes | Iterator[bytes] | None = body
    if chunked and body is not None:
        payload = (body[i:i + 16384] for i in range(0, len(body), 16384))
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        try:
            conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=payload,
                         headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading the whole body (a 413); its answer is still readable
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read(),
                        headers["x-request-id"])
    finally:
        conn.close()


def sse_events(body: bytes) -> list[str]:
    """The `data:` payloads of a server-sent-events body, in order."""
    return [line[len("data: "):] for line in body.decode().split("\n") if line.startswith("data: ")]


@dataclass
class TimedStream:
    status: int
    content_type: str
    first_line: bytes
    first_at: float  # seconds from sending the request to the first line of the body
    body: bytes  # the whole body, first line included
    total: float  # seconds until the body ended


def timed_stream(url: str, body: dict, headers: dict[str, str] | None = None,
                 timeout: float = HTTP_TIMEOUT_S) -> TimedStream:
    """POSTs a JSON body and times the first line and the end of the answer (to see streaming)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        start = time.monotonic()
        conn.request("POST", parts.path, json.dumps(body), {"content-type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        first = resp.readline()
        first_at = time.monotonic() - start
        rest = resp.read()
        return TimedStream(resp.status, resp.getheader("content-type", ""), first, first_at, first + rest,
                           time.monotonic() - start)
    finally:
        conn.close()


def assert_openai_error(resp: Response, status: int, code: str, param: object = ...) -> dict:
    """Checks a local reply of the filter: status, JSON content type, the OpenAI error envelope."""
    assert resp.status == status, f"expected {status} {code}, got {resp.status}: {resp.text[:500]}"
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    error = resp.json()["error"]
    assert error["code"] == code, error
    assert error["type"] == "invalid_request_error", error
    assert isinstance(error["message"], str) and error["message"], error
    assert "param" in error, error
    if param is not ...:
        assert error["param"] == param, error
    return error


PROMETHEUS_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[str, float]:
    """`name{labels}` (or `name` when it has no labels) -> value; a series with a `model` label is
    also added into the sum over models, named without that label (`tokengate_allowed_total`,
    `tokengate_prompt_tokens_bucket{le="16"}`)."""
    metrics: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        name = name.removesuffix("{}")
        metrics[name] = float(value)
        base, brace, labels = name.partition("{")
        if brace and 'model="' in labels:
            rest = [f'{k}="{v}"' for k, v in PROMETHEUS_LABEL.findall(labels) if k != "model"]
            total = base + ("{" + ",".join(rest) + "}" if rest else "")
            metrics[total] = metrics.get(total, 0.0) + float(value)
    return metrics


def model_labels(text: str) -> set[str]:
    """Every `model` label value of the tokengate series in a /stats/prometheus text."""
    return {m for line in text.splitlines() if line.startswith("tokengate_")
            for k, m in PROMETHEUS_LABEL.findall(line.partition(" ")[0]) if k == "model"}


# --- processes ----------------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test run dies without tearing down (Linux only)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Process:
    """A child process whose output goes to a log file; stop() always reaps it."""

    def __init__(self, args: list[str], log_path: Path, cwd: Path = REPO_ROOT):
        self.args = args
        self.log_path = log_path
        log = open(log_path, "wb")
        try:
            self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=cwd, preexec_fn=_die_with_parent)
        finally:
            log.close()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, tail_lines: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail_lines:])

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if still running after `timeout`."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            if self.wait_exit(STOP_TIMEOUT_S) is None:
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT_S)


class Mock:
    """The bundled mock backend on a free port."""

    def __init__(self, workdir: Path, name: str = "mock"):
        self.name = name
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process([sys.executable, str(MOCK_BACKEND), "--host", "127.0.0.1", "--port", str(self.port),
                                "--name", name], workdir / f"mock-{name}.log")
        try:
            poll(self._healthy, f"mock backend {name} on {self.url}", START_TIMEOUT_S)
        except AssertionError as err:
            self.process.stop()
            raise AssertionError(f"{err}\n{self.process.log()}") from None

    def _healthy(self) -> bool:
        if not self.process.alive():
            raise AssertionError(f"mock backend exited with {self.process.popen.returncode}")
        try:
            return http_request(f"{self.url}/healthz", timeout=1).status == 200
        except OSError:
            return False

    def requests(self) -> list[dict]:
        return http_request(f"{self.url}/__mock/requests").json()

    def reset(self) -> None:
        http_request(f"{self.url}/__mock/reset", "POST")

    def stop(self) -> None:
        self.process.stop()


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Redis:
    """redis-server (Debian's) on a fixed free loopback port, without persistence; stop() and start() keep
    the port, so a restarted Redis is the same address (and an empty store)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_ports(1)[0]
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: Process | None = None
        self.start()

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise AssertionError("redis-server not found: apt-get install redis-server (test.sh does)")
        self.process = Process([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--daemonize", "no"], self.workdir / f"redis-{self.port}.log")
        poll(lambda: self._pong(), f"redis on port {self.port}", START_TIMEOUT_S)

    def _pong(self) -> bool:
        if self.process is None or not self.process.alive():
            raise AssertionError(f"redis-server exited:\n{self.process.log() if self.process else ''}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class RateLimitService:
    """The test rate limit service (RLS_BINARY) on a fixed free port, counting in `redis` with the limits of
    `limits_yaml` (a Limitador limits file). `statuses=False` answers as Limitador does (overall code only)."""

    def __init__(self, workdir: Path, redis: Redis, limits_yaml: str, *, statuses: bool = True, name: str = "rls"):
        if not RLS_BINARY.is_file():
            raise AssertionError(f"{RLS_BINARY} is missing: build it with `{RLS_BUILD_COMMAND}` (test.sh does)")
        self.workdir, self.redis, self.statuses, self.name = workdir, redis, statuses, name
        self.limits_path = workdir / f"{name}-limits.yaml"
        self.limits_path.write_text(limits_yaml)
        self.port = free_ports(1)[0]
        self.process: Process | None = None
        self.start()

    def start(self) -> None:
        args = [str(RLS_BINARY), "--listen", f"127.0.0.1:{self.port}", "--redis", self.redis.url,
                "--limits", str(self.limits_path)] + ([] if self.statuses else ["--no-statuses"])
        self.process = Process(args, self.workdir / f"{self.name}-{time.monotonic_ns()}.log")
        process = self.process

        def up() -> bool:
            if not process.alive():
                raise AssertionError(f"the rate limit service exited:\n{process.log()}")
            return _tcp_open(self.port)
        poll(up, f"the rate limit service on port {self.port}", START_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but nothing answers (calls time out)."""
        assert self.process is not None
        self.process.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.popen.send_signal(signal.SIGCONT)


def envoy_args(config_path: Path, admin_port: int) -> list[str]:
    # --base-id from the admin port: unique among live Envoys, so their shared memory never clashes.
    return [envoy_binary(), "-c", str(config_path), "--concurrency", "2", "--base-id", str(admin_port),
            "--log-level", "warning", "--component-log-level", "wasm:info", "--file-flush-interval-msec", "100"]


class Gateway:
    """Envoy (with or without the tokengate filter) in front of a Mock, on free loopback ports.

    Subclasses for other templates override PORTS, _assign_ports and _render.
    """

    PORTS = 2  # listener, admin

    def __init__(self, workdir: Path, name: str, mock: Mock, *, filter_config: str | dict | None = None,
                 with_filter: bool = True, wasm: Path | None = None, rls_port: int | None = None):
        self.name = name
        self.rls_port = rls_port
        self.wasm = wasm or WASM
        self.mock = mock
        self.filter_config = filter_config
        self.with_filter = with_filter
        self.access_log_path = workdir / f"access-{name}.log"
        self.config_path = workdir / f"envoy-{name}.yaml"
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._assign_ports(free_ports(self.PORTS))
            self.admin_url = f"http://127.0.0.1:{self.admin_port}"
            self.config_path.write_text(self._render())
            self.process = Process(envoy_args(self.config_path, self.admin_port), workdir / f"envoy-{name}.log")
            try:
                poll(self._ready, f"Envoy {name} to be ready on {self.admin_url}/ready", START_TIMEOUT_S)
                return
            except AssertionError as err:
                self.process.stop()
                log = self.process.log()
                if "Address already in use" in log and attempt < PORT_ATTEMPTS:
                    continue  # another process took a port between free_ports() and Envoy's bind
                raise AssertionError(f"{err}\n--- Envoy log ---\n{log}") from None

    def _assign_ports(self, ports: list[int]) -> None:
        self.listen_port, self.admin_port = ports
        self.url = f"http://127.0.0.1:{self.listen_port}"

    def _render(self) -> str:
        return render_config.render(
            listen_port=self.listen_port, admin_port=self.admin_port, upstream=f"127.0.0.1:{self.mock.port}",
            wasm_path=self.wasm, filter_config=self.filter_config, with_filter=self.with_filter,
            access_log_path=self.access_log_path, stats_flush_interval="1s", rls_port=self.rls_port)

    def _ready(self) -> bool:
        if not self.process.alive():
            raise AssertionError(f"Envoy exited with {self.process.popen.returncode} during start-up")
        try:
            if http_request(f"{self.admin_url}/ready", timeout=1).status != 200:
                return False
            with socket.create_connection(("127.0.0.1", self.listen_port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.process.stop()

    # requests through the gateway
    def request(self, method: str, path: str, body=None, headers=None, **kwargs) -> Response:
        return http_request(self.url + path, method, body, headers, **kwargs)

    def post(self, path: str, body, headers=None, **kwargs) -> Response:
        return self.request("POST", path, body, headers, **kwargs)

    # what the mock saw
    def mock_requests(self) -> list[dict]:
        return self.mock.requests()

    def reset(self) -> None:
        self.mock.reset()

    def upstream_request(self, resp: Response) -> dict:
        """The request as the mock received it (found by x-request-id); fails if it never arrived."""
        seen = [r for r in self.mock.requests() if r["headers"].get("x-request-id") == resp.request_id]
        assert len(seen) == 1, f"expected the request {resp.request_id} once upstream, saw it {len(seen)} times"
        return seen[0]

    def assert_not_forwarded(self, resp: Response) -> None:
        ids = [r["headers"].get("x-request-id") for r in self.mock.requests()]
        assert resp.request_id not in ids, "a rejected request reached the backend"

    # stats
    def stats_prometheus(self) -> str:
        return http_request(f"{self.admin_url}/stats/prometheus").text

    def metrics(self) -> dict[str, float]:
        return parse_prometheus(self.stats_prometheus())

    def wait_for_metrics(self, expected: dict[str, float], before: dict[str, float]) -> dict[str, float]:
        """Polls until every metric in `expected` grew by at least its delta from `before`; returns them."""
        def reached():
            now = self.metrics()
            return now if all(now.get(k, 0) >= before.get(k, 0) + d for k, d in expected.items()) else None
        try:
            return poll(reached, f"metric deltas {expected}")
        except AssertionError:
            now = self.metrics()
            got = {k: now.get(k, 0) - before.get(k, 0) for k in expected}
            raise AssertionError(f"metric deltas: expected at least {expected}, got {got}") from None

    # access log
    def access_log_lines(self) -> list[str]:
        try:
            return self.access_log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def access_log_entry(self, resp: Response) -> dict[str, str]:
        """The access log fields (key=value, plus status and line) of one request, polled until flushed."""
        def find():
            return next((line for line in self.access_log_lines() if f"request_id={resp.request_id} " in line),
                        None)
        line = poll(find, f"the access log line of {resp.request_id}")
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        fields["status"] = re.search(r'" (\d{3}) ', line).group(1)
        fields["line"] = line
        return fields


class RoutingGateway(Gateway):
    """envoy/routing.yaml: two listeners (routing on x-tokengate-prompt-tokens / on x-tokengate-class)
    in front of two pools; `mock` is pool A, `pool_b` pool B. Logs (access log included) go to the
    Envoy log. Prompts of at least `long_prompt_tokens` go to pool B on the size listener."""

    PORTS = 3  # size listener, class listener, admin

    def __init__(self, workdir: Path, name: str, pool_a: Mock, pool_b: Mock, *, filter_config: str | dict,
                 long_prompt_tokens: int):
        self.pool_b = pool_b
        self.long_prompt_tokens = long_prompt_tokens
        super().__init__(workdir, name, pool_a, filter_config=filter_config)

    def _assign_ports(self, ports: list[int]) -> None:
        self.listen_port, self.class_port, self.admin_port = ports
        self.url = f"http://127.0.0.1:{self.listen_port}"  # the size-routed listener
        self.class_url = f"http://127.0.0.1:{self.class_port}"

    def _render(self) -> str:
        return render_config.render_routing(
            size_port=self.listen_port, class_port=self.class_port, admin_port=self.admin_port,
            pool_a_port=self.mock.port, pool_b_port=self.pool_b.port, long_prompt_tokens=self.long_prompt_tokens,
            wasm_path=WASM, filter_config=self.filter_config)


def run_envoy_to_exit(workdir: Path, name: str, filter_config: str | dict, *, validate: bool = False,
                      timeout: float = START_TIMEOUT_S) -> tuple[int | None, str]:
    """Starts Envoy with a filter configuration expected to be refused.

    Returns (exit status, log), or (None, log) if Envoy became ready or still ran after `timeout`.
    """
    listen_port, admin_port = free_ports(2)
    config_path = workdir / f"envoy-{name}.yaml"
    config_path.write_text(render_config.render(listen_port=listen_port, admin_port=admin_port,
                                                upstream="127.0.0.1:9", wasm_path=WASM,
                                                filter_config=filter_config))
    args = envoy_args(config_path, admin_port) + (["--mode", "validate"] if validate else [])
    process = Process(args, workdir / f"envoy-{name}.log")

    def exited_or_ready():
        if not process.alive():
            return "exited"
        try:
            return "ready" if http_request(f"http://127.0.0.1:{admin_port}/ready", timeout=1).status == 200 else None
        except OSError:
            return None
    try:
        outcome = poll(exited_or_ready, f"Envoy {name} to exit", timeout)
    except AssertionError as err:
        outcome = str(err)
    finally:
        process.stop()
    if outcome == "exited":
        return process.popen.returncode, process.log(200)
    return None, f"Envoy did not exit ({outcome}); log:\n{process.log(200)}"
