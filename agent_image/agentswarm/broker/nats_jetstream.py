"""NATS JetStream backend (nats-py): a work-queue stream, one shared durable pull consumer, KV for state.

Server objects (``NS`` = namespace upper-cased, ``ns`` as given):

* stream ``NS_TASKS`` (subject ``ns.tasks``, work-queue retention, file storage): acknowledged = deleted.
  Durable pull consumer ``ns-agents``: explicit acks, ``AckWait = claim_idle_ms``, ``MaxAckPending`` from
  settings, ``MaxDeliver = max_deliveries + 2`` as a server-side backstop only (the broker dead-letters
  itself when ``num_delivered`` exceeds ``max_deliveries``, so no message is ever left stuck after the
  server's last delivery).
* stream ``NS_DEAD`` (``ns.dead``): dead letters. Stream ``NS_EVENTS`` (``ns.events.<task id>``): event logs;
  an event id is the stream sequence, and watchers read the next message of their subject after it.
* KV buckets ``ns_tasks`` (task data; makes enqueue idempotent and serves ``get_task``), ``ns_results``
  (``create``: first result wins), ``ns_errors`` (last error), ``ns_attempts`` (deliveries so far),
  ``ns_leases`` (who works on a task, refreshed by keep-alive; see ``_lease_holder``), ``ns_ckpt``
  (history 2: the newest two checkpoint blobs per task).

Keep-alive is an in-progress ack (``+WPI``), which resets AckWait, so long tasks are not redelivered while
their agent lives. JetStream has no per-consumer pending list, so "own pending first" is implemented with a
small ledger on the agent's volume (``<checkpoint_dir>/.nats-inflight-<consumer>.json``): the reply subject
of every unacknowledged delivery. A restarted agent re-takes those first: it sends ``+WPI`` on the saved reply
subject (the server keys acks by stream sequence, so that works after a restart), reads the task and later
acks on the same subject. Without the ledger (another machine) the task comes back after AckWait to anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from agentswarm.broker.base import (
    JSON,
    Broker,
    BrokerStats,
    DeadLetter,
    Delivery,
    Task,
    TaskEvent,
    TaskResult,
    TaskSpec,
    new_task_id,
    validate_task_id,
)

if TYPE_CHECKING:
    from agentswarm.settings import Settings

log = logging.getLogger(__name__)

_TRANSIENT = (
    nats.errors.ConnectionClosedError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoServersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
)


class _Handle:
    """Backend-private part of a JetStream delivery: where to ack and which stream message it is."""

    __slots__ = ("reply", "seq")

    def __init__(self, reply: str, seq: int) -> None:
        self.reply = reply
        self.seq = seq

    def __repr__(self) -> str:
        return f"_Handle(seq={self.seq})"


class NatsJetStreamBroker(Broker):
    """The NATS JetStream implementation of :class:`~agentswarm.broker.base.Broker`."""

    name = "nats"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "agentswarm",
        max_deliveries: int = 5,
        claim_idle_ms: int = 60_000,
        retry_backoff_ms: int = 0,
        max_ack_pending: int = 10_000,
        ledger_dir: Path | None = None,
    ) -> None:
        super().__init__(
            max_deliveries=max_deliveries, claim_idle_ms=claim_idle_ms, retry_backoff_ms=retry_backoff_ms
        )
        self.url = url
        self.ns = namespace
        up = namespace.upper().replace("-", "_")
        self.s_tasks, self.s_dead, self.s_events = f"{up}_TASKS", f"{up}_DEAD", f"{up}_EVENTS"
        self.subj_tasks, self.subj_dead = f"{namespace}.tasks", f"{namespace}.dead"
        self.durable = f"{namespace}-agents"
        self.max_ack_pending = max_ack_pending
        self.ledger_dir = Path(ledger_dir) if ledger_dir is not None else None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._kv: dict[str, KeyValue] = {}
        self._inflight: set[int] = set()
        self._ledgers: dict[str, dict[str, dict[str, Any]]] = {}
        self._last_saturation_check = 0.0
        self._ledger_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> NatsJetStreamBroker:
        return cls(
            settings.nats_url,
            namespace=settings.namespace,
            max_deliveries=settings.max_deliveries,
            claim_idle_ms=settings.claim_idle_ms,
            retry_backoff_ms=settings.retry_backoff_ms,
            max_ack_pending=settings.max_ack_pending,
            ledger_dir=settings.checkpoint_dir,
        )

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, _TRANSIENT) or super().is_transient(exc)

    # -- helpers ------------------------------------------------------------------------------------------
    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("broker is not connected: call connect() first")
        return self._js

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise RuntimeError("broker is not connected: call connect() first")
        return self._nc

    def _events_subject(self, task_id: str) -> str:
        return f"{self.ns}.events.{task_id}"

    def kv(self, name: str) -> KeyValue:
        return self._kv[name]

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def connect(self) -> None:
        self._nc = await nats.connect(
            servers=[u.strip() for u in self.url.split(",")],
            name=f"agentswarm-{os.getpid()}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            allow_reconnect=True,
        )
        self._js = self._nc.jetstream(timeout=10)
        await self._ensure_stream(
            StreamConfig(
                name=self.s_tasks,
                subjects=[self.subj_tasks],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=120,
            )
        )
        await self._ensure_stream(
            StreamConfig(
                name=self.s_dead, subjects=[self.subj_dead], storage=StorageType.FILE, duplicate_window=120
            )
        )
        await self._ensure_stream(
            StreamConfig(
                name=self.s_events,
                subjects=[f"{self.ns}.events.>"],
                storage=StorageType.FILE,
                duplicate_window=120,
            )
        )
        config = ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            filter_subject=self.subj_tasks,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.claim_idle_ms / 1000.0,
            max_deliver=self.max_deliveries + 2,
            max_ack_pending=self.max_ack_pending,
            max_waiting=4096,
        )
        try:
            await self.js.add_consumer(self.s_tasks, config=config)
        except nats.js.errors.BadRequestError as exc:
            # An existing consumer with other settings: keep it working, say what differs.
            log.warning("consumer %s exists with other settings (%s); using it as is", self.durable, exc)
        self._sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.s_tasks)
        buckets = (("tasks", 1), ("results", 1), ("errors", 1), ("attempts", 1), ("leases", 1), ("ckpt", 2))
        for name, history in buckets:
            bucket = f"{self.ns}_{name}"
            try:
                self._kv[name] = await self.js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv[name] = await self.js.create_key_value(
                    KeyValueConfig(bucket=bucket, history=history, storage=StorageType.FILE)
                )

    async def _ensure_stream(self, config: StreamConfig) -> None:
        try:
            await self.js.stream_info(str(config.name))
        except nats.js.errors.NotFoundError:
            with contextlib.suppress(nats.js.errors.BadRequestError):  # created concurrently
                await self.js.add_stream(config)

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._js = self._sub = None
        self._kv.clear()

    async def ping(self) -> bool:
        try:
            if self._nc is None or not self._nc.is_connected:
                return False
            await asyncio.wait_for(self.js.account_info(), timeout=2)
            return True
        except Exception:
            return False

    # -- producing ----------------------------------------------------------------------------------------
    async def enqueue_many(self, tasks: Sequence[TaskSpec]) -> list[str]:
        ids = [validate_task_id(t.id) if t.id is not None else new_task_id() for t in tasks]
        kv = self.kv("tasks")

        async def exists(task_id: str) -> bool:
            try:
                await kv.get(task_id)
                return True
            except nats.js.errors.KeyNotFoundError:
                return False

        now = time.time()
        for start in range(0, len(ids), 256):
            chunk = list(zip(ids[start : start + 256], tasks[start : start + 256], strict=True))
            known = await asyncio.gather(*(exists(task_id) for task_id, _ in chunk))
            fresh = [(task_id, spec) for (task_id, spec), k in zip(chunk, known, strict=True) if not k]
            # Publish in order (FIFO); Nats-Msg-Id makes a retried publish within 2 minutes a no-op.
            # Pipelined: sent in order on one connection, acks awaited together.
            pending = []
            for task_id, spec in fresh:
                body = json.dumps({"id": task_id, "payload": spec.payload, "enqueued_at": now}).encode()
                pending.append(
                    await self.js.publish_async(
                        self.subj_tasks, body, headers={"Nats-Msg-Id": f"task-{task_id}"}
                    )
                )
            try:
                await asyncio.wait_for(asyncio.gather(*pending), timeout=30)
            except TimeoutError:
                raise nats.errors.TimeoutError from None
            await asyncio.gather(
                *(
                    kv.put(task_id, json.dumps({"payload": spec.payload, "enqueued_at": now}).encode())
                    for task_id, spec in fresh
                )
            )
        return ids

    async def get_task(self, task_id: str) -> Task | None:
        try:
            entry = await self.kv("tasks").get(validate_task_id(task_id))
        except nats.js.errors.KeyNotFoundError:
            return None
        data = json.loads(entry.value or b"{}")
        return Task(id=task_id, payload=data.get("payload"), enqueued_at=float(data.get("enqueued_at", 0)))

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

    async def _forget(self, delivery: Delivery) -> None:
        handle: _Handle = delivery.handle
        self._inflight.discard(handle.seq)
        ledger = self._ledger(delivery.consumer)
        if ledger.pop(str(handle.seq), None) is not None:
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
        holder = await self._lease_holder(delivery.task.id, delivery.consumer)
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
        await self._put_lease(delivery.task.id, delivery.consumer)
        attempts = self.kv("attempts")
        try:
            seen = int((await attempts.get(delivery.task.id)).value or b"0")
        except nats.js.errors.KeyNotFoundError:
            seen = 0
        delivery.attempt = max(delivery.attempt, seen + 1)
        await attempts.put(delivery.task.id, str(delivery.attempt).encode())
        if delivery.attempt > self.max_deliveries:
            delivery.attempt -= 1  # this hand-out never reaches a handler
            reason = delivery.last_error or f"abandoned {delivery.attempt} times without a result"
            await self.dead_letter(delivery, reason)
            return None
        handle: _Handle = delivery.handle
        self._inflight.add(handle.seq)
        ledger = self._ledger(delivery.consumer)
        ledger[str(handle.seq)] = {
            "reply": handle.reply,
            "task_id": delivery.task.id,
            "attempt": delivery.attempt,
        }
        await self._save_ledger(delivery.consumer)
        return delivery

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
        # 2 + 3. JetStream serves redeliveries (abandoned after AckWait) before new messages.
        assert self._sub is not None
        try:
            msgs = await self._sub.fetch(count, timeout=max(block_ms, 10) / 1000.0)
        except nats.errors.TimeoutError:
            await self._check_saturation()
            return []
        for msg in msgs:
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
                task=Task(
                    id=task_id, payload=body.get("payload"), enqueued_at=float(body.get("enqueued_at", 0))
                ),
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

    async def _check_saturation(self) -> None:
        now = time.monotonic()
        if now - self._last_saturation_check < 10:
            return
        self._last_saturation_check = now
        with contextlib.suppress(Exception):
            info = await self.js.consumer_info(self.s_tasks, self.durable)
            if (info.num_ack_pending or 0) >= self.max_ack_pending and (info.num_pending or 0) > 0:
                log.error(
                    "JetStream consumer %s is stalled: %d unacknowledged deliveries = MaxAckPending (%d) "
                    "while %d tasks wait; raise AGENTSWARM_MAX_ACK_PENDING or lower AGENTSWARM_CLAIM_IDLE_MS",
                    self.durable,
                    info.num_ack_pending,
                    self.max_ack_pending,
                    info.num_pending,
                )

    async def keep_alive(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            await self.nc.publish(d.handle.reply, b"+WPI")
            await self._put_lease(d.task.id, d.consumer)
        await self.nc.flush(timeout=5)

    # A lease (KV ``leases``: task id -> consumer + time of its last keep-alive) stops a second agent from
    # running a task its owner is still working on. JetStream normally guarantees that through AckWait, but
    # a nats-server crash can lose recent consumer state and hand in-flight messages out again.
    async def _lease_holder(self, task_id: str, consumer: str) -> str | None:
        """The other consumer holding a fresh lease on ``task_id``, if any."""
        try:
            entry = await self.kv("leases").get(task_id)
        except nats.js.errors.KeyNotFoundError:
            return None
        try:
            data = json.loads(entry.value or b"{}")
            holder, at = str(data["consumer"]), float(data["at"])
        except (ValueError, KeyError, TypeError):
            return None
        # A live owner refreshes every keep-alive (claim_idle_ms / 4 by default); a dead one's lease is at
        # least claim_idle_ms old by the time AckWait redelivers its message.
        if holder != consumer and time.time() - at < 0.75 * self.claim_idle_ms / 1000.0:
            return holder
        return None

    async def _put_lease(self, task_id: str, consumer: str) -> None:
        await self.kv("leases").put(task_id, json.dumps({"consumer": consumer, "at": time.time()}).encode())

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
        await self._finish(delivery.handle)
        await self._forget(delivery)
        await self._drop_lease(delivery.task.id)

    async def fail(self, delivery: Delivery, error: str) -> bool:
        await self.kv("errors").put(delivery.task.id, error.encode())
        if delivery.attempt >= self.max_deliveries:
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
        await self._finish(delivery.handle)
        await self._forget(delivery)
        await self._drop_lease(task.id)
        log.warning("task %s dead-lettered after %d deliveries: %s", task.id, delivery.attempt, error)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        seq = 1
        while len(out) < limit:
            try:
                raw = await self.js.get_msg(self.s_dead, seq, subject=self.subj_dead, next=True)
            except nats.js.errors.NotFoundError:
                break
            data = json.loads(raw.data or b"{}")
            out.append(
                DeadLetter(
                    task=Task(id=data["id"], payload=data["payload"], enqueued_at=float(data["enqueued_at"])),
                    error=data["error"],
                    deliveries=int(data["deliveries"]),
                    consumer=data["consumer"],
                    dead_lettered_at=float(data["at"]),
                )
            )
            seq = int(raw.seq or 0) + 1
        return out

    # -- results ------------------------------------------------------------------------------------------
    async def record_result(self, result: TaskResult) -> bool:
        task_id = validate_task_id(result.task_id)
        event = json.dumps({"type": "result", **result.to_json()}).encode()
        headers = {"Nats-Msg-Id": f"result-{task_id}"}
        try:
            await self.kv("results").create(task_id, json.dumps(result.to_json()).encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            # Already recorded. If the recorder died before its terminal event, publish it now.
            try:
                last = await self.js.get_msg(self.s_events, subject=self._events_subject(task_id))
                last_type = json.loads(last.data or b"{}").get("type")
            except nats.js.errors.NotFoundError:
                last_type = None
            if last_type != "result":
                stored = await self.get_result(task_id)
                if stored is not None:
                    event = json.dumps({"type": "result", **stored.to_json()}).encode()
                    await self.js.publish(self._events_subject(task_id), event, headers=headers)
            return False
        await self.js.publish(self._events_subject(task_id), event, headers=headers)
        return True

    async def get_result(self, task_id: str) -> TaskResult | None:
        try:
            entry = await self.kv("results").get(validate_task_id(task_id))
        except nats.js.errors.KeyNotFoundError:
            return None
        return TaskResult.from_json(json.loads(entry.value or b"{}"))

    # -- events -------------------------------------------------------------------------------------------
    async def publish_event(self, task_id: str, data: dict[str, JSON]) -> str:
        ack = await self.js.publish(
            self._events_subject(validate_task_id(task_id)), json.dumps(data).encode()
        )
        return str(ack.seq)

    async def _read_after(self, subject: str, seq: int, limit: int, task_id: str) -> list[TaskEvent]:
        out: list[TaskEvent] = []
        while len(out) < limit:
            try:
                raw = await self.js.get_msg(self.s_events, seq + 1, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            seq = int(raw.seq or 0)
            out.append(TaskEvent(id=str(seq), task_id=task_id, data=json.loads(raw.data or b"{}")))
        return out

    async def read_events(
        self, task_id: str, after: str | None = None, *, limit: int = 100, block_ms: int = 0
    ) -> list[TaskEvent]:
        subject = self._events_subject(validate_task_id(task_id))
        try:
            seq = int(after) if after not in (None, "") else 0
        except ValueError:
            raise ValueError(
                f"invalid event id {after!r} for the nats broker: expected a sequence number"
            ) from None
        if block_ms <= 0:
            return await self._read_after(subject, seq, limit, task_id)
        # Subscribe before reading so that an event published in between wakes us up.
        # The core message can arrive before the stream has stored it, so re-read until the deadline.
        deadline = time.monotonic() + block_ms / 1000.0
        sub = await self.nc.subscribe(subject)
        try:
            while True:
                events = await self._read_after(subject, seq, limit, task_id)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    return events
                try:
                    await sub.next_msg(timeout=remaining)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                await asyncio.sleep(0.005)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- checkpoints --------------------------------------------------------------------------------------
    async def put_checkpoint(self, task_id: str, blob: bytes) -> None:
        await self.kv("ckpt").put(validate_task_id(task_id), blob)

    async def get_checkpoints(self, task_id: str) -> list[bytes]:
        stream = f"KV_{self.ns}_ckpt"
        subject = f"$KV.{self.ns}_ckpt.{validate_task_id(task_id)}"
        try:
            newest = await self.js.get_msg(stream, subject=subject)
        except nats.js.errors.NotFoundError:
            return []
        out = [newest.data] if newest.data else []
        try:
            oldest = await self.js.get_msg(stream, 1, subject=subject, next=True)
            if oldest.seq != newest.seq and oldest.data:
                out.append(oldest.data)
        except nats.js.errors.NotFoundError:
            pass
        return out

    async def delete_checkpoints(self, task_id: str) -> None:
        await self.kv("ckpt").purge(validate_task_id(task_id))

    # -- metrics ------------------------------------------------------------------------------------------
    async def stats(self) -> BrokerStats:
        info = await self.js.consumer_info(self.s_tasks, self.durable)
        dead = await self.js.stream_info(self.s_dead)
        results = await self.js.stream_info(f"KV_{self.ns}_results")
        tasks = await self.js.stream_info(f"KV_{self.ns}_tasks")
        ack_pending = int(info.num_ack_pending or 0)
        waiting = int(info.num_pending or 0)
        return BrokerStats(
            queued=waiting,
            pending=ack_pending,
            done=int(results.state.messages),
            dead_lettered=int(dead.state.messages),
            enqueued_total=int(tasks.state.messages),
            saturated=ack_pending >= self.max_ack_pending and waiting > 0,
        )

    async def backlog(self) -> int:
        # What KEDA's nats-jetstream scaler reads from /jsz for this consumer.
        info = await self.js.consumer_info(self.s_tasks, self.durable)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
