"""Following the coordinator's swarm feed (every task transition and agent status), across reconnects."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed

from agentswarm import protocol as p
from agentswarm.client_errors import ClientError, _describe, _Dropped

if TYPE_CHECKING:
    from agentswarm.client import SwarmClient

log = logging.getLogger("agentswarm.client")


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
