"""Handlers for tests, some of them misbehaving (imported by agent processes via PYTHONPATH)."""

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


async def ticks(task: Any, state: Any, ctx: Any) -> Any:
    """Emit ``payload["ticks"]`` progress events ``payload["every"]`` seconds apart, then return "ticked".

    On cancellation, appends ``cancelled <task> <ctx.cancelled> <tick>`` to ``payload["log"]`` (what the
    handler saw) and lets :class:`~agentswarm.handlers.Cancelled` through.
    """
    import asyncio

    from agentswarm.handlers import Cancelled
    from agentswarm.handlers.steps import append_line

    p = task.payload
    tick = 0
    try:
        for tick in range(int(p.get("ticks", 1000))):
            await ctx.emit({"tick": tick})
            await asyncio.sleep(float(p.get("every", 0.1)))
    except Cancelled:
        append_line(p.get("log"), f"cancelled {task.id} {ctx.cancelled} {tick}")
        raise
    return "ticked"


async def ticks_tree(task: Any, state: Any, ctx: Any) -> Any:
    """``{"depth": 2, "fanout": 2, ...}``: a tree whose inner tasks park on their children and whose leaves
    are :func:`ticks` (the rest of the payload goes to them)."""
    p = dict(task.payload)
    depth = int(p.pop("depth", 0))
    if depth <= 0:
        return await ticks(task, state, ctx)
    children = await ctx.spawn(
        [{**p, "depth": depth - 1}] * int(p.get("fanout", 2)), handler="bad_handlers:ticks_tree"
    )
    outcomes = await ctx.gather(children)
    return [o.status for o in outcomes]


async def asks(task: Any, state: Any, ctx: Any) -> Any:
    """Checkpoint once, ask ``{"q": "approve?"}`` (``payload["timeout"]``), optionally a second question.

    Returns the answers and the agents that checkpointed and finished, or ``{"timed_out": ...}``.
    """
    p = task.payload
    st = state if isinstance(state, dict) else {}
    if "checkpointed_by" not in st:
        st = {"checkpointed_by": ctx.agent_id}
        await ctx.checkpoint(st)
    try:
        first = await ctx.ask({"q": "approve?"}, timeout=p.get("timeout"))
    except TimeoutError as exc:
        return {"timed_out": str(exc)}
    second = await ctx.ask({"q": "really?"}) if p.get("twice") else None
    return {"first": first, "second": second, **st, "finished_by": ctx.agent_id}


async def limited(task: Any, state: Any, ctx: Any) -> Any:
    """Take one unit of the rate limit ``payload["key"]`` at ``payload["rate"]``/s; return when it was
    granted (the broker's schedule) and when the handler went on (this machine's clock)."""
    import time

    p = task.payload
    granted = await ctx.limit(p["key"], per_second=float(p["rate"]))
    return {"granted": granted, "ran": time.time()}


async def noop(task: Any, state: Any, ctx: Any) -> Any:
    """Does nothing: what a task costs the broker, and nothing else."""
    return {"ok": True}
