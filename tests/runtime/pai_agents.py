"""pydantic-ai agents for the tests, driven by ``FunctionModel`` (imported by agent processes via PYTHONPATH).

``counting``: a scripted conversation of five model calls (position = responses so far)::

    0, 1, 2: one tool call each: add(p, 1)            (ids c0, c1, c2)
    3:       two tool calls: add(3, 1), slow_add(3, 2) (ids c3a, c3b)
    4:       streamed text "The total is <sum of all tool results>."

Every model call and tool call is counted in files under ``$PAI_TEST_DIR`` (so counts survive SIGKILL):
``model start <pos> <pid>`` when a call begins, ``model done <pos> <pid>`` when its response is complete,
``tool done <call_id> <pid>`` when a tool call finished. A file ``hold-model-<pos>`` or ``hold-tool-<id>``
in that directory makes that call wait until the file is removed: tests SIGKILL the agent there.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agentswarm.handlers.pydantic_ai import current_task
from agentswarm.handlers.steps import append_line
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.models.test import TestModel


def _dir() -> Path:
    return Path(os.environ["PAI_TEST_DIR"])


def _log(line: str) -> None:
    append_line(str(_dir() / "calls.log"), f"{line} {os.getpid()}")


async def _hold(name: str) -> None:
    flag = _dir() / name
    while flag.exists():  # noqa: ASYNC110 - another process (the test) removes the file
        await asyncio.sleep(0.05)


SCRIPT: dict[int, list[tuple[str, str, dict[str, int]]]] = {
    0: [("add", "c0", {"a": 0, "b": 1})],
    1: [("add", "c1", {"a": 1, "b": 1})],
    2: [("add", "c2", {"a": 2, "b": 1})],
    3: [("add", "c3a", {"a": 3, "b": 1}), ("slow_add", "c3b", {"a": 3, "b": 2})],
}
#: Tool results of the script (what the final text adds up).
EXPECTED_TOTAL = 1 + 2 + 3 + 4 + 5
EXPECTED_OUTPUT = f"The total is {EXPECTED_TOTAL}."
MODEL_CALLS = 5
TOOL_CALL_IDS = ["c0", "c1", "c2", "c3a", "c3b"]


async def _script(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    pos = sum(isinstance(m, ModelResponse) for m in messages)
    _log(f"model start {pos}")
    await _hold(f"hold-model-{pos}")
    if pos in SCRIPT:
        yield {
            i: DeltaToolCall(name=name, json_args=json.dumps(args), tool_call_id=call_id)
            for i, (name, call_id, args) in enumerate(SCRIPT[pos])
        }
    else:
        total = 0
        for m in messages:
            if isinstance(m, ModelRequest):
                total += sum(int(str(p.content)) for p in m.parts if isinstance(p, ToolReturnPart))
        for chunk in ["The ", "total ", "is ", f"{total}", "."]:
            yield chunk
    _log(f"model done {pos}")


counting = Agent(
    FunctionModel(stream_function=_script, model_name="scripted"),
    instructions="Add the numbers with the tools, then state the total.",
    name="counting",
)


@counting.tool
async def add(ctx: RunContext[Any], a: int, b: int) -> int:
    """Add two integers."""
    _log(f"tool done {ctx.tool_call_id}")
    return a + b


@counting.tool
async def slow_add(ctx: RunContext[Any], a: int, b: int) -> int:
    """Add two integers, slowly."""
    await _hold(f"hold-tool-{ctx.tool_call_id}")
    _log(f"tool done {ctx.tool_call_id}")
    return a + b


#: A TestModel agent (calls every tool once, then answers) for quick runs.
quick = Agent(TestModel(), name="quick")


@quick.tool_plain
async def double(x: int) -> int:
    """Double a number (and tell the task's watchers, through the swarm context)."""
    await current_task().emit({"type": "progress", "doubled": x})
    return 2 * x


#: ``flaky``: its tool fails (ModelRetry) on its first call, then works; model calls are listed here.
flaky_calls: list[int] = []
flaky_tool_runs: list[int] = []
#: Raise this (a BaseException standing for SIGKILL) from the model call at position ``flaky_crash_at``.
flaky_crash: list[BaseException] = []
flaky_crash_at = 1


def _flaky_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    pos = sum(isinstance(m, ModelResponse) for m in messages)
    flaky_calls.append(pos)
    if pos == flaky_crash_at and flaky_crash:
        raise flaky_crash.pop()
    if pos < 2:
        return ModelResponse(parts=[ToolCallPart("fetch", {"n": pos}, tool_call_id=f"f{pos}")])
    return ModelResponse(parts=[TextPart(f"fetched after {len(flaky_tool_runs)} tool runs")])


async def _flaky_stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    response = _flaky_script(messages, info)
    for part in response.parts:
        if isinstance(part, ToolCallPart):
            yield {
                0: DeltaToolCall(
                    name=part.tool_name, json_args=part.args_as_json_str(), tool_call_id=part.tool_call_id
                )
            }
        elif isinstance(part, TextPart):
            yield part.content


flaky = Agent(FunctionModel(stream_function=_flaky_stream, model_name="flaky"), name="flaky", retries=2)


@flaky.tool_plain
def fetch(n: int) -> str:
    """Fetch item n (fails the first time)."""
    flaky_tool_runs.append(n)
    if len(flaky_tool_runs) == 1:
        raise ModelRetry("temporarily unavailable, try again")
    return f"item {n}"


not_an_agent = "just a string"
