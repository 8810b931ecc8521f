"""A tool registry for the OpenAI-compatible handler's tests (``AGENTSWARM_LLM_TOOLS=llm_tools:tools``)."""

from __future__ import annotations

import os
from collections import Counter

from agentswarm.handlers.steps import append_line
from agentswarm.llm.tools import ToolRegistry

tools = ToolRegistry()

#: Executions per tool name, to prove a resumed task does not run a finished tool call again (in this
#: process; agent processes also append one line per execution to ``$LLM_TOOLS_LOG`` when it is set).
executed: Counter[str] = Counter()


def _count(name: str) -> None:
    executed[name] += 1
    append_line(os.environ.get("LLM_TOOLS_LOG"), f"{name} {os.getpid()}")


@tools.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    _count("add")
    return a + b


@tools.tool
async def lookup(key: str, default: str = "?") -> dict[str, str]:
    """Look a key up in a tiny table."""
    _count("lookup")
    return {"key": key, "value": {"capital-of-france": "Paris"}.get(key, default)}


@tools.tool(name="explode")
def explode_tool() -> None:
    """Always fails."""
    _count("explode")
    raise RuntimeError("boom")


not_a_registry = 42
