"""The coordinator reports the swarm's token budget in its stats, read from the broker the agents charge."""

from __future__ import annotations

import asyncio
import json

from agentswarm.broker.redis_streams import RedisStreamsBroker
from agentswarm.budget import Budget
from websockets.asyncio.client import connect

from .helpers import TOKEN, Swarm


async def _stats(swarm: Swarm) -> dict:
    async with connect(swarm.url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        json.loads(await asyncio.wait_for(ws.recv(), 15))
        await ws.send(json.dumps({"type": "stats"}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
    assert frame["type"] == "stats"
    return dict(frame["stats"])


async def test_stats_report_budget_exhausted(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator(
        AGENTSWARM_BUDGET_TOKENS_PER_DAY="100", AGENTSWARM_BUDGET_MODEL_TOKENS_PER_DAY='{"gpt-x": 40}'
    )
    stats = await _stats(redis_swarm)
    assert stats["budget_exhausted"] is False and stats["budget_tokens_spent"] == 0
    assert stats["budget_tokens_per_day"] == 100

    env = redis_swarm.base_env
    async with RedisStreamsBroker(
        env["AGENTSWARM_REDIS_URL"], namespace=env["AGENTSWARM_NAMESPACE"]
    ) as broker:
        agent_side = Budget(broker, tokens_per_day=100)
        await agent_side.charge("gpt-x", 60)
        stats = await _stats(redis_swarm)
        assert stats["budget_exhausted"] is False and stats["budget_exhausted_models"] == ["gpt-x"]
        await agent_side.charge("other", 40)
    stats = await _stats(redis_swarm)
    assert stats["budget_exhausted"] is True and stats["budget_tokens_spent"] == 100
    assert stats["budget_resets_at"] % 86400 == 0


async def test_stats_without_a_budget_say_not_exhausted(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    stats = await _stats(redis_swarm)
    assert stats["budget_exhausted"] is False and "budget_tokens_spent" not in stats
