"""Cancellation on both backends: the broker's ``cancel``, queued/running/parked tasks, trees, SIGKILL.

A cancelled task ends with exactly one terminal ``cancelled`` event and a ``cancelled`` outcome; a queued
one never starts, a running one stops at its next ``emit``/``checkpoint`` with ``ctx.cancelled`` true, a
parked parent takes its children with it, and cancelling a finished task changes nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agentswarm.broker import Broker, TaskResult
from agentswarm.swarm.cancel import cancel_tasks
from rt_support import make_test_broker, wait_until

pytestmark = pytest.mark.timeout(180)

TICKS = "bad_handlers:ticks"


def env_for(backend: str, url: str, namespace: str, handler: str, **extra: Any) -> dict[str, str]:
    env = {
        "AGENTSWARM_BROKER": backend,
        "AGENTSWARM_REDIS_URL" if backend == "redis" else "AGENTSWARM_NATS_URL": url,
        "AGENTSWARM_NAMESPACE": namespace,
        "AGENTSWARM_HANDLER": handler,
        "AGENTSWARM_CLAIM_IDLE_MS": "30000",
        "AGENTSWARM_MAX_DELIVERIES": "3",
        "AGENTSWARM_CLAIM_BLOCK_MS": "200",
        "AGENTSWARM_LOG_LEVEL": "INFO",
        "AGENTSWARM_SHUTDOWN_GRACE_SECONDS": "2",
        "PYTHONPATH": f"{Path(__file__).parent}:{os.environ.get('PYTHONPATH', '')}",
    }
    env.update({f"AGENTSWARM_{k.upper()}": str(v) for k, v in extra.items()})
    return env


async def types(broker: Broker, task_id: str) -> list[str]:
    return [str(e.data.get("type")) for e in await broker.read_events(task_id, None, limit=10_000)]


async def cancelled(broker: Broker, task_id: str) -> bool:
    outcome = await broker.get_result(task_id)
    return outcome is not None and outcome.cancelled


# -- the broker operation ----------------------------------------------------------------------------------
async def test_cancel_records_one_terminal_outcome(brokers: Callable[..., Any]) -> None:
    b: Broker = await brokers(max_deliveries=1)
    assert await b.cancel("never-enqueued") == "not_found"
    await b.enqueue({}, "q")
    await b.enqueue({}, "done")
    await b.enqueue({}, "dead")
    assert await b.cancel("q") == "cancelled"
    assert await b.cancel("q") == "finished"  # recorded once
    # A handler finishing after the cancellation records nothing: the first outcome wins.
    assert await b.record_result(TaskResult("q", "late", "a1", 1)) is False
    outcome = await b.get_result("q")
    assert outcome is not None and outcome.cancelled and outcome.value is None
    assert (await types(b, "q")) == ["cancelled"]

    await b.record_result(TaskResult("done", 42, "a1", 1))
    assert await b.cancel("done") == "finished"
    assert (await b.get_result("done")).value == 42  # type: ignore[union-attr]
    assert (await types(b, "done")) == ["result"]

    for d in await b.claim("a1", count=10, block_ms=1000):
        if d.task.id == "dead":
            assert await b.fail(d, "boom") is True
    assert await b.cancel("dead") == "finished"
    assert (await types(b, "dead")) == ["dead_lettered"]


# -- agents -------------------------------------------------------------------------------------------------
async def test_queued_task_never_starts(
    backend: str, server_url: str, unique_namespace: str, broker: Broker, agents: Any
) -> None:
    await broker.enqueue({"ticks": 3, "every": 0.01, "log": "/dev/null"}, "keep")
    await broker.enqueue({"ticks": 3, "every": 0.01, "log": "/dev/null"}, "drop")
    assert await cancel_tasks(broker, ["drop", "keep", "nope"]) == {
        "drop": "cancelled",
        "keep": "cancelled",
        "nope": "not_found",
    }
    await broker.enqueue({"ticks": 3, "every": 0.01, "log": "/dev/null"}, "after")
    agents(env_for(backend, server_url, unique_namespace, TICKS))

    async def drained() -> bool:
        s = await broker.stats()
        return await broker.get_result("after") is not None and s.queued == 0 and s.pending == 0

    await wait_until(drained, within=60, what="the queue to drain")
    for task_id in ("drop", "keep"):
        assert (await types(broker, task_id)) == ["cancelled"]  # never started
    assert (await broker.get_result("after")).value == "ticked"  # type: ignore[union-attr]


async def test_running_handler_stops_at_next_emit(
    backend: str, server_url: str, unique_namespace: str, broker: Broker, agents: Any, tmp_path: Path
) -> None:
    log = tmp_path / "cancel.log"
    await broker.enqueue({"ticks": 100_000, "every": 0.05, "log": str(log)}, "long")
    [agent] = agents(env_for(backend, server_url, unique_namespace, TICKS))

    async def ticking() -> bool:
        return (await types(broker, "long")).count("progress") >= 3

    await wait_until(ticking, within=60, what="the handler to run")
    assert await cancel_tasks(broker, ["long"]) == {"long": "cancelled"}
    await wait_until(lambda: _logged(log), within=30, what="the handler to see its cancellation")
    [line] = log.read_text().splitlines()
    assert line.split()[:3] == ["cancelled", "long", "True"]  # ctx.cancelled was true

    async def acknowledged() -> bool:
        s = await broker.stats()
        return s.pending == 0 and s.queued == 0

    await wait_until(acknowledged, within=30, what="the delivery to be acknowledged")
    seen = await types(broker, "long")
    terminal = [t for t in seen if t in ("result", "cancelled", "dead_lettered", "error")]
    assert terminal == ["cancelled"]
    assert await cancel_tasks(broker, ["long"]) == {"long": "finished"}
    assert agent.alive


async def _logged(path: Path) -> bool:
    return await asyncio.to_thread(lambda: path.exists() and path.read_text().strip() != "")


async def test_cancelled_while_its_agent_is_sigkilled(
    backend: str, server_url: str, unique_namespace: str, broker: Broker, agents: Any, tmp_path: Path
) -> None:
    """The owner dies (SIGKILL), the task is cancelled meanwhile: its redelivery is acknowledged unrun."""
    log = tmp_path / "cancel.log"
    await broker.enqueue({"ticks": 100_000, "every": 0.05, "log": str(log)}, "orphan")
    env = env_for(backend, server_url, unique_namespace, TICKS, claim_idle_ms=1500)
    [first] = agents(env)
    await wait_until(lambda: _has(broker, "orphan", "progress"), within=60, what="the handler to start")
    first.kill()
    assert await cancel_tasks(broker, ["orphan"]) == {"orphan": "cancelled"}
    agents(env)

    async def acknowledged() -> bool:
        s = await broker.stats()
        return s.pending == 0 and s.queued == 0

    await wait_until(acknowledged, within=60, what="the redelivery to be acknowledged")
    seen = await types(broker, "orphan")
    assert seen.count("started") == 1 and seen.count("cancelled") == 1 and seen[-1] == "cancelled"
    assert not log.exists()  # the second agent never ran it


async def _has(broker: Broker, task_id: str, kind: str) -> bool:
    return kind in await types(broker, task_id)


async def test_cancelling_a_parked_parent_cancels_its_tree(
    backend: str, server_url: str, unique_namespace: str, broker: Broker, agents: Any
) -> None:
    """A root parked on two tasks parked on four leaves (two running, two queued): one cancel ends all."""
    payload = {"depth": 2, "fanout": 2, "ticks": 100_000, "every": 0.05, "log": "/dev/null"}
    await broker.enqueue(payload, "root")
    agents(env_for(backend, server_url, unique_namespace, "bad_handlers:ticks_tree"), 2)

    async def all_parked() -> bool:
        return (await types(broker, "root")).count("parked") >= 1 and await _leaves_running(broker)

    await wait_until(all_parked, within=90, interval=0.3, what="the tree to be parked on its leaves")
    assert await cancel_tasks(broker, ["root"]) == {"root": "cancelled"}
    tree = await _tree(broker, "root")
    assert len(tree) == 1 + 2 + 4

    async def ended() -> bool:
        s = await broker.stats()
        return s.pending == 0 and s.queued == 0

    await wait_until(ended, within=90, interval=0.3, what="every task of the tree to end")
    for task_id in tree:
        assert await cancelled(broker, task_id), task_id
        seen = await types(broker, task_id)
        assert seen.count("cancelled") == 1 and "result" not in seen, (task_id, seen)
    assert await cancel_tasks(broker, ["root"]) == {"root": "finished"}


async def _tree(broker: Broker, root: str) -> list[str]:
    from agentswarm.swarm.cancel import children_of

    out, frontier = [root], [root]
    while frontier:
        kids = await children_of(broker, frontier.pop())
        out += kids
        frontier += kids
    return out


async def _leaves_running(broker: Broker) -> bool:
    tree = await _tree(broker, "root")
    leaves = [t for t in tree if t.count("-") == 4]
    started = [t for t in leaves if await _has(broker, t, "progress")]
    return len(leaves) == 4 and len(started) == 2


async def _emit_300(task: Any, state: Any, ctx: Any) -> int:
    for i in range(300):
        await ctx.emit({"i": i})
    return 300


async def test_emits_in_a_tight_loop_look_for_a_cancellation_at_a_bounded_pace(
    backend: str, server_url: str, unique_namespace: str, broker: Broker, tmp_path: Path
) -> None:
    """Each ``ctx.emit`` may not cost a broker lookup of its own: at most one per CANCEL_POLL_SECONDS."""
    from agentswarm.agent import Agent
    from agentswarm.checkpoint import make_store
    from agentswarm.settings import load_settings
    from agentswarm.task_context import CANCEL_POLL_SECONDS

    url = {"redis_url": server_url} if backend == "redis" else {"nats_url": server_url}
    settings = load_settings(
        broker=backend,
        namespace=unique_namespace,
        checkpoint_dir=tmp_path / "agent",
        claim_block_ms=100,
        **url,
    )
    worker_broker = make_test_broker(backend, server_url, unique_namespace, ledger_dir=tmp_path / "l")
    await worker_broker.connect()
    lookups = 0
    get_result = worker_broker.get_result

    async def counting_get_result(task_id: str) -> TaskResult | None:
        nonlocal lookups
        lookups += 1
        return await get_result(task_id)

    worker_broker.get_result = counting_get_result  # type: ignore[method-assign]
    agent = Agent(settings, worker_broker, make_store(settings, worker_broker), _emit_300)
    await broker.enqueue({}, "chatty")
    loop = asyncio.get_running_loop()
    started = loop.time()
    serving = asyncio.create_task(agent.serve())
    try:
        await wait_until(lambda: _done(broker, "chatty"), within=60, what="the task to finish")
    finally:
        agent.request_stop()
        await asyncio.wait_for(serving, timeout=30)
        await worker_broker.close()
    elapsed = loop.time() - started
    assert (await broker.get_result("chatty")).value == 300  # type: ignore[union-attr]
    assert (await types(broker, "chatty")).count("progress") == 300
    keepalives = elapsed / settings.keepalive_seconds + 1
    assert lookups <= elapsed / CANCEL_POLL_SECONDS + keepalives + 1, (lookups, elapsed)


async def _done(broker: Broker, task_id: str) -> bool:
    return await broker.get_result(task_id) is not None
