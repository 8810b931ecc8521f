"""Redis Streams backend (redis-py asyncio): the work queue of :class:`RedisStreamsBroker`, one stream per
priority class, one consumer group, consumer = agent identity.

Claiming (see :meth:`RedisStreamsBroker.claim`): own pending entries (``XPENDING`` for this consumer, then
``XCLAIM`` to re-take them, which counts a delivery), then ``XAUTOCLAIM`` of entries idle longer than
``claim_idle_ms`` (of any class), then new entries: ``XREADGROUP ... >`` of the classes in the order
:class:`~agentswarm.broker.priority.ClassOrder` gives (one Lua script, non-blocking), and only when all three
are empty a blocking ``XREADGROUP`` on the three streams. Keep-alive is ``XCLAIM ... JUSTID`` of own entries
only (a Lua script checks the owner first, so a slow agent never steals a task back).

Why ``XPENDING`` + ``XCLAIM`` rather than ``XREADGROUP ... 0`` for the own entries: both re-deliver this
consumer's pending entries and count a delivery, but reading by id lets ``claim`` skip entries that are in
flight in this process or waiting for their retry backoff (``ns:retry_at``).

Keys and scripts: :mod:`agentswarm.broker.redis_connection`; storage: :mod:`agentswarm.broker.redis_records`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from agentswarm.broker.base import (
    PRIORITIES,
    Delivery,
    DeliveryRecord,
    TaskResult,
    abandoned_reason,
    task_from_record,
)
from agentswarm.broker.feed import NOTIFY_RETENTION, SWARM_FEED_RETENTION, task_transition
from agentswarm.broker.priority import ClassOrder
from agentswarm.broker.redis_connection import _aw, _s
from agentswarm.broker.redis_notify import RedisNotify

log = logging.getLogger(__name__)


class RedisStreamsBroker(RedisNotify):
    """The Redis Streams implementation of :class:`~agentswarm.broker.base.Broker`."""

    # -- consuming ----------------------------------------------------------------------------------------
    async def _deliveries(
        self, consumer: str, entries: list[tuple[str, dict[str, str]]], counts: dict[str, int], source: Any
    ) -> list[Delivery]:
        """Turn ``(handle, fields)`` stream entries into deliveries; dead-letter those past max_deliveries."""
        if not entries:
            return []
        task_ids = [fields.get("id", "") for _, fields in entries]
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.k_taskdata, task_ids)
        pipe.hmget(self.k_errors, task_ids)
        pipe.hmget(self.k_records, task_ids)
        pipe.hmget(self.k_buried, task_ids)
        datas, errors, raw_records, buried = await pipe.execute()
        out: list[Delivery] = []
        updated: dict[str, str] = {}
        rows = zip(entries, task_ids, datas, errors, raw_records, buried, strict=True)
        for (entry_id, _fields), task_id, raw, err, raw_record, reason in rows:
            if raw is None:  # should not happen; never hand out a task we cannot describe
                log.error("stream entry %s has no task data (task id %r); dropping it", entry_id, task_id)
                stream, stream_entry = self._entry(entry_id)
                await self.r.xack(stream, self.group, stream_entry)
                continue
            data = json.loads(raw)
            task = task_from_record(task_id, data)
            delivery = Delivery(
                task=task,
                consumer=consumer,
                attempt=counts.get(entry_id, 1),
                source=source,
                handle=entry_id,
                last_error=err,
            )
            if reason is not None:  # its dead-lettering was interrupted: finish it, never run it
                await self._unqueue_dead(delivery, reason)
                continue
            record = DeliveryRecord.loads(raw_record)
            record.admit()
            record.attempt = delivery.attempt
            if record.strikes >= self.max_deliveries:
                delivery.attempt -= 1  # this hand-out never reaches a handler
                await self.dead_letter(delivery, abandoned_reason(err, record))
                continue
            updated[task_id] = record.dumps()
            self._inflight.add(entry_id)
            out.append(delivery)
        if updated:
            await _aw(self.r.hset(self.k_records, mapping=updated))
        return out

    async def _update_record(self, task_id: str, change: str) -> DeliveryRecord:
        record = DeliveryRecord.loads(await _aw(self.r.hget(self.k_records, task_id)))
        getattr(record, change)()
        await _aw(self.r.hset(self.k_records, task_id, record.dumps()))
        return record

    async def progress(self, delivery: Delivery) -> None:
        record = DeliveryRecord.loads(await _aw(self.r.hget(self.k_records, delivery.task.id)))
        record.progressed = True
        await _aw(self.r.hset(self.k_records, delivery.task.id, record.dumps()))

    async def release(self, delivery: Delivery) -> None:
        await self._update_record(delivery.task.id, "released")
        self._inflight.discard(str(delivery.handle))
        self._own_clear.discard(delivery.consumer)

    async def _counts(self, handles: list[str]) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for handle in handles:
            stream, entry_id = self._entry(handle)
            pipe.xpending_range(stream, self.group, min=entry_id, max=entry_id, count=1)
        counts: dict[str, int] = {}
        for entry_id, rows in zip(handles, await pipe.execute(), strict=True):
            if rows:
                counts[entry_id] = int(rows[0]["times_delivered"])
        return counts

    async def claim(self, consumer: str, *, count: int = 1, block_ms: int = 1000) -> list[Delivery]:
        try:
            return await self._claim(consumer, count, block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The server lost its data (restarted without AOF, or flushed): recreate the group from the
            # start of the stream; acknowledged entries were deleted, so only unfinished tasks come back.
            log.error("consumer group %s is missing on the server; recreating it", self.group)
            await self._ensure_group()
            return []

    async def _claim(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        # 1. own pending entries not being worked on in this process (a restart, or a failed attempt).
        # Once none are left, only fail() can add one, so the XPENDING round trip is skipped until then.
        own: list[tuple[str, dict[str, Any]]] = []
        if consumer not in self._own_clear:
            pipe = self.r.pipeline(transaction=False)
            for stream in self.streams.values():
                pipe.xpending_range(stream, self.group, min="-", max="+", count=100, consumername=consumer)
            for cls, rows in zip(self.streams, await pipe.execute(), strict=True):
                own += [(self._handle(cls, row["message_id"]), row) for row in rows]
        candidates = [h for h, _ in own if h not in self._inflight]
        if consumer not in self._own_clear and not candidates:
            self._own_clear.add(consumer)
        mine: list[str] = []
        if candidates:
            # Failed attempts wait for their backoff (kept in Redis, so it holds across a restart too).
            retry_at = await _aw(self.r.hmget(self.k_retry_at, candidates))
            now = time.time()
            mine = [h for h, at in zip(candidates, retry_at, strict=True) if at is None or float(at) <= now]
            mine = mine[:count]
        if mine:
            counts = {h: int(row["times_delivered"]) + 1 for h, row in own}
            claimed: list[tuple[str, dict[str, str]]] = []
            for cls, stream in self.streams.items():
                ids: list[Any] = [entry for s, entry in map(self._entry, mine) if s == stream]
                if ids:
                    rows = await self.r.xclaim(stream, self.group, consumer, 0, ids)
                    claimed += [(self._handle(cls, i), f) for i, f in rows if f]
            out = await self._deliveries(consumer, claimed, counts, "own")
            if out:
                return out
        # 2. entries abandoned by other consumers (idle longer than claim_idle_ms), of any class
        now = time.monotonic()
        if now - self._last_autoclaim >= min(1.0, self.claim_idle_ms / 4000):
            self._last_autoclaim = now
            entries: list[tuple[str, dict[str, str]]] = []
            for cls, stream in self.streams.items():
                res = await self.r.xautoclaim(
                    stream,
                    self.group,
                    consumer,
                    self.claim_idle_ms,
                    self._autoclaim_cursors[cls],
                    count=count,
                )
                self._autoclaim_cursors[cls] = _s(res[0])
                entries += [(self._handle(cls, i), f) for i, f in res[1] if f]
                if len(entries) >= count:
                    break
            if entries:
                counts = await self._counts([h for h, _ in entries])
                out = await self._deliveries(consumer, entries, counts, "reclaimed")
                if out:
                    return out
        # 3. new entries, by priority class
        return await self._deliveries(consumer, await self._read_new(consumer, count, block_ms), {}, "new")

    async def _read_new(self, consumer: str, count: int, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` new entries, by :class:`ClassOrder`; blocks only when every class is empty."""
        classes = self._orders.setdefault(consumer, ClassOrder())
        order = classes.order()
        res = await self._read_new_script(
            keys=[self.streams[cls] for cls, _ in order],
            args=[self.group, consumer, count, *(1 if starved else 0 for _, starved in order)],
        )
        entries: list[tuple[str, dict[str, str]]] = []
        for (cls, _), rows in zip(order, res, strict=False):
            if not rows:
                classes.empty(cls)
                continue
            classes.took(cls, len(rows))
            for row in rows:
                fields = row[1]
                if fields:
                    entries.append(
                        (
                            self._handle(cls, _s(row[0])),
                            {_s(k): _s(v) for k, v in zip(fields[::2], fields[1::2], strict=True)},
                        )
                    )
        if entries or block_ms <= 0:
            return entries
        # Nothing waits in any class: wait for the first new entry of any of them.
        resp = await self.r.xreadgroup(
            self.group, consumer, dict.fromkeys(self.streams.values(), ">"), count=count, block=block_ms
        )
        by_stream = {_s(stream): rows for stream, rows in resp or []}
        for cls in PRIORITIES:
            rows = [(i, f) for i, f in by_stream.get(self.streams[cls], []) if f]
            classes.took(cls, len(rows))
            entries += [(self._handle(cls, i), f) for i, f in rows]
        # Several streams had entries at once (a rare race: the entries arrived between the script and this
        # read): hand out the highest ``count``; the rest stay this consumer's, re-taken by its next claim.
        if len(entries) > count:
            self._own_clear.discard(consumer)
        return entries[:count]

    async def keep_alive(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        consumer = deliveries[0].consumer
        for stream in self.streams.values():
            ids = [entry for s, entry in (self._entry(d.handle) for d in deliveries) if s == stream]
            if not ids:
                continue
            lost = await self._keepalive_script(keys=[stream], args=[self.group, consumer, *ids])
            for entry_id in lost or []:
                log.warning(
                    "delivery %s was taken over by another consumer (keep-alive too late)", _s(entry_id)
                )

    async def ack(self, delivery: Delivery) -> None:
        stream, entry_id = self._entry(delivery.handle)
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(stream, self.group, entry_id)
        pipe.xdel(stream, entry_id)
        pipe.hdel(self.k_retry_at, delivery.handle)
        pipe.hdel(self.k_records, delivery.task.id)
        await pipe.execute()
        self._inflight.discard(str(delivery.handle))

    async def finish(self, delivery: Delivery, result: TaskResult) -> bool:
        # One script: the result and the acknowledgement together, all or nothing (one round trip).
        stream, entry_id = self._entry(delivery.handle)
        keys, args = self._record_call(result)
        keys += [stream, self.k_retry_at, self.k_records]
        args += [self.group, entry_id, str(delivery.handle)]
        recorded = bool(await self._record_script(keys=keys, args=args))
        self._inflight.discard(str(delivery.handle))
        return recorded

    async def fail(self, delivery: Delivery, error: str) -> bool:
        await _aw(self.r.hset(self.k_errors, delivery.task.id, error))
        self._inflight.discard(str(delivery.handle))
        record = await self._update_record(delivery.task.id, "failed")
        if record.strikes >= self.max_deliveries:
            await self.dead_letter(delivery, error)
            return True
        # Stays in this consumer's pending list; claim() re-takes it once the backoff has passed.
        self._own_clear.discard(delivery.consumer)
        retry_at = time.time() + self.retry_delay(delivery.attempt)
        await _aw(self.r.hset(self.k_retry_at, str(delivery.handle), f"{retry_at:.3f}"))
        return False

    async def dead_letter(self, delivery: Delivery, error: str) -> None:
        now = time.time()
        dead = {
            "payload": delivery.task.payload,
            "enqueued_at": delivery.task.enqueued_at,
            "error": error,
            "deliveries": delivery.attempt,
            "consumer": delivery.consumer,
            "at": now,
        }
        event = {"type": "dead_lettered", "error": error, "deliveries": delivery.attempt, "at": now}
        task_id = delivery.task.id
        swarm = task_transition(
            task_id, "dead", at=now, agent=delivery.consumer, attempt=delivery.attempt, error=error
        )
        if await self._bury_script(
            keys=[
                self.k_dead,
                self._events_key(task_id),
                self.k_buried,
                self.k_notify,
                self.k_swarm,
                self.k_finished,
            ],
            args=[
                task_id,
                json.dumps(dead),
                json.dumps(event),
                error,
                NOTIFY_RETENTION,
                json.dumps(swarm),
                SWARM_FEED_RETENTION,
            ],
        ):
            log.warning("task %s dead-lettered after %d deliveries: %s", task_id, delivery.attempt, error)
        await self._unqueue_dead(delivery, error)

    async def _unqueue_dead(self, delivery: Delivery, error: str) -> None:
        """Steps 2 and 3 of dead-lettering: notify the listeners, then remove the task from the queue."""
        entry_id = str(delivery.handle)
        self._inflight.discard(entry_id)
        if not await self._dead_lettered(delivery.task.id, error):
            # Stays pending (buried): this consumer retries after a pause, anybody after claim_idle_ms.
            self._own_clear.discard(delivery.consumer)
            retry_at = time.time() + max(1.0, self.retry_delay(delivery.attempt))
            await _aw(self.r.hset(self.k_retry_at, entry_id, f"{retry_at:.3f}"))
            return
        stream, stream_entry = self._entry(entry_id)
        await self._dead_script(
            keys=[stream, self.k_retry_at, self.k_records, self.k_buried],
            args=[self.group, stream_entry, delivery.task.id, entry_id],
        )
