"""The swarm-wide token budget on both brokers: shared counting, exhaustion, LLM tasks held, reset."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from agentswarm.agent import Agent
from agentswarm.broker.base import Task
from agentswarm.budget import WINDOW_SECONDS, Budget, is_llm_task, llm_handler
from agentswarm.checkpoint import make_store
from agentswarm.settings import load_settings
from rt_support import wait_until

DAY0 = 20_000 * WINDOW_SECONDS + 3600.0  # 01:00 UTC of some day


class Clock:
    def __init__(self, now: float = DAY0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_agents_share_one_atomic_count_that_resets_with_the_day(brokers: Any) -> None:
    clock = Clock()
    one, two = await brokers(), await brokers()
    a = Budget(one, tokens_per_day=1000, model_tokens_per_day={"m:small@1": 300}, clock=clock)
    b = Budget(two, tokens_per_day=1000, model_tokens_per_day={"m:small@1": 300}, clock=clock)

    await asyncio.gather(*(budget.charge("m:big", 10) for budget in (a, b) for _ in range(30)))
    status = await a.status()
    assert status.spent["*"] == 600 and not status.exhausted and status.exhausted_models == []
    assert status.resets_at == (DAY0 // WINDOW_SECONDS + 1) * WINDOW_SECONDS

    await asyncio.gather(*(budget.charge("m:small@1", 50) for budget in (a, b) for _ in range(3)))
    status = await b.status()
    assert status.spent["m:small@1"] == 300 and status.exhausted_models == ["m:small@1"]
    assert status.blocks("m:small@1") and not status.blocks("m:big") and not status.blocks(None)

    await b.charge(None, 100)
    status = await a.status()
    assert status.spent["*"] == 1000 and status.exhausted and status.blocks("m:big")
    assert status.as_stats()["budget_exhausted"] is True

    clock.now += WINDOW_SECONDS  # the next UTC day
    status = await a.status()
    assert not status.exhausted and status.exhausted_models == [] and status.spent == {}


def test_llm_task_marking() -> None:
    async def plain(task: Any, state: Any, ctx: Any) -> Any:
        return None

    marked = llm_handler(plain)
    from agentswarm.handlers import load_handler

    openai_chat = load_handler("agentswarm.handlers.openai_chat:handle")
    task = Task(id="t", payload={"x": 1})
    assert not is_llm_task(Task(id="t", payload={"x": 1}), load_handler("agentswarm.handlers.steps:handle"))
    assert is_llm_task(task, marked) and is_llm_task(task, openai_chat)
    assert is_llm_task(Task(id="t", payload={"llm": True}), load_handler("agentswarm.handlers.steps:handle"))
    assert not is_llm_task(Task(id="t", payload={"llm": False}), openai_chat)


@pytest.mark.parametrize("limit", [{"tokens_per_day": 100}, {"model_tokens_per_day": {"gpt-x": 100}}])
async def test_spent_budget_holds_llm_tasks_until_the_reset(
    brokers: Any,
    backend: str,
    server_url: str,
    unique_namespace: str,
    tmp_path: Path,
    limit: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    ran: list[str] = []
    monkeypatch.setenv("AGENTSWARM_LLM_MODEL", "gpt-x")  # the model of tasks that name none

    async def handler(task: Task, state: Any, ctx: Any) -> Any:
        ran.append(task.payload["name"])
        if task.payload.get("llm"):  # the server reports a dated name; the budget counts the model asked for
            await ctx.emit(
                {"type": "model_response", "model": "gpt-x-0613", "input_tokens": 40, "output_tokens": 20}
            )
        return task.payload["name"]

    agents: list[Agent] = []
    for i in range(2):
        url = {"redis_url": server_url} if backend == "redis" else {"nats_url": server_url}
        settings = load_settings(
            broker=backend,
            namespace=unique_namespace,
            agent_id=f"agent-{i}",
            checkpoint_dir=tmp_path / f"agent-{i}",
            claim_block_ms=100,
            **url,
        )
        broker = await brokers(ledger_dir=tmp_path / f"ledger-{i}")
        agent = Agent(settings, broker, make_store(settings, broker), handler)
        agent.budget = Budget(broker, clock=clock, poll_seconds=0.05, **limit)
        agents.append(agent)
    client = await brokers()
    serving = [asyncio.create_task(agent.serve()) for agent in agents]
    try:

        async def done(task_id: str) -> bool:
            return await client.get_result(task_id) is not None

        for name in ("first", "second"):  # 60 tokens each: the second starts below the limit
            task_id = await client.enqueue({"name": name, "llm": True})
            await wait_until(lambda t=task_id: done(t), within=30, what=f"{name} done")

        held_id = await client.enqueue({"name": "held", "llm": True})
        await wait_until(
            lambda: _true(any(a.held_for_budget == held_id for a in agents)),
            within=30,
            what="an agent holding the LLM task",
        )
        plain_id = await client.enqueue({"name": "plain", "llm": False})
        await wait_until(lambda: done(plain_id), within=30, what="the non-LLM task done by the other agent")
        assert await client.get_result(held_id) is None and "held" not in ran
        assert any(a.held_for_budget == held_id for a in agents)

        clock.now += WINDOW_SECONDS  # midnight UTC: intake resumes
        await wait_until(lambda: done(held_id), within=30, what="the held task done after the reset")
        assert ran == ["first", "second", "plain", "held"]
        assert (await agents[0].budget.status()).spent.get("*", 0) == 60  # type: ignore[union-attr]
    finally:
        for agent in agents:
            agent.request_stop()
        await asyncio.wait_for(asyncio.gather(*serving, return_exceptions=True), timeout=30)


async def _true(value: bool) -> bool:
    return value
