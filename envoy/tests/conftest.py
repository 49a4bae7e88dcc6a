"""pytest fixtures: one mock backend and one Envoy per filter configuration, shared by the whole run."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from harness import (BUILD_COMMAND, KEYED_CONFIG, LIMITS_CONFIG, METERING_CONFIG, QUOTA_CONFIG, ROUTING_CLASSES, ROUTING_LONG_PROMPT,
                     WASM, Gateway, Mock, RoutingGateway)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tokengate-e2e")


@pytest.fixture(scope="session")
def wasm() -> Path:
    if not WASM.is_file():
        pytest.fail(f"{WASM} is missing: build the filter first with `{BUILD_COMMAND}`", pytrace=False)
    return WASM


@pytest.fixture(scope="session")
def mock(workdir) -> Iterator[Mock]:
    backend = Mock(workdir, "pool-a")
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture(scope="session")
def pool_b(workdir) -> Iterator[Mock]:
    """The second backend of routing.yaml (`mock` is the first, pool A)."""
    backend = Mock(workdir, "pool-b")
    try:
        yield backend
    finally:
        backend.stop()


def _gateway(workdir: Path, mock: Mock, name: str, *, cls: type[Gateway] = Gateway, **options) -> Iterator[Gateway]:
    gateway = cls(workdir, name, mock, **options)
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="session")
def gateway(workdir, mock, wasm) -> Iterator[Gateway]:
    """The filter with small limits (LIMITS_CONFIG), so tests can cross them with small requests."""
    yield from _gateway(workdir, mock, "limits", filter_config=LIMITS_CONFIG)


@pytest.fixture(scope="session")
def keyed_gateway(workdir, mock, wasm) -> Iterator[Gateway]:
    """The filter requiring an API key in x-api-key, default encoding cl100k_base (KEYED_CONFIG)."""
    yield from _gateway(workdir, mock, "keyed", filter_config=KEYED_CONFIG)


@pytest.fixture(scope="session")
def default_gateway(workdir, mock, wasm) -> Iterator[Gateway]:
    """envoy.yaml as shipped: its filter configuration and buffer limits (only ports and paths differ)."""
    yield from _gateway(workdir, mock, "default")


@pytest.fixture(scope="session")
def plain_gateway(workdir, mock) -> Iterator[Gateway]:
    """envoy.yaml without the tokengate filter: the Envoy plumbing alone (no .wasm needed)."""
    yield from _gateway(workdir, mock, "plain", with_filter=False)


@pytest.fixture(scope="session")
def quota_gateway(workdir, mock, wasm) -> Iterator[Gateway]:
    """The filter with a per-key token quota of 600 per minute (QUOTA_CONFIG), on 2 workers."""
    yield from _gateway(workdir, mock, "quota", filter_config=QUOTA_CONFIG)


@pytest.fixture(scope="session")
def metering_gateway(workdir, mock, wasm) -> Iterator[Gateway]:
    """The filter with labelled model rules, cost weights and input/output limits (METERING_CONFIG)."""
    yield from _gateway(workdir, mock, "metering", filter_config=METERING_CONFIG)


def _routing_gateway(workdir: Path, mock: Mock, pool_b: Mock, name: str, clear_route_cache: bool):
    config = {"routing": {"clear_route_cache": clear_route_cache, "classes": ROUTING_CLASSES}}
    yield from _gateway(workdir, mock, name, cls=RoutingGateway, pool_b=pool_b, filter_config=config,
                        long_prompt_tokens=ROUTING_LONG_PROMPT)


@pytest.fixture(scope="session")
def routing_gateway(workdir, mock, pool_b, wasm) -> Iterator[RoutingGateway]:
    """routing.yaml with small classes (ROUTING_CLASSES) and clear_route_cache on."""
    yield from _routing_gateway(workdir, mock, pool_b, "routing", clear_route_cache=True)


@pytest.fixture(scope="session")
def routing_gateway_no_clear(workdir, mock, pool_b, wasm) -> Iterator[RoutingGateway]:
    """routing.yaml with small classes and clear_route_cache off."""
    yield from _routing_gateway(workdir, mock, pool_b, "routing-no-clear", clear_route_cache=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, show the tail of the Envoy logs of the gateways the test used."""
    report = yield
    if report.failed and call.when == "call":
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Gateway):
                report.sections.append((f"Envoy log ({value.name}, tail)", value.process.log(30)))
    return report
