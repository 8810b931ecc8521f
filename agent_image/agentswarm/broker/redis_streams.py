"""Redis Streams backend (redis-py asyncio): one stream, one consumer group, consumer = agent identity.

Keys (``ns`` = ``AGENTSWARM_NAMESPACE``), nothing grows per agent:

* ``ns:tasks`` stream (entries ``{id}``), consumer group ``ns-agents``. Acknowledged entries are also
  ``XDEL``-eted so the stream holds only queued + in-flight tasks (``XLEN - pending = queued``).
* ``ns:taskdata`` hash ``id -> {"payload", "enqueued_at"}``: enqueue does ``HSETNX`` + ``XADD`` in one Lua
  script, which is what makes enqueue idempotent per task id, also across a Redis restart (AOF).
* ``ns:results`` hash ``id -> result json`` (``HSETNX``: first result wins), ``ns:errors`` hash (last error),
  ``ns:retry_at`` hash (entry id -> when a failed attempt may be retried; removed on ack).
* ``ns:dead`` stream of dead letters; ``ns:events:<id>`` stream per task; ``ns:ckpt:<id>`` list of the
  newest two checkpoint blobs (base64) for the "broker" checkpoint backend.

Claiming (see :meth:`RedisStreamsBroker.claim`): own pending entries (``XPENDING`` for this consumer, then
``XCLAIM`` to re-take them, which counts a delivery), then ``XAUTOCLAIM`` of entries idle longer than
``claim_idle_ms``, then ``XREADGROUP ... >``. Keep-alive is ``XCLAIM ... JUSTID`` of own entries only
(a Lua script checks the owner first, so a slow agent never steals a task back).

Why ``XPENDING`` + ``XCLAIM`` rather than ``XREADGROUP ... 0`` for the own entries: both re-deliver this
consumer's pending entries and count a delivery, but reading by id lets ``claim`` skip entries that are in
flight in this process or waiting for their retry backoff (``ns:retry_at``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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

_ENQUEUE_LUA = """
-- KEYS: taskdata, stream, counters. ARGV: id1, json1, id2, json2, ...
local added = 0
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'id', ARGV[i])
    added = added + 1
  end
end
if added > 0 then redis.call('HINCRBY', KEYS[3], 'enqueued', added) end
return added
"""

_RECORD_LUA = """
-- KEYS: results, events stream of the task. ARGV: task id, result json, event json
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'data', ARGV[3])
  return 1
end
return 0
"""

_KEEPALIVE_LUA = """
-- KEYS: stream. ARGV: group, consumer, id1, id2, ... Re-claims (JUSTID, resets idle) only entries this
-- consumer still owns; returns the ids it no longer owns.
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""

_DEAD_LUA = """
-- KEYS: stream, dead stream, events stream, retry_at hash.
-- ARGV: group, entry id, dead fields json, event json, task id
redis.call('XADD', KEYS[2], '*', 'id', ARGV[5], 'data', ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[3], '*', 'data', ARGV[4])
redis.call('HDEL', KEYS[4], ARGV[2])
return 1
"""

_ENQUEUE_CHUNK = 500


async def _aw(value: Any) -> Any:
    """Await a redis-py command (its stubs type async results as ``Awaitable[T] | T``)."""
    return await value


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamsBroker(Broker):
    """The Redis Streams implementation of :class:`~agentswarm.broker.base.Broker`."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        ca_file: str | None = None,
        namespace: str = "agentswarm",
        max_deliveries: int = 5,
        claim_idle_ms: int = 60_000,
        retry_backoff_ms: int = 0,
    ) -> None:
        super().__init__(
            max_deliveries=max_deliveries, claim_idle_ms=claim_idle_ms, retry_backoff_ms=retry_backoff_ms
        )
        self.url = url
        self._password = password
        self._ca_file = ca_file
        self.ns = namespace
        self.stream = f"{namespace}:tasks"
        self.group = f"{namespace}-agents"
        self.k_taskdata = f"{namespace}:taskdata"
        self.k_results = f"{namespace}:results"
        self.k_errors = f"{namespace}:errors"
        self.k_retry_at = f"{namespace}:retry_at"
        self.k_dead = f"{namespace}:dead"
        self.k_counters = f"{namespace}:counters"
        self._redis: aioredis.Redis | None = None
        self._autoclaim_cursor = "0-0"
        self._last_autoclaim = 0.0
        self._inflight: set[str] = set()
        self._own_clear: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStreamsBroker:
        return cls(
            settings.redis_url,
            password=settings.redis_password.get_secret_value() if settings.redis_password else None,
            ca_file=str(settings.redis_ca_file) if settings.redis_ca_file else None,
            namespace=settings.namespace,
            max_deliveries=settings.max_deliveries,
            claim_idle_ms=settings.claim_idle_ms,
            retry_backoff_ms=settings.retry_backoff_ms,
        )

    # -- helpers ------------------------------------------------------------------------------------------
    @property
    def r(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("broker is not connected: call connect() first")
        return self._redis

    def _events_key(self, task_id: str) -> str:
        return f"{self.ns}:events:{task_id}"

    def _ckpt_key(self, task_id: str) -> str:
        return f"{self.ns}:ckpt:{task_id}"

    async def _ensure_group(self) -> None:
        try:
            await self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, BusyLoadingError)):
            return True
        if isinstance(exc, ResponseError) and str(exc).startswith(("LOADING", "NOGROUP", "TRYAGAIN")):
            return True
        return super().is_transient(exc)

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def connect(self) -> None:
        kwargs: dict[str, Any] = {
            "decode_responses": True,
            "password": self._password,
            "health_check_interval": 10,
            "socket_connect_timeout": 5,
            "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=3),
            "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        }
        if self.url.startswith("rediss://"):
            kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
            if self._ca_file:
                kwargs["ssl_ca_certs"] = self._ca_file
        self._redis = aioredis.Redis.from_url(self.url, **kwargs)
        self._enqueue_script = self._redis.register_script(_ENQUEUE_LUA)
        self._record_script = self._redis.register_script(_RECORD_LUA)
        self._keepalive_script = self._redis.register_script(_KEEPALIVE_LUA)
        self._dead_script = self._redis.register_script(_DEAD_LUA)
        await self._ensure_group()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.r.ping(), timeout=2))
        except Exception:
            return False

    # -- producing ----------------------------------------------------------------------------------------
    async def enqueue_many(self, tasks: Sequence[TaskSpec]) -> list[str]:
        ids = [validate_task_id(t.id) if t.id is not None else new_task_id() for t in tasks]
        now = time.time()
        for start in range(0, len(ids), _ENQUEUE_CHUNK):
            argv: list[str] = []
            for task_id, spec in zip(
                ids[start : start + _ENQUEUE_CHUNK], tasks[start : start + _ENQUEUE_CHUNK], strict=True
            ):
                argv += [task_id, json.dumps({"payload": spec.payload, "enqueued_at": now})]
            await self._enqueue_script(keys=[self.k_taskdata, self.stream, self.k_counters], args=argv)
        return ids

    async def get_task(self, task_id: str) -> Task | None:
        raw = await _aw(self.r.hget(self.k_taskdata, validate_task_id(task_id)))
        if raw is None:
            return None
        data = json.loads(raw)
        return Task(id=task_id, payload=data["payload"], enqueued_at=float(data.get("enqueued_at", 0)))

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
        datas, errors = await pipe.execute()
        out: list[Delivery] = []
        for (entry_id, _fields), task_id, raw, err in zip(entries, task_ids, datas, errors, strict=True):
            if raw is None:  # should not happen; never hand out a task we cannot describe
                log.error("stream entry %s has no task data (task id %r); dropping it", entry_id, task_id)
                await self.r.xack(self.stream, self.group, entry_id)
                continue
            data = json.loads(raw)
            task = Task(id=task_id, payload=data["payload"], enqueued_at=float(data.get("enqueued_at", 0)))
            delivery = Delivery(
                task=task,
                consumer=consumer,
                attempt=counts.get(entry_id, 1),
                source=source,
                handle=entry_id,
                last_error=err,
            )
            if delivery.attempt > self.max_deliveries:
                delivery.attempt -= 1  # this hand-out never reaches a handler
                reason = err or f"abandoned {delivery.attempt} times without a result"
                await self.dead_letter(delivery, reason)
                continue
            self._inflight.add(entry_id)
            out.append(delivery)
        return out

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
        await pipe.execute()
        self._inflight.discard(str(delivery.handle))

    async def fail(self, delivery: Delivery, error: str) -> bool:
        await _aw(self.r.hset(self.k_errors, delivery.task.id, error))
        self._inflight.discard(str(delivery.handle))
        if delivery.attempt >= self.max_deliveries:
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
        await self._dead_script(
            keys=[self.stream, self.k_dead, self._events_key(delivery.task.id), self.k_retry_at],
            args=[self.group, delivery.handle, json.dumps(dead), json.dumps(event), delivery.task.id],
        )
        self._inflight.discard(str(delivery.handle))
        log.warning(
            "task %s dead-lettered after %d deliveries: %s", delivery.task.id, delivery.attempt, error
        )

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
        validate_task_id(result.task_id)
        event = {"type": "result", **result.to_json()}
        recorded = await self._record_script(
            keys=[self.k_results, self._events_key(result.task_id)],
            args=[result.task_id, json.dumps(result.to_json()), json.dumps(event)],
        )
        return bool(recorded)

    async def get_result(self, task_id: str) -> TaskResult | None:
        raw = await _aw(self.r.hget(self.k_results, validate_task_id(task_id)))
        return None if raw is None else TaskResult.from_json(json.loads(raw))

    # -- events -------------------------------------------------------------------------------------------
    async def publish_event(self, task_id: str, data: dict[str, JSON]) -> str:
        return _s(await self.r.xadd(self._events_key(validate_task_id(task_id)), {"data": json.dumps(data)}))

    async def read_events(
        self, task_id: str, after: str | None = None, *, limit: int = 100, block_ms: int = 0
    ) -> list[TaskEvent]:
        key = self._events_key(validate_task_id(task_id))
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
        pipe.xlen(self.stream)
        pipe.xpending(self.stream, self.group)
        pipe.hlen(self.k_results)
        pipe.xlen(self.k_dead)
        pipe.hget(self.k_counters, "enqueued")
        length, pending, done, dead, enqueued = await pipe.execute()
        n_pending = int(pending["pending"]) if pending else 0
        return BrokerStats(
            queued=max(0, int(length) - n_pending),
            pending=n_pending,
            done=int(done),
            dead_lettered=int(dead),
            enqueued_total=int(enqueued or 0),
        )

    async def backlog(self) -> int:
        # Acknowledged entries are deleted, so the stream holds exactly the unfinished tasks.
        return int(await self.r.xlen(self.stream))
