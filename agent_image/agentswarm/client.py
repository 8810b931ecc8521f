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
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agentswarm import protocol as p
from agentswarm import tracing
from agentswarm.backoff import Backoff
from agentswarm.defaults import DEFAULT_URL

log = logging.getLogger("agentswarm.client")


class ClientError(RuntimeError):
    """A failure that retrying will not fix (bad token, invalid request, retries exhausted)."""


class AuthError(ClientError):
    """The coordinator refused the token."""


class CertificateError(ClientError):
    """The coordinator's TLS certificate did not verify (unknown CA, wrong hostname, expired)."""


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

    async def submit(self, tasks: Sequence[p.TaskSpec | dict[str, Any]], *, batch: int = 500) -> list[str]:
        """Enqueue tasks; returns their ids in order. Retries across reconnects without duplicates."""
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
                    await ws.send(p.SubmitFrame(type="submit", ref=ref, tasks=chunks[done]).dump())
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


async def watch_swarm(
    client: SwarmClient,
    on_frame: Callable[[p.SwarmFrame], None],
    *,
    after: str | None = None,
    limit: int | None = None,
) -> str | None:
    """Follow the swarm feed from ``after`` (resuming across reconnects, exactly once, in order) until
    ``limit`` entries arrived or forever; returns the last ``event_id`` seen."""
    cursor = after
    seen = 0

    async def attempt() -> None:
        nonlocal cursor, seen
        ws = await client._open()
        progressed = False
        try:
            await ws.send(p.SubscribeSwarmFrame(type="subscribe_swarm", after=cursor).dump())
            while limit is None or seen < limit:
                frame = p.parse_server_frame(await ws.recv())
                if isinstance(frame, p.SwarmFrame):
                    cursor, progressed = frame.event_id, True
                    seen += 1
                    on_frame(frame)
                elif isinstance(frame, p.ErrorFrame):
                    if frame.code == "broker_error":
                        log.warning("coordinator: %s", frame.message)
                        continue
                    raise ClientError(f"swarm feed refused: {frame.code}: {frame.message}")
        except ConnectionClosed as exc:
            raise _Dropped(_describe(exc), progressed) from exc
        finally:
            await ws.close()

    await client._with_retries(attempt)
    return cursor


def describe_swarm_entry(data: dict[str, Any]) -> str:
    """One human-readable line for a swarm feed entry (``agentswarm watch --all``)."""
    at = time.strftime("%H:%M:%S", time.localtime(float(data.get("at") or 0)))
    if data.get("kind") == "agent":
        status = str(data.get("status"))
        task = f" {data['task_id']}" if status == "busy" and data.get("task_id") else ""
        return f"{at} agent {data.get('agent')} {status}{task}"
    line = f"{at} task {data.get('task_id')} {data.get('state')}"
    if data.get("agent") and data.get("state") == "running":
        line += f" on {data['agent']}"
    if data.get("attempt") and data.get("state") in ("running", "retrying", "dead"):
        line += f" (attempt {data['attempt']})"
    if data.get("reason"):
        line += f" ({data['reason']})"
    if data.get("error"):
        line += f": {_short(str(data['error']))}"
    return line


class _Dropped(Exception):
    """The connection ended mid-operation; ``progressed`` says whether it got anything done first."""

    def __init__(self, reason: str, progressed: bool) -> None:
        super().__init__(reason)
        self.progressed = progressed


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if rcvd is not None:
            return f"closed by server with {rcvd.code} {rcvd.reason!r}".strip()
        return "connection dropped without a close frame"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- live progress ----------------------------------------------------------------------------------


def event_fraction(data: dict[str, Any]) -> float | None:
    """Progress (0..1) an event reports, if any: ``progress``, or ``step`` of ``of``/``steps``/``total``."""
    progress = data.get("progress")
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        return max(0.0, min(1.0, float(progress)))
    step = data.get("step")
    total = next((data[k] for k in ("of", "steps", "total") if k in data), None)
    if isinstance(step, int) and isinstance(total, int) and total > 0:
        return max(0.0, min(1.0, step / total))
    return None


def input_hint(task_id: str, data: dict[str, Any]) -> str:
    """What ``agentswarm watch`` prints for an ``input_required`` event: the question and how to answer."""
    question = json.dumps(data.get("question"))
    if len(question) > 200:
        question = question[:197] + "..."
    return (
        f"task {task_id} needs input: {question}\n"
        f"  answer with: agentswarm answer {task_id} --json '<JSON value>'"
    )


class ProgressBar:
    """A one-line live progress bar on a terminal (plain text lines when not a TTY).

    Overall progress = finished tasks + the fraction each running task last reported, over all tasks.
    """

    def __init__(self, task_ids: Iterable[str], stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.fraction: dict[str, float] = dict.fromkeys(task_ids, 0.0)
        self.done = 0
        self.dead = 0
        self.cancelled = 0
        self.events = 0
        self.reconnects = 0
        self.started = time.monotonic()
        self._last_plain = 0.0
        self._last_line = ""
        self._dirty = False
        self._ticker: asyncio.Task[None] | None = None

    def on_event(self, frame: p.EventFrame) -> None:
        self.events += 1
        if frame.data.get("type") == "input_required":
            self.note(input_hint(frame.task_id, frame.data))
        frac = event_fraction(frame.data)
        if frac is not None and frame.task_id in self.fraction:
            self.fraction[frame.task_id] = max(self.fraction[frame.task_id], min(frac, 0.99))
        self.render()

    def on_result(self, frame: p.ResultFrame) -> None:
        if frame.status == "done":
            self.done += 1
        elif frame.status == "cancelled":
            self.cancelled += 1
        else:
            self.dead += 1
        self.fraction[frame.task_id] = 1.0
        self.render(force=not self.tty)

    def on_reconnect(self, count: int, _error: BaseException) -> None:
        self.reconnects = count
        self.render()

    def line(self) -> str:
        total = len(self.fraction) or 1
        overall = sum(self.fraction.values()) / total
        filled = round(overall * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self.started
        parts = [
            f"[{bar}] {overall * 100:5.1f}%",
            f"{self.done}/{len(self.fraction)} done",
        ]
        if self.dead:
            parts.append(f"{self.dead} dead")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        parts.append(f"{self.events} events")
        if self.reconnects:
            parts.append(f"{self.reconnects} reconnects")
        parts.append(f"{elapsed:.0f}s")
        return "  ".join(parts)

    def render(self, force: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
            self._dirty = True
            return
        now = time.monotonic()
        if force or now - self._last_plain >= 2.0:
            self._last_plain = now
            self._write_plain(self.line())

    def start_ticker(self, every: float = 1.0) -> None:
        """Redraw every ``every`` seconds so elapsed time moves while tasks run without events."""

        async def tick() -> None:
            while True:
                await asyncio.sleep(every)
                self.render()

        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(tick())

    def note(self, text: str) -> None:
        """Print ``text`` above the bar (a TTY keeps the bar as the last line)."""
        prefix = "\r\x1b[2K" if self.tty else ""
        self.stream.write(prefix + text + "\n")
        self.stream.flush()
        if self.tty:
            self.render()

    def _write_plain(self, line: str) -> None:
        if line != self._last_line:
            self._last_line = line
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self.tty and self._dirty:
            self.stream.write("\r\x1b[2K" + self.line() + "\n")
            self.stream.flush()
        elif not self.tty:
            self._write_plain(self.line())


def summary_table(watches: dict[str, TaskWatch]) -> str:
    """A plain-text table of finished tasks: id, status, agent, attempt, events, result/error."""
    rows = [("task", "status", "agent", "attempt", "events", "seconds", "result")]
    for w in watches.values():
        r = w.result
        if r is None:
            rows.append((w.task_id, "unfinished", "-", "-", str(w.events), "-", "-"))
            continue
        seconds = f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "-"
        shown = r.error if r.status == "dead" else _short(r.result)
        rows.append(
            (
                w.task_id,
                r.status,
                r.agent_id or "-",
                str(r.attempt) if r.attempt is not None else "-",
                str(w.events),
                seconds,
                shown or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)


def _short(value: Any, limit: int = 60) -> str:
    import json

    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
