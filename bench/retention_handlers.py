"""The handler of ``bench.retention``: a task of a chosen size (``bench.retention_handlers:sized``)."""

from __future__ import annotations

from typing import Any

from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext


async def sized(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """Emit ``events`` events of ``event_bytes`` characters, return ``result_bytes`` characters."""
    payload: dict[str, Any] = task.payload if isinstance(task.payload, dict) else {}
    for i in range(int(payload.get("events", 0))):
        await ctx.emit({"type": "progress", "i": i, "text": "x" * int(payload.get("event_bytes", 0))})
    return {"text": "y" * int(payload.get("result_bytes", 0))}
