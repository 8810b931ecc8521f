"""Handlers of the fan-out benchmark (``AGENTSWARM_HANDLER=bench.fanout_handlers:root``)."""

from __future__ import annotations

import time
from typing import Any

from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext


async def root(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """Spawn ``children`` no-op children, gather them, say when ``gather`` returned."""
    payload: dict[str, Any] = task.payload if isinstance(task.payload, dict) else {}
    ids = await ctx.spawn([{}] * int(payload["children"]), handler="bench.fanout_handlers:leaf")
    outcomes = await ctx.gather(ids)
    return {"gathered_at": time.time(), "done": sum(1 for o in outcomes if o.ok)}


async def leaf(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    return time.time()
