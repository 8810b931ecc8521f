"""Fixtures of the edge tests (helpers live in :mod:`tests.edge.helpers`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import LifetimeProxy, Swarm


@pytest.fixture
def redis_swarm(tmp_path: Path, redis_server: Any, unique_namespace: str) -> Iterator[Swarm]:
    """Coordinator/agents on the session redis-server, in a namespace of their own (started by the test)."""
    env = {"AGENTSWARM_BROKER": "redis", "AGENTSWARM_REDIS_URL": redis_server.url}
    swarm = Swarm(tmp_path, env, unique_namespace)
    yield swarm
    swarm.stop()


@pytest.fixture
async def lifetime_proxy_factory() -> AsyncIterator[Callable[[int, float], asyncio.Future[LifetimeProxy]]]:
    proxies: list[LifetimeProxy] = []

    def make(upstream_port: int, lifetime: float) -> asyncio.Future[LifetimeProxy]:
        proxy = LifetimeProxy(upstream_port, lifetime)
        proxies.append(proxy)
        return asyncio.ensure_future(proxy.start())

    yield make
    for proxy in proxies:
        await proxy.stop()
