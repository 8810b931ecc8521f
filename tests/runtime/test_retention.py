"""Retention on both backends: finished tasks are forgotten ``retention_seconds`` after they finished.

The broker keeps a finished task's result, event log, task data and delivery record, the dead-letter log
and the swarm feed for the retention period, then forgets them (Redis: the coordinator's trimmer; NATS:
the server's ``MaxAge``), so the broker's memory and keys return to where they were however many tasks
ran; ``0`` keeps everything. The big test runs 10,000 no-op tasks through real agents on a private server
and compares the server's usage before, right after, and once retention has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentswarm.broker import Broker, BrokerUsage, NewTask, TaskResult
from agentswarm.coordinator import Coordinator, ServerOptions
from agentswarm.retention import Trimmer
from agentswarm.servers import NatsServer, RedisServer
from rt_support import AgentProcess, make_test_broker, wait_until

pytestmark = pytest.mark.timeout(900)

TASKS = 10_000
BATCH = 500
RETENTION = 2


def env_for(backend: str, url: str, namespace: str, retention: int) -> dict[str, str]:
    return {
        "AGENTSWARM_BROKER": backend,
        "AGENTSWARM_REDIS_URL" if backend == "redis" else "AGENTSWARM_NATS_URL": url,
        "AGENTSWARM_NAMESPACE": namespace,
        "AGENTSWARM_HANDLER": "bad_handlers:noop",
        "AGENTSWARM_CONCURRENCY": "50",
        "AGENTSWARM_CLAIM_BLOCK_MS": "200",
        "AGENTSWARM_RETENTION_SECONDS": str(retention),
        "AGENTSWARM_LOG_LEVEL": "WARNING",
        "AGENTSWARM_SHUTDOWN_GRACE_SECONDS": "2",
        "PYTHONPATH": f"{Path(__file__).parent}:{os.environ.get('PYTHONPATH', '')}",
    }


@pytest.fixture
def private_url(
    backend: str,
    redis_factory: Callable[[], RedisServer],
    nats_factory: Callable[[], NatsServer],
) -> str:
    """A server of this backend for this test alone, so that its usage is the test's own."""
    server = redis_factory() if backend == "redis" else nats_factory()
    return str(server.url)


@contextlib.asynccontextmanager
async def trimming(broker: Broker) -> AsyncIterator[Trimmer]:
    """What the coordinator runs, in this process: a trimmer on a short interval."""
    trimmer = Trimmer(broker, interval=0.2)
    task = asyncio.create_task(trimmer.run())
    try:
        yield trimmer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def run_tasks(broker: Broker, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, BATCH):
        batch = [NewTask(payload={"i": i}) for i in range(start, min(start + BATCH, count))]
        ids += await broker.enqueue_many(batch)

    async def drained() -> bool:
        return await broker.backlog() == 0

    await wait_until(drained, within=600, interval=0.5, what=f"{count} tasks to finish")
    return ids


async def settled_usage(broker: Broker) -> BrokerUsage:
    """Usage once the agents' start-up writes are in (two equal readings in a row)."""
    last = await broker.usage()
    for _ in range(50):
        await asyncio.sleep(0.5)
        now = await broker.usage()
        if now.items == last.items:
            return now
        last = now
    return last


async def test_ten_thousand_tasks_leave_the_broker_as_it_was(
    backend: str,
    private_url: str,
    agents: Callable[[dict[str, str], int], list[AgentProcess]],
    tmp_path: Path,
) -> None:
    namespace = "retention"
    broker = make_test_broker(
        backend, private_url, namespace, retention_seconds=RETENTION, ledger_dir=tmp_path / "ledger"
    )
    await broker.connect()
    try:
        fleet = agents(env_for(backend, private_url, namespace, RETENTION), 2)
        canary = await broker.enqueue({"canary": True})  # the agents are up once it is done

        async def canary_done() -> bool:
            return await broker.get_result(canary) is not None

        await wait_until(canary_done, within=60, what="the agents to run a first task")
        await asyncio.sleep(RETENTION + 1)
        async with trimming(broker):
            await wait_until(
                lambda: _forgotten(broker, canary), within=60, what="the canary task to be forgotten"
            )
            baseline = await settled_usage(broker)
            ids = await run_tasks(broker, TASKS)
            full = await broker.usage()
            print(f"\n{backend}: baseline {baseline}, after {TASKS} tasks {full}")

            async def back_to_baseline() -> bool:
                now = await broker.usage()
                # A few fixed keys appear with the first task (the counters, the notification stream).
                return now.items <= baseline.items + 5

            await wait_until(back_to_baseline, within=120, interval=0.5, what="usage back to baseline")
            after = await settled_usage(broker)
            print(f"{backend}: after retention {after}")
        for task_id in ids[:: TASKS // 20]:
            assert await broker.get_result(task_id) is None
            assert await broker.get_task(task_id) is None
            assert await broker.read_events(task_id) == []
        assert all(a.alive for a in fleet)
        # The stored data (Redis: without the agents' connection buffers); streams are trimmed a node at a
        # time, so a few entries may stay a little longer.
        grown = full.data_bytes - baseline.data_bytes
        assert after.data_bytes - baseline.data_bytes < max(grown // 10, 256 * 1024), (baseline, full, after)
    finally:
        await broker.close()


async def _forgotten(broker: Broker, task_id: str) -> bool:
    return await broker.get_result(task_id) is None and await broker.read_events(task_id) == []


async def test_retention_zero_keeps_everything(
    backend: str,
    private_url: str,
    agents: Callable[[dict[str, str], int], list[AgentProcess]],
    tmp_path: Path,
) -> None:
    namespace = "forever"
    broker = make_test_broker(backend, private_url, namespace, retention_seconds=0, ledger_dir=tmp_path)
    await broker.connect()
    try:
        agents(env_for(backend, private_url, namespace, 0), 1)
        ids = await run_tasks(broker, 300)
        before = await broker.usage()
        await asyncio.sleep(3)  # past a retention the other tests use; nothing may go
        trimmer = Trimmer(broker)
        assert await trimmer.round() == 0
        after = await broker.usage()
        assert after.items >= before.items
        for task_id in ids:
            assert (await broker.get_result(task_id)) is not None
            assert [e.data["type"] for e in await broker.read_events(task_id)][-1] == "result"
        assert len(await broker.read_swarm_events(limit=10_000)) >= 2 * len(ids)
    finally:
        await broker.close()


async def test_every_kind_of_finished_task_is_forgotten(backend: str, brokers: Callable[..., Any]) -> None:
    """Results, cancellations and dead letters all go, with their logs; also when the namespace's streams
    were created with another retention (it is applied to existing server objects)."""
    await brokers(retention_seconds=0)  # creates the server objects with "keep forever"
    broker: Broker = await brokers(retention_seconds=1, max_deliveries=1)
    done, dead, cancelled = await broker.enqueue_many([NewTask(payload={"n": i}) for i in range(3)])
    assert await broker.cancel(cancelled) == "cancelled"
    claimed = {d.task.id: d for d in await broker.claim("agent-0", count=3, block_ms=1000)}
    await broker.publish_event(done, {"type": "progress"})
    await broker.record_result(TaskResult(task_id=done, value={"ok": True}, agent_id="agent-0", attempt=1))
    await broker.ack(claimed[done])
    assert await broker.fail(claimed[dead], "boom") is True
    if cancelled in claimed:
        await broker.ack(claimed[cancelled])
    assert [d.task.id for d in await broker.dead_letters()] == [dead]
    assert await broker.read_swarm_events()

    trimmer = Trimmer(broker, batch=1)  # one task per call: a round loops until nothing is left

    async def all_forgotten() -> bool:
        await trimmer.round()
        for task_id in (done, dead, cancelled):
            if not await _forgotten(broker, task_id) or await broker.get_task(task_id) is not None:
                return False
        return not await broker.dead_letters() and not await broker.read_swarm_events()

    await wait_until(all_forgotten, within=60, interval=0.3, what="every finished task to be forgotten")
    # An id is free again once forgotten.
    assert await broker.enqueue({"again": True}, task_id=done) == done
    assert await broker.get_task(done) is not None


async def test_coordinator_trims_and_reports_broker_usage(backend: str, brokers: Callable[..., Any]) -> None:
    broker: Broker = await brokers(retention_seconds=1)
    coordinator = Coordinator(
        broker, ServerOptions(api_token="t" * 32, host="127.0.0.1", port=0, retention_interval_seconds=0.2)
    )
    await coordinator.start()
    try:
        task_id = await broker.enqueue({"n": 1})
        [delivery] = await broker.claim("agent-0", count=1, block_ms=1000)
        await broker.record_result(TaskResult(task_id=task_id, value=1, agent_id="agent-0", attempt=1))
        await broker.ack(delivery)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{coordinator.port}/metrics")).text
        values = {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith(("agentswarm_broker_bytes", "agentswarm_broker_items"))
        }
        assert values["agentswarm_broker_bytes"] > 0
        assert values["agentswarm_broker_items"] > 0
        await wait_until(lambda: _forgotten(broker, task_id), within=60, what="the coordinator to trim")
    finally:
        await coordinator.shutdown(drain_seconds=0)


async def test_a_full_redis_is_an_outage_not_a_failure(redis_factory: Callable[[], RedisServer]) -> None:
    """A broker at ``maxmemory`` with ``noeviction`` (what the components set on Memorystore) refuses writes
    with OOM: callers get BrokerUnavailable, which agents retry like an outage; a write is refused whole or
    done whole (never a task recorded but not queued, which a retried enqueue would skip); once memory is
    freed (the trimmer, a bigger instance) the refused writes go through."""
    import redis.asyncio as aioredis
    from agentswarm.broker import BrokerUnavailable

    server = redis_factory()
    admin = aioredis.Redis(port=server.port)
    await admin.config_set("maxmemory-policy", "noeviction")
    broker = make_test_broker("redis", server.url, "full")
    await broker.connect()
    try:
        await broker.enqueue({}, "warm")  # scripts loaded, keys made: what follows is the big writes only
        used = int((await admin.info("memory"))["used_memory"])
        # Just above what is used: the first big enqueue starts under the limit and ends over it.
        await admin.config_set("maxmemory", str(used + 4096))
        big = {"pad": "x" * 65536}
        outcomes: list[BrokerUnavailable | None] = []
        for i in range(3):
            try:
                await broker.enqueue(big, f"big{i}")
                outcomes.append(None)
            except BrokerUnavailable as exc:
                outcomes.append(exc)
        refused = [exc for exc in outcomes if exc is not None]
        assert refused, "a full server accepted every write"
        for exc in refused:
            assert "OutOfMemoryError" in str(exc)
            assert isinstance(exc.__cause__, Exception) and broker.is_transient(exc.__cause__)
        for i, exc in enumerate(outcomes):  # done whole or refused whole
            assert (await broker.get_task(f"big{i}") is None) == (exc is not None), (i, outcomes)
        await admin.config_set("maxmemory", "0")  # room again: the refused writes go through
        for i, exc in enumerate(outcomes):
            if exc is not None:
                assert await broker.enqueue(big, f"big{i}") == f"big{i}"
        assert (await broker.stats()).queued == 4
    finally:
        await broker.close()
        await admin.aclose()
