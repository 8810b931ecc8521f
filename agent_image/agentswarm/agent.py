"""The agent process's entry points: start a worker until SIGTERM, or run its exec probe.

Entry points (used by ``agentswarm.cli`` for ``agentswarm agent`` and ``agentswarm probe``)::

    async def run(settings: Settings) -> int
        Run the worker loop until SIGTERM/SIGINT; returns the process exit code (0 after a clean stop,
        2 when the handler cannot be loaded). Installs its own SIGTERM/SIGINT handlers on the running loop.

    def probe(max_age_seconds: float, settings: Settings | None = None, ready: bool = False) -> int
        Exec-probe check: 0 while ``$AGENTSWARM_CHECKPOINT_DIR/.heartbeat`` is younger than
        ``max_age_seconds``, else 1 (with the reason on stderr). With ``ready`` (the readiness probe) also
        ``.ready`` must exist: the agent writes it once a claim reached the broker and removes it while the
        broker is unreachable and when it stops.

    python -m agentswarm.agent                           # same as ``agentswarm agent``
    python -m agentswarm.agent probe --max-age-seconds N # same as ``agentswarm probe``

The worker itself (the claim loop and the life of a delivery) is :class:`agentswarm.worker.Agent`; the
handler's context is :mod:`agentswarm.task_context`, the probe files :mod:`agentswarm.health`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from agentswarm.backoff import Backoff
from agentswarm.broker import Broker, open_broker
from agentswarm.budget import budget_from_settings
from agentswarm.checkpoint import make_store
from agentswarm.handlers import HandlerLoadError, load_handler
from agentswarm.health import EXIT_CONFIG, EXIT_OK, EXIT_UNHEALTHY, probe
from agentswarm.secrets_env import SecretEnvError, resolve_secret_env_files
from agentswarm.settings import Settings, SettingsError, load_settings, unknown_variables
from agentswarm.task_context import _Context
from agentswarm.worker import Agent

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_UNHEALTHY", "Agent", "_Context", "main", "probe", "run"]

log = logging.getLogger("agentswarm.agent")


async def run(settings: Settings) -> int:
    """Run one agent until SIGTERM/SIGINT. Returns the exit code (see module docstring)."""
    try:
        resolve_secret_env_files()  # before the handler's import, which may read its keys
    except SecretEnvError as exc:
        print(f"agentswarm agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        handler = load_handler(settings.handler)
    except HandlerLoadError as exc:
        print(f"agentswarm agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for name in unknown_variables():
        log.warning("ignoring unknown environment variable %s (a typo?)", name)
    settings.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    agent: Agent | None = None
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop_requested.set()
        if agent is not None:
            agent.request_stop()
        if signals >= 3:  # impatient operator: leave now, the delivery stays pending anyway
            os._exit(EXIT_OK)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    broker: Broker | None = None
    try:
        backoff = Backoff(initial=0.1, maximum=5.0)
        while broker is None:
            try:
                broker = await open_broker(settings)
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning(
                    "cannot connect to the %s broker yet (%s); retrying in %.1fs", settings.broker, exc, delay
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_requested.wait(), timeout=delay)
                if stop_requested.is_set():
                    return EXIT_OK
        agent = Agent(settings, broker, make_store(settings, broker), handler)
        agent.budget = budget_from_settings(broker, settings)
        if stop_requested.is_set():
            agent.request_stop()
        log.info(
            "agent %s serving (%s broker, handler %s)", settings.agent_id, settings.broker, settings.handler
        )
        await agent.serve()
        return EXIT_OK
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if broker is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broker.close(), timeout=5)


def configure_logging() -> None:
    level = os.environ.get("AGENTSWARM_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m agentswarm.agent [probe --max-age-seconds N]``."""
    parser = argparse.ArgumentParser(prog="python -m agentswarm.agent")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("probe", help="exit 0 while the heartbeat file is fresh")
    p.add_argument("--max-age-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.command == "probe":
        return probe(args.max_age_seconds)
    configure_logging()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"agentswarm agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
