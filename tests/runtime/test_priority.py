"""Task priorities on both backends, with real servers: ``high`` before ``normal`` before ``low`` for new
tasks, the starvation rule (:data:`agentswarm.broker.STARVATION_LIMIT`), and everything the queue already did
(own pending after a restart, reclaim of abandoned deliveries, fail/retry, dead letters, release, cancel,
stats and backlog) for tasks of every class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agentswarm.broker import STARVATION_LIMIT, Broker, NewTask, Priority, TaskResult
from rt_support import AgentProcess, StepLog, wait_until
from test_swarm import agent_env

pytestmark = pytest.mark.timeout(240)


async def claim_all(b: Broker, consumer: str = "c1") -> list[str]:
    """Claim and acknowledge one task at a time until the queue is empty; the ids in claim order."""
    seen: list[str] = []
    while True:
        got = await b.claim(consumer, block_ms=100)
        if not got:
            if (await b.stats()).queued == 0:
                return seen
            continue
        for d in got:
            seen.append(d.task.id)
            await b.ack(d)


@pytest.fixture
def agent(backend: str, server_url: str, unique_namespace: str, tmp_path: Path) -> Any:
    env = agent_env(backend, server_url, unique_namespace, concurrency=1)
    a = AgentProcess("agent-0", env, tmp_path)
    yield a
    a.stop()


async def test_high_task_behind_ten_thousand_normal_ones_starts_next(
    brokers, agent: AgentProcess, tmp_path: Path
) -> None:
    b: Broker = await brokers()
    log = tmp_path / "steps.log"
    payload = {"steps": 1, "delay": 0, "log": str(log)}
    await b.enqueue_many([NewTask(payload, f"n{i}") for i in range(10_000)])
    await b.enqueue_many([NewTask(payload, "urgent", priority="high")])
    assert (await b.stats()).queued == 10_001
    assert await b.backlog() == 10_001
    agent.start()  # concurrency 1: its first claim takes exactly one task

    async def urgent_done() -> bool:
        return await b.get_result("urgent") is not None

    await wait_until(urgent_done, within=120, what="the high task's result")
    steps = StepLog.read(log)
    assert steps.lines[0][1] == "urgent", steps.lines[:3]  # the very first task the agent ran
    result = await b.get_result("urgent")
    assert result is not None and result.attempt == 1
    task = await b.get_task("urgent")
    assert task is not None and task.priority == "high"


async def test_classes_in_order_for_new_tasks(brokers) -> None:
    b: Broker = await brokers()
    await b.enqueue_many(
        [NewTask({}, "l0", priority="low"), NewTask({}, "n0"), NewTask({}, "l1", priority="low")]
    )
    await b.enqueue_many([NewTask({}, "h0", priority="high"), NewTask({}, "n1", priority="normal")])
    await b.enqueue_many([NewTask({}, "h1", priority="high")])
    assert await claim_all(b) == ["h0", "h1", "n0", "n1", "l0", "l1"]
    # A batch claim fills from the highest class down.
    await b.enqueue_many([NewTask({}, "x-low", priority="low"), NewTask({}, "x-high", priority="high")])
    got = await b.claim("c1", count=2, block_ms=500)
    assert [d.task.id for d in got] == ["x-high", "x-low"]
    assert [d.task.priority for d in got] == ["high", "low"]


@pytest.mark.parametrize(("higher", "lower"), [("high", "low"), ("high", "normal"), ("normal", "low")])
async def test_starvation_rule_takes_a_lower_task_after_the_limit(
    brokers, higher: Priority, lower: Priority
) -> None:
    b: Broker = await brokers()
    waiting = [NewTask({}, f"lo{i}", priority=lower) for i in range(3)]
    flood = [NewTask({}, f"hi{i}", priority=higher) for i in range(3 * STARVATION_LIMIT + 5)]
    await b.enqueue_many(waiting)
    await b.enqueue_many(flood)
    seen = await claim_all(b)
    positions = [i for i, t in enumerate(seen) if t.startswith("lo")]
    # After STARVATION_LIMIT higher tasks in a row while lower ones wait, one lower task is taken.
    every = STARVATION_LIMIT + 1
    assert positions == [every - 1, 2 * every - 1, 3 * every - 1], seen
    assert [t for t in seen if t.startswith("lo")] == ["lo0", "lo1", "lo2"]  # FIFO within a class


async def test_starvation_rule_with_all_three_classes(brokers) -> None:
    b: Broker = await brokers()
    await b.enqueue_many([NewTask({}, f"l{i}", priority="low") for i in range(3)])
    await b.enqueue_many([NewTask({}, f"n{i}", priority="normal") for i in range(3 * STARVATION_LIMIT)])
    await b.enqueue_many([NewTask({}, f"h{i}", priority="high") for i in range(3 * STARVATION_LIMIT)])
    seen = await claim_all(b)
    assert len(seen) == 6 * STARVATION_LIMIT + 3
    for cls in "nl":  # neither lower class ever waits through more than the limit of higher tasks in a row
        run = 0
        for task_id in seen:
            if task_id[0] == cls:
                break
            run += 1
        assert run <= 2 * STARVATION_LIMIT, (cls, seen)
    # Every class is FIFO inside.
    for cls in "hnl":
        mine = [t for t in seen if t[0] == cls]
        assert mine == sorted(mine, key=lambda t: int(t[1:]))
    # Lows are all taken well before the highs and normals run out.
    assert seen.index("l2") < len(seen) - 3 * STARVATION_LIMIT


async def test_every_class_keeps_the_queue_semantics(brokers, tmp_path: Path) -> None:
    first: Broker = await brokers(claim_idle_ms=1000, retry_backoff_ms=50, max_deliveries=2)
    await first.enqueue_many(
        [
            NewTask({}, "h", priority="high"),
            NewTask({}, "l", priority="low"),
            NewTask({}, "gone", priority="low"),
            NewTask({}, "n"),
        ]
    )
    stats = await first.stats()
    assert (stats.queued, stats.pending, stats.enqueued_total) == (4, 0, 4)
    assert await first.backlog() == 4
    assert await first.cancel("gone") == "cancelled"  # a queued low task
    (h,) = await first.claim("agent-0")
    assert (h.task.id, h.task.priority) == ("h", "high")
    assert (await first.stats()).pending == 1
    await first.keep_alive([h])
    await first.close()  # "crash" while holding the high task
    # Own pending first after a restart, then the normal one; the low one is failed, retried, dead-lettered.
    again: Broker = await brokers(claim_idle_ms=1000, retry_backoff_ms=50, max_deliveries=2)
    (h2,) = await again.claim("agent-0")
    assert (h2.task.id, h2.source, h2.attempt) == ("h", "own", 2)
    await again.release(h2)
    (n,) = await again.claim("agent-0")
    assert (n.task.id, n.source) in {("n", "new"), ("h", "own")}
    if n.task.id == "h":  # a released delivery may come straight back to its owner
        await again.record_result(TaskResult("h", 1, "agent-0", n.attempt))
        await again.ack(n)
        (n,) = await again.claim("agent-0")
    else:
        await again.record_result(TaskResult("h", 1, "agent-0", h2.attempt))
    assert n.task.id == "n"
    await again.ack(n)
    (low,) = await again.claim("agent-0", block_ms=1000)
    assert (low.task.id, low.task.priority) == ("l", "low")
    assert await again.fail(low, "boom") is False

    retried: list = []

    async def back() -> bool:
        for d in await again.claim("agent-0", block_ms=200):
            if d.task.id == "gone":  # the cancelled one is handed out once more and acknowledged unrun
                assert (await again.get_result("gone")).cancelled  # type: ignore[union-attr]
                await again.ack(d)
            else:
                retried.append(d)
        return bool(retried)

    await wait_until(back, within=20, what="the low task's retry")
    assert (retried[0].task.id, retried[0].attempt, retried[0].last_error) == ("l", 2, "boom")
    assert await again.fail(retried[0], "boom again") is True
    (dead,) = await again.dead_letters()
    assert (dead.task.id, dead.error) == ("l", "boom again")
    stats = await again.stats()
    assert (stats.queued, stats.pending, stats.dead_lettered) == (0, 0, 1)
    assert await again.backlog() == 0


async def test_abandoned_low_task_is_reclaimed_by_another_consumer(brokers) -> None:
    owner: Broker = await brokers(claim_idle_ms=800)
    thief: Broker = await brokers(claim_idle_ms=800, ledger_dir=None)
    await owner.enqueue_many([NewTask({}, "slow", priority="low")])
    (held,) = await owner.claim("owner")
    assert held.task.priority == "low"
    assert await thief.claim("thief", block_ms=200) == []
    got: list = []

    async def reclaimed() -> bool:
        got.extend(await thief.claim("thief", block_ms=200))
        return bool(got)

    await wait_until(reclaimed, within=20, what="reclaim of the abandoned low task")
    assert (got[0].task.id, got[0].source, got[0].attempt, got[0].task.priority) == (
        "slow",
        "reclaimed",
        2,
        "low",
    )
    await thief.ack(got[0])
    assert await thief.backlog() == 0


async def test_a_woken_parent_comes_back_in_its_own_class(brokers) -> None:
    from agentswarm.swarm import child_id
    from agentswarm.swarm.runtime import make_swarm_store

    b: Broker = await brokers()
    store = make_swarm_store(b)
    await store.connect()
    await b.enqueue_many([NewTask({"role": "parent"}, "P", priority="high")])
    (parent_delivery,) = await b.claim("a1", block_ms=2000)
    parent = await store.node("P")
    kids = [child_id("P", 0, i) for i in range(2)]
    await store.spawn(parent, [NewTask({"i": i}, k, priority="low") for i, k in enumerate(kids)], None)
    await store.spawn_done(kids[0])
    assert await store.park("P", kids) is True
    await b.ack(parent_delivery)  # parked: released without a result
    children = await b.claim("a2", count=2, block_ms=2000)
    assert [(d.task.id, d.task.priority) for d in children] == [(k, "low") for k in kids]
    # Normal tasks queued before the wake-up: the woken high parent still comes first.
    await b.enqueue_many([NewTask({}, f"n{i}") for i in range(3)])
    for d in children:
        await b.record_result(TaskResult(d.task.id, d.task.id, "a2", 1))
        await b.ack(d)
        await store.child_finished(await store.node(d.task.id), "done")
    (again,) = await b.claim("a1", block_ms=2000)
    assert (again.task.id, again.task.priority) == ("P", "high")


async def test_spawned_children_inherit_their_parents_class(
    brokers, backend: str, server_url: str, unique_namespace: str, tmp_path: Path
) -> None:
    from agentswarm.handlers.tree import NEST, expected_nest
    from agentswarm.swarm import child_id
    from test_tree import tree_env

    b: Broker = await brokers()
    await b.enqueue_many([NewTask({"depth": 2, "fanout": 2}, "root", priority="high")])
    agent = AgentProcess("agent-0", tree_env(backend, server_url, unique_namespace, NEST), tmp_path).start()
    try:

        async def done() -> bool:
            return await b.get_result("root") is not None

        await wait_until(done, within=120, what="the tree's result")
    finally:
        agent.stop()
    result = await b.get_result("root")
    assert result is not None and result.value == expected_nest(2, 2)
    spawned = [
        str(c)
        for task_id in ["root", *[child_id("root", 0, i) for i in range(2)]]
        for e in await b.read_events(task_id, None, limit=1000)
        if e.data.get("type") == "spawned"
        for c in e.data["children"]
    ]
    assert len(spawned) == 2 + 4
    for task_id in spawned:
        task = await b.get_task(task_id)
        assert task is not None and task.priority == "high", task_id
