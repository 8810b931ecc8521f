"""The steps handler with a step log, for tests only: ``{"log": "/path"}`` in the payload makes the agent
append ``exec <task> <step> <agent> <attempt>`` before each step's checkpoint and ``ckpt ...`` after it, so a
test can prove a resumed task never redid a checkpointed step.

A client choosing a file the agent writes to is a test fixture, never shipped behaviour: the agents of these
tests import this module through ``PYTHONPATH`` (``AGENTSWARM_HANDLER=logged_steps:handle``).
"""

from __future__ import annotations

from pathlib import Path

from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext
from agentswarm.handlers.steps import append_line, run_steps

HANDLER = "logged_steps:handle"
DIRECTORY = str(Path(__file__).resolve().parent)
"""Put this on the agents' ``PYTHONPATH``."""


async def handle(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    payload = task.payload if isinstance(task.payload, dict) else {}
    path = payload.get("log")

    def on_step(event: str, step: int) -> None:
        append_line(path, f"{event} {task.id} {step} {ctx.agent_id} {ctx.attempt}")

    return await run_steps(task, state, ctx, on_step if isinstance(path, str) else None)
