"""Websocket client for the coordinator: submit tasks, watch them, survive every disconnect.

Every connection to a coordinator ends eventually: GKE's load balancer cuts websockets at its backend
timeout whatever the traffic, nginx cuts idle ones, coordinators restart (close code 1012). The client
therefore treats a closed connection as routine: it reconnects with exponential backoff (with jitter,
reset after each successful handshake) and re-subscribes every unfinished task *after the last event id
it saw*, so the caller sees each event exactly once and in order.

Submits are safe to retry: the client picks task ids itself before the first attempt, and the broker
ignores an id it already knows.

``wss://`` URLs verify the coordinator's certificate and hostname, against the system trust store or a CA
bundle (``ca_file``); a certificate that does not verify is a :class:`ClientError` at once, never retried
and never skipped, because the bearer token would go to whoever holds the connection.

The swarm feed is followed by :mod:`agentswarm.client_feed`, the CLI's output is drawn by
:mod:`agentswarm.client_display`, and the exceptions live in :mod:`agentswarm.client_errors`; all of them are
importable from here as well.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agentswarm import protocol as p
from agentswarm import tracing
from agentswarm.backoff import Backoff
from agentswarm.broker.types import DEFAULT_PRIORITY, Priority, validate_priority
from agentswarm.client_display import (
    ProgressBar,
    describe_swarm_entry,
    event_fraction,
    input_hint,
    summary_table,
)
from agentswarm.client_errors import AuthError, CertificateError, ClientError, _describe, _Dropped
from agentswarm.client_feed import watch_swarm
from agentswarm.defaults import DEFAULT_URL

__all__ = [
    "AuthError",
    "Backoff",
    "CertificateError",
    "ClientError",
    "ProgressBar",
    "SwarmClient",
    "TaskWatch",
    "describe_swarm_entry",
    "event_fraction",
    "input_hint",
    "summary_table",
    "tls_context",
    "watch_swarm",
]

log = logging.getLogger("agentswarm.client")


def tls_context(url: str, ca_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext | None:
    """The TLS settings of ``url``: ``None`` for ``ws://``; for ``wss://`` a verifying context (hostname and
    chain) trusting the system store, or only ``ca_file`` when given. A CA file with ``ws://`` is an error:
    the caller asked for verification that a plain connection cannot give."""
    if not url.startswith("wss://"):
        if ca_file is not None:
            raise ClientError(f"a CA file needs a wss:// URL, got {url}")
        return None
    try:
        return ssl.create_default_context(cafile=os.fspath(ca_file) if ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ClientError(f"cannot read the CA file {ca_file}: {exc}") from None


@dataclass
class TaskWatch:
    """What the client knows about one watched task."""

    task_id: str
    last_event_id: str | None = None
    events: int = 0
    result: p.ResultFrame | None = None
    last_data: dict[str, Any] = field(default_factory=dict)


EventCallback = Callable[[p.EventFrame], None]
ResultCallback = Callable[[p.ResultFrame], None]


class SwarmClient:
    """Talks to one coordinator URL (usually a load balancer in front of several).

    ``max_retries`` bounds *consecutive* failed connection attempts (None = retry forever); a
    connection that completes its handshake resets the count.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str = "",
        *,
        backoff: Backoff | None = None,
        max_retries: int | None = None,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        on_reconnect: Callable[[int, BaseException], None] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if not token:
            raise ClientError("no API token: pass --token or set AGENTSWARM_API_TOKEN")
        self.tls = tls_context(url, ca_file)
        self.url = url
        self.token = token
        self.backoff = backoff or Backoff()
        self.max_retries = max_retries
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.on_reconnect = on_reconnect
        #: Connections opened so far and how many of them ended unexpectedly.
        self.connections = 0
        self.reconnects = 0

    # --- connection management ------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        """Connect and authenticate (bearer header); returns after the welcome frame."""
        ws = await connect(
            self.url,
            ssl=self.tls,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            open_timeout=self.open_timeout,
            ping_interval=self.ping_interval,
            max_size=p.DEFAULT_HARD_MAX_FRAME_BYTES,
        )
        try:
            frame = p.parse_server_frame(await asyncio.wait_for(ws.recv(), self.open_timeout))
        except BaseException:
            await ws.close()
            raise
        if isinstance(frame, p.ErrorFrame):
            await ws.close()
            raise ClientError(f"coordinator refused the connection: {frame.code}: {frame.message}")
        if not isinstance(frame, p.WelcomeFrame):
            await ws.close()
            raise ClientError(f"expected a welcome frame, got {frame.type}")
        self.connections += 1
        return ws

    async def _with_retries(self, attempt: Callable[[], Any]) -> Any:
        """Run ``attempt()`` (which opens its own connection) until it returns, reconnecting on drops."""
        failures = 0
        while True:
            try:
                return await attempt()
            except InvalidStatus as exc:
                if exc.response.status_code == 401:
                    raise AuthError(f"coordinator at {self.url} rejected the API token (HTTP 401)") from None
                error: BaseException = exc
            except ssl.SSLCertVerificationError as exc:
                raise CertificateError(
                    f"the TLS certificate of {self.url} did not verify ({exc.verify_message}); pass the CA "
                    "bundle that signed it with --ca-file (AGENTSWARM_CA_FILE)"
                ) from None
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError, _Dropped) as exc:
                error = exc
            if isinstance(error, _Dropped) and error.progressed:
                failures = 0
                self.backoff.reset()
            failures += 1
            self.reconnects += 1
            if self.max_retries is not None and failures > self.max_retries:
                raise ClientError(f"gave up after {failures} failed attempts: {_describe(error)}") from error
            delay = self.backoff.next_delay()
            log.info("connection lost (%s); reconnecting in %.2fs", _describe(error), delay)
            if self.on_reconnect is not None:
                self.on_reconnect(self.reconnects, error)
            await asyncio.sleep(delay)

    # --- operations --------------------------------------------------------------------------------

    async def submit(
        self,
        tasks: Sequence[p.TaskSpec | dict[str, Any]],
        *,
        batch: int = 500,
        priority: Priority = DEFAULT_PRIORITY,
    ) -> list[str]:
        """Enqueue tasks; returns their ids in order. Retries across reconnects without duplicates.

        ``priority`` (``high``, ``normal``, ``low``) applies to the tasks that name none themselves; an
        unknown value raises ``ValueError`` before anything is sent.
        """
        validate_priority(priority)
        specs = [t if isinstance(t, p.TaskSpec) else p.TaskSpec.model_validate(t) for t in tasks]
        # Ids are fixed before the first attempt so that a retry after a lost reply is a no-op.
        specs = [s if s.task_id else s.model_copy(update={"task_id": uuid.uuid4().hex}) for s in specs]
        carrier = tracing.inject()  # the caller's trace context, when tracing is on: the tasks join it
        if carrier.get("traceparent"):
            context = p.TraceContext.model_validate(carrier)
            specs = [s if s.trace else s.model_copy(update={"trace": context}) for s in specs]
        ids: list[str] = []
        chunks = [specs[i : i + batch] for i in range(0, len(specs), batch)]
        done = 0

        async def attempt() -> None:
            nonlocal done
            ws = await self._open()
            progressed = False
            try:
                while done < len(chunks):
                    ref = uuid.uuid4().hex[:8]
                    frame_out = p.SubmitFrame(type="submit", ref=ref, tasks=chunks[done], priority=priority)
                    await ws.send(frame_out.dump())
                    while True:
                        frame = p.parse_server_frame(await ws.recv())
                        if isinstance(frame, p.SubmittedFrame) and frame.ref == ref:
                            ids.extend(frame.task_ids)
                            done += 1
                            progressed = True
                            break
                        if isinstance(frame, p.ErrorFrame) and frame.ref == ref:
                            if frame.code in ("broker_error", "shutting_down"):
                                raise _Dropped(f"{frame.code}: {frame.message}", progressed)
                            raise ClientError(f"submit refused: {frame.code}: {frame.message}")
            except ConnectionClosed as exc:
                raise _Dropped(_describe(exc), progressed) from exc
            finally:
                await ws.close()

        await self._with_retries(attempt)
        return ids

    async def watch(
        self,
        task_ids: Iterable[str],
        *,
        after: dict[str, str | None] | None = None,
        on_event: EventCallback | None = None,
        on_result: ResultCallback | None = None,
        follow_spawned: bool = False,
    ) -> dict[str, TaskWatch]:
        """Follow tasks until each has a result frame; returns their :class:`TaskWatch` records.

        ``after`` gives per-task event ids already seen (resume a watch from an earlier process).
        ``follow_spawned``: also follow every child a watched task spawns (its ``spawned`` events), and
        theirs, so the whole tree is watched; the returned records then include the descendants.
        """
        watches = {tid: TaskWatch(task_id=tid, last_event_id=(after or {}).get(tid)) for tid in task_ids}

        async def attempt() -> None:
            if all(w.result is not None for w in watches.values()):
                return
            ws = await self._open()
            progressed = False
            try:
                for pending in list(watches.values()):
                    if pending.result is None:
                        sub = p.SubscribeFrame(
                            type="subscribe", task_id=pending.task_id, after=pending.last_event_id
                        )
                        await ws.send(sub.dump())
                while any(w.result is None for w in watches.values()):
                    frame = p.parse_server_frame(await ws.recv())
                    if isinstance(frame, p.EventFrame):
                        ew = watches.get(frame.task_id)
                        if ew is None or ew.result is not None:
                            continue
                        ew.last_event_id = frame.event_id
                        ew.events += 1
                        ew.last_data = frame.data
                        progressed = True
                        if follow_spawned and frame.data.get("type") == "spawned":
                            for child in frame.data.get("children") or []:
                                if isinstance(child, str) and child not in watches:
                                    watches[child] = TaskWatch(task_id=child)
                                    sub = p.SubscribeFrame(type="subscribe", task_id=child, after=None)
                                    await ws.send(sub.dump())
                        if on_event is not None:
                            on_event(frame)
                    elif isinstance(frame, p.ResultFrame):
                        rw = watches.get(frame.task_id)
                        if rw is None or rw.result is not None:
                            continue
                        rw.result = frame
                        progressed = True
                        if on_result is not None:
                            on_result(frame)
                    elif isinstance(frame, p.ErrorFrame):
                        if frame.code == "broker_error":
                            log.warning("coordinator: %s", frame.message)
                            continue
                        raise ClientError(f"watch failed: {frame.code}: {frame.message}")
            except ConnectionClosed as exc:
                raise _Dropped(_describe(exc), progressed) from exc
            finally:
                await ws.close()

        await self._with_retries(attempt)
        return watches

    async def cancel(self, task_ids: Sequence[str]) -> dict[str, str]:
        """Cancel tasks and the trees below them; per id ``cancelled``, ``finished`` or ``not_found``.

        Safe to retry across reconnects: cancelling again answers ``finished``.
        """
        ids = list(dict.fromkeys(task_ids))
        outcomes: dict[str, str] = {}

        async def attempt() -> None:
            ws = await self._open()
            progressed = False
            try:
                for start in range(len(outcomes), len(ids), p.MAX_TASKS_PER_SUBMIT):
                    chunk = ids[start : start + p.MAX_TASKS_PER_SUBMIT]
                    ref = uuid.uuid4().hex[:8]
                    await ws.send(p.CancelFrame(type="cancel", ref=ref, task_ids=chunk).dump())
                    while True:
                        frame = p.parse_server_frame(await ws.recv())
                        if isinstance(frame, p.CancelledFrame) and frame.ref == ref:
                            for task_id in chunk:  # a retried chunk reports "finished": keep the first word
                                outcomes.setdefault(task_id, frame.outcomes[task_id])
                            progressed = True
                            break
                        if isinstance(frame, p.ErrorFrame) and frame.ref == ref:
                            if frame.code in ("broker_error", "shutting_down"):
                                raise _Dropped(f"{frame.code}: {frame.message}", progressed)
                            raise ClientError(f"cancel refused: {frame.code}: {frame.message}")
            except ConnectionClosed as exc:
                raise _Dropped(_describe(exc), progressed) from exc
            finally:
                await ws.close()

        await self._with_retries(attempt)
        return {task_id: outcomes[task_id] for task_id in ids}

    async def answer(self, task_id: str, value: Any) -> int:
        """Answer the question ``task_id`` waits on (its ``ctx.ask``); returns the question's number.

        Raises :class:`ClientError` when the task is not waiting for input or the question was already
        answered (a retry after a lost reply therefore reports ``already_answered``).
        """

        async def attempt() -> int:
            ws = await self._open()
            try:
                await ws.send(p.AnswerFrame(type="answer", ref="answer", task_id=task_id, input=value).dump())
                while True:
                    frame = p.parse_server_frame(await ws.recv())
                    if isinstance(frame, p.AnsweredFrame):
                        return frame.question
                    if isinstance(frame, p.ErrorFrame):
                        if frame.code in ("broker_error", "shutting_down"):
                            raise _Dropped(f"{frame.code}: {frame.message}", False)
                        raise ClientError(f"answer refused: {frame.code}: {frame.message}")
            except ConnectionClosed as exc:
                raise _Dropped(_describe(exc), False) from exc
            finally:
                await ws.close()

        result: int = await self._with_retries(attempt)
        return result

    async def stats(self) -> dict[str, Any]:
        """The broker's counters (queued, pending, done, dead_lettered, ...)."""

        async def attempt() -> dict[str, Any]:
            ws = await self._open()
            try:
                await ws.send(p.StatsRequestFrame(type="stats", ref="stats").dump())
                while True:
                    frame = p.parse_server_frame(await ws.recv())
                    if isinstance(frame, p.StatsFrame):
                        return frame.stats
                    if isinstance(frame, p.ErrorFrame):
                        raise _Dropped(f"{frame.code}: {frame.message}", False)
            except ConnectionClosed as exc:
                raise _Dropped(_describe(exc), False) from exc
            finally:
                await ws.close()

        result: dict[str, Any] = await self._with_retries(attempt)
        return result
