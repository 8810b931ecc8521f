"""Handler of the dashboard benchmark (``agentswarm local --handler bench.dashboard_handlers:flood``)."""

from __future__ import annotations

from typing import Any

from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext


async def flood(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """Emit ``events`` token events as fast as the broker takes them (an LLM streaming at full speed)."""
    payload: dict[str, Any] = task.payload if isinstance(task.payload, dict) else {}
    n = int(payload.get("events", 1000))
    for i in range(n):
        await ctx.emit({"type": "token", "text": f"{i} "})
    return n
