"""Subscriptions against an in-process coordinator on both backends: the terminal event always comes
before the ``result`` frame, a malformed cursor is refused once, unknown tasks are named.

The race under test: a subscription's event read comes back empty, the task finishes right then, and
the coordinator's result lookup finds the result. :class:`FinishingBroker` puts the finish exactly into
that window (deterministically, or after a short pause that widens it for the stress test).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from agentswarm.broker import Broker, NewTask, TaskEvent, TaskResult
from agentswarm.coordinator import Coordinator, ServerOptions
from websockets.asyncio.client import ClientConnection, connect

pytestmark = pytest.mark.timeout(300)

TOKEN = "subscription-test-token"


class FinishingBroker:
    """Delegates to a real broker; after a read that came back empty it runs the task's queued finisher.

    ``pause`` > 0 instead sleeps that long after every empty read, so that concurrent finishers land in
    the window between the read and the coordinator's next step much more often than by chance.
    """

    def __init__(self, inner: Broker, pause: float = 0.0) -> None:
        self.inner = inner
        self.pause = pause
        self.finishers: dict[str, Callable[[], Awaitable[None]]] = {}

    async def read_events(
        self, task_id: str, after: str | None = None, *, limit: int = 100, block_ms: int = 0
    ) -> list[TaskEvent]:
        events = await self.inner.read_events(task_id, after, limit=limit, block_ms=block_ms)
        if not events and after is not None:
            finisher = self.finishers.pop(task_id, None)
            if finisher is not None:
                await finisher()
            elif self.pause:
                await asyncio.sleep(self.pause)
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def finish(broker: Broker, task_id: str) -> None:
    """What an agent does at the end of a task: a last progress event, then the result."""
    await broker.publish_event(task_id, {"type": "progress", "step": "last"})
    await broker.record_result(TaskResult(task_id, {"ok": task_id}, "agent-x", 1))


@pytest.fixture
async def coordinator_on(brokers: Any) -> AsyncIterator[Callable[..., Awaitable[tuple[Broker, str]]]]:
    """``await coordinator_on(pause=...)`` -> (the real broker, the websocket URL of a coordinator on it)."""
    started: list[Coordinator] = []

    async def make(pause: float = 0.0, wrap: bool = True) -> tuple[Broker, Any, str]:
        inner: Broker = await brokers()
        broker = FinishingBroker(inner, pause) if wrap else inner
        coordinator = Coordinator(
            broker,  # type: ignore[arg-type]
            ServerOptions(api_token=TOKEN, host="127.0.0.1", port=0, poll_interval_seconds=0.01),
        )
        await coordinator.start()
        started.append(coordinator)
        return inner, broker, f"ws://127.0.0.1:{coordinator.port}/ws"

    yield make  # type: ignore[misc]
    for coordinator in started:
        await coordinator.shutdown(drain_seconds=0)


async def open_ws(url: str) -> ClientConnection:
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"})
    assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


async def follow_all(ws: ClientConnection, task_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Subscribe to every task and collect its frames until each has its result frame."""
    frames: dict[str, list[dict[str, Any]]] = {t: [] for t in task_ids}
    for t in task_ids:
        await ws.send(json.dumps({"type": "subscribe", "task_id": t}))
    open_ids = set(task_ids)
    while open_ids:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if frame["type"] in ("event", "result"):
            frames[frame["task_id"]].append(frame)
            if frame["type"] == "result":
                open_ids.discard(frame["task_id"])
        else:
            assert frame["type"] == "subscribed", frame
    return frames


async def assert_complete(broker: Broker, task_id: str, frames: list[dict[str, Any]]) -> None:
    """Every event of the broker's log exactly once, in order, and the result frame last."""
    truth = [e.id for e in await broker.read_events(task_id, None, limit=10_000)]
    assert [f["event_id"] for f in frames if f["type"] == "event"] == truth, task_id
    assert [f["type"] for f in frames][-2:] == ["event", "result"], task_id
    assert frames[-2]["data"]["type"] == "result" and frames[-1]["status"] == "done", task_id


async def test_task_finishing_between_read_and_result_lookup(coordinator_on: Any) -> None:
    broker, wrapped, url = await coordinator_on()
    await broker.enqueue({}, "racy")
    await broker.publish_event("racy", {"type": "started"})
    wrapped.finishers["racy"] = lambda: finish(broker, "racy")
    ws = await open_ws(url)
    try:
        frames = (await follow_all(ws, ["racy"]))["racy"]
    finally:
        await ws.close()
    assert "racy" not in wrapped.finishers, "the finisher did not run inside the window"
    await assert_complete(broker, "racy", frames)


async def test_many_short_tasks_many_followers_never_miss_the_end(coordinator_on: Any) -> None:
    """100 short tasks x 4 followers x 5 rounds, finishing while followers poll with a widened window."""
    broker, _wrapped, url = await coordinator_on(pause=0.003)
    rng = random.Random(7)
    for round_ in range(5):
        ids = [f"r{round_}-t{i:03d}" for i in range(100)]
        await broker.enqueue_many([NewTask({}, t) for t in ids])
        for t in ids:
            await broker.publish_event(t, {"type": "started"})
        sockets = [await open_ws(url) for _ in range(4)]

        async def agent(ids: list[str] = ids) -> None:
            for t in rng.sample(ids, len(ids)):
                await asyncio.sleep(rng.uniform(0, 0.004))
                await finish(broker, t)

        try:
            results = await asyncio.gather(agent(), *(follow_all(ws, ids) for ws in sockets))
        finally:
            for ws in sockets:
                await ws.close()
        for frames_by_task in results[1:]:
            for t in ids:
                await assert_complete(broker, t, frames_by_task[t])


async def test_malformed_cursor_refused_once_and_unknown_task_named(coordinator_on: Any) -> None:
    broker, _wrapped, url = await coordinator_on(wrap=False)
    await broker.enqueue({}, "known")
    ws = await open_ws(url)
    try:
        await ws.send(
            json.dumps({"type": "subscribe", "task_id": "known", "after": "not-a-cursor", "ref": "r1"})
        )
        frame = json.loads(await ws.recv())
        assert (frame["type"], frame["code"], frame["ref"]) == ("error", "invalid_frame", "r1")
        assert "not-a-cursor" in frame["message"]
        await ws.send(json.dumps({"type": "subscribe", "task_id": "nope", "ref": "r2"}))
        frame = json.loads(await ws.recv())
        assert (frame["code"], frame["task_id"], frame["ref"]) == ("not_found", "nope", "r2")
        # Nothing else follows the refusal: the next answer is the stats reply.
        await ws.send(json.dumps({"type": "stats", "ref": "r3"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "stats"
    finally:
        await ws.close()
