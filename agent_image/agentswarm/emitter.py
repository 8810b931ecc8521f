"""An agent's event writer: task events and swarm feed entries queued in order and written in batches.

Why: a handler streaming tokens emits hundreds of events a second. Writing each event in its own round
trip makes the handler wait for the broker every time. Here every event goes into one ordered queue per
agent process; one write at a time takes whatever is waiting and stores it with one
:meth:`Broker.publish_events` call (one round trip), so events that arrive while a write is in flight
share the next one (group commit), and each task's events keep their order.

Two ways in, with different promises:

* :meth:`EventWriter.emit` (``await ctx.emit(event)``) returns the event id once the event is stored:
  nothing that was awaited can be lost, even on SIGKILL.
* :meth:`EventWriter.stream` (``await ctx.stream(event)``) returns as soon as the event is queued (it
  waits only while :data:`EMIT_BUFFER` events are already waiting). A SIGKILL loses the streamed events
  not yet written: at most :data:`EMIT_BUFFER`, in practice those of the last round trip (about a
  millisecond). Everything streamed before an ``emit``, a checkpoint's completion or the end of the task is
  stored before that returns or the result is recorded (the agent calls :meth:`flush`).

A write that fails with a transient broker error is retried (the agent's ``retrying``); if the broker
failed in the middle of a batch, the retried batch may store a few events twice (at-least-once, like
a retried single write).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from agentswarm.broker.base import JSON, Broker

log = logging.getLogger("agentswarm.agent")
T = TypeVar("T")

#: Events that may wait to be written before ``ctx.stream`` waits for room.
EMIT_BUFFER: Final = 10_000
#: Most events stored by one write.
EMIT_BATCH: Final = 500
#: How long an agent stopping waits for queued events to be written.
CLOSE_FLUSH_SECONDS: Final = 10.0
#: How long a swarm feed entry may wait for a task event's write to ride along with before it is written
#: on its own. An agent busy with a stream of short tasks writes its "idle" entry together with the next
#: task's "running", "busy" and "started" (one round trip instead of two); a watcher sees it this much later.
SWARM_LINGER_SECONDS: Final = 0.05

Retrying = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]


class _Item:
    __slots__ = ("data", "future", "task_id")

    def __init__(
        self, task_id: str | None, data: dict[str, JSON], future: asyncio.Future[str] | None
    ) -> None:
        self.task_id = task_id  # None: a swarm feed entry
        self.data = data
        self.future = future


class EventWriter:
    """The agent process's single, ordered, batching writer of events (see the module docstring).

    Whoever finds no write in progress drains the queue: an awaited ``emit`` does it inline (no task
    switch, so a handler emitting one event at a time pays one round trip per event, as with a plain
    write), a ``stream`` starts a background drainer. Events queued while a write is in flight go out
    together in the next one.
    """

    def __init__(self, broker: Broker, retrying: Retrying) -> None:
        self.broker = broker
        self.retrying = retrying
        self._queue: collections.deque[_Item] = collections.deque()
        self._lock = asyncio.Lock()
        self._room = asyncio.Event()
        self._room.set()
        self._drainer: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None

    async def _put(self, item: _Item) -> None:
        json.dumps(item.data)  # not JSON: the caller's error, raised at the call
        while len(self._queue) >= EMIT_BUFFER:
            self._room.clear()
            self._kick()
            await self._room.wait()
        self._queue.append(item)

    def _kick(self) -> None:
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="event-writer")

    async def emit(self, task_id: str, data: dict[str, JSON]) -> str:
        """Queue a task event and return its id once it is stored."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        await self._put(_Item(task_id, data, future))
        if not self._lock.locked():
            await self._drain()
        return await future

    async def stream(self, task_id: str, data: dict[str, JSON]) -> None:
        """Queue a task event; it is stored shortly (in order), not necessarily when this returns."""
        await self._put(_Item(task_id, data, None))
        self._kick()

    async def swarm(self, data: dict[str, JSON]) -> None:
        """Queue a swarm feed entry; it is written with the next task events, or on its own after
        :data:`SWARM_LINGER_SECONDS` (best effort: a failure is logged, the task goes on)."""
        await self._put(_Item(None, data, None))
        if self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(SWARM_LINGER_SECONDS, self._lingered)

    def _lingered(self) -> None:
        self._linger = None
        if self._queue:
            self._kick()

    async def flush(self) -> None:
        """Return once everything queued before this call is stored (or its write failed for good)."""
        await self._drain()

    async def close(self) -> None:
        """Write what is queued (for at most :data:`CLOSE_FLUSH_SECONDS`), then stop the writer."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), CLOSE_FLUSH_SECONDS)
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer

    async def _drain(self) -> None:
        async with self._lock:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(EMIT_BATCH, len(self._queue)))]
                self._room.set()
                await self._write(batch)

    async def _write(self, batch: list[_Item]) -> None:
        events = [item for item in batch if item.task_id is not None]
        pairs = [(str(item.task_id), item.data) for item in events]
        swarm = [item.data for item in batch if item.task_id is None]
        try:
            # Swarm feed entries ride in the same write as the task events (one round trip).
            ids = await self.retrying(lambda: self.broker.publish_batch(pairs, swarm), "emit")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("storing %d events and %d swarm feed entries failed: %s", len(events), len(swarm), exc)
            for item in events:
                if item.future is not None and not item.future.done():
                    item.future.set_exception(exc)
        else:
            for item, event_id in zip(events, ids, strict=True):
                if item.future is not None and not item.future.done():
                    item.future.set_result(event_id)
