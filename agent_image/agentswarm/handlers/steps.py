"""A deterministic multi-step handler, used by the tests and by ``agentswarm local --demo``.

Payload (all optional)::

    {"steps": 5,            # number of steps
     "delay": 0.1,          # seconds each step takes
     "log": "/path/file",   # append one line per executed step and per stored checkpoint
     "fail_times": 0,       # raise on the first N attempts (then succeed): tests retries
     "poison": false}       # raise on every attempt: tests dead-lettering

State: ``{"next_step": k, "acc": "<hex>"}``. Each step folds its number into a SHA-256 chain, so the
result ``{"steps": n, "acc": ...}`` is the same however often the task was interrupted and resumed
(:func:`expected_result` computes it). The log lines let tests prove a resumed task did not redo a step
whose checkpoint was stored: ``exec <task> <step> <agent> <attempt>`` is written before the step's
checkpoint, ``ckpt <task> <step> <agent> <attempt>`` after it returned.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext


class PoisonTask(RuntimeError):
    """The payload asked this task to fail."""


def _fold(acc: str, task_id: str, step: int) -> str:
    return hashlib.sha256(f"{acc}|{task_id}|{step}".encode()).hexdigest()


def expected_result(task_id: str, steps: int) -> dict[str, Any]:
    """The result :func:`handle` returns for ``task_id`` with ``steps`` steps."""
    acc = ""
    for step in range(steps):
        acc = _fold(acc, task_id, step)
    return {"steps": steps, "acc": acc}


def append_line(path: str | None, line: str) -> None:
    """Append one line to ``path`` (no-op without a path), atomically with respect to other processes."""
    if not path:
        return
    # One write() on an O_APPEND descriptor: lines from concurrent agent processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def handle(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    payload = task.payload if isinstance(task.payload, dict) else {}
    steps = int(payload.get("steps", 5))
    delay = float(payload.get("delay", 0.0))
    log_path = payload.get("log")
    if payload.get("poison"):
        raise PoisonTask(f"task {task.id} is poison (payload says so)")
    if ctx.attempt <= int(payload.get("fail_times", 0)):
        raise PoisonTask(f"task {task.id} fails on attempt {ctx.attempt} (fail_times)")
    st = state if isinstance(state, dict) else {}
    next_step = int(st.get("next_step", 0))
    acc = str(st.get("acc", ""))
    for step in range(next_step, steps):
        if delay:
            await asyncio.sleep(delay)
        append_line(log_path, f"exec {task.id} {step} {ctx.agent_id} {ctx.attempt}")
        acc = _fold(acc, task.id, step)
        await ctx.emit({"type": "progress", "step": step + 1, "of": steps})
        await ctx.checkpoint({"next_step": step + 1, "acc": acc})
        append_line(log_path, f"ckpt {task.id} {step} {ctx.agent_id} {ctx.attempt}")
    return {"steps": steps, "acc": acc}
