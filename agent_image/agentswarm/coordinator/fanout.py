"""Push-based fan-out: one broker feed per coordinator, spread over every subscription of every websocket.

Why: polling each watched task's log costs the broker one read per watched task per poll, and delivers an
event up to one poll interval late. Instead :class:`Fanout` follows :meth:`Broker.follow` (a bounded number
of broker operations however many tasks are watched) and hands each new event to the subscriptions of its
task, encoded once.

A subscription is in one of three states:

* **catching up**: it reads its log from its cursor (:class:`~agentswarm.coordinator.follow.Follower`)
  while live events for it are held back; then it sends the held-back events that are newer than its cursor
  and turns live. The feed must be up (a :class:`FeedReset` seen) before the read starts, so every event is
  either in the log read or in the held-back ones. Duplicates are dropped by event order.
* **live**: events from the feed go straight into the connection's :class:`Outbox`.
* **finished**: the terminal event and the ``result`` frame were sent.

Backpressure: each connection has an :class:`Outbox` of at most ``send_buffer_bytes``. A live event that
does not fit is not queued; the subscription falls back to catching up, which waits for room and reads from
its cursor, so a client that stops reading costs a bounded amount of memory, misses nothing, and never
slows other connections. A :class:`FeedReset` (feed started, broker reconnected) sends every subscription
back to catching up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agentswarm import protocol as p
from agentswarm.backoff import Backoff
from agentswarm.broker.base import TERMINAL_EVENT_TYPES, Broker, TaskEvent
from agentswarm.broker.feed import FeedReset, SwarmEvent
from agentswarm.coordinator.follow import Follower
from agentswarm.coordinator.metrics import CoordinatorMetrics
from agentswarm.coordinator.options import ServerOptions

log = logging.getLogger("agentswarm.coordinator")

#: How long stopping waits for the feed to close.
_STOP_SECONDS = 5.0
#: Live events held back per subscription while it catches up; past it the catch-up simply reads again.
_HELD_BACK = 10_000


class Outbox:
    """One connection's send buffer: frames in order, at most ``limit`` bytes waiting, one writer task."""

    def __init__(self, connection: ServerConnection, limit: int) -> None:
        self.connection = connection
        self.limit = limit
        self.size = 0
        self._frames: collections.deque[str] = collections.deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._empty = asyncio.Event()
        self._empty.set()
        self.closed = False
        self._writer = asyncio.create_task(self._write())

    def offer(self, text: str) -> bool:
        """Queue ``text`` if it fits (never waits); False when the buffer is full or closed."""
        if self.closed:
            return False
        if self.size + len(text) > self.limit and self.size > 0:
            self._room.clear()
            return False
        self._frames.append(text)
        self.size += len(text)
        self._ready.set()
        self._empty.clear()
        return True

    async def put(self, text: str) -> None:
        """Queue ``text``, waiting for room first (the pace of a slow client).

        Raises :class:`ConnectionClosed` once the connection is gone.
        """
        while not self.offer(text):
            if self.closed:
                raise ConnectionClosed(None, None)
            await self._room.wait()

    async def _write(self) -> None:
        try:
            while True:
                await self._ready.wait()
                while self._frames:
                    text = self._frames.popleft()
                    await self.connection.send(text)
                    self.size -= len(text)
                    if self.size <= self.limit // 2:
                        self._room.set()
                self._ready.clear()
                self._empty.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._frames.clear()
            self.size = 0
            self._room.set()
            self._empty.set()

    async def flushed(self) -> None:
        """Wait until every queued frame was handed to the connection (or the connection closed)."""
        await self._empty.wait()

    async def close(self) -> None:
        self.closed = True
        self._room.set()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer


class _Subscription:
    """What task and swarm subscriptions share: the state machine of the module docstring."""

    def __init__(self, fanout: Fanout, outbox: Outbox, cursor: str | None) -> None:
        self.fanout = fanout
        self.outbox = outbox
        self.cursor = cursor
        self.live = False
        self.finished = False
        self._held: list[Any] | None = None
        self._again = False
        self._task: asyncio.Task[None] | None = None
        self.on_finished: Callable[[], None] | None = None

    # -- driven by the fanout ---------------------------------------------------------------------------
    def start_catch_up(self) -> None:
        """Go (back) to catching up; a catch-up already running reads once more instead."""
        self.live = False
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._catch_up_loop())

    def deliver(self, event: Any, text: Callable[[], str]) -> None:
        if self.finished:
            return
        if not self.live:
            if self._held is not None:
                if len(self._held) < _HELD_BACK:
                    self._held.append(event)
                else:
                    self._held, self._again = None, True
            return
        if not self._newer(event.id):
            return
        if not self.outbox.offer(text()):
            if self.outbox.closed:
                return  # the session is ending and closes its subscriptions
            self.fanout.metrics_lagged()
            self.start_catch_up()  # the client is slow: it gets the rest from the log at its own pace
            return
        self.cursor = event.id
        self._after_live(event)

    # -- catching up -----------------------------------------------------------------------------------
    async def _catch_up_loop(self) -> None:
        try:
            while not self.finished:
                await self.fanout.feed_up.wait()
                self._again = False
                self._held = []
                done = await self._read_log()
                if done:
                    self._finish()
                    return
                # Send what was held back meanwhile; events keep being held back until the switch to
                # live below, which happens with no await in between (nothing falls through the gap).
                sent = 0
                while self._held is not None and sent < len(self._held) and not self._again:
                    event = self._held[sent]
                    sent += 1
                    if self._newer(event.id):
                        await self.outbox.put(self._text(event))
                        self.cursor = event.id
                        self._after_live(event)
                        if self.finished:
                            return
                if self._again or self._held is None:
                    continue
                self._held = None
                self.live = True
                return
        except asyncio.CancelledError:
            raise
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("subscription catch-up crashed")
        finally:
            self._held = None

    def _newer(self, event_id: str) -> bool:
        if self.cursor in (None, "", "0"):
            return True
        order = self.fanout.broker.event_order
        return order(event_id) > order(str(self.cursor))

    def _finish(self) -> None:
        self.finished, self.live = True, False
        self.fanout.remove(self)
        if self.on_finished is not None:
            self.on_finished()

    async def close(self) -> None:
        self.finished, self.live = True, False
        self.fanout.remove(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # -- per kind --------------------------------------------------------------------------------------
    async def _read_log(self) -> bool:
        raise NotImplementedError

    def _text(self, event: Any) -> str:
        raise NotImplementedError

    def _after_live(self, event: Any) -> None:
        """Called after a live or held-back event was queued."""


class TaskSubscription(_Subscription):
    """A ``subscribe``: one task's events after a cursor, then its ``result`` frame."""

    def __init__(
        self,
        fanout: Fanout,
        outbox: Outbox,
        send: Callable[[p._Frame], Awaitable[None]],
        task_id: str,
        cursor: str | None,
    ) -> None:
        super().__init__(fanout, outbox, cursor)
        self.task_id = task_id
        self.follower = Follower(
            fanout.broker, fanout.options, fanout.metrics, send, task_id, fanout.catch_up_slots
        )
        self._look_for_dead = True

    async def _read_log(self) -> bool:
        self.cursor, done = await self.follower.catch_up(self.cursor, self._look_for_dead)
        self._look_for_dead = False
        return done

    def _text(self, event: TaskEvent) -> str:
        return event_text(event)

    def _after_live(self, event: TaskEvent) -> None:
        if event.data.get("type") in TERMINAL_EVENT_TYPES:
            self.finished, self.live = True, False
            self.fanout.remove(self)
            self._task = asyncio.create_task(self._outcome(event.data))

    async def _outcome(self, terminal: dict[str, Any]) -> None:
        backoff = Backoff(initial=self.fanout.options.poll_interval_seconds, maximum=5.0)
        while True:
            try:
                await self.follower.send_outcome(terminal)
                break
            except ConnectionClosed:
                return
            except Exception as exc:  # get_result failed: the broker is away, try again
                log.warning("subscription %s: result lookup failed: %s", self.task_id, exc)
                await asyncio.sleep(backoff.next_delay())
        if self.on_finished is not None:
            self.on_finished()


class SwarmSubscription(_Subscription):
    """A ``subscribe_swarm``: the swarm feed after a cursor, until unsubscribed."""

    def __init__(
        self, fanout: Fanout, outbox: Outbox, send: Callable[[p._Frame], Awaitable[None]], cursor: str | None
    ) -> None:
        super().__init__(fanout, outbox, cursor)
        self.send = send

    async def _read_log(self) -> bool:
        backoff = Backoff(initial=self.fanout.options.poll_interval_seconds, maximum=5.0)
        batch = self.fanout.options.event_batch
        while True:
            try:
                async with self.fanout.catch_up_slots:
                    events = await self.fanout.broker.read_swarm_events(self.cursor, limit=batch)
            except Exception as exc:
                log.warning("swarm subscription: broker read failed: %s", exc)
                await self.send(
                    p.ErrorFrame(
                        code="broker_error", message=f"reading the swarm feed failed: {exc}; retrying"
                    )
                )
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            for event in events:
                await self.outbox.put(self._text(event))
                self.cursor = event.id
            if len(events) < batch:
                return False

    def _text(self, event: SwarmEvent) -> str:
        return swarm_text(event)


def event_text(event: TaskEvent) -> str:
    return p.EventFrame(task_id=event.task_id, event_id=event.id, data=event.data).dump()


def swarm_text(event: SwarmEvent) -> str:
    return p.SwarmFrame(event_id=event.id, data=event.data).dump()


class Fanout:
    """Follows the broker feed and hands its events to this coordinator's subscriptions."""

    def __init__(self, broker: Broker, options: ServerOptions, metrics: CoordinatorMetrics) -> None:
        self.broker = broker
        self.options = options
        self.metrics = metrics
        self.by_task: dict[str, set[TaskSubscription]] = {}
        self.swarm: set[SwarmSubscription] = set()
        #: Set once the feed is up (its first reset seen): catch-ups wait for it.
        self.feed_up = asyncio.Event()
        self.catch_up_slots = asyncio.Semaphore(options.catch_up_concurrency)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fanout")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # Bounded: a shutdown must not hang on the broker client's clean-up of the feed.
            await asyncio.wait({self._task}, timeout=_STOP_SECONDS)

    def metrics_lagged(self) -> None:
        self.metrics.lagged.inc()

    def add(self, sub: _Subscription) -> None:
        if isinstance(sub, TaskSubscription):
            self.by_task.setdefault(sub.task_id, set()).add(sub)
        elif isinstance(sub, SwarmSubscription):
            self.swarm.add(sub)
        sub.start_catch_up()

    def remove(self, sub: _Subscription) -> None:
        if isinstance(sub, TaskSubscription):
            subs = self.by_task.get(sub.task_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.by_task[sub.task_id]
        elif isinstance(sub, SwarmSubscription):
            self.swarm.discard(sub)

    def _all(self) -> Iterable[_Subscription]:
        for subs in list(self.by_task.values()):
            yield from list(subs)
        yield from list(self.swarm)

    async def _run(self) -> None:
        backoff = Backoff(initial=0.2, maximum=5.0)
        while True:
            feed = self.broker.follow()
            try:
                async for item in feed:
                    if isinstance(item, FeedReset):
                        log.info("event feed (re)started: %s", item.reason)
                        self.feed_up.set()
                        for sub in self._all():
                            sub.start_catch_up()
                        backoff.reset()
                    else:
                        self._dispatch(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event feed failed (%s: %s); restarting it", type(exc).__name__, exc)
            finally:
                with contextlib.suppress(Exception):
                    await feed.aclose()  # type: ignore[attr-defined]
            await asyncio.sleep(backoff.next_delay())

    def _dispatch(self, batch: list[TaskEvent | SwarmEvent]) -> None:
        for event in batch:
            if isinstance(event, SwarmEvent):
                if self.swarm:
                    text = _Once(swarm_text, event)
                    for swarm_sub in list(self.swarm):
                        swarm_sub.deliver(event, text)
                continue
            subs = self.by_task.get(event.task_id)
            if subs:
                text = _Once(event_text, event)
                for sub in list(subs):
                    sub.deliver(event, text)


class _Once:
    """The frame text of one event, encoded on first use and shared by every subscriber."""

    __slots__ = ("_encode", "_event", "_text")

    def __init__(self, encode: Callable[[Any], str], event: Any) -> None:
        self._encode = encode
        self._event = event
        self._text: str | None = None

    def __call__(self) -> str:
        if self._text is None:
            self._text = self._encode(self._event)
        return self._text
