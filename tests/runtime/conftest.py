"""Fixtures for the runtime tests: a backend parameter and connected brokers on the session servers."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from agentswarm.broker import Broker
from rt_support import make_test_broker


@pytest.fixture(params=["redis", "nats"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server_url(backend: str, request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue("redis_server" if backend == "redis" else "nats_server")
    return str(server.url)


@pytest.fixture
async def brokers(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """``await brokers(**kw)`` -> a connected broker of the current backend in this test's namespace.

    Every broker gets the same ledger directory unless ``ledger_dir`` is given, like one agent volume.
    """
    made: list[Broker] = []

    async def make(**kw: Any) -> Broker:
        kw.setdefault("ledger_dir", tmp_path / "volume")
        broker = make_test_broker(backend, server_url, unique_namespace, **kw)
        await broker.connect()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()
