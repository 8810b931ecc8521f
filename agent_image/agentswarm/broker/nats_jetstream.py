"""NATS JetStream backend (nats-py): the work queue of :class:`NatsJetStreamBroker`: claim, keep-alive,
ack, fail, release and dead-lettering, with the own-pending ledger.

Keep-alive is an in-progress ack (``+WPI``), which resets AckWait, so long tasks are not redelivered while
their agent lives. JetStream has no per-consumer pending list, so "own pending first" is implemented with a
small ledger in the agent's broker state directory (``AGENTSWARM_BROKER_STATE_DIR``, on the agent's volume;
``.nats-inflight-<ns>-<consumer>.json``): the reply subject of every unacknowledged delivery. A restarted
agent re-takes those first: it sends ``+WPI`` on the saved reply subject (the server keys acks by stream
sequence, so that works after a restart), reads the task and later acks on the same subject. Without the
ledger (another machine) the task comes back after AckWait to anyone. Server objects and storage:
:mod:`agentswarm.broker.nats_connection`, :mod:`agentswarm.broker.nats_records`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors

from agentswarm.broker.base import (
    Delivery,
    DeliveryRecord,
    Task,
    abandoned_reason,
    task_from_record,
    validate_task_id,
)
from agentswarm.broker.feed import task_transition
from agentswarm.broker.nats_pull import NatsPull

log = logging.getLogger(__name__)


class _Handle:
    """Backend-private part of a JetStream delivery: where to ack and which stream message it is."""

    __slots__ = ("reply", "seq")

    def __init__(self, reply: str, seq: int) -> None:
        self.reply = reply
        self.seq = seq

    def __repr__(self) -> str:
        return f"_Handle(seq={self.seq})"


class NatsJetStreamBroker(NatsPull):
    """The NATS JetStream implementation of :class:`~agentswarm.broker.base.Broker`."""

    name = "nats"

    # -- the own-pending ledger ---------------------------------------------------------------------------
    def _ledger_path(self, consumer: str) -> Path | None:
        if self.ledger_dir is None:
            return None
        return self.ledger_dir / f".nats-inflight-{self.ns}-{consumer}.json"

    def _ledger(self, consumer: str) -> dict[str, dict[str, Any]]:
        if consumer not in self._ledgers:
            path = self._ledger_path(consumer)
            data: dict[str, dict[str, Any]] = {}
            if path is not None and path.exists():
                try:
                    data = json.loads(path.read_text())
                except (OSError, ValueError) as exc:
                    log.warning("ignoring unreadable in-flight ledger %s: %s", path, exc)
            self._ledgers[consumer] = data
        return self._ledgers[consumer]

    async def _save_ledger(self, consumer: str) -> None:
        """Persist the ledger: write + rename in a worker thread, without fsync.

        The ledger only speeds up the "restart under the same identity" path. A process crash cannot lose
        the renamed file (the page cache survives SIGKILL); a node crash can, and then the delivery simply
        comes back after AckWait, so an fsync per task (5-10 ms on a busy disk) is not worth paying.
        """
        path = self._ledger_path(consumer)
        if path is None:
            return
        snapshot = json.dumps(self._ledgers.get(consumer, {}))

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_text(snapshot)
            os.replace(tmp, path)

        async with self._ledger_lock:
            await asyncio.to_thread(write)

    async def _forget(self, delivery: Delivery, *, save: bool = True) -> None:
        """Drop a delivery from the in-flight set and the ledger.

        ``save=False`` (a delivery whose message is gone: acknowledged) leaves the file to the next save: a
        stale entry costs a restarted agent one lookup that finds the message gone and drops the entry.
        """
        handle: _Handle = delivery.handle
        self._inflight.discard(handle.seq)
        ledger = self._ledger(delivery.consumer)
        if ledger.pop(str(handle.seq), None) is not None and save:
            await self._save_ledger(delivery.consumer)

    # -- consuming ----------------------------------------------------------------------------------------
    async def _task_for(self, task_id: str) -> tuple[Task | None, str | None]:
        task = await self.get_task(task_id)
        try:
            err_entry = await self.kv("errors").get(task_id)
            err = (err_entry.value or b"").decode() or None
        except nats.js.errors.KeyNotFoundError:
            err = None
        return task, err

    async def _admit(self, delivery: Delivery) -> Delivery | None:
        """Count the delivery, dead-letter it past max_deliveries, else remember it as in flight.

        The server's ``num_delivered`` does not see a restarted agent re-taking its own delivery, so the
        attempt number is also kept in the ``attempts`` bucket and the larger of the two wins.
        """
        # One round trip for the common case: read the record and take the lease (create: only if no live
        # lease exists) together. Only when another lease exists is its holder and age looked at.
        record, leased = await asyncio.gather(
            self._record(delivery.task.id), self._create_lease(delivery.task.id, delivery.consumer)
        )
        if record.buried is not None:  # its dead-lettering was interrupted: finish it, never run it
            await self._unqueue_dead(delivery, record.buried)
            return None
        holder = None if leased else await self._lease_holder(delivery.task.id, delivery.consumer)
        if holder is not None:
            log.warning(
                "task %s is redelivered but %s is still working on it (fresh lease): not running it twice",
                delivery.task.id,
                holder,
            )
            if delivery.source == "own":
                await self._forget(delivery)  # it is someone else's now
            else:
                await self._nak(delivery.handle.reply, self.claim_idle_ms / 1000.0)
            return None
        if not leased:
            await self._put_lease(delivery.task.id, delivery.consumer)
        delivery.attempt = max(delivery.attempt, record.attempt + 1)
        record.attempt = delivery.attempt
        record.admit()
        if record.strikes >= self.max_deliveries:
            delivery.attempt -= 1  # this hand-out never reaches a handler
            await self.dead_letter(delivery, abandoned_reason(delivery.last_error, record))
            return None
        handle: _Handle = delivery.handle
        ledger = self._ledger(delivery.consumer)
        ledger[str(handle.seq)] = {
            "reply": handle.reply,
            "task_id": delivery.task.id,
            "attempt": delivery.attempt,
        }
        # The record and the ledger are independent: written at the same time (the ledger in a thread).
        await asyncio.gather(self._put_record(delivery.task.id, record), self._save_ledger(delivery.consumer))
        self._inflight.add(handle.seq)
        return delivery

    async def _record(self, task_id: str) -> DeliveryRecord:
        try:
            return DeliveryRecord.loads((await self.kv("attempts").get(task_id)).value)
        except nats.js.errors.KeyNotFoundError:
            return DeliveryRecord()

    async def _put_record(self, task_id: str, record: DeliveryRecord) -> None:
        await self.kv("attempts").put(task_id, record.dumps().encode())

    async def progress(self, delivery: Delivery) -> None:
        record = await self._record(delivery.task.id)
        record.progressed = True
        await self._put_record(delivery.task.id, record)

    async def release(self, delivery: Delivery) -> None:
        record = await self._record(delivery.task.id)
        record.released()
        await self._put_record(delivery.task.id, record)
        # It stays in this consumer's ledger: a restart under the same identity takes it first.
        self._inflight.discard(delivery.handle.seq)

    async def claim(self, consumer: str, *, count: int = 1, block_ms: int = 1000) -> list[Delivery]:
        out: list[Delivery] = []
        # 1. own deliveries from before a restart (ledger), or handed back by fail() in this process
        ledger = self._ledger(consumer)
        for seq_s, entry in list(ledger.items()):
            if len(out) >= count:
                break
            if int(seq_s) in self._inflight or float(entry.get("retry_at", 0)) > time.time():
                continue
            try:
                await self.js.get_msg(self.s_tasks, int(seq_s))
            except nats.js.errors.NotFoundError:  # acknowledged meanwhile (by whoever got it after AckWait)
                ledger.pop(seq_s, None)
                await self._save_ledger(consumer)
                continue
            await self.nc.publish(entry["reply"], b"+WPI")  # take it back before AckWait hands it to others
            task, err = await self._task_for(entry["task_id"])
            if task is None:
                ledger.pop(seq_s, None)
                continue
            delivery = Delivery(
                task=task,
                consumer=consumer,
                attempt=int(entry["attempt"]) + 1,
                source="own",
                handle=_Handle(entry["reply"], int(seq_s)),
                last_error=err,
            )
            admitted = await self._admit(delivery)
            if admitted is not None:
                out.append(admitted)
        if out:
            return out
        # 2 + 3. JetStream serves redeliveries (abandoned after AckWait) before new messages, per class;
        # the classes are read in ClassOrder's order.
        for msg in await self._pull(consumer, count, block_ms):
            meta = msg.metadata
            try:
                body = json.loads(msg.data)
                task_id = validate_task_id(body["id"])
            except (ValueError, KeyError, TypeError) as exc:
                log.error("dropping malformed task message seq %s: %s", meta.sequence.stream, exc)
                await msg.ack()
                continue
            last_error: str | None = None
            if meta.num_delivered > 1:
                _, last_error = await self._task_for(task_id)
            delivery = Delivery(
                task=task_from_record(task_id, body),
                consumer=consumer,
                attempt=int(meta.num_delivered),
                source="reclaimed" if meta.num_delivered > 1 else "new",
                handle=_Handle(str(msg.reply), int(meta.sequence.stream)),
                last_error=last_error,
            )
            admitted = await self._admit(delivery)
            if admitted is not None:
                out.append(admitted)
        return out

    async def keep_alive(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            await self.nc.publish(d.handle.reply, b"+WPI")
        await asyncio.gather(*(self._put_lease(d.task.id, d.consumer) for d in deliveries))
        await self.nc.flush(timeout=5)

    # A lease (KV ``leases``: task id -> consumer + time of its last keep-alive) stops a second agent from
    # running a task its owner is still working on. JetStream normally guarantees that through AckWait, but
    # a nats-server crash can lose recent consumer state and hand in-flight messages out again.
    #
    # A lease's age is measured on the server's clock (the time JetStream stored the lease, against the time
    # it stores a probe written just now), never on the agents' clocks, so agents whose clocks disagree still
    # agree on whether a lease is fresh. The probe costs two round trips, only when another consumer's lease
    # exists (a take-over), never on the path of a new task.
    async def _lease_holder(self, task_id: str, consumer: str) -> str | None:
        """The other consumer holding a fresh lease on ``task_id``, if any."""
        stream = f"KV_{self.ns}_leases"
        try:
            msg = await self.js.get_msg(stream, subject=f"$KV.{self.ns}_leases.{task_id}")
        except nats.js.errors.NotFoundError:
            return None
        try:
            holder = str(json.loads(msg.data or b"{}")["consumer"])
        except (ValueError, KeyError, TypeError):
            return None  # a deleted lease (tombstone) or garbage: nobody holds it
        if holder == consumer or msg.time is None:
            return None
        now = await self._server_now()
        age = (now - msg.time).total_seconds()
        # A live owner refreshes every keep-alive (claim_idle_ms / 4 by default); a dead one's lease is at
        # least claim_idle_ms old by the time AckWait redelivers its message.
        if age < 0.75 * self.claim_idle_ms / 1000.0:
            return holder
        return None

    async def _server_now(self) -> datetime.datetime:
        """The server's clock: the time JetStream stores a probe message (written, then read back)."""
        # "_probe.clock" cannot be a task id (no '.' in task ids), so it never shadows a task's lease.
        seq = await self.kv("leases").put("_probe.clock", b"")
        probe = await self.js.get_msg(f"KV_{self.ns}_leases", seq)
        assert probe.time is not None
        return probe.time

    def _lease(self, consumer: str) -> bytes:
        return json.dumps({"consumer": consumer, "at": time.time()}).encode()

    async def _put_lease(self, task_id: str, consumer: str) -> None:
        await self.kv("leases").put(task_id, self._lease(consumer))

    async def _create_lease(self, task_id: str, consumer: str) -> bool:
        """Take the lease if nobody holds one (no entry, or a deleted one); False if a lease exists."""
        try:
            await self.kv("leases").create(task_id, self._lease(consumer))
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            return False
        return True

    async def _drop_lease(self, task_id: str) -> None:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await self.kv("leases").delete(task_id)

    async def _nak(self, reply: str, delay: float) -> None:
        nak = b"-NAK" + (b" " + json.dumps({"delay": int(delay * 1e9)}).encode() if delay > 0 else b"")
        await self._ack_reply(reply, nak)

    async def _ack_reply(self, reply: str, payload: bytes) -> bool:
        """Send an ack-type reply and wait for the server's confirmation; False if none came."""
        try:
            await self.nc.request(reply, payload, timeout=3)
        except nats.errors.NoRespondersError:
            pass  # nothing listens on that reply subject any more: nothing to confirm
        except nats.errors.TimeoutError:
            if not self.nc.is_connected:
                raise  # a real outage: the caller retries
            return False
        return True

    async def _finish(self, handle: _Handle) -> None:
        """Remove a task message for good: ack it, or delete it if the server ignores the ack.

        After a nats-server crash the consumer may have forgotten this delivery and silently drop acks on its
        reply subject; deleting the message from the work-queue stream by sequence has the same effect.
        """
        if await self._ack_reply(handle.reply, b"+ACK"):
            return
        log.warning(
            "ack of message %d was not confirmed; deleting it from %s instead", handle.seq, self.s_tasks
        )
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_msg(self.s_tasks, handle.seq)

    async def ack(self, delivery: Delivery) -> None:
        # The task is finished (its outcome is recorded): its lease can go in the same round trip.
        await asyncio.gather(self._finish(delivery.handle), self._drop_lease(delivery.task.id))
        await self._forget(delivery, save=False)

    async def fail(self, delivery: Delivery, error: str) -> bool:
        await self.kv("errors").put(delivery.task.id, error.encode())
        record = await self._record(delivery.task.id)
        record.failed()
        await self._put_record(delivery.task.id, record)
        if record.strikes >= self.max_deliveries:
            await self.dead_letter(delivery, error)
            return True
        if delivery.source == "own":
            # A re-taken delivery is still this consumer's: keep it in the ledger for the next claim.
            self._inflight.discard(delivery.handle.seq)
            ledger = self._ledger(delivery.consumer)
            entry = ledger.get(str(delivery.handle.seq))
            if entry is not None:
                entry["attempt"] = delivery.attempt
                entry["retry_at"] = time.time() + self.retry_delay(delivery.attempt)
                await self._save_ledger(delivery.consumer)
            return False
        # Redeliver to any agent after the backoff.
        await self._drop_lease(delivery.task.id)
        await self._nak(delivery.handle.reply, self.retry_delay(delivery.attempt))
        await self._forget(delivery)
        return False

    async def dead_letter(self, delivery: Delivery, error: str) -> None:
        now = time.time()
        task = delivery.task
        record = await self._record(task.id)
        if record.buried is None:
            # Step 1 (bury). Nats-Msg-Id makes a repeat after a crash between the publishes a no-op (within
            # the stream's duplicate window); the mark is written last, so a crash before it repeats them.
            dead = {
                "id": task.id,
                "payload": task.payload,
                "enqueued_at": task.enqueued_at,
                "error": error,
                "deliveries": delivery.attempt,
                "consumer": delivery.consumer,
                "at": now,
            }
            await self.js.publish(
                self.subj_dead, json.dumps(dead).encode(), headers={"Nats-Msg-Id": f"dead-{task.id}"}
            )
            event = {"type": "dead_lettered", "error": error, "deliveries": delivery.attempt, "at": now}
            await self.js.publish(
                self._events_subject(task.id),
                json.dumps(event).encode(),
                headers={"Nats-Msg-Id": f"dead-{task.id}"},
            )
            dead_state = task_transition(
                task.id, "dead", at=now, agent=delivery.consumer, attempt=delivery.attempt, error=error
            )
            await (await self._swarm_async(dead_state))
            record.buried = error
            await self._put_record(task.id, record)
            log.warning("task %s dead-lettered after %d deliveries: %s", task.id, delivery.attempt, error)
        await self._unqueue_dead(delivery, record.buried)

    async def _unqueue_dead(self, delivery: Delivery, error: str) -> None:
        """Steps 2 and 3 of dead-lettering: notify the listeners, then remove the task from the queue."""
        if not await self._dead_lettered(delivery.task.id, error):
            # Left unacknowledged (buried): redelivered after AckWait, and finished then.
            self._inflight.discard(delivery.handle.seq)
            return
        await self._finish(delivery.handle)
        await self._forget(delivery)
        await self._drop_lease(delivery.task.id)
