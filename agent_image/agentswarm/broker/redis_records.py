"""What the Redis Streams broker stores per task besides the queue: task data, results, events, dead
letters, checkpoints, and the counters of :meth:`~agentswarm.broker.base.Broker.stats`."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

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
from agentswarm.broker.feed import NOTIFY_RETENTION, SWARM_FEED_RETENTION, task_transition
from agentswarm.broker.redis_connection import _ENQUEUE_CHUNK, RedisConnection, _aw, _s

log = logging.getLogger(__name__)

#: Where ``_ENQUEUE_LUA`` finds the stream of each priority class among its keys (1-based).
_STREAM_KEY_INDEX = {"normal": "2", "high": "5", "low": "6"}
#: How long the trim lock is held at most (a trimmer that died lets go after this).
_TRIM_LOCK_MS = 60_000
#: Log entries dropped per stream per trim call at most (``XTRIM ... LIMIT``).
_TRIM_LOG_LIMIT = 10_000


class RedisRecords(RedisConnection):
    """Task data, results, event logs, dead letters, checkpoints and stats in Redis."""

    # -- producing ----------------------------------------------------------------------------------------
    async def enqueue_many(self, tasks: Sequence[NewTask]) -> list[str]:
        ids = [validate_task_id(t.id) if t.id is not None else new_task_id() for t in tasks]
        now = time.time()
        for start in range(0, len(ids), _ENQUEUE_CHUNK):
            argv: list[str] = [str(SWARM_FEED_RETENTION)]
            for task_id, spec in zip(
                ids[start : start + _ENQUEUE_CHUNK], tasks[start : start + _ENQUEUE_CHUNK], strict=True
            ):
                swarm = task_transition(task_id, "queued", at=now)
                argv += [
                    task_id,
                    json.dumps(task_record(spec, now)),
                    json.dumps(swarm),
                    _STREAM_KEY_INDEX[spec.priority],
                ]
            keys = [self.k_taskdata, self.stream, self.k_counters, self.k_swarm]
            await self._enqueue_script(keys=[*keys, self.streams["high"], self.streams["low"]], args=argv)
        return ids

    async def get_task(self, task_id: str) -> Task | None:
        raw = await _aw(self.r.hget(self.k_taskdata, validate_task_id(task_id)))
        if raw is None:
            return None
        return task_from_record(task_id, json.loads(raw))

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = await self.r.xrange(self.k_dead, count=limit)
        out = []
        for _entry, fields in rows:
            data = json.loads(fields["data"])
            out.append(
                DeadLetter(
                    task=Task(
                        id=fields["id"], payload=data["payload"], enqueued_at=data.get("enqueued_at", 0)
                    ),
                    error=data["error"],
                    deliveries=int(data["deliveries"]),
                    consumer=data["consumer"],
                    dead_lettered_at=float(data["at"]),
                )
            )
        return out

    # -- results ------------------------------------------------------------------------------------------
    async def record_result(self, result: TaskResult) -> bool:
        keys, args = self._record_call(result)
        return bool(await self._record_script(keys=keys, args=args))

    def _record_call(self, result: TaskResult) -> tuple[list[str], list[Any]]:
        """Keys and arguments of ``_RECORD_LUA`` storing ``result`` (``finish`` adds the acknowledgement)."""
        validate_task_id(result.task_id)
        event = {"type": "result", **result.to_json()}
        swarm = task_transition(
            result.task_id, "done", at=result.recorded_at, agent=result.agent_id, attempt=result.attempt
        )
        keys = [self.k_results, self._events_key(result.task_id), self.k_notify, self.k_swarm]
        keys.append(self.k_finished)
        args: list[Any] = [
            result.task_id,
            json.dumps(result.to_json()),
            json.dumps(event),
            NOTIFY_RETENTION,
            json.dumps(swarm),
            SWARM_FEED_RETENTION,
        ]
        return keys, args

    async def get_result(self, task_id: str) -> TaskResult | None:
        raw = await _aw(self.r.hget(self.k_results, validate_task_id(task_id)))
        return None if raw is None else TaskResult.from_json(json.loads(raw))

    async def cancel(self, task_id: str) -> CancelOutcome:
        validate_task_id(task_id)
        cancellation = TaskResult.cancellation(task_id)
        event = {"type": "cancelled", "at": cancellation.recorded_at}
        swarm = task_transition(task_id, "cancelled", at=cancellation.recorded_at)
        outcome = await self._cancel_script(
            keys=[
                self.k_taskdata,
                self.k_results,
                self._events_key(task_id),
                self.k_buried,
                self.k_notify,
                self.k_swarm,
                self.k_finished,
            ],
            args=[
                task_id,
                json.dumps(cancellation.to_json()),
                json.dumps(event),
                NOTIFY_RETENTION,
                json.dumps(swarm),
                SWARM_FEED_RETENTION,
            ],
        )
        return cast(CancelOutcome, _s(outcome))

    # -- events -------------------------------------------------------------------------------------------
    async def publish_event(self, task_id: str, data: dict[str, JSON]) -> str:
        return _s(await self.r.xadd(self._events_key(validate_task_id(task_id)), {"data": json.dumps(data)}))

    async def read_events(
        self, task_id: str, after: str | None = None, *, limit: int = 100, block_ms: int = 0
    ) -> list[TaskEvent]:
        key = self._events_key(validate_task_id(task_id))
        self.check_cursor(after)
        start = after if after not in (None, "", "0") else "0-0"
        resp = await self.r.xread({key: start}, count=limit, block=block_ms if block_ms > 0 else None)
        out: list[TaskEvent] = []
        for _stream, rows in resp or []:
            out += [TaskEvent(id=_s(i), task_id=task_id, data=json.loads(f["data"])) for i, f in rows]
        return out

    # -- checkpoints --------------------------------------------------------------------------------------
    async def put_checkpoint(self, task_id: str, blob: bytes) -> None:
        key = self._ckpt_key(validate_task_id(task_id))
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(key, base64.b64encode(blob).decode())
        pipe.ltrim(key, 0, 1)
        await pipe.execute()

    async def get_checkpoints(self, task_id: str) -> list[bytes]:
        rows = await _aw(self.r.lrange(self._ckpt_key(validate_task_id(task_id)), 0, 1))
        return [base64.b64decode(r) for r in rows]

    async def delete_checkpoints(self, task_id: str) -> None:
        await self.r.delete(self._ckpt_key(validate_task_id(task_id)))

    # -- metrics ------------------------------------------------------------------------------------------
    async def stats(self) -> BrokerStats:
        pipe = self.r.pipeline(transaction=False)
        pipe.hlen(self.k_results)
        pipe.xlen(self.k_dead)
        pipe.hget(self.k_counters, "enqueued")
        for stream in self.streams.values():
            pipe.xlen(stream)
            pipe.xpending(stream, self.group)
        done, dead, enqueued, *per_stream = await pipe.execute()
        length = sum(int(n) for n in per_stream[::2])
        n_pending = sum(int(p["pending"]) if p else 0 for p in per_stream[1::2])
        return BrokerStats(
            queued=max(0, length - n_pending),
            pending=n_pending,
            done=int(done),
            dead_lettered=int(dead),
            enqueued_total=int(enqueued or 0),
        )

    async def usage(self) -> BrokerUsage:
        pipe = self.r.pipeline(transaction=False)
        pipe.info("memory")
        pipe.dbsize()
        memory, keys = await pipe.execute()
        return BrokerUsage(
            bytes=int(memory["used_memory"]),
            items=int(keys),
            data_bytes=int(memory.get("used_memory_dataset", memory["used_memory"])),
        )

    # -- retention ----------------------------------------------------------------------------------------
    async def trim(self, *, limit: int) -> int:
        if self.retention_seconds <= 0:
            return 0
        token = uuid.uuid4().hex
        # One trimmer at a time (coordinator replicas); the lock expires should its holder die.
        if not await self.r.set(self.k_trim_lock, token, nx=True, px=_TRIM_LOCK_MS):
            return 0
        try:
            seconds, micros = await self.r.time()  # the server's clock, which scored the index and ids
            cutoff = int(seconds) + int(micros) / 1e6 - self.retention_seconds
            ids = await self.r.zrangebyscore(self.k_finished, "-inf", cutoff, start=0, num=limit)
            pipe = self.r.pipeline(transaction=False)
            if ids:
                for field_hash in (self.k_taskdata, self.k_results, self.k_errors, self.k_records):
                    pipe.hdel(field_hash, *ids)
                pipe.delete(*[self._events_key(i) for i in ids], *[self._ckpt_key(i) for i in ids])
                pipe.zrem(self.k_finished, *ids)
            # Stream entry ids are the server's millisecond timestamps: MINID trims by age.
            min_id = f"{int(cutoff * 1000)}-0"
            for stream in (self.k_dead, self.k_swarm, self.k_notify):
                pipe.xtrim(stream, minid=min_id, approximate=True, limit=_TRIM_LOG_LIMIT)
            await pipe.execute()
            return len(ids)
        finally:
            await self._release_script(keys=[self.k_trim_lock], args=[token])

    async def backlog(self) -> int:
        # Acknowledged entries are deleted, so the streams hold exactly the unfinished tasks.
        pipe = self.r.pipeline(transaction=False)
        for stream in self.streams.values():
            pipe.xlen(stream)
        return sum(int(n) for n in await pipe.execute())
