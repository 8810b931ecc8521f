"""The live feed and the swarm feed (agentswarm.broker.feed), run unchanged against both backends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agentswarm.broker import Broker, TaskResult
from agentswarm.broker.base import TaskEvent
from agentswarm.broker.feed import FeedReset, SwarmEvent
from rt_support import wait_until

pytestmark = pytest.mark.timeout(120)


class Collector:
    """Runs ``broker.follow()`` in the background and keeps everything it yields."""

    def __init__(self, broker: Broker) -> None:
        self.items: list[Any] = []
        self._feed: AsyncIterator[Any] = broker.follow()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for item in self._feed:
            if isinstance(item, FeedReset):
                self.items.append(item)
            else:
                self.items.extend(item)

    def events(self, task_id: str | None = None) -> list[TaskEvent]:
        return [i for i in self.items if isinstance(i, TaskEvent) and task_id in (None, i.task_id)]

    def swarm(self) -> list[SwarmEvent]:
        return [i for i in self.items if isinstance(i, SwarmEvent)]

    def resets(self) -> int:
        return sum(isinstance(i, FeedReset) for i in self.items)

    async def started(self) -> None:
        async def reset_seen() -> bool:
            return self.resets() >= 1

        await wait_until(reset_seen, within=30, what="the feed's first reset")

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._feed.aclose()  # type: ignore[attr-defined]


async def test_feed_pushes_every_new_event_in_order_with_ids_of_the_log(brokers) -> None:
    b: Broker = await brokers()
    other: Broker = await brokers()
    await b.enqueue({}, "a")
    await b.enqueue({}, "b")
    await b.publish_event("a", {"i": -1})  # before the feed started: not in it
    feed = Collector(other)
    await feed.started()
    ids = []
    for i in range(20):
        ids.append(await b.publish_event("a" if i % 2 else "b", {"i": i}))
    ids += await b.publish_events([("a", {"i": 20}), ("a", {"i": 21}), ("b", {"i": 22})])

    async def all_there() -> bool:
        return len(feed.events()) >= 23

    await wait_until(all_there, within=30, what="23 events in the feed")
    await feed.stop()
    got = feed.events()
    assert [e.data["i"] for e in got] == list(range(23))
    assert [e.id for e in got] == ids
    # The feed's ids are the log's ids: a log read after any of them continues with the next one.
    log_a = await b.read_events("a", None)
    assert [e.id for e in log_a[1:]] == [e.id for e in got if e.task_id == "a"]
    orders = [b.event_order(e.id) for e in feed.events("a")]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)


async def test_feed_carries_terminal_events_and_swarm_transitions(brokers) -> None:
    b: Broker = await brokers(max_deliveries=1)
    feed = Collector(await brokers())
    await feed.started()
    await b.enqueue({}, "ok")
    await b.enqueue({}, "bad")
    [d1] = await b.claim("w1", block_ms=2000)
    await b.record_result(TaskResult(task_id=d1.task.id, value=1, agent_id="w1", attempt=1))
    await b.ack(d1)
    [d2] = await b.claim("w1", block_ms=2000)
    assert await b.fail(d2, "boom") is True
    await b.publish_swarm_event({"kind": "agent", "agent": "w1", "status": "idle", "at": 0})

    def states() -> list[tuple[Any, ...]]:
        return [(s.data.get("task_id"), s.data.get("state") or s.data.get("status")) for s in feed.swarm()]

    async def complete() -> bool:
        return len(feed.swarm()) >= 5 and len(feed.events()) >= 2

    await wait_until(complete, within=30, what="terminal events and swarm transitions")
    await feed.stop()
    assert [e.data["type"] for e in feed.events()] == ["result", "dead_lettered"]
    assert states() == [("ok", "queued"), ("bad", "queued"), ("ok", "done"), ("bad", "dead"), (None, "idle")]
    done = feed.swarm()[2].data
    assert done["kind"] == "task" and done["agent"] == "w1" and done["attempt"] == 1
    assert feed.swarm()[3].data["error"] == "boom"
    # The swarm log holds the same entries, resumable from any id.
    logged = await b.read_swarm_events(None, limit=100)
    assert [s.data for s in logged] == [s.data for s in feed.swarm()]
    rest = await b.read_swarm_events(logged[1].id, limit=2)
    assert [s.id for s in rest] == [s.id for s in logged[2:4]]


async def test_idle_feed_is_quiet_and_many_tasks_cost_nothing_extra(brokers) -> None:
    b: Broker = await brokers()
    feed = Collector(await brokers())
    await feed.started()
    for i in range(200):
        await b.enqueue({}, f"t{i}")
    await b.publish_event("t199", {"last": True})

    async def arrived() -> bool:
        return len(feed.events()) == 1

    await wait_until(arrived, within=30, what="the one event")
    await feed.stop()
    assert feed.resets() == 1


async def test_feed_resets_after_a_broker_restart_and_keeps_going(backend, brokers, request) -> None:
    server = request.getfixturevalue(f"{backend}_factory")()
    from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
    from agentswarm.broker.redis_streams import RedisStreamsBroker

    def make() -> Broker:
        if backend == "redis":
            return RedisStreamsBroker(server.url, namespace="restart")
        return NatsJetStreamBroker(server.url, namespace="restart")

    b, f = make(), make()
    await b.connect()
    await f.connect()
    try:
        await b.enqueue({}, "r")
        feed = Collector(f)
        await feed.started()
        await b.publish_event("r", {"i": 0})

        async def first() -> bool:
            return len(feed.events()) == 1

        await wait_until(first, within=30, what="the first event")
        server.stop()
        server.start()

        async def publish_after_restart() -> bool:
            try:
                await b.publish_event("r", {"i": 1})
            except Exception:
                return False
            return True

        await wait_until(publish_after_restart, within=60, interval=0.3, what="a publish after the restart")

        async def recovered() -> bool:
            # Either the feed delivered the event, or it announced a reset (the consumer re-reads the log).
            return feed.resets() >= 2 or len(feed.events()) >= 2

        await wait_until(recovered, within=60, what="the feed after the restart")
        # After a reset the log is the source of truth: both events are in it, in order.
        assert [e.data["i"] for e in await b.read_events("r", None)] == [0, 1]
        await b.publish_event("r", {"i": 2})

        async def live_again() -> bool:
            return any(e.data.get("i") == 2 for e in feed.events())

        await wait_until(live_again, within=60, what="live events after the restart")
        await feed.stop()
    finally:
        await b.close()
        await f.close()
        server.stop()


async def test_publish_batch_stores_events_and_swarm_entries_together(brokers) -> None:
    """An agent's event writer sends task events and swarm feed entries in one ``publish_batch``: both land,
    in order, with the ids the logs give them, and the feed carries both."""
    broker: Broker = await brokers()
    await broker.enqueue({}, "pb1")
    await broker.enqueue({}, "pb2")
    before = await broker.read_swarm_events(None, limit=10_000)
    events = [("pb1", {"i": 0}), ("pb2", {"i": 1}), ("pb1", {"i": 2})]
    swarm: list[dict[str, Any]] = [
        {"kind": "agent", "agent": "a1", "status": "busy", "task_id": "pb1"},
        {"kind": "agent", "agent": "a1", "status": "idle"},
    ]
    ids = await broker.publish_batch(events, swarm)
    assert len(ids) == 3
    assert [(e.id, e.data) for e in await broker.read_events("pb1")] == [
        (ids[0], {"i": 0}),
        (ids[2], {"i": 2}),
    ]
    assert [(e.id, e.data) for e in await broker.read_events("pb2")] == [(ids[1], {"i": 1})]
    after = await broker.read_swarm_events(before[-1].id if before else None, limit=10_000)
    assert [e.data for e in after][-2:] == swarm
    assert await broker.publish_batch([], []) == []
    assert await broker.publish_batch([], swarm[:1]) == []
