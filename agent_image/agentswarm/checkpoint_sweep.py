"""The start-up sweep of an agent's checkpoint volume: forget checkpoints of tasks that finished elsewhere."""

from __future__ import annotations

import logging

from agentswarm.broker import Broker
from agentswarm.checkpoint import CheckpointStore

log = logging.getLogger("agentswarm.agent")


async def sweep_checkpoints(store: CheckpointStore, broker: Broker) -> None:
    """Forget local checkpoints of tasks that finished elsewhere (taken over after this agent died).

    Best effort at start-up; tasks still unfinished keep theirs, so they resume if they come back here.
    """
    for task_id in await store.stranded_task_ids():
        try:
            if await broker.get_result(task_id) is not None:
                await store.clear(task_id)
                log.info("removed checkpoints of task %s (finished elsewhere)", task_id)
            elif await broker.get_task(task_id) is None:
                log.warning("checkpoints of unknown task %s kept in %s", task_id, store.location)
        except Exception as exc:
            log.warning("checkpoint sweep stopped: %s", exc)
            return
