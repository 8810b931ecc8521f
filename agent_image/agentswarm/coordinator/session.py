"""One websocket connection: authentication, frame dispatch, and the mapping of contract errors to frames.

A connection may send only small frames (``auth_max_frame_bytes``) until it is authenticated, so an
unauthenticated client cannot make the coordinator buffer anything sizeable; after authentication the
limit is raised to the hard cap. Broker contract errors become the documented error frames
(:data:`agentswarm.protocol.ErrorCode`); nothing else of a backend reaches the client.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agentswarm import protocol as p
from agentswarm import tracing
from agentswarm.broker.base import InvalidCursor, InvalidTaskId, NewTask
from agentswarm.coordinator.fanout import Outbox, SwarmSubscription, TaskSubscription
from agentswarm.coordinator.options import CLOSE_POLICY_VIOLATION
from agentswarm.swarm import ask as asking
from agentswarm.swarm.cancel import cancel_tasks
from agentswarm.swarm.shared import ValueTooLarge

if TYPE_CHECKING:
    from agentswarm.coordinator.server import Coordinator

log = logging.getLogger("agentswarm.coordinator")


class Session:
    """Per-connection state and the handling of its frames."""

    def __init__(self, coordinator: Coordinator, connection: ServerConnection, authenticated: bool) -> None:
        self.coordinator = coordinator
        self.broker = coordinator.broker
        self.options = coordinator.options
        self.metrics = coordinator.metrics
        self.connection = connection
        self.connection_id = uuid.uuid4().hex[:12]
        self.authenticated = False
        self.subscriptions: dict[str, TaskSubscription] = {}
        self.swarm: SwarmSubscription | None = None
        self.outbox = Outbox(connection, self.options.send_buffer_bytes)
        #: Arrival times of this connection's recent malformed frames (the per-connection rate limit).
        self._bad_frames: collections.deque[float] = collections.deque()
        if authenticated:
            self._authenticated()

    def _authenticated(self) -> None:
        self.authenticated = True
        # Frames up to the hard cap from now on (smaller ones get a ``too_large`` error frame).
        self.connection.protocol.max_message_size = self.options.hard_max_frame_bytes

    async def serve(self) -> None:
        try:
            if self.authenticated:
                await self.send(self._welcome())
            elif not await self._authenticate():
                return
            async for message in self.connection:
                await self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            subs: list[TaskSubscription | SwarmSubscription] = list(self.subscriptions.values())
            if self.swarm is not None:
                subs.append(self.swarm)
            self.subscriptions.clear()
            await asyncio.gather(*(sub.close() for sub in subs), return_exceptions=True)
            await self.outbox.close()

    def _welcome(self) -> p.WelcomeFrame:
        return p.WelcomeFrame(connection_id=self.connection_id, max_frame_bytes=self.options.max_frame_bytes)

    async def _authenticate(self) -> bool:
        """First-frame auth: bad JSON is answered and tolerated until the deadline, anything else closes."""
        deadline = time.monotonic() + self.options.auth_timeout_seconds
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(self.connection.recv(), remaining)
            except TimeoutError:
                await self._refuse("auth_timeout", "no auth frame received in time")
                return False
            frame = p.parse_client_frame(message, self.options.max_frame_bytes)
            if isinstance(frame, p.ErrorFrame):
                if self._over_bad_frame_limit():
                    await self._refuse("rate_limited", "too many malformed frames")
                    return False
                await self.send(frame)
                continue
            if not isinstance(frame, p.AuthFrame):
                await self._refuse(
                    "unauthenticated", "authenticate first: send an auth frame or a bearer header"
                )
                return False
            if not self.coordinator.tokens.matches(frame.token):
                await self._refuse("unauthenticated", "invalid token")
                return False
            self._authenticated()
            await self.send(self._welcome())
            return True

    async def _refuse(self, code: p.ErrorCode, message: str) -> None:
        await self.send(p.ErrorFrame(code=code, message=message))
        await self.outbox.flushed()  # the close must follow the frame
        await self.connection.close(CLOSE_POLICY_VIOLATION, message)

    async def send(self, frame: p._Frame) -> None:
        """Queue a frame behind everything queued before it (waits while the send buffer is full)."""
        if isinstance(frame, p.ErrorFrame):
            self.metrics.frame_errors.labels(code=frame.code).inc()
        await self.outbox.put(frame.dump())

    def _over_bad_frame_limit(self) -> bool:
        """Record one malformed frame; True once this connection sent more than the limit in the window."""
        now = time.monotonic()
        window = self._bad_frames
        window.append(now)
        while window and window[0] < now - p.BAD_FRAME_WINDOW_SECONDS:
            window.popleft()
        return len(window) > p.MAX_BAD_FRAMES

    async def _dispatch(self, message: str | bytes) -> None:
        frame = p.parse_client_frame(message, self.options.max_frame_bytes)
        if isinstance(frame, p.ErrorFrame):
            if self._over_bad_frame_limit():
                await self._refuse("rate_limited", "too many malformed frames")
                return
            await self.send(frame)
        elif isinstance(frame, p.AuthFrame):
            await self.send(p.ErrorFrame(code="already_authenticated", message="already authenticated"))
        elif isinstance(frame, p.SubmitFrame):
            await self._submit(frame)
        elif isinstance(frame, p.SubscribeFrame):
            await self._guarded(frame.ref, self._subscribe(frame), frame.task_id)
        elif isinstance(frame, p.UnsubscribeFrame):
            await self._unsubscribe(frame)
        elif isinstance(frame, p.StatsRequestFrame):
            await self._guarded(frame.ref, self._stats(frame))
        elif isinstance(frame, p.SubscribeSwarmFrame):
            await self._guarded(frame.ref, self._subscribe_swarm(frame))
        elif isinstance(frame, p.UnsubscribeSwarmFrame):
            await self._unsubscribe_swarm(frame)
        elif isinstance(frame, p.CancelFrame):
            await self._guarded(frame.ref, self._cancel(frame))
        elif isinstance(frame, p.AnswerFrame):
            await self._guarded(frame.ref, self._answer(frame), frame.task_id)

    async def _guarded(self, ref: str | None, work: Awaitable[None], task_id: str | None = None) -> None:
        """Run a broker operation; contract errors become their error frames, others ``broker_error``."""
        try:
            await work
        except ConnectionClosed:
            raise
        except (InvalidTaskId, InvalidCursor, ValueTooLarge) as exc:
            await self.send(p.ErrorFrame(code="invalid_frame", message=str(exc), ref=ref, task_id=task_id))
        except Exception as exc:
            log.warning("broker operation failed: %s", exc)
            await self.send(
                p.ErrorFrame(
                    code="broker_error",
                    message=f"{type(exc).__name__}: {exc}; retry later",
                    ref=ref,
                    task_id=task_id,
                )
            )

    async def _submit(self, frame: p.SubmitFrame) -> None:
        if self.coordinator.draining:
            await self.send(
                p.ErrorFrame(
                    code="shutting_down",
                    message="coordinator is draining; reconnect and resubmit",
                    ref=frame.ref,
                )
            )
            return

        async def work() -> None:
            first = frame.tasks[0].trace
            parent = tracing.extract(first.carrier() if first else None)
            with tracing.span("submit", {"agentswarm.tasks": len(frame.tasks)}, context=parent):
                specs = [
                    NewTask(
                        payload=t.payload,
                        id=t.task_id,
                        meta=tracing.task_meta(t.trace.carrier() if t.trace else None),
                        priority=t.priority or frame.priority,
                    )
                    for t in frame.tasks
                ]
                ids = await self.broker.enqueue_many(specs)
            self.metrics.tasks_submitted.inc(len(ids))
            await self.send(p.SubmittedFrame(ref=frame.ref, task_ids=ids))

        await self._guarded(frame.ref, work())

    async def _subscribe(self, frame: p.SubscribeFrame) -> None:
        # A malformed cursor is refused once, here, instead of failing every read of the subscription.
        self.broker.check_cursor(frame.after)
        # A typo'd id would otherwise be watched forever. Submitted tasks are in the broker before the
        # ``submitted`` reply, so a client that subscribes after that reply always finds its task.
        if await self.broker.get_task(frame.task_id) is None:
            await self.send(
                p.ErrorFrame(
                    code="not_found",
                    message=f"unknown task {frame.task_id}",
                    ref=frame.ref,
                    task_id=frame.task_id,
                )
            )
            return
        old = self.subscriptions.pop(frame.task_id, None)
        if old is not None:  # re-subscribing moves the cursor: the newest request wins
            await old.close()
        await self.send(p.SubscribedFrame(ref=frame.ref, task_id=frame.task_id, after=frame.after))
        fanout = self.coordinator.fanout
        sub = TaskSubscription(fanout, self.outbox, self.send, frame.task_id, frame.after)
        sub.on_finished = functools.partial(_forget, self, frame.task_id, sub)
        self.subscriptions[frame.task_id] = sub
        fanout.add(sub)

    async def _unsubscribe(self, frame: p.UnsubscribeFrame) -> None:
        sub = self.subscriptions.pop(frame.task_id, None)
        if sub is None:
            await self.send(
                p.ErrorFrame(
                    code="not_found",
                    message=f"not subscribed to {frame.task_id}",
                    ref=frame.ref,
                    task_id=frame.task_id,
                )
            )
            return
        await sub.close()
        await self.send(p.UnsubscribedFrame(ref=frame.ref, task_id=frame.task_id))

    async def _subscribe_swarm(self, frame: p.SubscribeSwarmFrame) -> None:
        self.broker.check_cursor(frame.after)
        if self.swarm is not None:  # re-subscribing moves the cursor
            await self.swarm.close()
        await self.send(p.SubscribedSwarmFrame(ref=frame.ref, after=frame.after))
        self.swarm = SwarmSubscription(self.coordinator.fanout, self.outbox, self.send, frame.after)
        self.coordinator.fanout.add(self.swarm)

    async def _unsubscribe_swarm(self, frame: p.UnsubscribeSwarmFrame) -> None:
        if self.swarm is None:
            await self.send(
                p.ErrorFrame(code="not_found", message="not subscribed to the swarm feed", ref=frame.ref)
            )
            return
        swarm, self.swarm = self.swarm, None
        await swarm.close()
        await self.send(p.UnsubscribedSwarmFrame(ref=frame.ref))

    async def _stats(self, frame: p.StatsRequestFrame) -> None:
        stats = dataclasses.asdict(await self.broker.stats())
        if self.coordinator.budget is not None:
            stats.update((await self.coordinator.budget.status()).as_stats())
        else:
            stats["budget_exhausted"] = False
        await self.send(p.StatsFrame(ref=frame.ref, stats=stats))

    async def _cancel(self, frame: p.CancelFrame) -> None:
        outcomes = await cancel_tasks(self.broker, list(dict.fromkeys(frame.task_ids)))
        await self.send(p.CancelledFrame(ref=frame.ref, outcomes=outcomes))

    async def _answer(self, frame: p.AnswerFrame) -> None:
        try:
            n = await asking.answer(await asking.store_for(self.broker), frame.task_id, frame.input)
        except (asking.NotWaitingForInput, asking.AlreadyAnswered) as exc:
            code: p.ErrorCode = (
                "already_answered" if isinstance(exc, asking.AlreadyAnswered) else "not_waiting"
            )
            await self.send(p.ErrorFrame(code=code, message=str(exc), ref=frame.ref, task_id=frame.task_id))
            return
        await self.send(p.AnsweredFrame(ref=frame.ref, task_id=frame.task_id, question=n))


def _forget(session: Session, task_id: str, sub: TaskSubscription) -> None:
    """A subscription sent its result: it is no longer one of the session's."""
    if session.subscriptions.get(task_id) is sub:
        del session.subscriptions[task_id]
