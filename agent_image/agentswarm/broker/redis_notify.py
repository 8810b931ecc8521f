"""The Redis side of the live feed (:mod:`agentswarm.broker.feed`): events are appended to their task's
log and, in the same Lua script, to the capped ``ns:notify`` stream; a coordinator follows ``ns:notify``
and the capped ``ns:swarm`` stream with one blocking ``XREAD`` of both (one command per batch of events,
one per :data:`~agentswarm.broker.feed.FEED_BLOCK_MS` when idle), however many tasks it watches.

Appending both in one script keeps each task's order identical in its log and in the notify stream, so a
follower that read a task's log up to id X and then takes notify entries after X misses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from agentswarm.backoff import Backoff
from agentswarm.broker.base import JSON, TaskEvent, validate_task_id
from agentswarm.broker.feed import (
    FEED_BLOCK_MS,
    NOTIFY_RETENTION,
    SWARM_FEED_RETENTION,
    FeedReset,
    SwarmEvent,
)
from agentswarm.broker.redis_connection import _s
from agentswarm.broker.redis_records import RedisRecords

log = logging.getLogger(__name__)

_EVENTS_LUA = """
-- KEYS: notify stream, swarm stream, then the events stream of each run of consecutive events of one task.
-- ARGV: notify maxlen, swarm maxlen, number of swarm entries, their data, then per run: task id, number of
-- events, their data.
local ids = {}
local nswarm = tonumber(ARGV[3])
local a = 4 + nswarm
for k = 3, #KEYS do
  local task, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    local id = redis.call('XADD', KEYS[k], '*', 'data', ARGV[a])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 't', task, 'i', id, 'd', ARGV[a])
    ids[#ids + 1] = id
    a = a + 1
  end
end
for i = 4, 3 + nswarm do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[i])
end
return ids
"""

#: Entries taken from the notify and swarm streams per ``XREAD``.
_FEED_BATCH = 1000


class RedisNotify(RedisRecords):
    """Event appends that notify, the swarm feed's log, and :meth:`follow`."""

    async def connect(self) -> None:
        await super().connect()
        self._events_script = self.r.register_script(_EVENTS_LUA)

    async def publish_event(self, task_id: str, data: dict[str, JSON]) -> str:
        return (await self.publish_events([(task_id, data)]))[0]

    async def publish_events(self, events: Sequence[tuple[str, dict[str, JSON]]]) -> list[str]:
        return await self.publish_batch(events, ())

    async def publish_batch(
        self, events: Sequence[tuple[str, dict[str, JSON]]], swarm: Sequence[dict[str, JSON]]
    ) -> list[str]:
        # One script call for the whole batch (one round trip, atomic): consecutive events of one task
        # form a run with one key.
        runs: list[tuple[str, list[str]]] = []
        for task_id, data in events:
            validate_task_id(task_id)
            if runs and runs[-1][0] == task_id:
                runs[-1][1].append(json.dumps(data))
            else:
                runs.append((task_id, [json.dumps(data)]))
        if not runs and not swarm:
            return []
        keys = [self.k_notify, self.k_swarm] + [self._events_key(task_id) for task_id, _ in runs]
        args: list[Any] = [NOTIFY_RETENTION, SWARM_FEED_RETENTION, len(swarm)]
        args += [json.dumps(data) for data in swarm]
        for task_id, datas in runs:
            args += [task_id, len(datas), *datas]
        return [_s(i) for i in await self._events_script(keys=keys, args=args)]

    async def publish_swarm_event(self, data: dict[str, JSON]) -> str:
        entry_id = await self.r.xadd(
            self.k_swarm, {"data": json.dumps(data)}, maxlen=SWARM_FEED_RETENTION, approximate=True
        )
        return _s(entry_id)

    async def read_swarm_events(self, after: str | None = None, *, limit: int = 100) -> list[SwarmEvent]:
        self.check_cursor(after)
        start = after if after not in (None, "", "0") else "0-0"
        resp = await self.r.xread({self.k_swarm: start}, count=limit)
        out: list[SwarmEvent] = []
        for _stream, rows in resp or []:
            out += [SwarmEvent(id=_s(i), data=json.loads(f["data"])) for i, f in rows]
        return out

    async def _last_id(self, key: str) -> str:
        rows = await self.r.xrevrange(key, count=1)
        return _s(rows[0][0]) if rows else "0-0"

    async def follow(self) -> AsyncIterator[list[TaskEvent | SwarmEvent] | FeedReset]:
        positions: dict[str, str] | None = None
        backoff = Backoff(initial=0.2, maximum=5.0)
        reason = "feed started"
        while True:
            if positions is None:
                try:
                    positions = {
                        self.k_notify: await self._last_id(self.k_notify),
                        self.k_swarm: await self._last_id(self.k_swarm),
                    }
                except Exception as exc:
                    if not self.is_transient(exc):
                        raise
                    await asyncio.sleep(backoff.next_delay())
                    continue
                yield FeedReset(reason)
            try:
                streams: dict[Any, Any] = dict(positions)
                resp = await self.r.xread(streams, count=_FEED_BATCH, block=FEED_BLOCK_MS)
            except Exception as exc:
                if not self.is_transient(exc):
                    raise
                log.warning("redis feed interrupted (%s: %s); resynchronising", type(exc).__name__, exc)
                positions, reason = None, "broker connection lost"
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            batch: list[TaskEvent | SwarmEvent] = []
            for stream, rows in resp or []:
                key = _s(stream)
                for entry_id, fields in rows:
                    positions[key] = _s(entry_id)
                    if key == self.k_notify:
                        batch.append(
                            TaskEvent(id=fields["i"], task_id=fields["t"], data=json.loads(fields["d"]))
                        )
                    else:
                        batch.append(SwarmEvent(id=_s(entry_id), data=json.loads(fields["data"])))
            if batch:
                yield batch
