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


async def stream(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """Stream ``rate`` token events per second for ``seconds``, each stamped with its emit time."""
    payload: dict[str, Any] = task.payload if isinstance(task.payload, dict) else {}
    rate = float(payload.get("rate", 50))
    total = int(rate * float(payload.get("seconds", 3.0)))
    begin = time.monotonic()
    for i in range(total):
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await ctx.emit({"type": "token", "t": time.time(), "i": i, "text": "hello"})
    return total


async def burst(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """Emit ``count`` events back to back: how many per second ``await ctx.emit`` (and, where the runtime
    has it, ``await ctx.stream``) sustain from one handler."""
    payload: dict[str, Any] = task.payload if isinstance(task.payload, dict) else {}
    count = int(payload.get("count", 2000))
    out: dict[str, float] = {}
    begin = time.perf_counter()
    for i in range(count):
        await ctx.emit({"type": "token", "i": i, "text": "hello"})
    out["emit_per_s"] = count / (time.perf_counter() - begin)
    stream = getattr(ctx, "stream", None)
    if stream is not None:
        begin = time.perf_counter()
        for i in range(count):
            await stream({"type": "token", "i": i, "text": "hello"})
        out["stream_per_s"] = count / (time.perf_counter() - begin)
    return out
