"""A tool registry for the OpenAI-compatible handler's tests (``AGENTSWARM_LLM_TOOLS=llm_tools:tools``)."""

from __future__ import annotations

from collections import Counter

from agentswarm.llm.tools import ToolRegistry

tools = ToolRegistry()

#: Executions per tool name, to prove a resumed task does not run a finished tool call again.
executed: Counter[str] = Counter()


@tools.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    executed["add"] += 1
    return a + b


@tools.tool
async def lookup(key: str, default: str = "?") -> dict[str, str]:
    """Look a key up in a tiny table."""
    executed["lookup"] += 1
    return {"key": key, "value": {"capital-of-france": "Paris"}.get(key, default)}


@tools.tool(name="explode")
def explode_tool() -> None:
    """Always fails."""
    executed["explode"] += 1
    raise RuntimeError("boom")


not_a_registry = 42
