"""Which queue metric may drive autoscaling to zero: evidence on real servers.

KEDA's ``redis-streams`` scaler (pkg/scalers/redis_streams_scaler.go) has three modes, each one fixed set of
commands; :class:`KedaRedisStreams` issues exactly those and reads the replies the way KEDA's client
(go-redis v9.22, pinned by KEDA v2.20) does:

* ``lagCount`` (``consumerGroup`` and ``lagCount`` set): ``INFO`` (refuses Redis < 7), ``XINFO GROUPS
  <stream>``, the group's ``lag`` field; ``XLEN`` only when the group does not exist. go-redis turns a NULL
  lag into -1, and KEDA reports the scaler active only when the value is above ``activationLagCount``.
* ``pendingEntriesCount`` (``consumerGroup`` set, no ``lagCount``): ``XPENDING <stream> <group>``, the count.
* ``streamLength`` (no ``consumerGroup``): ``XLEN <stream>``.

The tests drive this runtime's stream layout through the real Redis broker (a backlog, agents claiming,
acknowledged entries deleted, a failed attempt waiting for its retry, a delivery abandoned by an agent that
was scaled in) and check each metric against "work outstanding". Only ``streamLength`` follows it in every
state; ``Broker.backlog()`` returns the same number on both backends (the conformance test at the end).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from agentswarm.broker import Broker, NewTask, Priority
from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
from agentswarm.broker.redis_streams import RedisStreamsBroker
from agentswarm.servers import NatsServer, free_port

pytestmark = pytest.mark.timeout(120)


class KedaRedisStreams:
    """The three metrics of KEDA's redis-streams scaler, computed with KEDA's own commands."""

    def __init__(self, broker: RedisStreamsBroker) -> None:
        self.r = broker.r
        self.stream = broker.stream
        self.group = broker.group

    async def lag_count(self) -> int:
        info = await self.r.info("server")
        if int(str(info["redis_version"]).split(".")[0]) < 7:
            raise AssertionError("KEDA's lagCount mode refuses Redis < 7")
        groups: list[Any] = await self.r.execute_command("XINFO", "GROUPS", self.stream)
        for raw in groups:
            group = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
            if group["name"] == self.group:
                lag = group["lag"]
                return -1 if lag is None else int(lag)  # go-redis >= 9.9: NULL lag -> -1
        return int(await self.r.xlen(self.stream))

    async def pending_entries_count(self) -> int:
        summary = await self.r.xpending(self.stream, self.group)
        return int(summary["pending"])

    async def stream_length(self) -> int:
        return int(await self.r.xlen(self.stream))

    async def all(self) -> dict[str, int]:
        return {
            "lagCount": await self.lag_count(),
            "pendingEntriesCount": await self.pending_entries_count(),
            "streamLength": await self.stream_length(),
        }


class MonitoredNatsServer(NatsServer):
    """nats-server with its HTTP monitoring endpoint (what KEDA's nats-jetstream scaler reads)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.monitoring_port = free_port()

    def command(self) -> list[str]:
        return [*super().command(), "-m", str(self.monitoring_port)]


def keda_nats_lag(monitoring_port: int, stream: str, consumer: str) -> int:
    """KEDA's nats-jetstream metric: ``GET /jsz?acc=..&consumers=true&config=true`` on the monitoring port,
    then ``num_pending + num_ack_pending`` of the named consumer of the named stream in account ``$G``."""
    url = f"http://127.0.0.1:{monitoring_port}/jsz?acc=%24G&config=true&consumers=true"
    with urllib.request.urlopen(url, timeout=5) as response:
        data = json.load(response)
    for account in data.get("account_details", []):
        if account.get("name") != "$G" and account.get("id") != "$G":
            continue
        for detail in account.get("stream_detail", []):
            if detail["name"] == stream:
                for c in detail.get("consumer_detail", []):
                    if c["name"] == consumer:
                        return int(c["num_pending"]) + int(c["num_ack_pending"])
    raise AssertionError(f"consumer {consumer} of stream {stream} not in /jsz")


def active(value: int, activation: int = 0) -> bool:
    """KEDA's activity rule for every redis-streams mode: ``value > activationLagCount``."""
    return value > activation


@pytest.fixture
async def redis_broker(redis_factory: Any, unique_namespace: str) -> Any:
    server = redis_factory()
    broker = RedisStreamsBroker(server.url, namespace=unique_namespace, claim_idle_ms=300, retry_backoff_ms=0)
    await broker.connect()
    yield broker
    await broker.close()


async def test_only_stream_length_follows_outstanding_work(redis_broker: RedisStreamsBroker) -> None:
    b = redis_broker
    keda = KedaRedisStreams(b)
    seen: dict[str, dict[str, int]] = {}

    async def state(name: str, outstanding: int) -> dict[str, int]:
        metrics = await keda.all()
        seen[name] = metrics
        assert await b.backlog() == outstanding, name
        # streamLength is the outstanding work in every state of the runtime's stream layout.
        assert metrics["streamLength"] == outstanding, (name, metrics)
        return metrics

    m = await state("idle, never used", 0)
    assert m == {"lagCount": 0, "pendingEntriesCount": 0, "streamLength": 0}

    await b.enqueue_many([NewTask({"n": i}, f"t{i}") for i in range(10)])
    m = await state("10 queued, 0 agents", 10)
    # pendingEntriesCount cannot wake a swarm at zero: nothing is handed out, so it reads 0.
    assert m["pendingEntriesCount"] == 0 and not active(m["pendingEntriesCount"])
    assert m["lagCount"] == 10

    (older,) = await b.claim("agent-0", block_ms=100)
    (newer,) = await b.claim("agent-1", block_ms=100)
    await state("2 running, 8 queued", 10)

    # The newer delivery finishes first: ack deletes its entry (XDEL), leaving a tombstone after the
    # group's last-delivered id while an older entry is still in the stream. Redis cannot compute the lag.
    await b.ack(newer)
    m = await state("1 running, 8 queued, newer one acknowledged", 9)
    assert m["lagCount"] == -1, m  # NULL lag: KEDA reads -1 and calls the scaler inactive
    assert not active(m["lagCount"])  # ... with 8 tasks queued: KEDA would scale this swarm to zero

    await b.ack(older)
    await state("8 queued", 8)

    # A failed attempt waits for its retry in the failing agent's pending list.
    (failing,) = await b.claim("agent-0", block_ms=100)
    assert not await b.fail(failing, "boom")
    for _ in range(7):
        (d,) = await b.claim("agent-1", block_ms=100)
        await b.ack(d)
    m = await state("only the failed attempt outstanding", 1)
    assert m["lagCount"] == 0 and not active(m["lagCount"])  # lag misses it: scale to zero would strand it

    # agent-0 is scaled in before retrying: its delivery stays in its pending list until reclaimed.
    await asyncio.sleep(0.4)  # claim_idle_ms = 300
    (reclaimed,) = await b.claim("agent-1", block_ms=100)
    assert reclaimed.task.id == failing.task.id and reclaimed.source == "reclaimed"
    m = await state("retried by another agent", 1)
    assert m["lagCount"] == 0 and m["pendingEntriesCount"] == 1
    await b.ack(reclaimed)

    m = await state("all done, idle", 0)
    assert m == {"lagCount": 0, "pendingEntriesCount": 0, "streamLength": 0}
    assert not any(active(v) for v in m.values())


async def test_lag_stays_null_and_never_wakes_a_swarm_at_zero(redis_broker: RedisStreamsBroker) -> None:
    """Scale-in leaves an older delivery behind after a newer one was acknowledged: with no agent left to
    read, the lag stays NULL however much work arrives, so a lagCount trigger never scales up again."""
    b = redis_broker
    keda = KedaRedisStreams(b)
    await b.enqueue_many([NewTask({"n": i}, f"s{i}") for i in range(6)])
    (_abandoned,) = await b.claim("agent-0", block_ms=100)
    (newer,) = await b.claim("agent-1", block_ms=100)
    await b.ack(newer)  # agent-1 finishes; agent-0 is scaled in (or preempted) before finishing
    for wave in range(3):
        await b.enqueue_many([NewTask({"wave": wave, "n": i}, f"w{wave}-{i}") for i in range(50)])
        m = await keda.all()
        outstanding = 5 + 50 * (wave + 1)
        assert m["streamLength"] == outstanding == await b.backlog()
        assert m["lagCount"] == -1 and not active(m["lagCount"]), m
        assert m["pendingEntriesCount"] == 1  # the abandoned delivery only: far below the backlog
    # Even when agents run again (started by something else), the group's read counter stays unknown for
    # part of the drain (how long depends on the order of reads and acks: 38 of 155 samples in one run,
    # 5 in another on a loaded machine), so the lag can read "inactive" while work is queued.
    null_lag = 0
    while await b.backlog():
        for d in await b.claim("agent-0", block_ms=100):
            await b.ack(d)
        null_lag += await keda.lag_count() == -1
    assert null_lag >= 1, null_lag
    assert await keda.lag_count() == 0


async def test_nats_jetstream_scaler_reads_the_backlog(tmp_path: Path, unique_namespace: str) -> None:
    """The nats-jetstream scaler's number, read from /jsz like KEDA does, is ``Broker.backlog()``."""
    with MonitoredNatsServer(tmp_path / "nats") as server:
        b = NatsJetStreamBroker(
            server.url,
            namespace=unique_namespace,
            claim_idle_ms=500,
            retry_backoff_ms=2000,
            ledger_dir=tmp_path,
        )
        await b.connect()
        try:

            async def both() -> tuple[int, int]:
                return keda_nats_lag(server.monitoring_port, b.s_tasks, b.durable), await b.backlog()

            assert await both() == (0, 0)
            await b.enqueue_many([NewTask({"n": i}, f"n{i}") for i in range(6)])
            assert await both() == (6, 6)
            (d1,) = await b.claim("agent-0", block_ms=200)
            (d2,) = await b.claim("agent-1", block_ms=200)
            await b.ack(d2)
            assert await both() == (5, 5)
            assert not await b.fail(d1, "boom")  # the retry waits 2 s: still counted
            assert await both() == (5, 5)
            finished = 0
            for _ in range(100):
                for d in await b.claim("agent-1", block_ms=200):
                    await b.ack(d)
                    finished += 1
                if await b.backlog() == 0:
                    break
            assert finished == 5
            assert await both() == (0, 0)
        finally:
            await b.close()


async def test_backlog_counts_queued_running_retrying_and_abandoned(brokers: Any, tmp_path: Path) -> None:
    """``Broker.backlog()`` on both backends: the autoscaling signal, 0 exactly when nothing is left."""
    b: Broker = await brokers(claim_idle_ms=500, retry_backoff_ms=2000)
    assert await b.backlog() == 0
    await b.enqueue_many([NewTask({"n": i}, f"k{i}") for i in range(5)])
    assert await b.backlog() == 5
    (d1,) = await b.claim("agent-0", block_ms=200)
    (d2,) = await b.claim("agent-1", block_ms=200)
    assert await b.backlog() == 5  # running tasks are still outstanding
    await b.ack(d2)
    assert await b.backlog() == 4
    assert not await b.fail(d1, "boom")  # waiting 2 s for its retry
    assert await b.backlog() == 4
    (d3,) = await b.claim("agent-1", block_ms=200)
    assert d3.task.id != d1.task.id
    gone: Broker = await brokers(claim_idle_ms=500, ledger_dir=tmp_path / "gone")
    (d4,) = await gone.claim("agent-7", block_ms=200)
    await gone.close()  # scaled in mid-task: never acknowledged
    assert await b.backlog() == 4
    await b.ack(d3)
    assert await b.backlog() == 3
    finished = 0
    for _ in range(200):
        for d in await b.claim("agent-1", block_ms=200):
            await b.ack(d)
            finished += 1
        if await b.backlog() == 0:
            break
    assert finished == 3  # the failed one after its backoff, the abandoned one, the last queued one
    assert d4.task.id not in {d1.task.id, d3.task.id}
    assert await b.backlog() == 0


async def test_the_per_class_keda_metrics_sum_to_the_backlog(
    redis_broker: RedisStreamsBroker, tmp_path: Path, unique_namespace: str
) -> None:
    """One trigger per priority class (a stream / a consumer each); their sum, the ScaledObject's scaling
    modifier, is ``Broker.backlog()`` on both backends, with tasks of every class queued, running, failed."""
    with MonitoredNatsServer(tmp_path / "nats") as server:
        nats = NatsJetStreamBroker(server.url, namespace=unique_namespace, retry_backoff_ms=2000)
        await nats.connect()
        try:
            for b in (redis_broker, nats):
                if isinstance(b, RedisStreamsBroker):

                    async def per_class(b: Any = b) -> list[int]:
                        return [int(await b.r.xlen(stream)) for stream in b.streams.values()]
                else:

                    async def per_class(b: Any = b) -> list[int]:
                        return [
                            keda_nats_lag(server.monitoring_port, b.s_tasks, d) for d in b.durables.values()
                        ]

                counts: list[tuple[Priority, int]] = [("high", 1), ("normal", 2), ("low", 3)]
                await b.enqueue_many(
                    [NewTask({}, f"{c}{i}", priority=c) for c, n in counts for i in range(n)]
                )
                assert await per_class() == [1, 2, 3]
                assert sum(await per_class()) == await b.backlog() == 6
                (first,) = await b.claim("agent-0", block_ms=200)
                assert first.task.priority == "high"
                assert not await b.fail(first, "boom")  # waits for its retry: still outstanding
                running = await b.claim("agent-1", count=3, block_ms=200)
                assert sum(await per_class()) == await b.backlog() == 6
                for d in running:
                    await b.ack(d)
                assert sum(await per_class()) == await b.backlog() == 3
        finally:
            await nats.close()
