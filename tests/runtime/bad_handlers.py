"""Handlers that misbehave, for tests (imported by agent processes via PYTHONPATH)."""

from __future__ import annotations

from typing import Any


async def returns_set(task: Any, state: Any, ctx: Any) -> Any:
    return {"not", "json"}


async def emits_non_json(task: Any, state: Any, ctx: Any) -> Any:
    await ctx.emit({"type": "progress", "blob": b"bytes"})
    return "unreachable"


async def dies_at_step(task: Any, state: Any, ctx: Any) -> Any:
    """Checkpoint steps 0.. until ``payload["die_at"]``, where it SIGKILLs its own agent, every time."""
    import os
    import signal

    if "die_at" not in task.payload:
        return "ok"
    step = int(state["next_step"]) if isinstance(state, dict) else 0
    while True:
        if step == int(task.payload["die_at"]):
            os.kill(os.getpid(), signal.SIGKILL)
        step += 1
        await ctx.checkpoint({"next_step": step})
