"""The coordinator: one websocket + plain-HTTP server in front of the shared queue.

Why one port for both: GKE's load balancer health-checks the same backend port it sends websocket
traffic to, with a plain ``GET`` and no upgrade. ``process_request`` answers ``/healthz``,
``/readyz`` and ``/metrics`` before any handshake happens; only ``/ws`` is upgraded. This module owns
the server's lifecycle and those plain-HTTP routes; each websocket is a
:class:`~agentswarm.coordinator.session.Session`.

The coordinator holds no task state of its own: submits go straight to the broker, and every
subscription is a cursor over the broker's per-task event stream, kept moving by the broker's live feed
(:mod:`agentswarm.coordinator.fanout`). A client that reconnects (to this
or any other coordinator replica) sends the last event id it saw and continues exactly after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import weakref
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from agentswarm.backoff import Backoff
from agentswarm.broker.base import Broker
from agentswarm.budget import Budget
from agentswarm.coordinator.auth import TokenSet, bearer_token
from agentswarm.coordinator.dashboard import Dashboard
from agentswarm.coordinator.fanout import Fanout
from agentswarm.coordinator.metrics import CoordinatorMetrics
from agentswarm.coordinator.options import CLOSE_SERVICE_RESTART, ServerOptions
from agentswarm.coordinator.session import Session
from agentswarm.retention import Trimmer

log = logging.getLogger("agentswarm.coordinator")


class Coordinator:
    """Serves the websocket API and health endpoints for one broker.

    Use :meth:`start` / :meth:`shutdown` (tests, embedding) or :meth:`run_until_signalled` (CLI).
    """

    def __init__(self, broker: Broker, options: ServerOptions) -> None:
        self.broker = broker
        self.options = options
        self.metrics = CoordinatorMetrics()
        self.dashboard = Dashboard()
        #: The API tokens accepted now (several during a rotation; re-read when the token file changes).
        self.tokens = TokenSet([options.api_token], options.api_token_file)
        #: Pushes the broker's live feed to every subscription of this replica.
        self.fanout = Fanout(broker, options, self.metrics)
        self.draining = False
        self._server: Server | None = None
        self._sessions: dict[ServerConnection, Session] = {}
        # Connections whose upgrade request carried a valid bearer token. Weak, so a handshake that
        # fails after process_request (e.g. a plain GET) leaves nothing behind to be mistaken later.
        self._preauthed: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._stopped = asyncio.Event()
        #: False until the broker connection is up; /readyz answers 503 meanwhile.
        self.broker_connected = True
        #: The swarm's token budget, reported in stats (``budget_exhausted``); None when unlimited.
        self.budget: Budget | None = None
        #: Makes the broker forget finished tasks past their retention (see agentswarm.retention).
        self.trimmer = Trimmer(broker, interval=options.retention_interval_seconds)
        self._trimming: asyncio.Task[None] | None = None

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
            self.options.host,
            self.options.port,
            process_request=self._process_request,
            ping_interval=self.options.ping_interval,
            ping_timeout=self.options.ping_timeout,
            close_timeout=self.options.close_timeout,
            # Until authenticated, a connection may send only small frames: the library closes with 1009
            # above this limit before reading the payload, so unauthenticated clients cannot make the
            # coordinator buffer anything sizeable. Session raises it to the hard cap after auth.
            max_size=self.options.auth_max_frame_bytes,
            max_queue=self.options.max_queued_frames,
            # No permessage-deflate: frames are small JSON documents, and a zlib compressor plus
            # decompressor per connection costs ~35 KiB of every idle websocket (bench/FINDINGS.md #2),
            # which decides how many agents' watchers one coordinator holds.
            compression=None,
            server_header="agentswarm-coordinator",
        )
        self.fanout.start()
        self._trimming = asyncio.create_task(self.trimmer.run(), name="retention")
        log.info("coordinator listening on %s:%s", self.options.host, self.port)

    async def shutdown(self, drain_seconds: float | None = None) -> None:
        """Drain (readyz answers 503, everything else keeps working), then close websockets with 1012."""
        drain = self.options.shutdown_drain_seconds if drain_seconds is None else drain_seconds
        self.draining = True
        if drain > 0:
            log.info("draining for %.1fs before closing websockets", drain)
            await asyncio.sleep(drain)
        server = self._server
        if server is not None:
            conns = list(server.connections)
            await asyncio.gather(*(self._close(c) for c in conns), return_exceptions=True)
            server.close(close_connections=False)
            await server.wait_closed()
        await self.fanout.stop()
        if self._trimming is not None:
            self._trimming.cancel()
            await asyncio.gather(self._trimming, return_exceptions=True)
        self._stopped.set()

    async def _close(self, connection: ServerConnection) -> None:
        """Close one websocket with 1012, within ``close_timeout`` whatever the client does.

        websockets' ``close`` first waits for the socket's send buffer to drain, with no deadline: a client
        that stopped reading would hold the shutdown forever. Past the timeout its socket is dropped."""
        try:
            await asyncio.wait_for(
                connection.close(CLOSE_SERVICE_RESTART, "coordinator restarting; reconnect"),
                self.options.close_timeout,
            )
        except TimeoutError:
            log.warning("websocket %s did not close in time (not reading); dropping it", connection.id)
            connection.transport.abort()

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
            log.info("signal received; draining for %.1fs", self.options.shutdown_drain_seconds)
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
            page = self.dashboard.respond(connection, request, path)
            if page is not None:
                return page
            return connection.respond(HTTPStatus.NOT_FOUND, "not found; the websocket API is at /ws\n")
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            if not self.tokens.matches(bearer_token(authorization)):
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
            ok = await asyncio.wait_for(self.broker.ping(), self.options.ready_timeout_seconds)
        except Exception as exc:  # ping should not raise; a timeout still means "not ready"
            self.metrics.broker_up.set(0)
            return False, f"broker unavailable: {type(exc).__name__}: {exc}"
        self.metrics.broker_up.set(1 if ok else 0)
        return (True, "ready") if ok else (False, "broker unavailable")

    async def _refresh_metrics(self) -> None:
        try:
            stats = await asyncio.wait_for(self.broker.stats(), self.options.ready_timeout_seconds)
        except Exception as exc:
            log.warning("metrics: broker stats failed: %s", exc)
            self.metrics.broker_up.set(0)
            return
        self.metrics.broker_up.set(1)
        self.metrics.update_from_stats(stats)
        try:
            usage = await asyncio.wait_for(self.broker.usage(), self.options.ready_timeout_seconds)
        except Exception as exc:
            log.warning("metrics: broker usage failed: %s", exc)
            return
        self.metrics.update_from_usage(usage)

    # --- websocket -----------------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        session = Session(self, connection, authenticated=connection in self._preauthed)
        self._preauthed.discard(connection)
        self._sessions[connection] = session
        self.metrics.websocket_connections.inc()
        self.metrics.websocket_connections_total.inc()
        try:
            await session.serve()
        finally:
            self._sessions.pop(connection, None)
            self.metrics.websocket_connections.dec()
