"""Human in the loop on both backends: ``ctx.ask`` parks the task, an answer resumes it on any agent.

The asking agent is freed (nothing stays in flight: every agent can be SIGKILLed while the question is
open), the answer is returned by the same ``ask`` call on whichever agent re-runs the task, a second answer
is refused, and a timeout resumes the task with ``TimeoutError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from agentswarm.broker import Broker
from agentswarm.swarm import ask as asking
from agentswarm.swarm.runtime import make_swarm_store
from rt_support import wait_until

pytestmark = pytest.mark.timeout(180)


def env_for(backend: str, url: str, namespace: str) -> dict[str, str]:
    return {
        "AGENTSWARM_BROKER": backend,
        "AGENTSWARM_REDIS_URL" if backend == "redis" else "AGENTSWARM_NATS_URL": url,
        "AGENTSWARM_NAMESPACE": namespace,
        "AGENTSWARM_HANDLER": "bad_handlers:asks",
        "AGENTSWARM_CLAIM_IDLE_MS": "30000",
        "AGENTSWARM_CLAIM_BLOCK_MS": "200",
        "AGENTSWARM_LOG_LEVEL": "INFO",
        "AGENTSWARM_SHUTDOWN_GRACE_SECONDS": "2",
        "PYTHONPATH": f"{Path(__file__).parent}:{os.environ.get('PYTHONPATH', '')}",
    }


async def types(broker: Broker, task_id: str) -> list[str]:
    return [str(e.data.get("type")) for e in await broker.read_events(task_id, None, limit=10_000)]


async def asked(broker: Broker, task_id: str, times: int) -> bool:
    return (await types(broker, task_id)).count("input_required") >= times


async def idle(broker: Broker) -> bool:
    s = await broker.stats()
    return s.pending == 0 and s.queued == 0


async def test_answer_resumes_the_task_on_another_agent(
    backend: str, server_url: str, unique_namespace: str, broker: Broker, agents: Any
) -> None:
    store = make_swarm_store(broker)
    await store.connect()
    env = env_for(backend, server_url, unique_namespace)
    await broker.enqueue({"twice": True}, "hitl")
    with pytest.raises(asking.NotWaitingForInput):
        await asking.answer(store, "hitl", "too early")
    [first] = agents(env, name="asker")
    await wait_until(lambda: asked(broker, "hitl", 1), within=60, what="the first question")
    [event] = [e for e in await broker.read_events("hitl") if e.data["type"] == "input_required"]
    assert event.data["question"] == {"q": "approve?"} and event.data["n"] == 0
    await wait_until(lambda: idle(broker), within=30, what="the asking agent to be freed")
    first.kill()  # nothing is in flight: the question survives any agent dying

    assert await asking.answer(store, "hitl", {"approved": True}) == 0
    with pytest.raises(asking.AlreadyAnswered):
        await asking.answer(store, "hitl", {"approved": False})
    agents(env, name="other")
    await wait_until(lambda: asked(broker, "hitl", 2), within=60, what="the second question")
    assert await asking.answer(store, "hitl", "yes, really") == 1

    async def finished() -> bool:
        return await broker.get_result("hitl") is not None

    await wait_until(finished, within=60, what="the result")
    result = await broker.get_result("hitl")
    assert result is not None and result.value == {
        "first": {"approved": True},
        "second": "yes, really",
        "checkpointed_by": "asker",  # resumed from the checkpoint stored before the first question
        "finished_by": "other",
    }
    seen = await types(broker, "hitl")
    assert seen.count("input_required") == 2 and seen.count("result") == 1
    with pytest.raises(asking.AlreadyAnswered):  # after the end: still refused, nothing changes
        await asking.answer(store, "hitl", "late")


async def test_unanswered_question_times_out(
    backend: str, server_url: str, unique_namespace: str, broker: Broker, agents: Any
) -> None:
    store = make_swarm_store(broker)
    await store.connect()
    await broker.enqueue({"timeout": 1.5}, "impatient")
    agents(env_for(backend, server_url, unique_namespace), name="a1")

    async def finished() -> bool:
        return await broker.get_result("impatient") is not None

    await wait_until(finished, within=60, what="the timed-out question")
    result = await broker.get_result("impatient")
    assert result is not None and "not answered within 1.5s" in result.value["timed_out"]
    with pytest.raises(asking.AlreadyAnswered):
        await asking.answer(store, "impatient", "too late")
    assert (await types(broker, "impatient")).count("input_required") == 1


async def test_a_cancelled_task_takes_no_answer(
    backend: str, server_url: str, unique_namespace: str, broker: Broker, agents: Any
) -> None:
    from agentswarm.swarm.cancel import cancel_tasks

    store = make_swarm_store(broker)
    await store.connect()
    await broker.enqueue({"timeout": 120}, "dropped")
    agents(env_for(backend, server_url, unique_namespace), name="a1")
    await wait_until(lambda: asked(broker, "dropped", 1), within=60, what="the question")
    assert await cancel_tasks(broker, ["dropped"]) == {"dropped": "cancelled"}
    with pytest.raises(asking.NotWaitingForInput, match="was cancelled"):
        await asking.answer(store, "dropped", "too late")
    outcome = await broker.get_result("dropped")
    assert outcome is not None and outcome.cancelled
