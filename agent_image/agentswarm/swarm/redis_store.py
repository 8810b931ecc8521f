"""The Redis implementation of :class:`~agentswarm.swarm.store.SwarmStore`, beside the Redis Streams queue.

Keys (``ns`` = namespace), each expiring ``ttl_seconds`` after its last write unless said otherwise:

* ``ns:swarm:node:<id>`` hash ``parent``, ``root``, ``depth``, ``handler``, ``spawner``.
* ``ns:swarm:wait:<parent>`` set of outstanding children, and ``ns:swarm:parked:<parent>`` (present while
  the parent is parked). Parking and a child's finishing are Lua scripts, so they never interleave: the
  script that empties the set deletes the ``parked`` key and ``XADD``-s the parent to the task stream of its
  priority class, once.
* ``ns:swarm:timers`` (sorted set, no expiry; an entry goes when it fires or its parent wakes): wake-up times
  of parents that ``gather`` with a timeout; ``ns:swarm:deadline:<parent>:<child>`` their deadlines.
* ``ns:swarm:spawned:<first child id>``: set once a ``spawn`` call enqueued all its children, so a
  parent that re-runs after parking skips the whole call.
* ``ns:swarm:dead:<id>``: the error of a dead-lettered child (results live in the queue's ``ns:results``).
* ``ns:limit:<hash of the key>``: a rate limit's schedule (GCRA on the server's clock), expiring a minute
  after its last reservation is due.
* ``ns:shared:tree:<root>`` / ``ns:shared:swarm`` (no expiry) hashes ``key -> "<version>:<json>"``, with the
  scope's version counter in ``...:seq``; writes with ``if_version`` are checked in a Lua script.

A re-enqueued parent is a new stream entry for the same task id, so its delivery count starts again: parking
never counts toward dead-lettering.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from agentswarm.broker.base import NewTask, TaskResult, validate_task_id
from agentswarm.broker.redis_connection import TASK_STREAM_LUA
from agentswarm.broker.redis_streams import RedisStreamsBroker
from agentswarm.swarm.store import (
    ChildOutcome,
    ChildStatus,
    Grant,
    Node,
    NotAChild,
    SwarmStore,
    Versioned,
    limit_key,
)

_SPAWN_LUA = """
-- KEYS: parent node. ARGV: ttl, parent id, root, parent depth, node prefix, handler, child1, child2, ...
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'root', ARGV[3], 'depth', ARGV[4], 'parent', '', 'handler', '')
end
redis.call('HSET', KEYS[1], 'spawner', '1')
redis.call('EXPIRE', KEYS[1], ARGV[1])
local added = 0
for i = 7, #ARGV do
  local key = ARGV[5] .. ARGV[i]
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'parent', ARGV[2], 'root', ARGV[3], 'depth', tonumber(ARGV[4]) + 1,
               'handler', ARGV[6], 'spawner', '0')
    redis.call('EXPIRE', key, ARGV[1])
    added = added + 1
  end
end
return added
"""

_PARK_LUA = """
-- KEYS: results hash, wait set, parked key, timers zset.
-- ARGV: parent id, ttl, node prefix, dead prefix, wake_at ('' = none), child1, ...
redis.call('DEL', KEYS[2])
local outstanding = 0
for i = 6, #ARGV do
  local c = ARGV[i]
  if redis.call('HGET', ARGV[3] .. c, 'parent') ~= ARGV[1] then
    return redis.error_reply('NOTCHILD ' .. c)
  end
  if redis.call('HEXISTS', KEYS[1], c) == 0 and redis.call('EXISTS', ARGV[4] .. c) == 0 then
    redis.call('SADD', KEYS[2], c)
    outstanding = outstanding + 1
  end
end
if outstanding == 0 and #ARGV >= 6 then
  redis.call('DEL', KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[4], ARGV[1])
end
if outstanding == 0 then return 1 end  -- a waiter without children: released by wake / wake_due only
return outstanding
"""

_FINISHED_LUA = (
    TASK_STREAM_LUA
    + """
-- KEYS: wait set, parked key, task stream, dead key of the child, timers zset, task data.
-- ARGV: child id, parent id, status, error, ttl
if ARGV[3] == 'dead' then redis.call('SET', KEYS[4], ARGV[4], 'EX', ARGV[5]) end
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 0 then
  if redis.call('DEL', KEYS[2]) == 1 then
    redis.call('ZREM', KEYS[5], ARGV[2])
    redis.call('XADD', task_stream(KEYS[6], KEYS[3], ARGV[2]), '*', 'id', ARGV[2])
    return 1
  end
end
return 0
"""
)

_WAKE_DUE_LUA = (
    TASK_STREAM_LUA
    + """
-- KEYS: timers zset, task stream, task data. ARGV: now, limit, parked prefix, wait prefix
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local woken = 0
for _, p in ipairs(due) do
  redis.call('ZREM', KEYS[1], p)
  if redis.call('DEL', ARGV[3] .. p) == 1 then
    redis.call('DEL', ARGV[4] .. p)
    redis.call('XADD', task_stream(KEYS[3], KEYS[2], p), '*', 'id', p)
    woken = woken + 1
  end
end
return woken
"""
)

_WAKE_ONE_LUA = (
    TASK_STREAM_LUA
    + """
-- KEYS: timers zset, task stream, task data. ARGV: task id, parked prefix, wait prefix
if redis.call('DEL', ARGV[2] .. ARGV[1]) == 1 then
  redis.call('DEL', ARGV[3] .. ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('XADD', task_stream(KEYS[3], KEYS[2], ARGV[1]), '*', 'id', ARGV[1])
  return 1
end
return 0
"""
)

_ACQUIRE_LUA = """
-- KEYS: the limit's schedule (theoretical arrival time). ARGV: cost, per_second, burst.
-- GCRA on the server's clock: the grant is at max(now, tat - tolerance); tat moves on by cost / rate.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1]) / tonumber(ARGV[2])
local tolerance = math.max(0, tonumber(ARGV[3]) - tonumber(ARGV[1])) / tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = math.max(now, tat - tolerance)
local new_tat = math.max(tat, now) + interval
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 60000)
return {string.format('%.6f', at), string.format('%.6f', at - now)}
"""

_PUT_LUA = """
-- KEYS: scope hash, its version counter. ARGV: key, json, if_version ('' = unconditional), ttl (0 = none)
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then
  local have = 0
  if cur then have = tonumber(string.sub(cur, 1, string.find(cur, ':', 1, true) - 1)) end
  if have ~= tonumber(ARGV[3]) then return -1 end
end
local v = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], v .. ':' .. ARGV[2])
if tonumber(ARGV[4]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return v
"""

_DELETE_LUA = """
-- KEYS: scope hash. ARGV: key, if_version ('' = unconditional)
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  local have = 0
  if cur then have = tonumber(string.sub(cur, 1, string.find(cur, ':', 1, true) - 1)) end
  if have ~= tonumber(ARGV[2]) then return -1 end
end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


def _versioned(raw: str) -> Versioned:
    version, _, text = raw.partition(":")
    return Versioned(value=json.loads(text), version=int(version))


class RedisSwarmStore(SwarmStore):
    """Tree bookkeeping, parking and shared context in the Redis of a :class:`RedisStreamsBroker`."""

    broker: RedisStreamsBroker

    def __init__(self, broker: RedisStreamsBroker, **kw: Any) -> None:
        super().__init__(broker, **kw)
        ns = broker.ns
        self.p_node = f"{ns}:swarm:node:"
        self.p_wait = f"{ns}:swarm:wait:"
        self.p_parked = f"{ns}:swarm:parked:"
        self.p_dead = f"{ns}:swarm:dead:"
        self.p_spawned = f"{ns}:swarm:spawned:"
        self.p_deadline = f"{ns}:swarm:deadline:"
        self.k_timers = f"{ns}:swarm:timers"
        self.p_limit = f"{ns}:limit:"
        self.k_shared_swarm = f"{ns}:shared:swarm"
        self.p_shared_tree = f"{ns}:shared:tree:"

    async def connect(self) -> None:
        r = self.broker.r
        self._spawn = r.register_script(_SPAWN_LUA)
        self._park = r.register_script(_PARK_LUA)
        self._finished = r.register_script(_FINISHED_LUA)
        self._wake_due = r.register_script(_WAKE_DUE_LUA)
        self._wake_one = r.register_script(_WAKE_ONE_LUA)
        self._put = r.register_script(_PUT_LUA)
        self._delete = r.register_script(_DELETE_LUA)
        self._acquire = r.register_script(_ACQUIRE_LUA)

    # -- tree ---------------------------------------------------------------------------------------------
    async def node(self, task_id: str) -> Node:
        data: dict[str, str] = await self.broker.r.hgetall(self.p_node + validate_task_id(task_id))  # type: ignore[misc]
        return self._node(task_id, data)

    @staticmethod
    def _node(task_id: str, data: dict[str, str]) -> Node:
        if not data:
            return Node.root_of(task_id)
        return Node(
            task_id=task_id,
            root=data.get("root") or task_id,
            parent=data.get("parent") or None,
            depth=int(data.get("depth") or 0),
            handler=data.get("handler") or None,
            spawner=data.get("spawner") == "1",
        )

    async def node_and_result(self, task_id: str) -> tuple[Node, TaskResult | None]:
        pipe = self.broker.r.pipeline(transaction=False)
        pipe.hgetall(self.p_node + validate_task_id(task_id))
        pipe.hget(self.broker.k_results, task_id)
        data, raw = await pipe.execute()
        return self._node(task_id, data), None if raw is None else TaskResult.from_json(json.loads(raw))

    async def mark_spawner(self, node: Node) -> None:
        args: list[Any] = [self.ttl_seconds, node.task_id, node.root, node.depth, self.p_node, ""]
        await self._spawn(keys=[self.p_node + validate_task_id(node.task_id)], args=args)

    async def spawn(self, parent: Node, children: Sequence[NewTask], handler: str | None) -> int | None:
        ids = [validate_task_id(str(c.id)) for c in children]
        if not ids:
            return 0
        if await self.broker.r.exists(self.p_spawned + ids[0]):
            return None  # a replayed spawn: every child was recorded, enqueued and announced already
        args: list[Any] = [
            self.ttl_seconds,
            parent.task_id,
            parent.root,
            parent.depth,
            self.p_node,
            handler or "",
            *ids,
        ]
        added = await self._spawn(keys=[self.p_node + parent.task_id], args=args)
        await self.broker.enqueue_many(children)
        return int(added)

    async def spawn_done(self, first_child: str) -> None:
        await self.broker.r.set(self.p_spawned + first_child, "1", ex=self.ttl_seconds)

    # -- parking ------------------------------------------------------------------------------------------
    async def outcomes(self, task_ids: Sequence[str]) -> list[ChildOutcome]:
        if not task_ids:
            return []
        pipe = self.broker.r.pipeline(transaction=False)
        pipe.hmget(self.broker.k_results, list(task_ids))
        pipe.mget([self.p_dead + t for t in task_ids])
        results, deads = await pipe.execute()
        out = []
        for task_id, raw, dead in zip(task_ids, results, deads, strict=True):
            if raw is not None:
                res = TaskResult.from_json(json.loads(raw))
                if res.cancelled:
                    out.append(ChildOutcome(task_id, "cancelled"))
                else:
                    out.append(ChildOutcome(task_id, "done", res.value, agent_id=res.agent_id))
            elif dead is not None:
                out.append(ChildOutcome(task_id, "dead", error=str(dead)))
            else:
                out.append(ChildOutcome(task_id, None))
        return out

    async def park(self, task_id: str, waiting_for: Sequence[str], wake_at: float | None = None) -> bool:
        keys = [self.broker.k_results, self.p_wait + task_id, self.p_parked + task_id, self.k_timers]
        when = "" if wake_at is None else f"{wake_at:.3f}"
        args: list[Any] = [task_id, self.ttl_seconds, self.p_node, self.p_dead, when, *waiting_for]
        try:
            outstanding = await self._park(keys=keys, args=args)
        except ResponseError as exc:
            if "NOTCHILD" in str(exc):
                bad = str(exc).split("NOTCHILD", 1)[1].strip()
                raise NotAChild(f"task {bad!r} is not a child of task {task_id!r}") from None
            raise
        return int(outstanding) > 0

    async def child_finished(self, node: Node, status: ChildStatus, error: str | None = None) -> bool:
        if node.parent is None:
            return False
        keys = [
            self.p_wait + node.parent,
            self.p_parked + node.parent,
            self.broker.stream,
            self.p_dead + node.task_id,
            self.k_timers,
            self.broker.k_taskdata,
        ]
        args: list[Any] = [node.task_id, node.parent, status, error or "", self.ttl_seconds]
        return bool(await self._finished(keys=keys, args=args))

    async def deadline(self, task_id: str, key: str, seconds: float) -> float:
        name = f"{self.p_deadline}{task_id}:{key}"
        r = self.broker.r
        await r.set(name, f"{time.time() + seconds:.3f}", nx=True, ex=self.ttl_seconds)
        return float(await r.get(name))

    async def wake(self, task_id: str) -> bool:
        keys = [self.k_timers, self.broker.stream, self.broker.k_taskdata]
        args: list[Any] = [task_id, self.p_parked, self.p_wait]
        return bool(await self._wake_one(keys=keys, args=args))

    async def wake_due(self, now: float) -> int:
        keys = [self.k_timers, self.broker.stream, self.broker.k_taskdata]
        return int(await self._wake_due(keys=keys, args=[f"{now:.3f}", 100, self.p_parked, self.p_wait]))

    # -- rate limits --------------------------------------------------------------------------------------
    async def acquire(self, key: str, cost: float, per_second: float, burst: float) -> Grant:
        at, wait = await self._acquire(keys=[self.p_limit + limit_key(key)], args=[cost, per_second, burst])
        return Grant(at=float(at), wait=max(0.0, float(wait)))

    # -- shared context -----------------------------------------------------------------------------------
    def _scope_key(self, scope: str | None) -> str:
        return self.k_shared_swarm if scope is None else self.p_shared_tree + scope

    async def shared_get(self, scope: str | None, key: str) -> Versioned | None:
        raw = await self.broker.r.hget(self._scope_key(scope), key)  # type: ignore[misc]
        return None if raw is None else _versioned(raw)

    async def shared_put(self, scope: str | None, key: str, raw: bytes, if_version: int | None) -> int | None:
        hkey = self._scope_key(scope)
        ttl = 0 if scope is None else self.ttl_seconds
        cond = "" if if_version is None else str(if_version)
        version = int(await self._put(keys=[hkey, hkey + ":seq"], args=[key, raw, cond, ttl]))
        return None if version < 0 else version

    async def shared_delete(self, scope: str | None, key: str, if_version: int | None) -> bool | None:
        cond = "" if if_version is None else str(if_version)
        n = int(await self._delete(keys=[self._scope_key(scope)], args=[key, cond]))
        return None if n < 0 else n > 0

    async def shared_items(self, scope: str | None) -> dict[str, Versioned]:
        rows: dict[str, str] = await self.broker.r.hgetall(self._scope_key(scope))  # type: ignore[misc]
        return {k: _versioned(v) for k, v in rows.items()}
