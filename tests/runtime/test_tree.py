"""Task trees on both backends: spawn/gather with parking, SIGKILLed parents, no deadlock, nesting.

The store-level tests drive :class:`agentswarm.swarm.store.SwarmStore` directly (the race between a parent
parking and its children finishing); the others run real agent processes with the deterministic handlers of
:mod:`agentswarm.handlers.tree` and compare results with their expected values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agentswarm.broker import Broker, Delivery, NewTask, TaskResult
from agentswarm.broker.errors import BrokerUnavailable
from agentswarm.handlers.tree import NEST, PLAN, expected_nest, expected_pipeline
from agentswarm.swarm import NotAChild, child_id
from agentswarm.swarm.runtime import TreeRuntime, make_swarm_store
from agentswarm.swarm.store import Node, SwarmStore
from rt_support import wait_until

pytestmark = pytest.mark.timeout(240)


def tree_env(backend: str, url: str, namespace: str, handler: str, **extra: Any) -> dict[str, str]:
    env = {
        "AGENTSWARM_BROKER": backend,
        "AGENTSWARM_REDIS_URL" if backend == "redis" else "AGENTSWARM_NATS_URL": url,
        "AGENTSWARM_NAMESPACE": namespace,
        "AGENTSWARM_HANDLER": handler,
        "AGENTSWARM_CLAIM_IDLE_MS": "30000",
        "AGENTSWARM_MAX_DELIVERIES": "3",
        "AGENTSWARM_CLAIM_BLOCK_MS": "200",
        "AGENTSWARM_RETRY_BACKOFF_MS": "50",
        "AGENTSWARM_LOG_LEVEL": "INFO",
        "AGENTSWARM_SHUTDOWN_GRACE_SECONDS": "2",
    }
    env.update({f"AGENTSWARM_{k.upper()}": str(v) for k, v in extra.items()})
    return env


async def claim(broker: Broker, consumer: str, **kw: Any) -> list[Delivery]:
    """``broker.claim``, retried while the broker is briefly unavailable (as agents do)."""
    for _ in range(20):
        try:
            return list(await broker.claim(consumer, **kw))
        except BrokerUnavailable:
            await asyncio.sleep(0.2)
    return list(await broker.claim(consumer, **kw))


async def results_of(broker: Broker, ids: list[str]) -> dict[str, Any]:
    out = {}
    for task_id in ids:
        res = await broker.get_result(task_id)
        out[task_id] = None if res is None else res.value
    return out


async def event_types(broker: Broker, task_id: str) -> list[str]:
    return [str(e.data.get("type")) for e in await broker.read_events(task_id, None, limit=10_000)]


async def descendants(store: SwarmStore, broker: Broker, root: str) -> list[str]:
    """Every task spawned below ``root``, found through the ``spawned`` events."""
    out, frontier = [], [root]
    while frontier:
        task_id = frontier.pop()
        for e in await broker.read_events(task_id, None, limit=10_000):
            if e.data.get("type") == "spawned":
                children = [str(c) for c in e.data["children"] if str(c) not in out]
                out += children
                frontier += children
    return out


# -- the store itself ---------------------------------------------------------------------------------------
async def test_park_and_last_child_wakes_parent_exactly_once(brokers: Callable[..., Any]) -> None:
    broker: Broker = await brokers()
    store = make_swarm_store(broker)
    await store.connect()
    await broker.enqueue({"role": "parent"}, "P")
    [delivery] = await claim(broker, "a1", block_ms=2000)
    parent = await store.node("P")
    assert parent == Node.root_of("P")
    kids = [child_id("P", 0, i) for i in range(3)]
    assert await store.spawn(parent, [NewTask({"i": i}, k) for i, k in enumerate(kids)], None) == 3
    assert await store.spawn(parent, [NewTask({"i": i}, k) for i, k in enumerate(kids)], None) == 0
    await store.spawn_done(kids[0])
    assert await store.spawn(parent, [NewTask({"i": i}, k) for i, k in enumerate(kids)], None) is None
    assert (await store.node("P")).spawner
    node0 = await store.node(kids[0])
    assert (node0.parent, node0.root, node0.depth) == ("P", "P", 1)

    # A child that finishes before the parent parks is seen by the park itself.
    await broker.record_result(TaskResult(kids[0], "zero", "a2", 1))
    await store.child_finished(node0, "done")
    with pytest.raises(NotAChild):
        await store.park("P", [*kids, "stranger"])
    assert await store.park("P", kids) is True
    await broker.ack(delivery)  # parked: released without a result

    # The remaining children finish (twice each: at-least-once callers); the last one wakes P once.
    woke = []
    for k, status in ((kids[1], "done"), (kids[2], "dead")):
        node = await store.node(k)
        if status == "done":
            await broker.record_result(TaskResult(k, k, "a2", 1))
        for _ in range(2):
            woke.append(await store.child_finished(node, status, "boom" if status == "dead" else None))
    assert woke == [False, False, True, False]

    # The children were queued first; then P comes back, exactly once.
    seen: list[str] = []
    for _ in range(10):
        got = await claim(broker, "a1", count=10, block_ms=300)
        seen += [d.task.id for d in got]
        for d in got:
            await broker.ack(d)
    assert seen.count("P") == 1 and sorted(seen) == sorted(["P", *kids])
    outcomes = await store.outcomes(kids)
    assert [(o.status, o.value, o.error) for o in outcomes] == [
        ("done", "zero", None),
        ("done", kids[1], None),
        ("dead", None, "boom"),
    ]
    # Every child finished: parking again is refused (nothing to wait for).
    assert await store.park("P", kids) is False


async def test_child_ids_are_deterministic_and_bounded() -> None:
    assert child_id("root", 0, 3) == "root-0-3"
    deep = "x" * 120
    cid = child_id(deep, 12, 345)
    assert len(cid) <= 128 and cid == child_id(deep, 12, 345) and cid != child_id(deep, 12, 346)
    assert child_id("x" * 125, 0, 0) != child_id("x" * 126, 0, 0)


async def test_parking_race_with_concurrent_children(brokers: Callable[..., Any]) -> None:
    """Children finish while their parent parks, many times over: the parent is woken exactly once."""
    broker: Broker = await brokers()
    store = make_swarm_store(broker)
    await store.connect()
    for round_ in range(15):
        pid = f"R{round_}"
        await broker.enqueue({}, pid)
        parent = await store.node(pid)
        kids = [child_id(pid, 0, i) for i in range(4)]
        await store.spawn(parent, [NewTask({}, k) for k in kids], None)
        nodes = [await store.node(k) for k in kids]

        async def finish(node: Node) -> bool:
            await broker.record_result(TaskResult(node.task_id, 1, "x", 1))
            return await store.child_finished(node, "done")

        parked, *woke = await asyncio.gather(store.park(pid, kids), *(finish(n) for n in nodes))
        # Either the parent saw everything finished (not parked, nobody wakes it) or exactly one child did.
        assert sum(woke) == (1 if parked else 0), (round_, parked, woke)


# -- real agents --------------------------------------------------------------------------------------------
async def assert_children_once(broker: Broker, store: SwarmStore, root: str) -> list[str]:
    """Every descendant of ``root`` exists once, has exactly one result event, and knows its root."""
    kids = await descendants(store, broker, root)
    for k in kids:
        assert (await event_types(broker, k)).count("result") == 1, k
        assert (await store.node(k)).root == root
    return kids


async def test_no_deadlock_with_fewer_agents_than_waiting_parents(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents: Any
) -> None:
    """2 agents, 10 parents x 5 children: parents park instead of holding the agents, all finish."""
    broker: Broker = await _connect(backend, server_url, unique_namespace)
    try:
        store = make_swarm_store(broker)
        await store.connect()
        parents = [f"plan-{i}" for i in range(10)]
        # Parents first, so both agents start with a parent each and must park to make progress.
        await broker.enqueue_many([NewTask({"workers": 5, "steps": 2}, p) for p in parents])
        agents(tree_env(backend, server_url, unique_namespace, PLAN), 2)

        async def done() -> bool:
            return all(r is not None for r in (await results_of(broker, parents)).values())

        await wait_until(done, within=180, interval=0.3, what="10 pipelines")
        results = await results_of(broker, parents)
        for p in parents:
            assert results[p] == expected_pipeline(p, 5, 2), p
            kids = await assert_children_once(broker, store, p)
            assert len(kids) == 6  # 5 workers and a reducer
            types = await event_types(broker, p)
            assert types.count("result") == 1 and "parked" in types, types
        stats = await broker.stats()
        assert (stats.done, stats.dead_lettered, stats.enqueued_total) == (70, 0, 70)
        assert (stats.queued, stats.pending) == (0, 0)
    finally:
        await broker.close()


async def test_parent_sigkilled_between_spawn_and_gather(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents: Any
) -> None:
    log = tmp_path / "tree.log"
    broker: Broker = await _connect(backend, server_url, unique_namespace)
    try:
        store = make_swarm_store(broker)
        await store.connect()
        # Workers slow enough that the re-run parent finds them running and parks.
        payload = {"workers": 5, "steps": 2, "delay": 0.3, "pause_after_spawn": 60}
        await broker.enqueue(payload, "root")
        procs = agents(tree_env(backend, server_url, unique_namespace, PLAN, tree_log=log), 2)

        def spawn_lines() -> list[str]:
            lines = log.read_text().splitlines() if log.exists() else []
            return [line for line in lines if line.startswith("spawned root")]

        async def spawned() -> bool:
            return bool(spawn_lines())

        await wait_until(spawned, within=60, what="the parent to spawn")
        holder = spawn_lines()[0].split()[3]
        victim = next(a for a in procs if a.agent_id == holder)
        victim.kill()  # after spawning, before gathering
        victim.start()  # same identity: re-takes its own delivery, re-runs the parent

        async def done() -> bool:
            return await broker.get_result("root") is not None

        await wait_until(done, within=120, what="the pipeline")
        assert (await broker.get_result("root")).value == expected_pipeline("root", 5, 2)  # type: ignore[union-attr]
        kids = await assert_children_once(broker, store, "root")
        assert len(kids) == 6
        assert (await broker.stats()).enqueued_total == 7  # the re-run spawned nothing new
        assert len(spawn_lines()) >= 2, "the parent was not re-run after the SIGKILL"
        # Every run after the parent parked resumed from its checkpoint in the broker (file backend for
        # everything else), whichever agent took it.
        events = [e.data for e in await broker.read_events("root", None, limit=10_000)]
        first_park = next(i for i, e in enumerate(events) if e["type"] == "parked")
        resumed = [e for e in events[first_park:] if e["type"] == "started"]
        assert resumed and all(e["resumed_from_version"] for e in resumed), events
    finally:
        await broker.close()


async def test_nested_tree_of_depth_3(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents: Any
) -> None:
    broker: Broker = await _connect(backend, server_url, unique_namespace)
    try:
        store = make_swarm_store(broker)
        await store.connect()
        await broker.enqueue({"depth": 3, "fanout": 3}, "nest")
        agents(tree_env(backend, server_url, unique_namespace, NEST), 2)
        await wait_until(lambda: _has_result(broker, "nest"), within=180, interval=0.3, what="the tree")
        assert (await broker.get_result("nest")).value == expected_nest(3, 3)  # type: ignore[union-attr]
        kids = await assert_children_once(broker, store, "nest")
        assert len(kids) == 3 + 9 + 27
        assert sorted({(await store.node(k)).depth for k in kids}) == [1, 2, 3]
    finally:
        await broker.close()


async def test_dead_child_is_reported_to_its_parent(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents: Any
) -> None:
    """A child that exhausts its deliveries wakes its parent too; gather reports it as dead, not raises."""
    broker: Broker = await _connect(backend, server_url, unique_namespace)
    try:
        await broker.enqueue({"workers": 3, "steps": 1, "poison": [1]}, "root")
        agents(tree_env(backend, server_url, unique_namespace, PLAN), 2)
        await wait_until(lambda: _has_result(broker, "root"), within=120, interval=0.3, what="the pipeline")
        value = (await broker.get_result("root")).value  # type: ignore[union-attr]
        good = expected_pipeline("root", 3, 1)
        assert value["dead"] == 1 and value["workers"] == 2 and value["digest"] != good["digest"]
        [dead] = await broker.dead_letters()
        assert dead.task.id == child_id("root", 0, 1) and "poison" in dead.error
    finally:
        await broker.close()


async def _has_result(broker: Broker, task_id: str) -> bool:
    return await broker.get_result(task_id) is not None


async def _connect(backend: str, url: str, namespace: str) -> Broker:
    from rt_support import make_test_broker

    broker = make_test_broker(backend, url, namespace)
    await broker.connect()
    return broker


async def test_gather_timeout_wakes_the_parent_once(brokers: Callable[..., Any]) -> None:
    broker: Broker = await brokers()
    store = make_swarm_store(broker)
    await store.connect()
    await broker.enqueue({}, "P")
    [delivery] = await claim(broker, "a1", block_ms=2000)
    kids = [child_id("P", 0, i) for i in range(2)]
    await store.spawn(await store.node("P"), [NewTask({}, k) for k in kids], None)
    first = await store.deadline("P", kids[0], 30)
    assert await store.deadline("P", kids[0], 1) == first  # a re-run keeps the first deadline
    assert await store.park("P", kids, wake_at=first) is True
    await broker.ack(delivery)
    for _ in range(2):  # the children are queued; take them out of the way
        for d in await claim(broker, "a2", count=10, block_ms=300):
            await broker.ack(d)
    assert await store.wake_due(first - 1) == 0
    assert [await store.wake_due(first + 1) for _ in range(3)] == [1, 0, 0]
    got = await claim(broker, "a1", count=10, block_ms=1000)
    assert [d.task.id for d in got] == ["P"]
    # A child finishing after the timeout fired wakes nobody.
    await broker.record_result(TaskResult(kids[0], 1, "a2", 1))
    assert await store.child_finished(await store.node(kids[0]), "done") is False


async def test_agents_gather_with_a_timeout(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents: Any
) -> None:
    broker: Broker = await _connect(backend, server_url, unique_namespace)
    try:
        await broker.enqueue({"sleeps": [0.1, 60], "timeout": 2}, "impatient")
        agents(tree_env(backend, server_url, unique_namespace, "agentswarm.handlers.tree:impatient"), 2)
        await wait_until(lambda: _has_result(broker, "impatient"), within=60, what="the timed-out gather")
        value = (await broker.get_result("impatient")).value  # type: ignore[union-attr]
        assert value == {"done": ["impatient-0-0"], "running": ["impatient-0-1"]}
        assert (await event_types(broker, "impatient")).count("parked") == 1
    finally:
        await broker.close()


async def test_parking_never_counts_toward_dead_lettering(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents: Any
) -> None:
    """A parent parks 6 times with AGENTSWARM_MAX_DELIVERIES=3 and still finishes."""
    broker: Broker = await _connect(backend, server_url, unique_namespace)
    try:
        await broker.enqueue({"links": 6, "sleep": 0.3}, "chain")
        agents(tree_env(backend, server_url, unique_namespace, "agentswarm.handlers.tree:chain"), 2)
        await wait_until(lambda: _has_result(broker, "chain"), within=90, what="the chain")
        assert (await broker.get_result("chain")).value == {"links": 6}  # type: ignore[union-attr]
        assert (await event_types(broker, "chain")).count("parked") >= 4
        assert await broker.dead_letters() == []
    finally:
        await broker.close()


async def test_wake_releases_a_parked_task_exactly_once(brokers: Callable[..., Any]) -> None:
    """``wake`` is the generic end of parking: whoever calls it first wins; children then wake nobody."""
    broker: Broker = await brokers()
    store = make_swarm_store(broker)
    await store.connect()
    await broker.enqueue({}, "P")
    [delivery] = await claim(broker, "a1", block_ms=2000)
    kids = [child_id("P", 0, i) for i in range(2)]
    await store.spawn(await store.node("P"), [NewTask({}, k) for k in kids], None)
    assert await store.park("P", kids) is True
    await broker.ack(delivery)
    assert await asyncio.gather(store.wake("P"), store.wake("P"), store.wake("P")) in (
        [True, False, False],
        [False, True, False],
        [False, False, True],
    )
    for k in kids:
        await broker.record_result(TaskResult(k, 1, "a2", 1))
        assert await store.child_finished(await store.node(k), "done") is False
    seen: list[str] = []
    for _ in range(5):
        got = await claim(broker, "a1", count=10, block_ms=300)
        seen += [d.task.id for d in got]
        for d in got:
            await broker.ack(d)
    assert seen.count("P") == 1
    assert await store.wake("P") is False


class _Died(BaseException):
    """Stands for a SIGKILL at one exact point of the agent's code: nothing after it runs."""


async def test_agents_dying_between_dead_letter_and_parent_notification(
    brokers: Callable[..., Any], tmp_path: Path
) -> None:
    """A child's dead-lettering and the notification of its parked parent never come apart.

    Two agents in a row die right after the dead letter is recorded and before the parent hears of it; the
    task stays in the queue until a third agent completes both steps: the parent wakes, the dead letter and
    its terminal event exist exactly once.
    """
    deaths: list[str] = []

    async def die(task_id: str, error: str) -> None:
        deaths.append(task_id)
        raise _Died(task_id)

    async def agent(name: str, *, dies: bool) -> tuple[Broker, TreeRuntime]:
        broker: Broker = await brokers(max_deliveries=1, claim_idle_ms=1000)
        if dies:
            broker.add_dead_letter_listener(die)  # runs before the runtime's own notification
        runtime = TreeRuntime(broker, tmp_path / name)
        await runtime.connect()
        return broker, runtime

    a, rt_a = await agent("a", dies=True)
    store = make_swarm_store(a)
    await store.connect()
    await a.enqueue({}, "P")
    [parent] = await claim(a, "a", block_ms=2000)
    kid = child_id("P", 0, 0)
    await store.spawn(await store.node("P"), [NewTask({}, kid)], None)
    assert await store.park("P", [kid]) is True
    await a.ack(parent)
    [child] = await claim(a, "a", block_ms=2000)
    with pytest.raises(_Died):
        await a.fail(child, "boom")
    assert deaths == [kid]

    b, rt_b = await agent("b", dies=True)

    async def b_dies() -> bool:
        try:
            await claim(b, "b", block_ms=200)
        except _Died:
            return True
        return False

    await wait_until(b_dies, within=20, interval=0.05, what="the second agent to take the half-dead task")
    assert deaths == [kid, kid]

    c, rt_c = await agent("c", dies=False)
    seen: list[str] = []

    async def parent_back() -> bool:
        for d in await claim(c, "c", count=10, block_ms=200):
            seen.append(d.task.id)
            await c.ack(d)
        return "P" in seen

    await wait_until(parent_back, within=30, interval=0.05, what="the parked parent to be woken")
    assert seen == ["P"]
    [outcome] = await store.outcomes([kid])
    assert (outcome.status, outcome.error) == ("dead", "boom")
    assert [d.task.id for d in await c.dead_letters()] == [kid]
    assert (await event_types(c, kid)).count("dead_lettered") == 1
    for rt in (rt_a, rt_b, rt_c):
        await rt.close()


async def test_nats_agent_dying_inside_the_bury_step(
    nats_server: Any, unique_namespace: str, tmp_path: Path
) -> None:
    """NATS records a dead letter in three writes (dead-letter log, terminal event, the task's mark). An
    agent dying after the first two and another dying after all three still end with the task out of the
    queue, one dead letter and one terminal event. (Redis records all three in one Lua script.)"""
    from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
    from rt_support import make_test_broker

    made: list[Broker] = []

    async def agent() -> NatsJetStreamBroker:
        b = make_test_broker(
            "nats",
            nats_server.url,
            unique_namespace,
            max_deliveries=1,
            claim_idle_ms=1000,
            ledger_dir=tmp_path / "volume",
        )
        await b.connect()
        made.append(b)
        assert isinstance(b, NatsJetStreamBroker)
        return b

    a = await agent()
    await a.enqueue({}, "doomed")
    [d] = await claim(a, "a", block_ms=2000)
    real_put = a._put_record

    async def die_before_the_mark(task_id: str, record: Any) -> None:
        if record.buried is not None:
            raise _Died(task_id)
        await real_put(task_id, record)

    a._put_record = die_before_the_mark  # type: ignore[method-assign]
    with pytest.raises(_Died):
        await a.fail(d, "boom")

    b = await agent()

    async def die_after_the_mark(task_id: str, error: str) -> None:
        raise _Died(task_id)

    b.add_dead_letter_listener(die_after_the_mark)

    async def b_dies() -> bool:
        try:
            await claim(b, "b", block_ms=200)
        except _Died:
            return True
        return False

    await wait_until(b_dies, within=20, interval=0.05, what="the second agent to die while dead-lettering")
    c = await agent()

    async def gone() -> bool:
        await claim(c, "c", block_ms=200)
        s = await c.stats()
        return s.pending == 0 and s.queued == 0

    await wait_until(gone, within=20, interval=0.05, what="the task to leave the queue")
    assert [x.task.id for x in await c.dead_letters()] == ["doomed"]
    assert (await event_types(c, "doomed")).count("dead_lettered") == 1
    for broker in made:
        await broker.close()
