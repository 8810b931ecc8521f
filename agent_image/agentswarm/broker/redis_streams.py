"""Redis Streams backend (redis-py asyncio): the work queue of :class:`RedisStreamsBroker`, one stream, one
consumer group, consumer = agent identity.

Claiming (see :meth:`RedisStreamsBroker.claim`): own pending entries (``XPENDING`` for this consumer, then
``XCLAIM`` to re-take them, which counts a delivery), then ``XAUTOCLAIM`` of entries idle longer than
``claim_idle_ms``, then ``XREADGROUP ... >``. Keep-alive is ``XCLAIM ... JUSTID`` of own entries only
(a Lua script checks the owner first, so a slow agent never steals a task back).

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
    Delivery,
    DeliveryRecord,
    abandoned_reason,
    task_from_record,
)
from agentswarm.broker.feed import NOTIFY_RETENTION, SWARM_FEED_RETENTION, task_transition
from agentswarm.broker.redis_connection import _aw, _s
from agentswarm.broker.redis_notify import RedisNotify

log = logging.getLogger(__name__)


class RedisStreamsBroker(RedisNotify):
    """The Redis Streams implementation of :class:`~agentswarm.broker.base.Broker`."""

    # -- consuming ----------------------------------------------------------------------------------------
    async def _deliveries(
        self, consumer: str, entries: list[tuple[str, dict[str, str]]], counts: dict[str, int], source: Any
    ) -> list[Delivery]:
        """Turn stream entries into deliveries; dead-letter those past max_deliveries."""
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
                await self.r.xack(self.stream, self.group, entry_id)
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

    async def _counts(self, entry_ids: list[str]) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        counts: dict[str, int] = {}
        for entry_id, rows in zip(entry_ids, await pipe.execute(), strict=True):
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
        own: list[dict[str, Any]] = []
        if consumer not in self._own_clear:
            own = await self.r.xpending_range(
                self.stream, self.group, min="-", max="+", count=100, consumername=consumer
            )
        candidates = [row["message_id"] for row in own if row["message_id"] not in self._inflight]
        if consumer not in self._own_clear and not candidates:
            self._own_clear.add(consumer)
        mine: list[Any] = []
        if candidates:
            # Failed attempts wait for their backoff (kept in Redis, so it holds across a restart too).
            retry_at = await _aw(self.r.hmget(self.k_retry_at, candidates))
            now = time.time()
            mine = [e for e, at in zip(candidates, retry_at, strict=True) if at is None or float(at) <= now]
            mine = mine[:count]
        if mine:
            counts = {row["message_id"]: int(row["times_delivered"]) + 1 for row in own}
            claimed = await self.r.xclaim(self.stream, self.group, consumer, 0, mine)
            out = await self._deliveries(consumer, [(i, f) for i, f in claimed if f], counts, "own")
            if out:
                return out
        # 2. entries abandoned by other consumers (idle longer than claim_idle_ms)
        now = time.monotonic()
        if now - self._last_autoclaim >= min(1.0, self.claim_idle_ms / 4000):
            self._last_autoclaim = now
            res = await self.r.xautoclaim(
                self.stream, self.group, consumer, self.claim_idle_ms, self._autoclaim_cursor, count=count
            )
            self._autoclaim_cursor = _s(res[0])
            entries = [(i, f) for i, f in res[1] if f]
            if entries:
                counts = await self._counts([i for i, _ in entries])
                out = await self._deliveries(consumer, entries, counts, "reclaimed")
                if out:
                    return out
        # 3. new entries
        resp = await self.r.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count, block=block_ms)
        entries = []
        for _stream, rows in resp or []:
            entries += [(i, f) for i, f in rows if f]
        return await self._deliveries(consumer, entries, {}, "new")

    async def keep_alive(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        consumer = deliveries[0].consumer
        ids = [str(d.handle) for d in deliveries]
        lost = await self._keepalive_script(keys=[self.stream], args=[self.group, consumer, *ids])
        for entry_id in lost or []:
            log.warning("delivery %s was taken over by another consumer (keep-alive too late)", _s(entry_id))

    async def ack(self, delivery: Delivery) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, delivery.handle)
        pipe.xdel(self.stream, delivery.handle)
        pipe.hdel(self.k_retry_at, delivery.handle)
        pipe.hdel(self.k_records, delivery.task.id)
        await pipe.execute()
        self._inflight.discard(str(delivery.handle))

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
        await self._dead_script(
            keys=[self.stream, self.k_retry_at, self.k_records, self.k_buried],
            args=[self.group, entry_id, delivery.task.id],
        )
