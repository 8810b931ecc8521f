"""Fixtures the runtime tests share: agent processes started for a test, and a connected broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from agentswarm.broker import Broker
from rt_support import AgentProcess, make_test_broker

Agents = Callable[..., list[AgentProcess]]


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    """``agents(env, n=1, name=None)`` -> ``n`` started agent processes (``agent-<k>``, or ``name`` for one);
    all stopped after the test."""
    started: list[AgentProcess] = []

    def make(env: dict[str, str], n: int = 1, *, name: str | None = None) -> list[AgentProcess]:
        assert name is None or n == 1, "a name is for one agent"
        names = [name] if name is not None else [f"agent-{len(started) + i}" for i in range(n)]
        made = [AgentProcess(agent_name, env, tmp_path).start() for agent_name in names]
        started.extend(made)
        return made

    yield make
    for a in started:
        a.stop()


@pytest.fixture
async def broker(backend: str, server_url: str, unique_namespace: str) -> AsyncIterator[Broker]:
    """A connected broker of the test's backend in its namespace (the test suite's defaults)."""
    b = make_test_broker(backend, server_url, unique_namespace)
    await b.connect()
    yield b
    await b.close()
