"""The agent's event writer on both backends: order, group commit, what ``stream`` and ``emit`` promise."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from agentswarm.broker import Broker
from agentswarm.emitter import EventWriter

pytestmark = pytest.mark.timeout(120)


async def plain(make: Callable[[], Awaitable[Any]], _what: str) -> Any:
    return await make()


class GatedBroker:
    """Delegates to a real broker; ``publish_batch`` (the writer's one write per batch) waits for ``gate``
    and counts its calls."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.calls: list[int] = []

    async def publish_batch(
        self, events: Sequence[tuple[str, dict[str, Any]]], swarm: Sequence[dict[str, Any]]
    ) -> list[str]:
        self.calls.append(len(events))
        await self.gate.wait()
        return await self.inner.publish_batch(events, swarm)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_stream_does_not_wait_for_the_broker_and_batches_keep_order(brokers) -> None:
    inner: Broker = await brokers()
    await inner.enqueue({}, "tok")
    gated = GatedBroker(inner)
    writer = EventWriter(gated, plain)  # type: ignore[arg-type]
    await writer.stream("tok", {"i": 0})  # returns although nothing can be stored yet
    await asyncio.sleep(0)  # the writer takes event 0 and blocks in its write
    for i in range(1, 300):
        await writer.stream("tok", {"i": i})
    durable = asyncio.create_task(writer.emit("tok", {"i": 300}))
    await asyncio.sleep(0.05)
    assert not durable.done()  # emit returns only once stored
    assert await inner.read_events("tok", None) == []
    gated.gate.set()
    event_id = await durable
    log = await inner.read_events("tok", None, limit=1000)
    assert [e.data["i"] for e in log] == list(range(301))
    assert log[-1].id == event_id
    # Group commit: everything queued behind the blocked write went out in one more write.
    assert gated.calls == [1, 300]
    await writer.close()


async def test_flush_and_bad_events(brokers) -> None:
    broker: Broker = await brokers()
    await broker.enqueue({}, "f")
    writer = EventWriter(broker, plain)
    for i in range(50):
        await writer.stream("f", {"i": i})
    await writer.flush()
    assert len(await broker.read_events("f", None, limit=100)) == 50
    with pytest.raises(TypeError):
        await writer.stream("f", {"bad": object()})
    await writer.swarm({"kind": "agent", "agent": "a", "status": "idle", "at": 0})
    await writer.flush()
    entries = [s.data.get("state") or s.data.get("status") for s in await broker.read_swarm_events(None)]
    assert entries == ["queued", "idle"]  # the enqueue's transition, then the entry written here
    await writer.close()


_CHILD = """
import asyncio, os, signal, sys
from agentswarm.broker.{module} import {cls}
from agentswarm.emitter import EventWriter

async def main():
    broker = {cls}(sys.argv[1], namespace=sys.argv[2])
    await broker.connect()

    async def plain(make, what):
        return await make()

    writer = EventWriter(broker, plain)
    for i in range(40):
        await writer.stream("k", {{"i": i, "streamed": True}})
        print(await writer.emit("k", {{"i": i}}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_awaited_emits_survive_sigkill(backend, server_url, unique_namespace, brokers) -> None:
    broker: Broker = await brokers()
    await broker.enqueue({}, "k")
    module, cls = (
        ("redis_streams", "RedisStreamsBroker")
        if backend == "redis"
        else ("nats_jetstream", "NatsJetStreamBroker")
    )
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _CHILD.format(module=module, cls=cls), server_url, unique_namespace],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -9, child.stderr
    acknowledged = child.stdout.split()
    assert len(acknowledged) == 40
    log = await broker.read_events("k", None, limit=1000)
    stored = {e.id for e in log}
    assert set(acknowledged) <= stored  # every awaited emit is in the log
    # ... and so is every event streamed before an awaited one, in order.
    assert [json.dumps(e.data) for e in log[:80]] == [
        json.dumps(d) for i in range(40) for d in ({"i": i, "streamed": True}, {"i": i})
    ]
