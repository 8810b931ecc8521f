"""The shipped steps handler is safe: nothing in a payload reaches the file system; numbers are bounded.

The step log that tests rely on lives in tests/runtime/logged_steps.py, not in the package.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import logged_steps
import pytest
from agentswarm.broker.base import Task
from agentswarm.handlers import steps


class Ctx:
    """The part of TaskContext the steps handler uses."""

    agent_id = "agent-0"
    attempt = 1

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.checkpoints: list[Any] = []

    async def emit(self, data: Any) -> None:
        self.events.append(data)

    async def checkpoint(self, state: Any) -> None:
        self.checkpoints.append(state)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _task(payload: Any) -> Task:
    return Task(id="t1", payload=payload)


def test_a_log_path_in_the_payload_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "chosen-by-a-client"
    ctx: Any = Ctx()
    result = _run(steps.handle(_task({"steps": 3, "log": str(target)}), None, ctx))
    assert result == steps.expected_result("t1", 3)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    assert len(ctx.checkpoints) == 3


def test_the_tests_variant_logs_each_step(tmp_path: Path) -> None:
    """The check above can fail: the same payload through the tests' handler does write the file."""
    target = tmp_path / "steps.log"
    ctx: Any = Ctx()
    result = _run(logged_steps.handle(_task({"steps": 2, "log": str(target)}), None, ctx))
    assert result == steps.expected_result("t1", 2)
    assert target.read_text().splitlines() == [
        "exec t1 0 agent-0 1",
        "ckpt t1 0 agent-0 1",
        "exec t1 1 agent-0 1",
        "ckpt t1 1 agent-0 1",
    ]


@pytest.mark.parametrize(
    "payload",
    [
        {"steps": 10**9},
        {"steps": -1},
        {"delay": 1e9},
        {"delay": float("nan")},
        {"steps": "many"},
        {"delay": []},
    ],
)
async def test_out_of_bounds_numbers_fail_the_task_not_the_agent(payload: dict[str, Any]) -> None:
    ctx: Any = Ctx()
    with pytest.raises(ValueError):
        await steps.handle(_task(payload), None, ctx)
