"""Local mode's broker: an embedded nats-server or redis-server with its data in the state directory (or a
Redis the user names), and the wait until it answers the broker contract's ``ping``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentswarm.broker import make_broker
from agentswarm.local.options import LocalError, LocalOptions
from agentswarm.process import ChildProcess
from agentswarm.servers import NatsServer, RedisServer, ServerNotFound, ServerProcess
from agentswarm.settings import Settings

#: How long a starting broker may take to answer before local mode gives up.
READY_WITHIN_SECONDS = 60.0


@dataclass
class LocalBroker:
    """The broker of one local swarm: its settings for every child, and its process unless external."""

    #: Settings overrides (field -> value) that point a child at this broker.
    overrides: dict[str, Any]
    #: The embedded server, ``None`` for a Redis given with ``--redis-url``.
    server: ChildProcess | None

    def settings(self, base: Settings) -> Settings:
        """``base`` pointed at this broker (what the supervisor itself uses to talk to it)."""
        return base.model_copy(update=self.overrides)

    async def wait_ready(self, base: Settings, within: float = READY_WITHIN_SECONDS) -> None:
        """Return once the broker answers ``ping``; raise :class:`LocalError` if it dies or stays silent."""
        settings = self.settings(base)
        deadline = time.monotonic() + within
        while True:
            if self.server is not None and not self.server.running:
                raise LocalError(f"{self.server.name} exited during start-up; see {self.server.log_path}")
            broker = make_broker(settings)
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(broker.connect(), timeout=5)
                    if await broker.ping():
                        return
            finally:
                with contextlib.suppress(Exception):
                    await broker.close()
            if time.monotonic() > deadline:
                where = settings.nats_url if settings.broker == "nats" else settings.redis_url
                raise LocalError(
                    f"the {settings.broker} broker at {where} did not answer within {within:.0f}s"
                )
            await asyncio.sleep(0.1)


def start_broker(opts: LocalOptions, state: Path) -> LocalBroker:
    """Spawn the embedded broker named by ``opts`` under ``state`` (or take ``--redis-url``); no waiting."""
    if opts.broker == "redis" and opts.redis_url:
        return LocalBroker({"broker": "redis", "redis_url": opts.redis_url}, None)
    server: ServerProcess
    logs = state / "logs"
    try:
        if opts.broker == "redis":
            server = RedisServer(
                state / "redis",
                appendfsync="everysec",
                name="redis-server",
                log_path=logs / "redis.log",
                die_with_parent=True,
            )
            overrides: dict[str, Any] = {"broker": "redis", "redis_url": server.url}
        else:
            server = NatsServer(
                state,
                store_dir=state / "nats",
                server_name="agentswarm-local",
                name="nats-server",
                log_path=logs / "nats.log",
                die_with_parent=True,
            )
            overrides = {"broker": "nats", "nats_url": server.url}
        server.spawn()
    except ServerNotFound as exc:
        hint = ", pass --redis-url, or use the default embedded NATS broker (--broker nats)"
        raise LocalError(f"{exc}{hint if opts.broker == 'redis' else ''}") from None
    return LocalBroker(overrides, server)
