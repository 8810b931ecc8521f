"""What the JetStream broker stores per task besides the queue: task data, results, events, dead letters,
checkpoints, and the counters of :meth:`~agentswarm.broker.base.Broker.stats`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors

from agentswarm.broker.base import (
    JSON,
    BrokerStats,
    BrokerUsage,
    CancelOutcome,
    DeadLetter,
    NewTask,
    Task,
    TaskEvent,
    TaskResult,
    new_task_id,
    task_from_record,
    task_record,
    validate_task_id,
)
from agentswarm.broker.feed import task_transition
from agentswarm.broker.nats_connection import NatsConnection

log = logging.getLogger(__name__)

#: Tasks one step of ``enqueue_many`` checks, publishes and records together (pipelined).
_ENQUEUE_CHUNK = 1024


class NatsRecords(NatsConnection):
    """Task data, results, event logs, dead letters, checkpoints and stats in JetStream."""

    # -- producing ----------------------------------------------------------------------------------------
    async def enqueue_many(self, tasks: Sequence[NewTask]) -> list[str]:
        ids = [validate_task_id(t.id) if t.id is not None else new_task_id() for t in tasks]
        now = time.time()
        for start in range(0, len(ids), _ENQUEUE_CHUNK):
            chunk = list(
                zip(ids[start : start + _ENQUEUE_CHUNK], tasks[start : start + _ENQUEUE_CHUNK], strict=True)
            )
            known = await self._known([task_id for task_id, _ in chunk])
            # Each record is serialised once: the KV value, and (with the id in front) the stream message.
            fresh = [
                (task_id, spec, json.dumps(task_record(spec, now)).encode())
                for task_id, spec in chunk
                if task_id not in known
            ]
            # Publish in order (FIFO); Nats-Msg-Id makes a retried publish within 2 minutes a no-op.
            # Pipelined: sent in order on one connection, acks awaited together.
            pending = []
            for task_id, spec, record in fresh:
                body = b'{"id":"' + task_id.encode() + b'",' + record[1:]  # ids need no JSON escaping
                pending.append(
                    await self.js.publish_async(
                        self.subjects[spec.priority], body, headers={"Nats-Msg-Id": f"task-{task_id}"}
                    )
                )
            for task_id, _spec, _record in fresh:
                pending.append(await self._swarm_async(task_transition(task_id, "queued", at=now)))
            await self._acked(pending)
            # Then the records that make a later enqueue of these ids a no-op (KV puts, pipelined too).
            await self._acked(
                [
                    await self.js.publish_async(f"$KV.{self.ns}_tasks.{task_id}", record)
                    for task_id, _spec, record in fresh
                ]
            )
        return ids

    async def _known(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` have a task record: one batched direct get of the last message of each key's
        subject (``multi_last``, nats-server 2.11+) instead of one request per id."""
        prefix = f"$KV.{self.ns}_tasks."
        request = json.dumps({"multi_last": [prefix + task_id for task_id in ids], "batch": len(ids)})
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        found: set[str] = set()
        try:
            await self.nc.publish(f"$JS.API.DIRECT.GET.KV_{self.ns}_tasks", request.encode(), reply=inbox)
            while True:
                msg = await sub.next_msg(timeout=10)
                headers = msg.headers or {}
                status = headers.get("Status")
                if status is None:  # one stored key (a deleted one counts as absent)
                    if headers.get("KV-Operation") not in ("DEL", "PURGE"):
                        found.add(headers.get("Nats-Subject", "")[len(prefix) :])
                    continue
                if status == "404" or (status == "204" and headers.get("Nats-Num-Pending", "0") == "0"):
                    return found  # the end of the batch (404: none of them is stored)
                break  # a server without batched gets, or a batch cut short: ask key by key
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return {task_id for task_id in ids if await self.get_task(task_id) is not None}

    async def _acked(self, pending: Sequence[asyncio.Future[Any]]) -> list[Any]:
        """The acks of pipelined publishes (``publish_async``), in order; a publish refused raises."""
        try:
            return await asyncio.wait_for(asyncio.gather(*pending), timeout=30)
        except TimeoutError:
            raise nats.errors.TimeoutError from None

    async def get_task(self, task_id: str) -> Task | None:
        try:
            entry = await self.kv("tasks").get(validate_task_id(task_id))
        except nats.js.errors.KeyNotFoundError:
            return None
        return task_from_record(task_id, json.loads(entry.value or b"{}"))

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
            stored = await self.get_result(task_id)
            if stored is not None and last_type != stored.event_type:
                if stored.cancelled:
                    event = json.dumps({"type": "cancelled", "at": stored.recorded_at}).encode()
                else:
                    event = json.dumps({"type": "result", **stored.to_json()}).encode()
                await self.js.publish(self._events_subject(task_id), event, headers=headers)
            return False
        done = task_transition(
            task_id, "done", at=result.recorded_at, agent=result.agent_id, attempt=result.attempt
        )
        # The terminal event and the swarm feed entry: sent in order, acknowledged together.
        pending = [
            await self.js.publish_async(self._events_subject(task_id), event, headers=headers),
            await self._swarm_async(done),
        ]
        await self._acked(pending)
        return True

    async def _swarm_async(self, data: dict[str, JSON]) -> asyncio.Future[Any]:
        """Publish a swarm feed entry without waiting for its ack (await the returned future for it)."""
        return await self.js.publish_async(self.subj_swarm, json.dumps(data).encode())

    async def cancel(self, task_id: str) -> CancelOutcome:
        if await self.get_task(task_id) is None:
            return "not_found"
        subject = self._events_subject(task_id)
        try:
            last = await self.js.get_msg(self.s_events, subject=subject)
            if json.loads(last.data or b"{}").get("type") == "dead_lettered":
                return "finished"
        except nats.js.errors.NotFoundError:
            pass
        cancellation = TaskResult.cancellation(task_id)
        try:
            await self.kv("results").create(task_id, json.dumps(cancellation.to_json()).encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            return "finished"  # a result (or an earlier cancellation) was first
        # Same message id as a result event: one terminal event per task. Should this call die before the
        # publish, the agent that next claims the task publishes it (see record_result).
        event = json.dumps({"type": "cancelled", "at": cancellation.recorded_at}).encode()
        await self.js.publish(subject, event, headers={"Nats-Msg-Id": f"result-{task_id}"})
        await (await self._swarm_async(task_transition(task_id, "cancelled", at=cancellation.recorded_at)))
        return "cancelled"

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
        self.check_cursor(after)
        seq = int(after) if after not in (None, "") else 0
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
    async def _class_consumers(self) -> dict[str, tuple[int, int]]:
        """``(num_pending, num_ack_pending)`` of the consumer of each priority class, by durable name."""
        durables = list(self.durables.values())
        infos = await asyncio.gather(*(self.js.consumer_info(self.s_tasks, d) for d in durables))
        pairs = zip(durables, infos, strict=True)
        return {d: (int(i.num_pending or 0), int(i.num_ack_pending or 0)) for d, i in pairs}

    def _saturated(self, waiting: int, ack_pending: int) -> bool:
        """A consumer at MaxAckPending while tasks wait: nothing more is handed out until an ack."""
        return ack_pending >= self.max_ack_pending and waiting > 0

    async def stats(self) -> BrokerStats:
        consumers = list((await self._class_consumers()).values())
        dead = await self.js.stream_info(self.s_dead)
        results = await self.js.stream_info(f"KV_{self.ns}_results")
        tasks = await self.js.stream_info(f"KV_{self.ns}_tasks")
        return BrokerStats(
            queued=sum(waiting for waiting, _ in consumers),
            pending=sum(ack_pending for _, ack_pending in consumers),
            done=int(results.state.messages),
            dead_lettered=int(dead.state.messages),
            enqueued_total=int(tasks.state.last_seq or 0),  # every put ever: counts expired tasks too
            saturated=any(self._saturated(waiting, ack) for waiting, ack in consumers),
        )

    async def usage(self) -> BrokerUsage:
        prefixes = (f"{self.ns.upper().replace('-', '_')}_", f"KV_{self.ns}_")
        size = items = 0
        offset = 0
        while True:  # the server answers in pages (256 streams each)
            page = await self.js.streams_info(offset)
            for info in page:
                if info.config.name and info.config.name.startswith(prefixes):
                    size += int(info.state.bytes or 0)
                    items += int(info.state.messages or 0)
            if len(page) < 256:
                return BrokerUsage(bytes=size, items=items, data_bytes=size)
            offset += len(page)

    async def trim(self, *, limit: int) -> int:
        # The server expires finished tasks' records itself (MaxAge, see nats_connection): nothing to do.
        return 0

    async def backlog(self) -> int:
        # What KEDA's nats-jetstream scaler reads from /jsz for each class's consumer (one trigger each).
        consumers = await self._class_consumers()
        return sum(waiting + ack_pending for waiting, ack_pending in consumers.values())
