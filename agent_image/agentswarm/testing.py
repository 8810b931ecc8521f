"""Test your handlers in a real swarm: :func:`local_swarm` runs the local swarm from your test.

Why a real swarm and not a fake ``ctx``: ``spawn``/``gather`` park and re-run the parent, ``ctx.shared`` is
shared by other processes, a checkpoint is restored after a crash; a fake context would pass tests the swarm
fails. ``local_swarm`` starts what ``agentswarm local`` starts (an embedded NATS JetStream broker, the
coordinator, ``agents`` agent processes) in a directory of the test's, on free ports, and stops every process
when the block ends::

    from agentswarm.testing import local_swarm

    async def test_plan(tmp_path):
        async with local_swarm("myswarm.handlers:plan", state_dir=tmp_path) as swarm:
            result = await swarm.run({"topics": ["a", "b"]})
        assert result["topics"] == 2

The agents are child processes started in the current working directory, which Python puts on their module
path: run pytest from your project's root (where your package is), as ``agentswarm local`` is run.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentswarm.backoff import Backoff
from agentswarm.broker.base import JSON
from agentswarm.client import SwarmClient, TaskWatch

__all__ = ["RunningSwarm", "TaskFailed", "local_swarm"]


class TaskFailed(AssertionError):
    """The task was dead-lettered: its handler kept raising (the message carries the last error)."""


@dataclass
class RunningSwarm:
    """A started local swarm: where it listens and a client for it."""

    url: str
    token: str
    state_dir: Path
    client: SwarmClient

    async def run(self, payload: JSON, *, task_id: str | None = None) -> Any:
        """Submit one task, wait for its result, return it (bound the wait with ``asyncio.timeout``).

        Raises :class:`TaskFailed` when the task was dead-lettered.
        """
        spec: dict[str, Any] = {"payload": payload}
        if task_id is not None:
            spec["task_id"] = task_id
        [tid] = await self.client.submit([spec])
        watch = await self.watch(tid)
        result = watch.result
        assert result is not None
        if result.status != "done":
            raise TaskFailed(f"task {tid} {result.status}: {result.error}")
        return result.result

    async def watch(self, task_id: str) -> TaskWatch:
        """Follow ``task_id`` to its result (events counted, last progress kept)."""
        watches = await self.client.watch([task_id])
        return watches[task_id]

    def log(self, name: str) -> str:
        """The output of one child (``coordinator``, ``agent-0``, ...): what to print when a test fails."""
        path = self.state_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.asynccontextmanager
async def local_swarm(
    handler: str,
    *,
    state_dir: Path,
    agents: int = 2,
    broker: str = "nats",
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[RunningSwarm]:
    """Start a local swarm whose agents run ``handler`` (``module:function``); stop it on exit.

    ``state_dir`` holds the broker data, checkpoints and each child's log (use pytest's ``tmp_path``).
    ``env`` adds ``AGENTSWARM_*`` settings (or your handler's own variables) for the children.
    The handler is imported here first, so a typo fails the test at once with the import error.
    """
    from agentswarm.handlers import load_handler
    from agentswarm.local import LocalOptions, LocalSwarm
    from agentswarm.settings import load_settings

    cwd = os.getcwd()
    sys.path.insert(0, cwd)  # what the children get from `python -m`
    try:
        load_handler(handler)
    finally:
        sys.path.remove(cwd)
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})  # the children inherit the environment when they are spawned
    out = io.StringIO()
    swarm: LocalSwarm | None = None
    supervisor: asyncio.Task[None] | None = None
    try:
        opts = LocalOptions(
            agents=agents, broker=broker, handler=handler, state_dir=Path(state_dir), port=0, out=out
        )
        swarm = LocalSwarm(opts, load_settings(handler=handler))
        await swarm.start()
        supervisor = asyncio.create_task(swarm.supervise())
        client = SwarmClient(swarm.url, swarm.token, backoff=Backoff(0.05, 1.0), max_retries=60)
        yield RunningSwarm(swarm.url, swarm.token, swarm.state, client)
    finally:
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        if swarm is not None:
            await swarm.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
