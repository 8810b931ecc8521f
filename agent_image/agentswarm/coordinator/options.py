"""The knobs of one coordinator server (:class:`ServerOptions`) and the close codes it sends.

Kept apart from the server so that tests, benchmarks and :func:`agentswarm.coordinator.run` build the
same options object; the deployment-side configuration lives in ``components/`` and is a different thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentswarm import protocol as p
from agentswarm.coordinator.auth import DEFAULT_AUTH_TIMEOUT_SECONDS
from agentswarm.defaults import DEFAULT_PORT, RETENTION_INTERVAL_SECONDS

#: Close code sent to every client when the coordinator shuts down ("service restart": reconnect).
CLOSE_SERVICE_RESTART = 1012
#: Close code for policy violations (authentication failures).
CLOSE_POLICY_VIOLATION = 1008
#: Default of :attr:`ServerOptions.send_buffer_bytes`.
DEFAULT_SEND_BUFFER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ServerOptions:
    """Runtime knobs of one coordinator. Built from settings by :func:`run`, directly by tests."""

    api_token: str = ""
    #: A file of valid tokens, one per line, re-read when it changes (token rotation); with or instead of
    #: ``api_token``.
    api_token_file: Path | None = None
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    shutdown_drain_seconds: float = 5.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    #: Seconds a websocket's closing handshake may take on shutdown before its socket is dropped.
    close_timeout: float = 10.0
    max_frame_bytes: int = p.DEFAULT_MAX_FRAME_BYTES
    hard_max_frame_bytes: int = p.DEFAULT_HARD_MAX_FRAME_BYTES
    #: Largest frame a connection may send before it is authenticated (closed with 1009 above it).
    auth_max_frame_bytes: int = p.AUTH_MAX_FRAME_BYTES
    #: Frames received but not yet handled, per connection (websockets' ``max_queue`` high-water mark):
    #: with the hard cap it bounds what one authenticated connection can make the coordinator buffer.
    max_queued_frames: int = p.MAX_QUEUED_FRAMES
    auth_timeout_seconds: float = DEFAULT_AUTH_TIMEOUT_SECONDS
    #: First retry delay of a subscription whose broker read failed (doubling up to 5 s).
    poll_interval_seconds: float = 0.2
    #: Events fetched per broker read while a subscription catches up from its cursor.
    event_batch: int = 200
    #: Bytes of frames one connection may have waiting to be sent. Above it the connection's live feed is
    #: dropped and each of its subscriptions catches up from its cursor at the pace the client reads.
    send_buffer_bytes: int = DEFAULT_SEND_BUFFER_BYTES
    #: Subscriptions reading their logs at the same time (after a feed reset, every one does).
    catch_up_concurrency: int = 64
    ready_timeout_seconds: float = 2.0
    #: How often this coordinator makes the broker forget tasks past their retention (agentswarm.retention).
    retention_interval_seconds: float = RETENTION_INTERVAL_SECONDS

    def __post_init__(self) -> None:
        if not self.api_token and self.api_token_file is None:
            raise ValueError(
                "AGENTSWARM_API_TOKEN_FILE and AGENTSWARM_API_TOKEN are unset: the coordinator refuses to "
                "serve without a token (mount it from a Kubernetes Secret, or let `agentswarm local` "
                "generate one)"
            )
        if self.api_token and self.api_token_file is not None:
            raise ValueError("set AGENTSWARM_API_TOKEN_FILE or AGENTSWARM_API_TOKEN, not both")
        if self.hard_max_frame_bytes <= self.max_frame_bytes:
            raise ValueError("hard_max_frame_bytes must be larger than max_frame_bytes")
