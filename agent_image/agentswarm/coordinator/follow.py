"""Catching a subscription up: a cursor over a task's broker event log, turned into ``event`` frames and a
``result``; :mod:`agentswarm.coordinator.fanout` switches it to the live feed once it is up to date.

The promise kept here (docs/protocol.md): every event after the client's cursor exactly once and in
order, the terminal event (``result`` / ``dead_lettered``) as an ``event`` frame, then exactly one
``result`` frame. The result frame is only ever sent after the terminal event was read from the log, or
when the log shows that the client's cursor is already past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agentswarm import protocol as p
from agentswarm.backoff import Backoff
from agentswarm.broker.base import TERMINAL_EVENT_TYPES, Broker, BrokerError, InvalidCursor, TaskEvent
from agentswarm.coordinator.metrics import CoordinatorMetrics
from agentswarm.coordinator.options import ServerOptions

log = logging.getLogger("agentswarm.coordinator")

Send = Callable[[p._Frame], Awaitable[None]]


class Follower:
    """Reads one task's log strictly after a cursor, sends it, and sends the result frame at its end."""

    def __init__(
        self,
        broker: Broker,
        options: ServerOptions,
        metrics: CoordinatorMetrics,
        send: Send,
        task_id: str,
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        self.broker = broker
        self.options = options
        self.metrics = metrics
        self.send = send
        self.task_id = task_id
        #: Bounds how many subscriptions read the broker at once (held only around reads, never while a
        #: frame waits for room in a slow client's buffer).
        self.gate = contextlib.nullcontext() if gate is None else gate

    async def _read(self, cursor: str | None) -> list[TaskEvent]:
        async with self.gate:
            return await self.broker.read_events(self.task_id, cursor, limit=self.options.event_batch)

    async def catch_up(self, cursor: str | None, look_for_dead: bool) -> tuple[str | None, bool]:
        """Send every event in the log after ``cursor`` (and the outcome if the task is finished).

        Returns ``(new cursor, finished)``. Broker failures are reported as ``broker_error`` frames and
        retried with backoff; an invalid cursor ends the subscription with an ``invalid_frame`` error.
        """
        backoff = Backoff(initial=self.options.poll_interval_seconds, maximum=5.0)
        while True:
            terminal: dict[str, Any] | None = None
            try:
                events = await self._read(cursor)
                if not events and cursor is not None:
                    terminal, events = await self._after_empty_read(cursor, look_for_dead)
                    look_for_dead = False
            except asyncio.CancelledError:
                raise
            except InvalidCursor as exc:  # checked at subscribe time; a broker may still refuse it
                await self.send(p.ErrorFrame(code="invalid_frame", message=str(exc), task_id=self.task_id))
                return cursor, True
            except Exception as exc:
                log.warning("subscription %s: broker read failed: %s", self.task_id, exc)
                await self.send(
                    p.ErrorFrame(
                        code="broker_error",
                        message=f"reading {self.task_id} failed: {exc}; retrying",
                        task_id=self.task_id,
                    )
                )
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            for event in events:
                await self.send(p.EventFrame(task_id=self.task_id, event_id=event.id, data=event.data))
                cursor = event.id
                if event.data.get("type") in TERMINAL_EVENT_TYPES:
                    await self.send_outcome(event.data)
                    return cursor, True
            if terminal is not None:
                await self.send_outcome(terminal)
                return cursor, True
            if not events:  # up to date (and, after an empty read, known not to be finished)
                return cursor, False

    async def _after_empty_read(
        self, cursor: str, look_for_dead: bool
    ) -> tuple[dict[str, Any] | None, list[TaskEvent]]:
        """Nothing after the cursor: is the task finished, and did the client already see its end?

        Returns ``(terminal event data, [])`` when the client's cursor is at or past the terminal event,
        ``(None, events)`` when events arrived meanwhile (they are sent first, the terminal one among them),
        and ``(None, [])`` while the task is not finished. A result can be recorded between the empty read
        and the lookup below, so the log is read once more after the terminal event is known to be in it.
        """
        finished = await self.broker.get_result(self.task_id) is not None
        if not finished and not look_for_dead:
            return None, []
        # A dead-lettered task has no result: look its terminal event up once per subscription (a client
        # resuming after it would otherwise wait forever); later dead-letterings arrive as events.
        terminal = await self._terminal_event()
        if terminal is None:
            # Finished but its terminal event is not in the log yet (it is appended right after the result
            # is stored): it reaches the subscription through the live feed.
            return None, []
        again = await self._read(cursor)
        if again:
            return None, again
        return terminal, []

    async def _terminal_event(self) -> dict[str, Any] | None:
        after: str | None = None
        while True:
            events = await self.broker.read_events(self.task_id, after, limit=1000)
            for event in events:
                if event.data.get("type") in TERMINAL_EVENT_TYPES:
                    return event.data
            if len(events) < 1000:
                return None
            after = events[-1].id

    async def send_outcome(self, terminal: dict[str, Any]) -> None:
        task_id = self.task_id
        if terminal.get("type") == "dead_lettered":
            error = terminal.get("error")
            await self.send(
                p.ResultFrame(
                    task_id=task_id,
                    status="dead",
                    error=str(error) if error is not None else "dead-lettered",
                )
            )
            return
        result = await self.broker.get_result(task_id)
        if result is None:  # the terminal event is written after the result: cannot happen, say so
            raise BrokerError(f"task {task_id} has a result event but no stored result")
        duration = None
        if result.started_at is not None:
            duration = max(0.0, result.recorded_at - result.started_at)
            self.metrics.observe_duration(task_id, duration)
        await self.send(
            p.ResultFrame(
                task_id=task_id,
                status="done",
                result=result.value,
                agent_id=result.agent_id,
                attempt=result.attempt,
                duration_seconds=duration,
            )
        )
