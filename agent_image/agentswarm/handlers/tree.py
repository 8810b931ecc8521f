"""Deterministic multi-agent handlers: a planner -> workers -> reducer pipeline, nested trees, a CAS counter.

Used by ``agentswarm local --demo``, the tests and the fan-out benchmark. Every result is a pure function of
the payload and task ids, however often tasks were interrupted, parked and resumed, so tests compare them
with :func:`expected_pipeline` / :func:`expected_nest`.

Runs are appended to the operator's observer file ``AGENTSWARM_TREE_LOG`` when it is set (never a path from a
payload).

* ``plan`` ``{"workers": 4, "steps": 3, "delay": 0.0, "pause_after_spawn": 0.0, "poison": []}``:
  spawns the workers (those whose index is in ``poison`` always fail), gathers them, spawns one reducer,
  gathers it, returns ``{"workers", "dead", "digest"}``. ``pause_after_spawn`` sleeps after the first spawn,
  once per task (a window for tests to SIGKILL the parent between spawning and gathering).
* ``work`` ``{"index": i, "steps": 3, "delay": 0.0}``: ``steps`` checkpointed steps, then
  writes its finding into the tree's shared context under ``finding.<i>`` and returns it.
* ``reduce``: reads every ``finding.*`` of the tree and returns their count and digest.
* ``nest`` ``{"depth": 3, "fanout": 2}``: a tree ``depth`` levels deep; returns the number of leaves.
* ``count`` ``{"key": "counter", "scope": "tree"|"swarm"}``: increments a shared counter with
  compare-and-set, retrying lost races; returns the value it wrote.
* ``impatient`` ``{"sleeps": [0.1, 30], "timeout": 2}``: gathers sleeping children with a timeout and
  returns which were done and which still running.
* ``chain`` ``{"links": 6, "sleep": 0.2}``: spawns and gathers one child at a time (parks once per link).
* ``remember``: appends the task id to this agent's memory (``seen``) and returns what it remembered.

Log lines (one per event, for tests): ``spawned <task> <attempt> <agent>``, ``run <task> <attempt> <agent>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext
from agentswarm.handlers.steps import append_line
from agentswarm.swarm.shared import VersionConflict

PLAN = "agentswarm.handlers.tree:plan"
WORK = "agentswarm.handlers.tree:work"
REDUCE = "agentswarm.handlers.tree:reduce"
NEST = "agentswarm.handlers.tree:nest"
SLEEPER = "agentswarm.handlers.tree:sleeper"


def _payload(task: Task) -> dict[str, Any]:
    return task.payload if isinstance(task.payload, dict) else {}


def finding(root: str, index: int, steps: int) -> str:
    """What worker ``index`` of the tree rooted at ``root`` finds after ``steps`` steps."""
    acc = root
    for step in range(steps):
        acc = hashlib.sha256(f"{acc}|{index}|{step}".encode()).hexdigest()
    return acc


def digest(findings: list[str]) -> str:
    return hashlib.sha256("|".join(sorted(findings)).encode()).hexdigest()


def expected_pipeline(root: str, workers: int, steps: int = 3) -> dict[str, Any]:
    """The result of ``plan`` run as the root task ``root``."""
    return {
        "workers": workers,
        "dead": 0,
        "digest": digest([finding(root, i, steps) for i in range(workers)]),
    }


def expected_nest(depth: int, fanout: int) -> dict[str, Any]:
    return {"leaves": fanout**depth}


def _log_path() -> str | None:
    """The observer log named by the operator (``AGENTSWARM_TREE_LOG``); a payload never chooses a path."""
    return os.environ.get("AGENTSWARM_TREE_LOG") or None


async def plan(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    p = _payload(task)
    n, steps, delay = int(p.get("workers", 4)), int(p.get("steps", 3)), float(p.get("delay", 0.0))
    log_path = _log_path()
    append_line(log_path, f"run {task.id} {ctx.attempt} {ctx.agent_id}")
    poison = set(p.get("poison", []))
    work = [{"index": i, "steps": steps, "delay": delay, "poison": i in poison} for i in range(n)]
    workers = await ctx.spawn(work, handler=WORK)
    pause = float(p.get("pause_after_spawn", 0.0))
    if pause and not (isinstance(state, dict) and state.get("paused")):
        await ctx.checkpoint({"paused": True})  # pause once, not again after a crash or parking
        append_line(log_path, f"spawned {task.id} {ctx.attempt} {ctx.agent_id}")
        await asyncio.sleep(pause)
    else:
        append_line(log_path, f"spawned {task.id} {ctx.attempt} {ctx.agent_id}")
    outcomes = await ctx.gather(workers)
    dead = sum(1 for o in outcomes if not o.ok)
    [reducer] = await ctx.spawn([{}], handler=REDUCE)
    [reduced] = await ctx.gather([reducer])
    if not reduced.ok:
        raise RuntimeError(f"reducer {reducer} failed: {reduced.error}")
    return {"workers": reduced.value["count"], "dead": dead, "digest": reduced.value["digest"]}


async def work(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    p = _payload(task)
    index, steps, delay = int(p["index"]), int(p.get("steps", 3)), float(p.get("delay", 0.0))
    append_line(_log_path(), f"run {task.id} {ctx.attempt} {ctx.agent_id}")
    if p.get("poison"):
        raise RuntimeError(f"worker {index} is poison (payload says so)")
    st = state if isinstance(state, dict) else {}
    acc, next_step = str(st.get("acc", ctx.shared.scope)), int(st.get("next_step", 0))
    for step in range(next_step, steps):
        if delay:
            await asyncio.sleep(delay)
        acc = hashlib.sha256(f"{acc}|{index}|{step}".encode()).hexdigest()
        await ctx.emit({"step": step + 1, "of": steps})
        await ctx.checkpoint({"next_step": step + 1, "acc": acc})
    await ctx.shared.put(f"finding.{index}", acc)
    return {"index": index, "finding": acc}


async def reduce(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    append_line(_log_path(), f"run {task.id} {ctx.attempt} {ctx.agent_id}")
    findings = await ctx.shared.items("finding.")
    return {"count": len(findings), "digest": digest([str(v) for v in findings.values()])}


async def nest(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    p = _payload(task)
    depth, fanout = int(p.get("depth", 3)), int(p.get("fanout", 2))
    if depth <= 0:
        return {"leaves": 1}
    children = await ctx.spawn([{"depth": depth - 1, "fanout": fanout}] * fanout, handler=NEST)
    outcomes = await ctx.gather(children)
    if not all(o.ok for o in outcomes):
        raise RuntimeError(f"children failed: {[o.error for o in outcomes if not o.ok]}")
    return {"leaves": sum(int(o.value["leaves"]) for o in outcomes)}


async def count(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    p = _payload(task)
    key = str(p.get("key", "counter"))
    scope = ctx.shared.swarm if p.get("scope") == "swarm" else ctx.shared
    while True:
        entry = await scope.get_versioned(key)
        current, version = (int(entry.value), entry.version) if entry else (0, 0)
        await asyncio.sleep(float(p.get("think", 0.0)))  # widen the race window on purpose
        try:
            await scope.put(key, current + 1, if_version=version)
            return {"wrote": current + 1}
        except VersionConflict:
            continue


async def remember(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    seen = list(await ctx.memory.get("seen", []))
    seen.append(task.id)
    await ctx.memory.put("seen", seen)
    (ctx.memory.path / f"{task.id}.txt").write_text(f"{ctx.agent_id}\n")
    return {"agent": ctx.agent_id, "seen": seen}


async def impatient(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """``{"sleeps": [0.1, 30], "timeout": 2}``: children sleeping that long, gathered with a timeout."""
    p = _payload(task)
    ids = await ctx.spawn([{"sleep": s} for s in p["sleeps"]], handler=SLEEPER)
    outcomes = await ctx.gather(ids, timeout=float(p["timeout"]))
    return {"done": [o.id for o in outcomes if o.ok], "running": [o.id for o in outcomes if o.status is None]}


async def sleeper(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    await asyncio.sleep(float(_payload(task).get("sleep", 0.0)))
    return "slept"


async def chain(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """``{"links": 6, "sleep": 0.2}``: one child at a time, each gathered before the next is spawned."""
    p = _payload(task)
    for _ in range(int(p.get("links", 6))):
        [child] = await ctx.spawn([{"sleep": p.get("sleep", 0.2)}], handler=SLEEPER)
        [outcome] = await ctx.gather([child])
        if not outcome.ok:
            raise RuntimeError(f"link {child} failed: {outcome.error}")
    return {"links": int(p.get("links", 6))}
