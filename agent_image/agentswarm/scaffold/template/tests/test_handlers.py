"""The handlers in a real local swarm (an embedded broker, a coordinator and agent processes, as
``agentswarm local`` runs them): the planner spawns, parks, is re-run and gathers every note."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentswarm.testing import TaskFailed, local_swarm
from myswarm import handlers

PLAN = f"{handlers.__name__}:plan"


async def test_plan_gathers_a_note_per_topic(tmp_path: Path) -> None:
    topics = ["kubernetes", "pulumi stacks", "nats jetstream"]
    async with local_swarm(PLAN, state_dir=tmp_path, agents=2) as swarm:
        result = await swarm.run({"topics": topics})
    assert result["topics"] == 3 and result["failed"] == []
    assert result["notes"] == [{"topic": t, "summary": await handlers.summarise(t)} for t in topics]


async def test_plan_refuses_a_payload_without_topics(tmp_path: Path) -> None:
    # One delivery: a bad payload fails at once instead of being retried with backoff.
    async with local_swarm(PLAN, state_dir=tmp_path, env={"AGENTSWARM_MAX_DELIVERIES": "1"}) as swarm:
        with pytest.raises(TaskFailed, match="topics"):
            await swarm.run({"topic": "typo"})
