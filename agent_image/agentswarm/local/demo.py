"""``agentswarm local --demo``: a multi-agent pipeline (planner -> workers -> reducer) with a live tree view.

The demo submits one task for :func:`agentswarm.handlers.tree.plan` (the agents run it as their handler): it
spawns ``--demo-tasks`` workers of ``--demo-steps`` checkpointed steps each, parks while they run (holding no
agent), and spawns a reducer once they are done; the workers write their findings into the tree's shared
context and the reducer folds them into one digest. The progress view shows one line per tree level, the
summary table every task of the tree, and the exit code says whether any task was dead-lettered.

A second ``--demo`` over the same state directory resumes the unfinished pipeline of the previous run
instead of starting a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from typing import TYPE_CHECKING

from agentswarm.broker import open_broker
from agentswarm.client import SwarmClient, summary_table
from agentswarm.swarm.progress import TreeProgress

if TYPE_CHECKING:
    from agentswarm.local.swarm import LocalSwarm


async def run_demo(swarm: LocalSwarm) -> int:
    """Run the demo on a started ``swarm``: 0 when every task is done, 1 if any was dead-lettered."""
    opts = swarm.opts
    path = swarm.state / "demo.json"
    client = SwarmClient(swarm.url, swarm.token)
    previous: list[str] = []
    if path.exists():
        with contextlib.suppress(ValueError, OSError):
            previous = [str(t) for t in json.loads(path.read_text(encoding="utf-8")).get("task_ids", [])]
    ids: list[str] = []
    if previous and await _unfinished(swarm, previous):
        swarm.say(f"resuming the unfinished demo pipeline {previous[0]} of the previous run")
        ids = previous
    if not ids:
        root = f"demo-{secrets.token_hex(3)}"
        payload = {"workers": opts.demo_tasks, "steps": opts.demo_steps, "delay": opts.demo_delay}
        ids = await client.submit([{"task_id": root, "payload": payload}])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"task_ids": ids}), encoding="utf-8")
        os.replace(tmp, path)
        swarm.say(
            f"submitted pipeline {root}: a planner, {opts.demo_tasks} worker(s) of {opts.demo_steps} steps "
            "and a reducer"
        )
    view = TreeProgress(ids, stream=opts.out)
    view.render(force=True)
    try:
        watches = await client.watch(
            ids, on_event=view.on_event, on_result=view.on_result, follow_spawned=True
        )
    finally:
        view.close()
    swarm.say(summary_table(watches))
    done = sum(1 for w in watches.values() if w.result is not None and w.result.status == "done")
    dead = len(watches) - done
    root_result = watches[ids[0]].result
    if root_result is not None and root_result.status == "done" and isinstance(root_result.result, dict):
        digest = str(root_result.result.get("digest", ""))[:16]
        swarm.say(f"reducer digest of {root_result.result.get('workers')} findings: {digest}")
    swarm.say(f"demo finished: {done} done, {dead} dead-lettered")
    return 0 if dead == 0 else 1


async def _unfinished(swarm: LocalSwarm, task_ids: list[str]) -> list[str]:
    """Ids among ``task_ids`` without a result yet, asked of the broker directly."""
    assert swarm.broker is not None
    broker = await open_broker(swarm.broker.settings(swarm.settings))
    try:
        return [tid for tid in task_ids if await broker.get_result(tid) is None]
    finally:
        await broker.close()
