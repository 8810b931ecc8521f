"""NATS leases do not depend on the agents' clocks agreeing.

A lease says "consumer X works on this task"; a second agent that gets the task redelivered (after a
nats-server crash lost consumer state) must not run it while the lease is fresh, and must take it over once
it is stale. Freshness is measured on the server's clock, so an agent whose own clock is an hour ahead or
behind decides exactly like one whose clock is right. (Redis has no leases: XAUTOCLAIM's idle time is the
server's.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from agentswarm.broker import Broker
from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
from rt_support import make_test_broker

pytestmark = pytest.mark.timeout(60)


class _SkewedClock:
    """Stands in for the ``time`` module of one broker: its ``time()`` is ``skew`` seconds off."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.mark.parametrize("skew", [3600.0, -3600.0, 0.0])
async def test_lease_freshness_ignores_a_skewed_agent_clock(
    nats_server: Any, unique_namespace: str, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    made: list[Broker] = []

    async def broker() -> NatsJetStreamBroker:
        b = make_test_broker("nats", nats_server.url, unique_namespace, claim_idle_ms=2000)
        await b.connect()
        made.append(b)
        assert isinstance(b, NatsJetStreamBroker)
        return b

    owner, other = await broker(), await broker()
    try:
        await owner.enqueue({}, "t")
        [delivery] = await owner.claim("owner", block_ms=2000)  # the owner's lease is written now
        # From here on the other agent's clock is off by an hour (the owner's lease is already stored).
        monkeypatch.setattr("agentswarm.broker.nats_jetstream.time", _SkewedClock(skew))
        assert await other._lease_holder("t", "other") == "owner"  # fresh: do not run it twice
        await _wait(lambda: other._lease_holder("t", "other"), None, within=10)  # stale: take it over
        await owner.keep_alive([delivery])  # the owner is back: fresh again at once
        assert await other._lease_holder("t", "other") == "owner"
    finally:
        for b in made:
            await b.close()


async def _wait(check: Callable[[], Any], value: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while await check() != value:
        assert time.monotonic() < deadline, f"lease still not {value!r} after {within}s"
        await asyncio.sleep(0.2)
