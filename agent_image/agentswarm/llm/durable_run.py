"""Driving a pydantic-ai agent durably: replay of what the journal already paid for, and the run loop.

:class:`DurableCapability` skips model calls and tool calls whose results are checkpointed and records
metrics and spans for the others; :func:`run_agent` drives the agent node by node and checkpoints it.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.agent import AbstractAgent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import SkipModelRequest
from pydantic_ai.messages import (
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelResponse,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
)
from pydantic_ai.usage import RunUsage
from pydantic_core import to_jsonable_python

from agentswarm import tracing
from agentswarm.handlers import ShutdownRequested
from agentswarm.llm import metrics
from agentswarm.llm.events import Emit, TokenStream, preview
from agentswarm.llm.journal import Journal, history_usage
from agentswarm.llm.prices import PriceTable


def _error_kind(exc: BaseException) -> str:
    name = type(exc).__name__
    if "RateLimit" in name or "Quota" in name:
        return "rate_limited"
    if "Timeout" in name:
        return "timeout"
    if "Connection" in name:
        return "connection"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return "server_error" if status >= 500 else "rate_limited" if status == 429 else "client_error"
    return "other"


class DurableCapability(AbstractCapability[Any]):
    """Replays what the journal already paid for, and counts what it did not (metrics, journal)."""

    def __init__(self, journal: Journal, replay: ModelResponse | None, prices: PriceTable | None) -> None:
        self.journal = journal
        self.replay = replay
        self.prices = prices

    async def wrap_model_request(self, ctx: Any, *, request_context: Any, handler: Any) -> ModelResponse:
        if self.replay is not None:
            replayed, self.replay = self.replay, None
            raise SkipModelRequest(replayed)
        model = getattr(request_context.model, "model_name", "unknown")
        started = time.monotonic()
        attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
        with tracing.span(f"chat {model}", attrs) as span:
            try:
                response: ModelResponse = await handler(request_context)
            except Exception as exc:
                metrics.record_error(model, _error_kind(exc))
                raise
            name = response.model_name or model
            price = self.prices.price(name) if self.prices is not None else None
            metrics.record_response(
                name,
                input_tokens=response.usage.input_tokens,
                output_tokens=response.usage.output_tokens,
                seconds=time.monotonic() - started,
                cost_usd=price.cost(response.usage.input_tokens, response.usage.output_tokens)
                if price
                else None,
            )
            tracing.set_attributes(
                span,
                {
                    "gen_ai.response.model": response.model_name,
                    "gen_ai.usage.input_tokens": response.usage.input_tokens,
                    "gen_ai.usage.output_tokens": response.usage.output_tokens,
                },
            )
        return response

    async def wrap_tool_execute(
        self, ctx: Any, *, call: ToolCallPart, tool_def: Any, args: Any, handler: Any
    ) -> Any:
        if call.tool_call_id in self.journal.tools:
            return self.journal.tools[call.tool_call_id]
        attrs = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.tool_name,
            "gen_ai.tool.call.id": call.tool_call_id,
        }
        with tracing.span(f"execute_tool {call.tool_name}", attrs):
            result = await handler(args)
        metrics.record_tool_call(call.tool_name)
        await self.journal.save_tool(call.tool_call_id, to_jsonable_python(result, fallback=repr))
        return result


async def _stream_model_request(node: Any, run: Any, emit: Emit, step: int) -> None:
    tokens = TokenStream(emit, step=step)
    async with node.stream(run.ctx) as stream:
        async for event in stream:
            if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                await tokens.add(event.part.content)
            elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                await tokens.add(event.delta.content_delta)
            elif isinstance(event, PartEndEvent):
                await tokens.flush()
    await tokens.flush()


async def _stream_tool_calls(node: Any, run: Any, emit: Emit, step: int) -> None:
    async with node.stream(run.ctx) as stream:
        async for event in stream:
            if isinstance(event, FunctionToolCallEvent):
                part = event.part
                await emit(
                    {
                        "type": "tool_call",
                        "tool": part.tool_name,
                        "call_id": part.tool_call_id,
                        "args": preview(part.args_as_dict()),
                        "step": step,
                    }
                )
            elif isinstance(event, FunctionToolResultEvent):
                result = event.part
                await emit(
                    {
                        "type": "tool_result",
                        "tool": result.tool_name,
                        "call_id": result.tool_call_id,
                        "content": preview(getattr(result, "content", None)),
                        "kind": result.part_kind,
                        "step": step,
                    }
                )


async def run_agent(
    agent: AbstractAgent[Any, Any],
    prompt: str,
    journal: Journal,
    emit: Emit,
    prices: PriceTable | None = None,
    *,
    deps: Any = None,
) -> tuple[Any, list[ModelMessage]]:
    """Drive ``agent`` node by node from the journal's history; return its output and final history.

    Your own handler can call it to run an agent that needs ``deps``::

        journal = Journal(ctx, "myproject.agents:researcher", state)
        output, messages = await run_agent(researcher, prompt, journal, ctx.emit, deps=MyDeps(...))
    """
    history = list(journal.messages)
    replay: ModelResponse | None = None
    if history and isinstance(last := history[-1], ModelResponse):
        history.pop()
        replay = last
    capability = DurableCapability(journal, replay, prices)
    done = history_usage(history)
    usage = RunUsage(
        requests=done.requests,
        input_tokens=done.input_tokens,
        output_tokens=done.output_tokens,
        tool_calls=done.tool_calls,
    )
    async with agent.iter(
        None if history else prompt,
        message_history=history or None,
        usage=usage,
        deps=deps,
        capabilities=[capability],
    ) as run:
        node = run.next_node
        while not Agent.is_end_node(node):
            step = journal.steps + 1
            if Agent.is_model_request_node(node):
                await _stream_model_request(node, run, emit, step)
            elif Agent.is_call_tools_node(node):
                await _stream_tool_calls(node, run, emit, journal.steps)
            previous = node
            node = await run.next(node)
            if journal.stop_requested:
                raise ShutdownRequested("stopping after a checkpointed tool call")
            if Agent.is_user_prompt_node(previous):
                continue  # nothing paid for yet
            if Agent.is_call_tools_node(previous) and journal.covers(previous.model_response):
                continue  # every result is checkpointed already: a resume replays them from the journal
            messages = list(run.all_messages())
            if Agent.is_model_request_node(node):
                messages.append(node.request)  # the tool results, before the model sees them
            if len(messages) > len(journal.messages):
                await journal.save_history(messages)
                if Agent.is_model_request_node(previous) and isinstance(messages[-1], ModelResponse):
                    response = messages[-1]
                    await emit(
                        {
                            "type": "model_response",
                            "step": journal.steps,
                            "model": response.model_name,
                            "input_tokens": response.usage.input_tokens,
                            "output_tokens": response.usage.output_tokens,
                            "tool_calls": [p.tool_name for p in response.tool_calls],
                        }
                    )
        assert run.result is not None
        return run.result.output, list(run.all_messages())
