"""One conformance suite, run unchanged against Redis Streams and NATS JetStream on real servers."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest
from agentswarm.broker import Broker, InvalidCursor, InvalidTaskId, NewTask, TaskResult
from rt_support import wait_until

pytestmark = pytest.mark.timeout(120)


async def test_fifo_and_idempotent_enqueue(brokers) -> None:
    b: Broker = await brokers()
    ids = await b.enqueue_many([NewTask({"n": i}, f"t{i}") for i in range(6)])
    assert ids == [f"t{i}" for i in range(6)]
    again = await b.enqueue_many([NewTask({"n": "changed"}, "t2"), NewTask({"n": 6}, "t6")])
    assert again == ["t2", "t6"]
    generated = await b.enqueue({"n": 7})
    assert len(generated) == 32
    stats = await b.stats()
    assert (stats.queued, stats.pending, stats.enqueued_total) == (8, 0, 8)
    seen = []
    for _ in range(8):
        (d,) = await b.claim("c1", block_ms=500)
        seen.append(d.task.id)
        assert (d.attempt, d.source) == (1, "new")
        await b.ack(d)
    assert seen == [f"t{i}" for i in range(7)] + [generated]
    task = await b.get_task("t2")
    assert task is not None and task.payload == {"n": 2}  # the duplicate enqueue changed nothing
    assert await b.claim("c1", block_ms=200) == []


async def test_idempotent_enqueue_of_a_large_batch(brokers) -> None:
    """A batch larger than a backend's internal steps, mixing known and new ids: known ones stay as they
    were (payload included), new ones are added once, in order."""
    b: Broker = await brokers()
    await b.enqueue_many([NewTask({"n": i}, f"t{i}") for i in range(0, 3000, 2)])
    again = await b.enqueue_many([NewTask("changed", f"t{i}") for i in range(3000)])
    assert again == [f"t{i}" for i in range(3000)]
    stats = await b.stats()
    assert (stats.queued, stats.enqueued_total) == (3000, 3000)
    for i in (0, 1, 1022, 1024, 2048, 2998, 2999):
        task = await b.get_task(f"t{i}")
        assert task is not None and task.payload == ({"n": i} if i % 2 == 0 else "changed"), i
    first = [(await b.claim("c1", block_ms=500))[0] for _ in range(3)]
    assert [d.task.id for d in first] == ["t0", "t2", "t4"]


async def test_malformed_task_id_rejects_whole_batch(brokers) -> None:
    b: Broker = await brokers()
    with pytest.raises(InvalidTaskId, match="a b"):
        await b.enqueue_many([NewTask(1, "ok"), NewTask(2, "a b")])
    assert (await b.stats()).enqueued_total == 0
    assert await b.get_task("ok") is None


async def test_restarted_consumer_gets_own_pending_first(brokers) -> None:
    first: Broker = await brokers()
    await first.enqueue_many([NewTask({}, "a"), NewTask({}, "b")])
    (d,) = await first.claim("agent-0")
    assert d.task.id == "a"
    await first.close()  # "crash": delivery never acknowledged
    restarted: Broker = await brokers()
    (again,) = await restarted.claim("agent-0")
    assert (again.task.id, again.source, again.attempt) == ("a", "own", 2)
    other: Broker = await brokers(ledger_dir=None)
    (new,) = await other.claim("agent-1")
    assert new.task.id == "b"  # "a" is not handed to anyone else while its owner is back


async def test_keepalive_protects_long_task_then_abandoned_task_is_reclaimed(brokers) -> None:
    owner: Broker = await brokers(claim_idle_ms=800)
    thief: Broker = await brokers(claim_idle_ms=800, ledger_dir=None)
    await owner.enqueue_many([NewTask({}, "long")])
    (d,) = await owner.claim("owner")
    # Three idle periods pass while the owner keeps the delivery alive: nobody else gets it.
    for _ in range(12):
        await owner.keep_alive([d])
        assert await thief.claim("thief", block_ms=200) == []
    # The owner goes silent: after the idle time the task is handed to another consumer.
    got: list = []

    async def reclaimed() -> bool:
        got.extend(await thief.claim("thief", block_ms=200))
        return bool(got)

    await wait_until(reclaimed, within=20, what="reclaim of the abandoned delivery")
    assert (got[0].task.id, got[0].source, got[0].attempt) == ("long", "reclaimed", 2)


CLAIM_AND_HANG = """
import asyncio, sys
sys.path.insert(0, {support!r})
from rt_support import make_test_broker
async def main():
    b = make_test_broker({backend!r}, {url!r}, {ns!r}, claim_idle_ms=1000, ledger_dir={ledger!r})
    await b.connect()
    (d,) = await b.claim("victim", block_ms=5000)
    print(d.task.id, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


@pytest.mark.parametrize("comes_back", ["same-identity", "other-consumer"])
async def test_redelivery_after_sigkill(
    brokers, backend, server_url, unique_namespace, tmp_path, comes_back
) -> None:
    b: Broker = await brokers(claim_idle_ms=1000)
    await b.enqueue_many([NewTask({"i": i}, f"k{i}") for i in range(3)])
    script = CLAIM_AND_HANG.format(
        support=str(Path(__file__).parent),
        backend=backend,
        url=server_url,
        ns=unique_namespace,
        ledger=str(tmp_path / "victim-volume"),
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.decode().strip() == "k0"
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    if comes_back == "same-identity":
        again: Broker = await brokers(claim_idle_ms=1000, ledger_dir=tmp_path / "victim-volume")
        (d,) = await again.claim("victim")
        assert (d.task.id, d.source) == ("k0", "own")
    else:
        other: Broker = await brokers(claim_idle_ms=1000, ledger_dir=None)
        got: list = []

        async def k0_back() -> bool:
            for d in await other.claim("survivor", block_ms=200):
                if d.task.id == "k0":
                    got.append(d)
                else:
                    await other.ack(d)
            return bool(got)

        await wait_until(k0_back, within=20, what="redelivery of the killed consumer's task")
        d = got[0]
        assert d.attempt == 2
    await b.record_result(TaskResult("k0", "ok", "x", d.attempt))
    await (again if comes_back == "same-identity" else other).ack(d)
    assert (await b.stats()).done == 1


async def test_finish_records_and_acknowledges_in_one_step(brokers) -> None:
    """``finish`` = ``record_result`` + ``ack``: the result once, the delivery gone, a retry harmless."""
    b: Broker = await brokers()
    await b.enqueue({"x": 1}, "fin")
    await b.enqueue({"x": 2}, "fin2")
    [d] = await b.claim("agent-f", block_ms=200)
    assert d.task.id == "fin"
    assert await b.finish(d, TaskResult("fin", "ok", "agent-f", d.attempt)) is True
    assert await b.finish(d, TaskResult("fin", "again", "agent-f", d.attempt)) is False  # a retried finish
    result = await b.get_result("fin")
    assert result is not None and result.value == "ok"
    assert [e.data["type"] for e in await b.read_events("fin")] == ["result"]
    stats = await b.stats()
    assert (stats.pending, stats.queued, stats.done) == (0, 1, 1)
    [d2] = await b.claim("agent-f", block_ms=200)  # the finished one never comes back, the next does
    assert d2.task.id == "fin2"
    await b.ack(d2)


async def test_exactly_one_result_recorded(brokers) -> None:
    b1: Broker = await brokers()
    b2: Broker = await brokers()
    await b1.enqueue({"x": 1}, "dup")
    outcomes = await asyncio.gather(
        *[
            (b1 if i % 2 else b2).record_result(TaskResult("dup", {"by": i}, f"agent-{i}", 1))
            for i in range(10)
        ]
    )
    assert sorted(outcomes) == [False] * 9 + [True]
    winner = outcomes.index(True)
    result = await b2.get_result("dup")
    assert result is not None and result.value == {"by": winner} and result.agent_id == f"agent-{winner}"
    events = await b1.read_events("dup")
    assert [e.data["type"] for e in events] == ["result"]
    assert events[0].data["value"] == {"by": winner}
    assert (await b1.stats()).done == 1
    assert await b1.get_result("never") is None


async def test_fail_retries_then_dead_letters_with_last_error(brokers) -> None:
    b: Broker = await brokers(max_deliveries=3)
    await b.enqueue_many([NewTask({"bad": True}, "poison"), NewTask({}, "fine")])
    attempts = []
    while True:
        deliveries = await b.claim("c", block_ms=300)
        assert deliveries, "poison task vanished before being dead-lettered"
        (d,) = deliveries
        if d.task.id == "fine":
            await b.ack(d)
            continue
        attempts.append(d.attempt)
        if await b.fail(d, f"ValueError: bad input (attempt {d.attempt})"):
            break
    assert attempts == [1, 2, 3]
    (dead,) = await b.dead_letters()
    assert dead.task.id == "poison" and dead.task.payload == {"bad": True}
    assert dead.error == "ValueError: bad input (attempt 3)" and dead.deliveries == 3
    assert [e.data["type"] for e in await b.read_events("poison")] == ["dead_lettered"]
    stats = await b.stats()
    assert (stats.dead_lettered, stats.pending) == (1, 0)
    remaining = await b.claim("c", block_ms=300)
    assert [d.task.id for d in remaining] in ([], ["fine"])
    for d in remaining:
        await b.ack(d)
    assert await b.claim("c", block_ms=200) == []


async def test_abandoned_task_dead_lettered_after_max_deliveries(brokers) -> None:
    """A task that kills every agent taking it (no error ever recorded) still ends in the dead letters."""
    b: Broker = await brokers(max_deliveries=2, claim_idle_ms=300)
    await b.enqueue({"crash": True}, "crasher")
    takers = []
    for i in range(3):
        fresh: Broker = await brokers(max_deliveries=2, claim_idle_ms=300, ledger_dir=None)
        got: list = []

        async def take(fresh: Broker = fresh, got: list = got, i: int = i) -> bool:
            got.extend(await fresh.claim(f"victim-{i}", block_ms=200))
            return bool(got) or bool(await b.dead_letters())

        await wait_until(take, within=20, what="redelivery")
        takers += got
        await fresh.close()  # dies without ack or fail
    assert [d.attempt for d in takers] == [1, 2]
    (dead,) = await b.dead_letters()
    assert dead.task.id == "crasher" and dead.deliveries == 2 and "abandoned" in dead.error


async def test_only_unproductive_deliveries_count_toward_max_deliveries(brokers) -> None:
    """Restarts after checkpoint progress and graceful releases never count; deaths without progress do."""
    b: Broker = await brokers(max_deliveries=2)
    await b.enqueue({}, "long")
    for i in range(10):
        (d,) = await b.claim("agent-0", block_ms=2000)
        assert (d.task.id, d.attempt) == ("long", i + 1)
        if i % 2:
            await b.release(d)  # SIGTERM: graceful handover
        else:
            await b.progress(d)  # stored a checkpoint, then gets SIGKILLed
        await b.close()  # the agent process ends; its restart comes back under the same identity
        b = await brokers(max_deliveries=2)
    # Now a crash loop: two deliveries in a row die without progress, the third claim dead-letters.
    for attempt in (11, 12):
        (d,) = await b.claim("agent-0", block_ms=2000)
        assert d.attempt == attempt
        await b.close()
        b = await brokers(max_deliveries=2)
    assert await b.claim("agent-0", block_ms=300) == []
    (dead,) = await b.dead_letters()
    assert dead.task.id == "long" and dead.deliveries == 12
    assert dead.error == "abandoned 2 times without a result or checkpoint progress"


async def test_a_failure_counts_and_a_release_does_not(brokers) -> None:
    b: Broker = await brokers(max_deliveries=2)
    await b.enqueue({}, "mixed")
    (d,) = await b.claim("c")
    assert await b.fail(d, "ValueError: first") is False
    (d,) = await b.claim("c", block_ms=2000)
    await b.release(d)
    (d,) = await b.claim("c", block_ms=2000)
    assert d.attempt == 3 and d.last_error == "ValueError: first"
    assert await b.fail(d, "ValueError: second") is True  # the second strike
    (dead,) = await b.dead_letters()
    assert (dead.error, dead.deliveries) == ("ValueError: second", 3)


async def test_malformed_cursor_is_a_contract_error(brokers) -> None:
    b: Broker = await brokers()
    await b.enqueue({}, "ev")
    good = await b.publish_event("ev", {"type": "progress"})
    for bad in ("abc", "1-2-3", "-1", "1.5", " 1", "9" * 30, "0-x"):
        with pytest.raises(InvalidCursor, match="invalid event cursor"):
            b.check_cursor(bad)
        with pytest.raises(InvalidCursor):
            await b.read_events("ev", bad)
    for ok in (None, "", "0", good):
        b.check_cursor(ok)
    assert await b.read_events("ev", good) == []
    assert await b.ping() is True  # the connection survived the bad requests


async def test_event_log_resume_from_id(brokers) -> None:
    b: Broker = await brokers()
    await b.enqueue({}, "ev")
    ids = [await b.publish_event("ev", {"type": "progress", "step": i}) for i in range(5)]
    assert len(set(ids)) == 5
    first = await b.read_events("ev", None, limit=2)
    assert [e.data["step"] for e in first] == [0, 1]
    rest = await b.read_events("ev", first[-1].id, limit=100)
    assert [e.data["step"] for e in rest] == [2, 3, 4]
    assert [e.id for e in first + rest] == ids
    assert await b.read_events("ev", rest[-1].id) == []
    assert await b.read_events("other-task", None) == []

    async def later() -> None:
        await asyncio.sleep(0.3)
        await b.publish_event("ev", {"type": "progress", "step": 5})

    publisher = asyncio.create_task(later())
    woke = await b.read_events("ev", rest[-1].id, block_ms=10_000)
    await publisher
    assert [e.data["step"] for e in woke] == [5]


async def test_no_loss_with_competing_consumers(brokers) -> None:
    producer: Broker = await brokers(max_deliveries=10)
    n = 60
    await producer.enqueue_many([NewTask({"i": i}, f"n{i}") for i in range(n)])
    consumers = [await brokers(max_deliveries=10, ledger_dir=None) for _ in range(3)]
    handled: dict[str, int] = {}

    async def work(idx: int, b: Broker) -> None:
        flaky = 0
        while True:
            deliveries = await b.claim(f"c{idx}", block_ms=300)
            if not deliveries:
                stats = await b.stats()
                if stats.queued == 0 and stats.pending == 0:
                    return
                continue
            for d in deliveries:
                flaky += 1
                if flaky % 7 == 0:  # every 7th delivery fails once and is retried
                    await b.fail(d, "transient")
                    continue
                if await b.record_result(TaskResult(d.task.id, d.task.payload, f"c{idx}", d.attempt)):
                    handled[d.task.id] = handled.get(d.task.id, 0) + 1
                await b.ack(d)

    await asyncio.gather(*(work(i, b) for i, b in enumerate(consumers)))
    assert sorted(handled) == sorted(f"n{i}" for i in range(n))
    assert set(handled.values()) == {1}
    stats = await producer.stats()
    assert (stats.done, stats.queued, stats.pending, stats.dead_lettered) == (n, 0, 0, 0)
    for i in range(n):
        result = await producer.get_result(f"n{i}")
        assert result is not None and result.value == {"i": i}


async def test_checkpoint_blobs_keep_newest_two(brokers) -> None:
    b: Broker = await brokers()
    assert await b.get_checkpoints("cp") == []
    for i in range(4):
        await b.put_checkpoint("cp", json.dumps({"v": i}).encode())
    assert [json.loads(x)["v"] for x in await b.get_checkpoints("cp")] == [3, 2]
    await b.delete_checkpoints("cp")
    assert await b.get_checkpoints("cp") == []


async def test_ping(brokers) -> None:
    b: Broker = await brokers()
    assert await b.ping() is True
    await b.close()
    assert await b.ping() is False


async def test_nats_max_ack_pending_stall_is_reported(
    nats_server, unique_namespace, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """JetStream stops delivering silently at MaxAckPending: the broker must say so (stats + error log)."""
    from agentswarm.broker.nats_jetstream import NatsJetStreamBroker

    b = NatsJetStreamBroker(nats_server.url, namespace=unique_namespace, max_ack_pending=2, ledger_dir=None)
    await b.connect()
    try:
        await b.enqueue_many([NewTask({}, f"s{i}") for i in range(3)])
        held = (await b.claim("x", count=2, block_ms=1000))[:2]
        assert len(held) == 2
        assert await b.claim("y", block_ms=300) == []  # s2 waits, nothing is delivered
        stats = await b.stats()
        assert stats.saturated and (stats.queued, stats.pending) == (1, 2)
        with caplog.at_level("ERROR", logger="agentswarm.broker.nats_jetstream"):
            b._last_saturation_check = 0.0
            assert await b.claim("y", block_ms=300) == []
        assert "MaxAckPending (2)" in caplog.text and "AGENTSWARM_MAX_ACK_PENDING" in caplog.text
        await b.ack(held[0])
        (d,) = await b.claim("y", block_ms=2000)
        assert d.task.id == "s2" and not (await b.stats()).saturated
    finally:
        await b.close()


@pytest.mark.parametrize("owner_restarts", [False, True])
async def test_failed_attempt_is_retried_after_backoff_not_before(brokers, owner_restarts: bool) -> None:
    """A failed task waits for its backoff (also across a restart of its consumer); other tasks flow."""
    b: Broker = await brokers(retry_backoff_ms=20_000)
    await b.enqueue_many([NewTask({}, "flaky"), NewTask({}, "next")])
    (d,) = await b.claim("c")
    assert await b.fail(d, "HTTPError: 503") is False
    if owner_restarts:
        await b.close()
        b = await brokers(retry_backoff_ms=20_000)
    (other,) = await b.claim("c", block_ms=300)
    assert other.task.id == "next"  # not the failed task: its backoff has not passed
    await b.ack(other)
    assert await b.claim("c", block_ms=300) == []
    assert (b.retry_delay(1), b.retry_delay(2)) == (20.0, 30.0)  # doubling, capped at 30 s
    # Backoff over (short backoff broker): the retry comes with the recorded error.
    quick: Broker = await brokers(retry_backoff_ms=1)
    await quick.enqueue({}, "flaky2")
    (d2,) = await quick.claim("q")
    await quick.fail(d2, "Timeout")
    got: list = []

    async def retried() -> bool:
        got.extend(await quick.claim("q", block_ms=100))
        return bool(got)

    await wait_until(retried, within=20, what="retry after backoff")
    assert (got[0].task.id, got[0].attempt, got[0].last_error) == ("flaky2", 2, "Timeout")


async def test_nats_outage_logs_one_line_per_state_change(
    nats_factory, unique_namespace, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """While the server is away nats-py retries every 0.5 s: no traceback per retry, one line lost/back."""
    from agentswarm.broker.nats_jetstream import NatsJetStreamBroker

    server = nats_factory()
    b = NatsJetStreamBroker(server.url, namespace=unique_namespace, ledger_dir=tmp_path)
    await b.connect()
    try:
        with caplog.at_level("DEBUG"):
            server.kill()
            await asyncio.sleep(4)  # about eight reconnect attempts
            server.start()

            async def back() -> bool:
                return await b.ping()

            await wait_until(back, within=30, what="the connection to come back")
        records = [r for r in caplog.records if r.name.startswith(("nats", "agentswarm")) and r.levelno >= 30]
        assert not [r for r in records if r.exc_info], [r.getMessage() for r in records]
        messages = [r.getMessage() for r in records]
        assert sum("connection lost" in m for m in messages) == 1, messages
        assert sum("connection back" in m for m in messages) == 1, messages
    finally:
        await b.close()


async def test_nats_ledger_lives_in_the_broker_state_dir(nats_server, unique_namespace, tmp_path) -> None:
    from agentswarm.broker import make_broker
    from agentswarm.settings import Settings

    settings = Settings(
        broker="nats", nats_url=nats_server.url, namespace=unique_namespace, checkpoint_dir=tmp_path / "ckpt"
    )
    assert settings.broker_state_path == tmp_path / "ckpt" / "broker-state"
    settings = settings.model_copy(update={"broker_state_dir": tmp_path / "state"})
    b = make_broker(settings)
    await b.connect()
    try:
        await b.enqueue({}, "t")
        (d,) = await b.claim("agent-0", block_ms=2000)
        assert [p.name for p in (tmp_path / "state").iterdir()] == [
            f".nats-inflight-{unique_namespace}-agent-0.json"
        ]
        assert not (tmp_path / "ckpt").exists()
        await b.ack(d)
    finally:
        await b.close()


@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_backend_errors_reach_callers_only_as_contract_errors(
    kind: str, request: pytest.FixtureRequest, unique_namespace: str, tmp_path: Path
) -> None:
    """With the server gone every operation raises BrokerUnavailable (a BrokerError), never a raw
    redis-py / nats-py exception, and the broker calls it transient."""
    from agentswarm.broker import BrokerError, BrokerUnavailable
    from rt_support import make_test_broker

    server = request.getfixturevalue(f"{kind}_factory")()
    b = make_test_broker(kind, server.url, unique_namespace, ledger_dir=tmp_path)
    await b.connect()
    try:
        await b.enqueue({}, "t")
        server.kill()
        for operation in (lambda: b.get_task("t"), lambda: b.enqueue({}, "u")):
            with pytest.raises(BrokerUnavailable) as caught:
                await operation()
            assert isinstance(caught.value, BrokerError) and b.is_transient(caught.value)
            assert caught.value.__cause__ is not None  # the backend's own exception, kept as the cause
    finally:
        await b.close()
