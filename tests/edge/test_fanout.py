"""Push-based fan-out on both backends: many watched tasks across a coordinator restart, a client that
stops reading, idle subscriptions that cost the broker nothing, and the swarm feed."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from agentswarm.broker import Broker, NewTask, TaskEvent, TaskResult
from agentswarm.client import describe_swarm_entry
from agentswarm.coordinator import Coordinator, ServerOptions
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .helpers import TOKEN as SWARM_TOKEN

pytestmark = pytest.mark.timeout(300)

TOKEN = "fanout-test-token"


class CountingBroker:
    """Delegates to a real broker and counts the per-task log reads."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.reads = 0

    async def read_events(
        self, task_id: str, after: str | None = None, *, limit: int = 100, block_ms: int = 0
    ) -> list[TaskEvent]:
        self.reads += 1
        return await self.inner.read_events(task_id, after, limit=limit, block_ms=block_ms)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
async def coordinators(brokers: Any) -> AsyncIterator[Callable[..., Awaitable[tuple[Coordinator, str]]]]:
    """``await coordinators(broker, **options)`` -> (a started coordinator on ``broker``, its ws URL)."""
    started: list[Coordinator] = []

    async def make(broker: Any, **options: Any) -> tuple[Coordinator, str]:
        coordinator = Coordinator(broker, ServerOptions(api_token=TOKEN, host="127.0.0.1", port=0, **options))
        await coordinator.start()
        started.append(coordinator)
        return coordinator, f"ws://127.0.0.1:{coordinator.port}/ws"

    yield make
    for coordinator in started:
        await coordinator.shutdown(drain_seconds=0)


async def open_ws(url: str, **kw: Any) -> ClientConnection:
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, **kw)
    assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


def small_buffers(coordinator: Coordinator, client: ClientConnection) -> None:
    """Fix the socket buffers on both ends at 64 KiB (no autotuning): how much a client that reads nothing
    lets the coordinator write then depends on neither the machine's TCP settings nor its load."""
    client.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    assert coordinator._server is not None
    for connection in coordinator._server.connections:
        sock = connection.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)


async def finish(broker: Broker, task_id: str) -> None:
    await broker.record_result(TaskResult(task_id, {"ok": task_id}, "agent-x", 1))


async def test_500_watched_tasks_exactly_once_in_order_across_a_coordinator_restart(
    brokers: Any, coordinators: Any
) -> None:
    producer: Broker = await brokers()
    ids = [f"w{i:03d}" for i in range(500)]
    await producer.enqueue_many([NewTask({}, t) for t in ids])
    seen: dict[str, list[str]] = {t: [] for t in ids}
    results: dict[str, int] = {t: 0 for t in ids}
    half = asyncio.Event()
    first, url = await coordinators(await brokers())

    async def publish() -> None:
        for round_ in range(6):
            await producer.publish_events([(t, {"type": "token", "round": round_}) for t in ids])
            if round_ == 2:
                half.set()
            await asyncio.sleep(0.05)
        for t in ids:
            await finish(producer, t)

    async def watch(url: str, stop_on_close: bool) -> bool:
        """Subscribe to every unfinished task from its cursor; True once every result arrived."""
        ws = await open_ws(url, max_size=None)
        try:
            for t in ids:
                if results[t] == 0:
                    after = seen[t][-1] if seen[t] else None
                    await ws.send(json.dumps({"type": "subscribe", "task_id": t, "after": after}))
            while any(n == 0 for n in results.values()):
                frame = json.loads(await ws.recv())
                if frame["type"] == "event":
                    seen[frame["task_id"]].append(frame["event_id"])
                elif frame["type"] == "result":
                    results[frame["task_id"]] += 1
            return True
        except ConnectionClosed:
            assert stop_on_close
            return False
        finally:
            await ws.close()

    publisher = asyncio.create_task(publish())
    watcher = asyncio.create_task(watch(url, stop_on_close=True))
    await half.wait()
    await first.shutdown(drain_seconds=0)  # closes every websocket with 1012 mid-stream
    assert await watcher is False
    _second, url2 = await coordinators(await brokers())
    assert await watch(url2, stop_on_close=False) is True
    await publisher
    for t in ids:
        truth = [e.id for e in await producer.read_events(t, None, limit=1000)]
        assert seen[t] == truth, t
        assert results[t] == 1, t


async def test_a_client_that_stops_reading_catches_up_and_slows_nobody(
    brokers: Any, coordinators: Any
) -> None:
    broker: Broker = await brokers()
    await broker.enqueue({}, "fast")
    limit = 8 * 1024
    # No server pings: a client that reads nothing for long would be closed by them (that is their job).
    coordinator, url = await coordinators(broker, send_buffer_bytes=limit, ping_interval=None)
    # The slow client reads nothing while its socket buffers and the coordinator's outbox fill up.
    # (max_queue=1: the client library stops taking data off the socket after a frame or two.)
    slow = await open_ws(url, max_queue=1, max_size=None, ping_interval=None)
    small_buffers(coordinator, slow)
    good = await open_ws(url, max_size=None)
    for ws in (slow, good):
        await ws.send(json.dumps({"type": "subscribe", "task_id": "fast"}))
    biggest: dict[int, int] = {}

    async def watch_outboxes() -> None:
        while True:
            for n, session in enumerate(list(coordinator._sessions.values())):
                biggest[n] = max(biggest.get(n, 0), session.outbox.size)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch_outboxes())
    try:
        await _slow_and_good(broker, coordinator, slow, good, biggest, limit, watcher)
    finally:
        watcher.cancel()
        for ws in (slow, good):  # a failed check must not leave a client that reads nothing connected
            ws.transport.abort()


async def _slow_and_good(
    broker: Broker,
    coordinator: Coordinator,
    slow: ClientConnection,
    good: ClientConnection,
    biggest: dict[int, int],
    limit: int,
    watcher: asyncio.Task[None],
) -> None:
    payload = "x" * 4000
    total = 2000
    good_ids: list[str] = []
    # Subscribed and caught up: the good client's "subscribed" frame came back.
    assert json.loads(await asyncio.wait_for(good.recv(), 60))["type"] == "subscribed"
    for start in range(0, total, 100):
        batch = [("fast", {"type": "token", "i": i, "pad": payload}) for i in range(start, start + 100)]
        await broker.publish_events(batch)
    await finish(broker, "fast")
    while True:  # the good client gets everything while the slow one reads nothing
        frame = json.loads(await asyncio.wait_for(good.recv(), 60))
        if frame["type"] == "event":
            good_ids.append(frame["event_id"])
        if frame["type"] == "result":
            break
    assert len(good_ids) == total + 1
    watcher.cancel()
    # The slow client's outbox filled up (its live feed was dropped) but never held more than the limit
    # plus one frame: memory stays bounded however much the task emits.
    assert max(biggest.values()) >= limit - 5000  # the slow client's buffer filled up ...
    assert all(size <= limit + 5000 for size in biggest.values())  # ... and no buffer grew past it
    assert coordinator.metrics.lagged._value.get() >= 1
    slow_ids: list[str] = []
    results = 0
    while True:  # now the slow client reads: it catches up from its cursor, exactly once, in order
        frame = json.loads(await asyncio.wait_for(slow.recv(), 60))
        if frame["type"] == "event":
            slow_ids.append(frame["event_id"])
        elif frame["type"] == "result":
            results += 1
            break
    assert slow_ids == good_ids
    assert results == 1
    for ws in (slow, good):
        await ws.close()


async def test_shutdown_does_not_wait_for_a_client_that_stopped_reading(
    brokers: Any, coordinators: Any
) -> None:
    """SIGTERM with a client whose socket buffers are full: the coordinator still closes every websocket
    and stops (websockets' own close waits for the buffer to drain with no deadline)."""
    broker: Broker = await brokers()
    await broker.enqueue({}, "stuck")
    coordinator, url = await coordinators(
        broker, send_buffer_bytes=8 * 1024, ping_interval=None, close_timeout=1.0
    )
    slow = await open_ws(url, max_queue=1, max_size=None, ping_interval=None)
    small_buffers(coordinator, slow)
    try:
        await slow.send(json.dumps({"type": "subscribe", "task_id": "stuck"}))

        def backed_up() -> bool:  # the coordinator's socket to this client has bytes it cannot send
            assert coordinator._server is not None
            return any(c.transport.get_write_buffer_size() > 0 for c in coordinator._server.connections)

        for start in range(0, 100_000, 100):  # until its writes back up (at most 400 MB of events)
            await broker.publish_events(
                [("stuck", {"type": "token", "i": i, "pad": "x" * 4000}) for i in range(start, start + 100)]
            )
            await asyncio.sleep(0.05)
            if backed_up():
                break
        assert backed_up()
        stopping = asyncio.create_task(coordinator.shutdown(drain_seconds=0))
        done, _ = await asyncio.wait({stopping}, timeout=30)
        assert stopping in done, "shutdown still waiting for a client that reads nothing"
        await stopping
    finally:
        slow.transport.abort()  # unblocks a coordinator without the fix, so a failure never hangs the run


async def test_idle_subscriptions_do_not_read_the_broker(brokers: Any, coordinators: Any) -> None:
    inner: Broker = await brokers()
    ids = [f"idle{i}" for i in range(200)]
    await inner.enqueue_many([NewTask({}, t) for t in ids])
    counting = CountingBroker(inner)
    _coordinator, url = await coordinators(counting)
    ws = await open_ws(url)
    for t in ids:
        await ws.send(json.dumps({"type": "subscribe", "task_id": t}))
    for _ in ids:
        assert json.loads(await ws.recv())["type"] == "subscribed"
    for _ in range(1200):  # each subscription reads its (empty) log once (60 s at most)
        if counting.reads >= len(ids):
            break
        await asyncio.sleep(0.05)
    assert counting.reads == len(ids)
    settled = counting.reads
    await asyncio.sleep(1.0)  # idle: with polling this would be hundreds of reads
    assert counting.reads == settled
    event_id = await inner.publish_event("idle7", {"type": "token"})
    frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert (frame["type"], frame["task_id"], frame["event_id"]) == ("event", "idle7", event_id)
    assert counting.reads == settled  # delivered from the feed, not by reading the log
    await ws.close()


async def test_swarm_feed_frames_and_resume(brokers: Any, coordinators: Any) -> None:
    broker: Broker = await brokers()
    _coordinator, url = await coordinators(broker)
    ws = await open_ws(url)
    await ws.send(json.dumps({"type": "subscribe_swarm", "ref": "s1"}))
    assert json.loads(await ws.recv()) == {"type": "subscribed_swarm", "ref": "s1", "after": None}
    await broker.enqueue({}, "sw1")
    await broker.publish_swarm_event({"kind": "agent", "agent": "a1", "status": "busy", "task_id": "sw1"})
    await finish(broker, "sw1")
    frames = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(3)]
    assert [f["type"] for f in frames] == ["swarm"] * 3
    assert [(f["data"]["kind"], f["data"].get("state") or f["data"].get("status")) for f in frames] == [
        ("task", "queued"),
        ("agent", "busy"),
        ("task", "done"),
    ]
    assert frames[2]["data"]["agent"] == "agent-x" and frames[2]["data"]["task_id"] == "sw1"
    await ws.send(json.dumps({"type": "unsubscribe_swarm", "ref": "s2"}))
    assert json.loads(await ws.recv()) == {"type": "unsubscribed_swarm", "ref": "s2"}
    await ws.close()
    # Resume on a new connection after the first frame: the other two, once each, in order.
    ws = await open_ws(url)
    await ws.send(json.dumps({"type": "subscribe_swarm", "after": frames[0]["event_id"]}))
    assert json.loads(await ws.recv())["type"] == "subscribed_swarm"
    again = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(2)]
    assert [f["event_id"] for f in again] == [f["event_id"] for f in frames[1:]]
    await ws.send(json.dumps({"type": "unsubscribe_swarm"}))
    assert json.loads(await ws.recv())["type"] == "unsubscribed_swarm"  # nothing else arrived meanwhile
    await ws.send(json.dumps({"type": "subscribe_swarm", "after": "not-an-id"}))
    error = json.loads(await ws.recv())
    assert (error["type"], error["code"]) == ("error", "invalid_frame")
    await ws.close()


def test_cli_watch_all_follows_tasks_and_agents(redis_swarm: Any) -> None:
    redis_swarm.start_coordinator()
    redis_swarm.start_agent(0)
    env = {**redis_swarm.base_env, "AGENTSWARM_URL": redis_swarm.url, "AGENTSWARM_API_TOKEN": SWARM_TOKEN}
    cli = [sys.executable, "-m", "agentswarm.cli"]
    out = subprocess.run(
        [*cli, "submit", "--payload", '{"steps": 1}', "--id", "all-1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # The agent's start, then the task's life: 6 entries, each per-task / per-agent in order.
    out = subprocess.run(
        [*cli, "watch", "--all", "--limit", "6", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    frames = [json.loads(line) for line in out.stdout.splitlines()]
    assert all(f["type"] == "swarm" for f in frames)
    task = [f["data"]["state"] for f in frames if f["data"]["kind"] == "task"]
    agent = [(f["data"]["status"], f["data"].get("task_id")) for f in frames if f["data"]["kind"] == "agent"]
    assert task == ["queued", "running", "done"]
    assert agent == [("alive", None), ("busy", "all-1"), ("idle", None)]
    running = next(f["data"] for f in frames if f["data"].get("state") == "running")
    assert running["agent"] == "agent-0" and running["attempt"] == 1
    # Resume after the fourth entry: the last two, once each, as readable lines.
    out = subprocess.run(
        [*cli, "watch", "--all", "--after", frames[3]["event_id"], "--limit", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [describe_swarm_entry(f["data"]) for f in frames[4:]]
    assert "task all-1 running on agent-0 (attempt 1)" in describe_swarm_entry(running)
    usage = subprocess.run([*cli, "watch", "--all", "x"], env=env, capture_output=True, text=True, timeout=60)
    assert usage.returncode != 0 and "not both" in usage.stderr
