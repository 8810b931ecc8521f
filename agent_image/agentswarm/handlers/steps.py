"""A deterministic multi-step handler: the default of kind stacks and the building block of the tests.

Payload (all optional)::

    {"steps": 5,            # number of steps (0-10000)
     "delay": 0.1,          # seconds each step takes (0-3600)
     "fail_times": 0,       # raise on the first N attempts (then succeed): shows retries
     "poison": false}       # raise on every attempt: shows dead-lettering

State: ``{"next_step": k, "acc": "<hex>"}``. Each step folds its number into a SHA-256 chain, so the
result ``{"steps": n, "acc": ...}`` is the same however often the task was interrupted and resumed
(:func:`expected_result` computes it).

Nothing a client sends reaches the file system, the network or a process: the payload only chooses
numbers within bounds. (The tests' variant that logs every step to a file lives in the tests.)
:func:`run_steps` takes an ``on_step`` hook for such observers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
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
    """Append one line to ``path`` (no-op without a path), atomically with respect to other processes.

    For observers the operator configures (tests, benchmarks); never with a path taken from a payload."""
    if not path:
        return
    # One write() on an O_APPEND descriptor: lines from concurrent agent processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


MAX_STEPS = 10_000
MAX_DELAY_SECONDS = 3600.0

StepHook = Callable[[str, int], None]
"""``on_step(event, step)``: ``"exec"`` before a step's checkpoint, ``"ckpt"`` after it was stored."""


def _bounded(value: Any, default: float, upper: float) -> float:
    try:
        number = float(value if value is not None else default)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {value!r}") from None
    if not 0 <= number <= upper:  # also refuses NaN
        raise ValueError(f"{number} is outside 0..{upper}")
    return number


async def handle(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """The shipped handler: the steps of the payload, no side effect beyond checkpoints and events."""
    return await run_steps(task, state, ctx)


async def run_steps(task: Task, state: JSON, ctx: TaskContext, on_step: StepHook | None = None) -> JSON:
    """The steps of ``task`` from its checkpointed ``state``; ``on_step`` observes each one."""
    payload = task.payload if isinstance(task.payload, dict) else {}
    steps = int(_bounded(payload.get("steps"), 5, MAX_STEPS))
    delay = _bounded(payload.get("delay"), 0.0, MAX_DELAY_SECONDS)
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
        if on_step is not None:
            on_step("exec", step)
        acc = _fold(acc, task.id, step)
        await ctx.emit({"type": "progress", "step": step + 1, "of": steps})
        await ctx.checkpoint({"next_step": step + 1, "acc": acc})
        if on_step is not None:
            on_step("ckpt", step)
    return {"steps": steps, "acc": acc}
