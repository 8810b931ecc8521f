"""The Redis side of the Redis Streams broker: the connection, the keys and the Lua scripts.

Keys (``ns`` = ``AGENTSWARM_NAMESPACE``), nothing grows per agent:

* ``ns:tasks`` stream (entries ``{id}``), consumer group ``ns-agents``: the ``normal`` priority class;
  ``ns:tasks:high`` and ``ns:tasks:low`` are the other two classes, with a consumer group of the same name
  (:mod:`agentswarm.broker.priority` says which one a claim reads). Acknowledged entries are also
  ``XDEL``-eted so the streams hold only queued + in-flight tasks (``XLEN - pending = queued``, and the sum of
  the three ``XLEN`` is the backlog). A delivery's handle is its entry id, prefixed ``high/`` or ``low/``
  outside the ``normal`` stream.
* ``ns:taskdata`` hash ``id -> {"payload", "enqueued_at"}``: enqueue does ``HSETNX`` + ``XADD`` in one Lua
  script, which is what makes enqueue idempotent per task id, also across a Redis restart (AOF).
* ``ns:results`` hash ``id -> result json`` (``HSETNX``: first result wins; a cancellation is a result with
  ``status: cancelled``), ``ns:errors`` hash (last error),
  ``ns:retry_at`` hash (entry id -> when a failed attempt may be retried; removed on ack),
  ``ns:deliveries`` hash (id -> :class:`~agentswarm.broker.base.DeliveryRecord` json; removed on ack).
* ``ns:buried`` hash (id -> dead-letter reason) of tasks in the dead-letter log whose queue entry is not
  removed yet (dead-lettering is resumable: see :mod:`agentswarm.broker.base`).
* ``ns:dead`` stream of dead letters; ``ns:events:<id>`` stream per task; ``ns:ckpt:<id>`` list of the
  newest two checkpoint blobs (base64) for the "broker" checkpoint backend.
* ``ns:notify`` stream (capped): one entry ``{t: task id, i: event id, d: data}`` per task event, appended in
  the same script as the event, which is what coordinators follow (:mod:`agentswarm.broker.redis_notify`);
  ``ns:swarm`` stream (capped): the swarm feed.
* ``ns:finished`` sorted set (task id, scored by the server time it finished: result, cancellation or dead
  letter), the index :meth:`~agentswarm.broker.redis_records.RedisRecords.trim` forgets finished tasks
  by (Redis 7.0 has no per-field hash expiry); ``ns:trim-lock`` (expiring): held by the process trimming.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from typing import TYPE_CHECKING, Any, Self

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, OutOfMemoryError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentswarm.broker.base import (
    PRIORITIES,
    Broker,
    Priority,
)
from agentswarm.broker.priority import ClassOrder
from agentswarm.defaults import DEFAULT_RETENTION_SECONDS

if TYPE_CHECKING:
    from agentswarm.settings import Settings

log = logging.getLogger(__name__)

_ENQUEUE_LUA = """
-- KEYS: taskdata, normal stream, counters, swarm feed, high stream, low stream.
-- ARGV: swarm maxlen, id1, json1, swarm1, stream key index1, id2, ...
local added = 0
for i = 2, #ARGV, 4 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('XADD', KEYS[tonumber(ARGV[i + 3])], '*', 'id', ARGV[i])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[i + 2])
    added = added + 1
  end
end
if added > 0 then redis.call('HINCRBY', KEYS[3], 'enqueued', added) end
return added
"""

_READ_NEW_LUA = """
-- KEYS: task streams in the order to read them. ARGV: group, consumer, count, then per key the most to take
-- from it (0 = as many as are left). Reads new entries (non-blocking) until count is reached; returns one
-- list of entries per key read (an empty list: nothing waiting there).
local out = {}
local left = tonumber(ARGV[3])
for i = 1, #KEYS do
  if left <= 0 then break end
  local n = tonumber(ARGV[3 + i])
  if n == 0 or n > left then n = left end
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', n, 'STREAMS', KEYS[i], '>')
  local got = {}
  if r then got = r[1][2] end
  table.insert(out, got)
  left = left - #got
end
return out
"""

#: Lua: the stream of a task's priority class (read from its task data), for scripts that re-enqueue a task.
TASK_STREAM_LUA = """
local function task_stream(taskdata, normal_stream, id)
  local raw = redis.call('HGET', taskdata, id)
  if raw then
    local ok, data = pcall(cjson.decode, raw)
    if ok and type(data) == 'table' and (data['priority'] == 'high' or data['priority'] == 'low') then
      return normal_stream .. ':' .. data['priority']
    end
  end
  return normal_stream
end
"""

_RECORD_LUA = """
-- KEYS: results, events stream of the task, notify stream, swarm feed, finished index; to acknowledge the
-- delivery in the same step (Broker.finish) also: its task stream, retry_at hash, delivery records hash.
-- ARGV: task id, result json, event json, notify maxlen, swarm json, swarm maxlen; to acknowledge also:
-- group, stream entry id, delivery handle.
local recorded = 0
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[5], redis.call('TIME')[1], ARGV[1])
  local id = redis.call('XADD', KEYS[2], '*', 'data', ARGV[3])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 't', ARGV[1], 'i', id, 'd', ARGV[3])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'data', ARGV[5])
  recorded = 1
end
if #KEYS == 8 then
  redis.call('XACK', KEYS[6], ARGV[7], ARGV[8])
  redis.call('XDEL', KEYS[6], ARGV[8])
  redis.call('HDEL', KEYS[7], ARGV[9])
  redis.call('HDEL', KEYS[8], ARGV[1])
end
return recorded
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

_BURY_LUA = """
-- KEYS: dead stream, events stream of the task, buried hash, notify stream, swarm feed, finished index.
-- ARGV: task id, dead fields json, event json, error, notify maxlen, swarm json, swarm maxlen.
-- Step 1 of dead-lettering, once per task; the event is announced on the notify stream like every event.
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[4]) == 0 then return 0 end
redis.call('ZADD', KEYS[6], redis.call('TIME')[1], ARGV[1])
redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'data', ARGV[2])
local id = redis.call('XADD', KEYS[2], '*', 'data', ARGV[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 't', ARGV[1], 'i', id, 'd', ARGV[3])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', 'data', ARGV[6])
return 1
"""

_DEAD_LUA = """
-- KEYS: stream, retry_at hash, deliveries hash, buried hash.
-- ARGV: group, entry id, task id, delivery handle.
-- Step 3 of dead-lettering: the buried task leaves the queue.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[4])
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[3])
return 1
"""

_CANCEL_LUA = """
-- KEYS: taskdata, results, events stream of the task, buried, notify stream, swarm feed, finished index.
-- ARGV: task id, cancellation json, event json, notify maxlen, swarm json, swarm maxlen
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'not_found' end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 or redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  return 'finished'
end
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if #last == 1 then
  local ok, data = pcall(cjson.decode, last[1][2][2])
  if ok and type(data) == 'table' and data['type'] == 'dead_lettered' then return 'finished' end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[7], redis.call('TIME')[1], ARGV[1])
local id = redis.call('XADD', KEYS[3], '*', 'data', ARGV[3])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*', 't', ARGV[1], 'i', id, 'd', ARGV[3])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[6], '*', 'data', ARGV[5])
return 'cancelled'
"""

_RELEASE_LUA = """
-- KEYS: lock. ARGV: token. Delete the lock only if this process still holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_ENQUEUE_CHUNK = 500


async def _aw(value: Any) -> Any:
    """Await a redis-py command (its stubs type async results as ``Awaitable[T] | T``)."""
    return await value


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisConnection(Broker):
    """Connection, key names and scripts shared by the parts of :class:`RedisStreamsBroker`."""

    name = "redis"
    cursor_pattern = re.compile(r"^[0-9]{1,20}(-[0-9]{1,20})?$")
    cursor_hint = "a stream entry id such as 1700000000000-0"

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
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        super().__init__(
            max_deliveries=max_deliveries,
            claim_idle_ms=claim_idle_ms,
            retry_backoff_ms=retry_backoff_ms,
            retention_seconds=retention_seconds,
        )
        self.url = url
        self._password = password
        self._ca_file = ca_file
        self.ns = namespace
        self.stream = f"{namespace}:tasks"
        #: The task stream of each priority class (``normal`` is :attr:`stream`).
        self.streams: dict[Priority, str] = {c: self._class_stream(c) for c in PRIORITIES}
        self.group = f"{namespace}-agents"
        self.k_taskdata = f"{namespace}:taskdata"
        self.k_results = f"{namespace}:results"
        self.k_errors = f"{namespace}:errors"
        self.k_retry_at = f"{namespace}:retry_at"
        self.k_dead = f"{namespace}:dead"
        self.k_records = f"{namespace}:deliveries"
        self.k_buried = f"{namespace}:buried"
        self.k_counters = f"{namespace}:counters"
        self.k_notify = f"{namespace}:notify"
        self.k_swarm = f"{namespace}:swarm"
        self.k_finished = f"{namespace}:finished"
        self.k_trim_lock = f"{namespace}:trim-lock"
        self._redis: aioredis.Redis | None = None
        self._autoclaim_cursors: dict[Priority, str] = dict.fromkeys(PRIORITIES, "0-0")
        self._orders: dict[str, ClassOrder] = {}
        self._last_autoclaim = 0.0
        self._inflight: set[str] = set()
        self._own_clear: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            settings.redis_url,
            password=settings.redis_password.get_secret_value() if settings.redis_password else None,
            ca_file=str(settings.redis_ca_file) if settings.redis_ca_file else None,
            namespace=settings.namespace,
            max_deliveries=settings.max_deliveries,
            claim_idle_ms=settings.claim_idle_ms,
            retry_backoff_ms=settings.retry_backoff_ms,
            retention_seconds=settings.retention_seconds,
        )

    # -- helpers ------------------------------------------------------------------------------------------
    @property
    def r(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("broker is not connected: call connect() first")
        return self._redis

    def _class_stream(self, cls: Priority) -> str:
        return self.stream if cls == "normal" else f"{self.stream}:{cls}"

    @staticmethod
    def _handle(cls: Priority, entry_id: str) -> str:
        """A delivery's handle: the entry id, prefixed by its class outside the ``normal`` stream."""
        return entry_id if cls == "normal" else f"{cls}/{entry_id}"

    def _entry(self, handle: object) -> tuple[str, str]:
        """``(stream, entry id)`` of a delivery handle."""
        cls, _, entry_id = str(handle).rpartition("/")
        return self.streams.get(cls, self.stream), entry_id  # type: ignore[call-overload]

    def _events_key(self, task_id: str) -> str:
        return f"{self.ns}:events:{task_id}"

    def _ckpt_key(self, task_id: str) -> str:
        return f"{self.ns}:ckpt:{task_id}"

    async def _ensure_group(self) -> None:
        for stream in self.streams.values():
            try:
                await self.r.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, BusyLoadingError)):
            return True
        if isinstance(exc, ResponseError) and str(exc).startswith(("LOADING", "NOGROUP", "TRYAGAIN")):
            return True
        if isinstance(exc, OutOfMemoryError):  # maxmemory with noeviction: refused, nothing written; retry
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
        self._read_new_script = self._redis.register_script(_READ_NEW_LUA)
        self._record_script = self._redis.register_script(_RECORD_LUA)
        self._keepalive_script = self._redis.register_script(_KEEPALIVE_LUA)
        self._bury_script = self._redis.register_script(_BURY_LUA)
        self._cancel_script = self._redis.register_script(_CANCEL_LUA)
        self._dead_script = self._redis.register_script(_DEAD_LUA)
        self._release_script = self._redis.register_script(_RELEASE_LUA)
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
