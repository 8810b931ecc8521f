"""Cancelling tasks together with the trees below them (``cancel`` frame, ``agentswarm cancel``).

:meth:`agentswarm.broker.base.Broker.cancel` cancels one task. A task that spawned children (running or parked
waiting for them) takes its whole tree with it: the children are found through the ``spawned`` events of
the task's log, so this needs nothing but the broker (the coordinator has no swarm store). Children that
finished already are left as they are; their own children are still visited, so nothing below a cancelled
task keeps running. Repeating a cancellation is harmless: every step is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agentswarm.broker.base import Broker, CancelOutcome

log = logging.getLogger("agentswarm.swarm")

#: Most tasks one tree cancellation visits (a tree larger than this is cancelled at its top levels only).
MAX_TREE_CANCEL = 100_000


async def children_of(broker: Broker, task_id: str) -> list[str]:
    """Every child ``task_id`` spawned so far, in spawn order, from its ``spawned`` events."""
    out: list[str] = []
    after: str | None = None
    while True:
        events = await broker.read_events(task_id, after, limit=1000)
        for event in events:
            if event.data.get("type") == "spawned":
                out += [str(c) for c in event.data.get("children") or [] if str(c) not in out]
        if len(events) < 1000:
            return out
        after = events[-1].id


async def cancel_descendants(broker: Broker, task_id: str) -> int:
    """Cancel everything below ``task_id``; returns how many tasks this call cancelled."""
    frontier, seen, cancelled = [task_id], {task_id}, 0
    while frontier and len(seen) < MAX_TREE_CANCEL:
        for child in await children_of(broker, frontier.pop()):
            if child in seen:
                continue
            seen.add(child)
            if await broker.cancel(child) == "cancelled":
                cancelled += 1
            frontier.append(child)
    if frontier:
        log.warning("tree of %s has more than %d tasks: cancelled its top levels only", task_id, len(seen))
    return cancelled


async def cancel_tasks(broker: Broker, task_ids: Sequence[str]) -> dict[str, CancelOutcome]:
    """Cancel each task and its descendants; returns each given task's :data:`CancelOutcome`."""
    out: dict[str, CancelOutcome] = {}
    for task_id in task_ids:
        outcome = await broker.cancel(task_id)
        out[task_id] = outcome
        if outcome == "cancelled":
            n = await cancel_descendants(broker, task_id)
            log.info("task %s cancelled (and %d tasks below it)", task_id, n)
    return out
