"""The checkpointed state of a durable pydantic-ai run: its message history and finished tool calls.

Also the usage of a history, counted from the responses it holds so each paid model call counts once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic_ai import ModelMessagesTypeAdapter
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolReturnPart

from agentswarm.broker.base import JSON
from agentswarm.handlers import ShutdownRequested, TaskContext
from agentswarm.llm.errors import PayloadError
from agentswarm.llm.prices import PriceTable
from agentswarm.llm.usage import Usage

#: ``format`` of the checkpointed state; bump when its shape changes incompatibly.
STATE_FORMAT = "pydantic-ai/1"


def _dump(messages: Sequence[ModelMessage]) -> list[Any]:
    return list(ModelMessagesTypeAdapter.dump_python(list(messages), mode="json"))


def _prefix_kept(old: Sequence[ModelMessage], new: Sequence[ModelMessage]) -> bool:
    """Whether ``new`` extends ``old`` (same message objects first), so only its tail needs dumping."""
    return len(new) >= len(old) and all(a is b for a, b in zip(old, new, strict=False))


def history_usage(messages: Sequence[ModelMessage], prices: PriceTable | None = None) -> Usage:
    """Usage of a conversation: the responses it holds (each paid once) and the tool results in it."""
    usage = Usage()
    for message in messages:
        if isinstance(message, ModelResponse):
            call = Usage(
                input_tokens=message.usage.input_tokens, output_tokens=message.usage.output_tokens, requests=1
            )
            usage.add(call.priced(message.model_name, prices))
        elif isinstance(message, ModelRequest):
            usage.tool_calls += sum(isinstance(p, ToolReturnPart) for p in message.parts)
    return usage


class Journal:
    """The checkpointed state of one run: message history plus finished tool calls of the current step.

    State shape: ``{"format", "agent", "messages": [...], "tools": {call_id: content}}``. Saves are
    serialised by a lock (tools of one response may run concurrently).
    """

    def __init__(self, ctx: TaskContext, ref: str, state: JSON) -> None:
        self.ctx = ctx
        self.ref = ref
        st = state if isinstance(state, dict) else {}
        if st and st.get("format") != STATE_FORMAT:
            raise PayloadError(f"checkpoint format {st.get('format')!r} is not {STATE_FORMAT!r}")
        if st and st.get("agent") != ref:
            raise PayloadError(f"task was started with agent {st.get('agent')!r}, not {ref!r}")
        self.messages_json: list[Any] = list(st.get("messages") or [])
        self.messages: list[ModelMessage] = ModelMessagesTypeAdapter.validate_python(self.messages_json)
        self.tools: dict[str, Any] = dict(st.get("tools") or {})
        self._lock = asyncio.Lock()
        self.stop_requested = False
        self.saves = 0

    @property
    def steps(self) -> int:
        """Model calls completed so far (responses in the history)."""
        return sum(isinstance(m, ModelResponse) for m in self.messages)

    def covers(self, response: ModelResponse) -> bool:
        """Whether every tool call of ``response`` has its result in the journal already."""
        return all(call.tool_call_id in self.tools for call in response.tool_calls)

    def _state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "agent": self.ref,
            "messages": self.messages_json,
            "tools": self.tools,
        }

    async def save_history(self, messages: Sequence[ModelMessage]) -> None:
        """Checkpoint a longer history; raises :class:`ShutdownRequested` if the agent is stopping."""
        async with self._lock:
            if _prefix_kept(self.messages, messages):
                self.messages_json = self.messages_json + _dump(messages[len(self.messages) :])
            else:
                self.messages_json = _dump(messages)
            self.messages = list(messages)
            self.tools = {}  # results of earlier tool calls are in the history now
            await self.ctx.checkpoint(self._state())
            self.saves += 1

    async def save_tool(self, call_id: str, content: Any) -> None:
        """Checkpoint one finished tool call; a pending shutdown is raised at the next history save."""
        async with self._lock:
            self.tools[call_id] = content
            try:
                await self.ctx.checkpoint(self._state())
            except ShutdownRequested:
                self.stop_requested = True  # stored; stop at the end of this node, outside pydantic-ai
            self.saves += 1
