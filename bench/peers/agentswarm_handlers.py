"""agentswarm handlers (``AGENTSWARM_HANDLER=bench.peers.agentswarm_handlers:noop`` / ``:steps``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext

from bench.peers.work import executed, started


async def noop(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    begin = time.time()
    payload: dict[str, Any] = task.payload if isinstance(task.payload, dict) else {}
    if payload.get("sleep"):
        await asyncio.sleep(float(payload["sleep"]))
    return begin


async def steps(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """Checkpoint after every step: a resumed task continues at the first step without a checkpoint."""
    payload: dict[str, Any] = task.payload if isinstance(task.payload, dict) else {}
    first = int(state["next_step"]) if isinstance(state, dict) else 0
    started(task.id, payload, first)
    for step in range(first, int(payload["steps"])):
        await asyncio.sleep(float(payload["delay"]))
        executed(task.id, payload, step)
        await ctx.checkpoint({"next_step": step + 1})
    return int(payload["steps"])
