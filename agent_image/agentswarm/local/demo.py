"""``agentswarm local --demo``: submit a batch of the steps handler's tasks (or resume the unfinished batch
of an earlier run), show live progress and a summary, and turn the outcome into an exit code."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from typing import TYPE_CHECKING

from agentswarm.broker import open_broker
from agentswarm.client import ProgressBar, SwarmClient, summary_table

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
    if previous:
        # A first pass without waiting tells finished from unfinished tasks of the earlier run.
        unfinished = await _unfinished(swarm, previous)
        if unfinished:
            swarm.say(f"resuming {len(unfinished)} unfinished demo task(s) of the previous run")
            ids = previous
    if not ids:
        batch = secrets.token_hex(3)
        specs = [
            {
                "task_id": f"demo-{batch}-{i:03d}",
                "payload": {"steps": opts.demo_steps, "delay": opts.demo_delay},
            }
            for i in range(opts.demo_tasks)
        ]
        ids = await client.submit(specs)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"task_ids": ids}), encoding="utf-8")
        os.replace(tmp, path)
        swarm.say(f"submitted {len(ids)} demo task(s) of {opts.demo_steps} steps each")
    bar = ProgressBar(ids, stream=opts.out)
    client.on_reconnect = bar.on_reconnect
    bar.render(force=True)
    bar.start_ticker()
    try:
        watches = await client.watch(ids, on_event=bar.on_event, on_result=bar.on_result)
    finally:
        bar.close()
    swarm.say(summary_table(watches))
    done = sum(1 for w in watches.values() if w.result is not None and w.result.status == "done")
    dead = len(watches) - done
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
