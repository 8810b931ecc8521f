"""The coordinator: websocket API + plain-HTTP health/metrics on one port (see docs/protocol.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentswarm.coordinator.options import CLOSE_POLICY_VIOLATION, CLOSE_SERVICE_RESTART, ServerOptions
from agentswarm.coordinator.server import Coordinator

if TYPE_CHECKING:
    from agentswarm.settings import Settings

__all__ = [
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_SERVICE_RESTART",
    "Coordinator",
    "ServerOptions",
    "options_from_settings",
    "run",
]


def options_from_settings(settings: Settings) -> ServerOptions:
    """The coordinator's knobs from ``AGENTSWARM_*`` settings (the token must be set)."""
    token = settings.api_token.get_secret_value() if settings.api_token is not None else ""
    return ServerOptions(
        api_token=token,
        api_token_file=settings.api_token_file,
        host=settings.host,
        port=settings.port,
        shutdown_drain_seconds=settings.shutdown_drain_seconds,
    )


async def run(settings: Settings) -> None:
    """Entry point of ``agentswarm coordinator``: serve until SIGTERM, drain, close with 1012."""
    from agentswarm.broker import make_broker
    from agentswarm.budget import budget_from_settings

    coordinator = Coordinator(make_broker(settings), options_from_settings(settings))
    coordinator.budget = budget_from_settings(coordinator.broker, settings)
    await coordinator.run_until_signalled(connect=True)
