"""Rate limits shared by all agents (``ctx.limit``), on both backends.

The store hands out reservations (GCRA): the test reads the granted times back, which are the broker's own
schedule, so the observed rate is measured over a count of grants rather than by wall-clock assertions.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from agentswarm.broker import Broker, NewTask
from agentswarm.swarm.runtime import make_swarm_store
from rt_support import AgentProcess, make_test_broker, wait_until

pytestmark = pytest.mark.timeout(240)


def observed_rate(times: list[float]) -> float:
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0])


async def test_reservations_are_spaced_at_the_rate(brokers: Any) -> None:
    a: Broker = await brokers()
    b: Broker = await brokers()
    stores = [make_swarm_store(a), make_swarm_store(b)]
    for s in stores:
        await s.connect()
    grants = await asyncio.gather(*(stores[i % 2].acquire("openai:gpt-x", 1, 10, 1) for i in range(40)))
    at = sorted(g.at for g in grants)
    gaps = [later - earlier for earlier, later in itertools.pairwise(at)]
    assert min(gaps) >= 0.1 - 1e-3  # never closer than 1/10 s, whichever store asked
    assert abs(observed_rate(at) - 10) / 10 < 0.10
    assert all(g.wait >= 0 for g in grants)  # told to wait, never refused
    # A burst lets that many units go at once after a quiet spell, then the rate applies again.
    burst = [await stores[0].acquire("burst", 1, 10, 5) for _ in range(8)]
    assert sum(1 for g in burst if g.wait == 0) == 5
    assert burst[-1].at - burst[0].at == pytest.approx(0.3, abs=0.05)


async def test_eight_agents_share_one_limit(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path
) -> None:
    rate, n = 10.0, 100
    broker = make_test_broker(backend, server_url, unique_namespace)
    await broker.connect()
    env = {
        "AGENTSWARM_BROKER": backend,
        "AGENTSWARM_REDIS_URL" if backend == "redis" else "AGENTSWARM_NATS_URL": server_url,
        "AGENTSWARM_NAMESPACE": unique_namespace,
        "AGENTSWARM_HANDLER": "bad_handlers:limited",
        "AGENTSWARM_CONCURRENCY": "4",
        "AGENTSWARM_CLAIM_BLOCK_MS": "200",
        "PYTHONPATH": f"{Path(__file__).parent}:{os.environ.get('PYTHONPATH', '')}",
    }
    agents = [AgentProcess(f"agent-{i}", env, tmp_path) for i in range(8)]
    try:
        ids = [f"call-{i}" for i in range(n)]
        await broker.enqueue_many([NewTask({"key": "api", "rate": rate}, t) for t in ids])
        for agent in agents:
            agent.start()

        async def done() -> bool:
            return (await broker.stats()).done >= n

        await wait_until(done, within=120, interval=0.5, what="every limited call")
        values = [(await broker.get_result(t)).value for t in ids]  # type: ignore[union-attr]
        granted = [float(v["granted"]) for v in values]
        assert abs(observed_rate(granted) - rate) / rate <= 0.10, observed_rate(granted)
        # Every handler waited for its grant (same machine, same clock; 20 ms for clock reads).
        assert all(v["ran"] >= v["granted"] - 0.02 for v in values)
        ran_by = {(await broker.get_result(t)).agent_id for t in ids}  # type: ignore[union-attr]
        assert len(ran_by) >= 4  # the limit was shared across agents, not one agent doing everything
    finally:
        for agent in agents:
            agent.stop()
        await broker.close()
