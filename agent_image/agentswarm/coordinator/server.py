"""The coordinator: one websocket + plain-HTTP server in front of the shared queue.

Why one port for both: GKE's load balancer health-checks the same backend port it sends websocket
traffic to, with a plain ``GET`` and no upgrade. ``process_request`` answers ``/healthz``,
``/readyz`` and ``/metrics`` before any handshake happens; only ``/ws`` is upgraded.

The coordinator holds no task state of its own: submits go straight to the broker, and every
subscription is a cursor over the broker's per-task event stream. A client that reconnects (to this
or any other coordinator replica) sends the last event id it saw and continues exactly after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import time
import uuid
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agentswarm import protocol as p
from agentswarm.backoff import Backoff
from agentswarm.broker.base import TERMINAL_EVENT_TYPES, Broker, BrokerError, TaskSpec
from agentswarm.coordinator.auth import DEFAULT_AUTH_TIMEOUT_SECONDS, bearer_token, token_matches
from agentswarm.coordinator.metrics import CoordinatorMetrics
from agentswarm.defaults import DEFAULT_PORT

log = logging.getLogger("agentswarm.coordinator")

#: Close code sent to every client when the coordinator shuts down ("service restart": reconnect).
CLOSE_SERVICE_RESTART = 1012
#: Close code for policy violations (authentication failures).
CLOSE_POLICY_VIOLATION = 1008


@dataclass(frozen=True)
class CoordinatorConfig:
    """Runtime knobs of one coordinator. Built from settings by :func:`run`, directly by tests."""

    api_token: str
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    shutdown_drain_seconds: float = 5.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    max_frame_bytes: int = p.DEFAULT_MAX_FRAME_BYTES
    hard_max_frame_bytes: int = p.DEFAULT_HARD_MAX_FRAME_BYTES
    auth_timeout_seconds: float = DEFAULT_AUTH_TIMEOUT_SECONDS
    #: How long an idle subscription waits before polling the broker again.
    poll_interval_seconds: float = 0.2
    #: Events fetched per broker read.
    event_batch: int = 200
    #: How long one subscription's broker read waits for new events (0 = poll every poll_interval).
    block_ms: int = 0
    ready_timeout_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.api_token:
            raise ValueError(
                "AGENTSWARM_API_TOKEN is empty: the coordinator refuses to serve without a token "
                "(set it from a Kubernetes Secret, or let `agentswarm local` generate one)"
            )
        if self.hard_max_frame_bytes <= self.max_frame_bytes:
            raise ValueError("hard_max_frame_bytes must be larger than max_frame_bytes")


@dataclass
class _Session:
    """Per-connection state."""

    connection: ServerConnection
    connection_id: str
    authenticated: bool = False
    subscriptions: dict[str, asyncio.Task[None]] = field(default_factory=dict)


class Coordinator:
    """Serves the websocket API and health endpoints for one broker.

    Use :meth:`start` / :meth:`shutdown` (tests, embedding) or :meth:`run_until_signalled` (CLI).
    """

    def __init__(self, broker: Broker, config: CoordinatorConfig) -> None:
        self.broker = broker
        self.config = config
        self.metrics = CoordinatorMetrics()
        self.draining = False
        self._server: Server | None = None
        self._sessions: dict[ServerConnection, _Session] = {}
        # Connections whose upgrade request carried a valid bearer token. Weak, so a handshake that
        # fails after process_request (e.g. a plain GET) leaves nothing behind to be mistaken later.
        self._preauthed: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._stopped = asyncio.Event()
        #: False until the broker connection is up; /readyz answers 503 meanwhile.
        self.broker_connected = True

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        assert self._server is not None, "coordinator not started"
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("coordinator has no listening socket")

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            ping_interval=self.config.ping_interval,
            ping_timeout=self.config.ping_timeout,
            # The library closes with 1009 above max_size; keep that far above the application limit
            # so that merely-too-large frames get an error frame and the connection survives.
            max_size=self.config.hard_max_frame_bytes,
            # No permessage-deflate: frames are small JSON documents, and a zlib compressor plus
            # decompressor per connection costs ~35 KiB of every idle websocket (bench/FINDINGS.md #2),
            # which decides how many agents' watchers one coordinator holds.
            compression=None,
            server_header="agentswarm-coordinator",
        )
        log.info("coordinator listening on %s:%s", self.config.host, self.port)

    async def shutdown(self, drain_seconds: float | None = None) -> None:
        """Drain (readyz answers 503, everything else keeps working), then close websockets with 1012."""
        drain = self.config.shutdown_drain_seconds if drain_seconds is None else drain_seconds
        self.draining = True
        if drain > 0:
            log.info("draining for %.1fs before closing websockets", drain)
            await asyncio.sleep(drain)
        server = self._server
        if server is not None:
            conns = list(server.connections)
            await asyncio.gather(
                *(c.close(CLOSE_SERVICE_RESTART, "coordinator restarting; reconnect") for c in conns),
                return_exceptions=True,
            )
            server.close(close_connections=False)
            await server.wait_closed()
        self._stopped.set()

    async def run_until_signalled(self, connect: bool = True) -> None:
        """Serve until SIGTERM/SIGINT, then drain and close (the Kubernetes pod lifecycle).

        With ``connect=True`` the broker is connected in the background after the port is open.
        """
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        connecting = asyncio.create_task(self.connect_broker()) if connect else None
        try:
            await stop.wait()
            log.info("signal received; draining for %.1fs", self.config.shutdown_drain_seconds)
            await self.shutdown()
        finally:
            if connecting is not None:
                connecting.cancel()
                await asyncio.gather(connecting, return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            with contextlib.suppress(Exception):
                await self.broker.close()

    # --- plain HTTP ----------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            if self.draining:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            ok, detail = await self._ping_broker()
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            return connection.respond(status, f"{detail}\n")
        if path == "/metrics":
            await self._refresh_metrics()
            body = self.metrics.render()
            response = connection.respond(HTTPStatus.OK, "")
            # Headers is a multidict: replace, do not append, the text/plain defaults of respond().
            del response.headers["Content-Type"]
            del response.headers["Content-Length"]
            response.headers["Content-Type"] = self.metrics.content_type
            response.headers["Content-Length"] = str(len(body))
            response.body = body
            return response
        if path != "/ws":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found; the websocket API is at /ws\n")
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            if not token_matches(self.config.api_token, bearer_token(authorization)):
                self.metrics.frame_errors.labels(code="unauthenticated").inc()
                response = connection.respond(HTTPStatus.UNAUTHORIZED, "invalid bearer token\n")
                # The client is told why; the token itself is never logged.
                response.headers["WWW-Authenticate"] = 'Bearer realm="agentswarm"'
                return response
            self._preauthed.add(connection)
        return None  # continue with the websocket handshake (or the library's 426 for plain GETs)

    async def connect_broker(self, max_delay: float = 10.0) -> None:
        """Connect the broker, retrying with backoff, while health endpoints already answer.

        Serving ``/healthz`` before the broker is up keeps the liveness probe from restarting a
        coordinator that merely waits for Redis/NATS to come up; ``/readyz`` stays 503 meanwhile.
        """
        self.broker_connected = False
        backoff = Backoff(initial=0.2, maximum=max_delay)
        while True:
            try:
                await self.broker.connect()
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning(
                    "broker not reachable yet (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            self.broker_connected = True
            log.info("broker connected (%s)", self.broker.name)
            return

    async def _ping_broker(self) -> tuple[bool, str]:
        if not self.broker_connected:
            return False, "broker not connected yet"
        try:
            ok = await asyncio.wait_for(self.broker.ping(), self.config.ready_timeout_seconds)
        except Exception as exc:  # ping should not raise; a timeout still means "not ready"
            self.metrics.broker_up.set(0)
            return False, f"broker unavailable: {type(exc).__name__}: {exc}"
        self.metrics.broker_up.set(1 if ok else 0)
        return (True, "ready") if ok else (False, "broker unavailable")

    async def _refresh_metrics(self) -> None:
        try:
            stats = await asyncio.wait_for(self.broker.stats(), self.config.ready_timeout_seconds)
        except Exception as exc:
            log.warning("metrics: broker stats failed: %s", exc)
            self.metrics.broker_up.set(0)
            return
        self.metrics.broker_up.set(1)
        self.metrics.update_from_stats(stats)

    # --- websocket -----------------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        session = _Session(connection=connection, connection_id=uuid.uuid4().hex[:12])
        session.authenticated = connection in self._preauthed
        self._preauthed.discard(connection)
        self._sessions[connection] = session
        self.metrics.websocket_connections.inc()
        self.metrics.websocket_connections_total.inc()
        try:
            if session.authenticated:
                await self._send(session, self._welcome(session))
            elif not await self._authenticate(session):
                return
            async for message in connection:
                await self._dispatch(session, message)
        except ConnectionClosed:
            pass
        finally:
            for task in session.subscriptions.values():
                task.cancel()
            await asyncio.gather(*session.subscriptions.values(), return_exceptions=True)
            self._sessions.pop(connection, None)
            self.metrics.websocket_connections.dec()

    def _welcome(self, session: _Session) -> p.WelcomeFrame:
        return p.WelcomeFrame(
            connection_id=session.connection_id, max_frame_bytes=self.config.max_frame_bytes
        )

    async def _authenticate(self, session: _Session) -> bool:
        """First-frame auth: bad JSON is answered and tolerated until the deadline, anything else closes."""
        deadline = time.monotonic() + self.config.auth_timeout_seconds
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(session.connection.recv(), remaining)
            except TimeoutError:
                await self._refuse(session, "auth_timeout", "no auth frame received in time")
                return False
            frame = p.parse_client_frame(message, self.config.max_frame_bytes)
            if isinstance(frame, p.ErrorFrame):
                await self._send(session, frame)
                continue
            if not isinstance(frame, p.AuthFrame):
                await self._refuse(
                    session, "unauthenticated", "authenticate first: send an auth frame or a bearer header"
                )
                return False
            if not token_matches(self.config.api_token, frame.token):
                await self._refuse(session, "unauthenticated", "invalid token")
                return False
            session.authenticated = True
            await self._send(session, self._welcome(session))
            return True

    async def _refuse(self, session: _Session, code: p.ErrorCode, message: str) -> None:
        await self._send(session, p.ErrorFrame(code=code, message=message))
        await session.connection.close(CLOSE_POLICY_VIOLATION, message)

    async def _send(self, session: _Session, frame: p._Frame) -> None:
        if isinstance(frame, p.ErrorFrame):
            self.metrics.frame_errors.labels(code=frame.code).inc()
        await session.connection.send(frame.dump())

    async def _dispatch(self, session: _Session, message: str | bytes) -> None:
        frame = p.parse_client_frame(message, self.config.max_frame_bytes)
        if isinstance(frame, p.ErrorFrame):
            await self._send(session, frame)
        elif isinstance(frame, p.AuthFrame):
            await self._send(
                session, p.ErrorFrame(code="already_authenticated", message="already authenticated")
            )
        elif isinstance(frame, p.SubmitFrame):
            await self._submit(session, frame)
        elif isinstance(frame, p.SubscribeFrame):
            await self._guarded(session, frame.ref, self._subscribe(session, frame))
        elif isinstance(frame, p.UnsubscribeFrame):
            await self._unsubscribe(session, frame)
        elif isinstance(frame, p.StatsRequestFrame):
            await self._guarded(session, frame.ref, self._stats(session, frame))

    async def _guarded(self, session: _Session, ref: str | None, work: Awaitable[None]) -> None:
        """Run a broker operation; a broker failure becomes an error frame, not a dropped connection."""
        try:
            await work
        except ConnectionClosed:
            raise
        except Exception as exc:
            log.warning("broker operation failed: %s", exc)
            await self._send(
                session,
                p.ErrorFrame(
                    code="broker_error", message=f"{type(exc).__name__}: {exc}; retry later", ref=ref
                ),
            )

    async def _submit(self, session: _Session, frame: p.SubmitFrame) -> None:
        if self.draining:
            await self._send(
                session,
                p.ErrorFrame(
                    code="shutting_down",
                    message="coordinator is draining; reconnect and resubmit",
                    ref=frame.ref,
                ),
            )
            return

        async def work() -> None:
            ids = await self.broker.enqueue_many(
                [TaskSpec(payload=spec.payload, id=spec.task_id) for spec in frame.tasks]
            )
            self.metrics.tasks_submitted.inc(len(ids))
            await self._send(session, p.SubmittedFrame(ref=frame.ref, task_ids=ids))

        await self._guarded(session, frame.ref, work())

    async def _subscribe(self, session: _Session, frame: p.SubscribeFrame) -> None:
        # A typo'd id would otherwise be watched forever. Submitted tasks are in the broker before the
        # ``submitted`` reply, so a client that subscribes after that reply always finds its task.
        if await self.broker.get_task(frame.task_id) is None:
            await self._send(
                session,
                p.ErrorFrame(code="not_found", message=f"unknown task {frame.task_id}", ref=frame.ref),
            )
            return
        old = session.subscriptions.pop(frame.task_id, None)
        if old is not None:  # re-subscribing moves the cursor: the newest request wins
            old.cancel()
            await asyncio.gather(old, return_exceptions=True)
        await self._send(session, p.SubscribedFrame(ref=frame.ref, task_id=frame.task_id, after=frame.after))
        task = asyncio.create_task(self._follow(session, frame.task_id, frame.after))
        session.subscriptions[frame.task_id] = task
        task.add_done_callback(functools.partial(_forget, session, frame.task_id))

    async def _unsubscribe(self, session: _Session, frame: p.UnsubscribeFrame) -> None:
        task = session.subscriptions.pop(frame.task_id, None)
        if task is None:
            await self._send(
                session,
                p.ErrorFrame(code="not_found", message=f"not subscribed to {frame.task_id}", ref=frame.ref),
            )
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self._send(session, p.UnsubscribedFrame(ref=frame.ref, task_id=frame.task_id))

    async def _stats(self, session: _Session, frame: p.StatsRequestFrame) -> None:
        stats = await self.broker.stats()
        await self._send(session, p.StatsFrame(ref=frame.ref, stats=dataclasses.asdict(stats)))

    async def _follow(self, session: _Session, task_id: str, after: str | None) -> None:
        """Stream a task's events strictly after ``after``, in order, then its result frame, then end.

        The broker appends a terminal ``result`` / ``dead_lettered`` event when the task finishes, so
        following the event log alone is race-free: everything the handler emitted comes before it.
        A client resuming *after* the terminal event still gets the result frame (looked up when the
        log has nothing newer).
        """
        cursor = after
        backoff = Backoff(initial=self.config.poll_interval_seconds, maximum=5.0)
        # Idle subscriptions poll less often (up to 5x the interval) so that thousands of watched
        # long tasks do not hammer the broker; any new event resets the pace.
        idle = self.config.poll_interval_seconds
        checked_dead = False
        while True:
            try:
                events = await self.broker.read_events(
                    task_id, cursor, limit=self.config.event_batch, block_ms=self.config.block_ms
                )
                result = None
                dead: dict[str, Any] | None = None
                if not events and cursor is not None:
                    result = await self.broker.get_result(task_id)
                    if result is None and not checked_dead:
                        # Resumed after the terminal event of a dead-lettered task: nothing newer will
                        # ever come, so look the terminal event up once (a dead task has no result).
                        checked_dead = True
                        dead = await self._dead_letter_event(task_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("subscription %s: broker read failed: %s", task_id, exc)
                await self._send(
                    session,
                    p.ErrorFrame(code="broker_error", message=f"reading {task_id} failed: {exc}; retrying"),
                )
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            for event in events:
                await self._send(session, p.EventFrame(task_id=task_id, event_id=event.id, data=event.data))
                cursor = event.id
                kind = event.data.get("type")
                if kind in TERMINAL_EVENT_TYPES:
                    await self._send_outcome(session, task_id, event.data)
                    return
            if result is not None:
                await self._send_outcome(session, task_id, {"type": "result"})
                return
            if dead is not None:
                await self._send_outcome(session, task_id, dead)
                return
            if events:
                idle = self.config.poll_interval_seconds
            elif self.config.block_ms <= 0:
                await asyncio.sleep(idle)
                idle = min(idle * 1.5, self.config.poll_interval_seconds * 5)

    async def _dead_letter_event(self, task_id: str) -> dict[str, Any] | None:
        after: str | None = None
        while True:
            events = await self.broker.read_events(task_id, after, limit=1000)
            for event in events:
                if event.data.get("type") == "dead_lettered":
                    return event.data
            if len(events) < 1000:
                return None
            after = events[-1].id

    async def _send_outcome(self, session: _Session, task_id: str, terminal: dict[str, Any]) -> None:
        if terminal.get("type") == "dead_lettered":
            error = terminal.get("error")
            await self._send(
                session,
                p.ResultFrame(
                    task_id=task_id,
                    status="dead",
                    error=str(error) if error is not None else "dead-lettered",
                ),
            )
            return
        result = await self.broker.get_result(task_id)
        if result is None:  # the terminal event is written after the result: cannot happen, say so
            raise BrokerError(f"task {task_id} has a result event but no stored result")
        duration = None
        if result.started_at is not None:
            duration = max(0.0, result.recorded_at - result.started_at)
            self.metrics.observe_duration(task_id, duration)
        await self._send(
            session,
            p.ResultFrame(
                task_id=task_id,
                status="done",
                result=result.value,
                agent_id=result.agent_id,
                attempt=result.attempt,
                duration_seconds=duration,
            ),
        )


def _forget(session: _Session, task_id: str, task: asyncio.Task[None]) -> None:
    if session.subscriptions.get(task_id) is task:
        del session.subscriptions[task_id]
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, ConnectionClosed):
            log.error("subscription %s crashed: %r", task_id, exc)
