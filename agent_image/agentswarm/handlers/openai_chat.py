"""A handler that talks to any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, OpenAI...).

Use with ``AGENTSWARM_HANDLER=agentswarm.handlers.openai_chat:handle``. Configuration (environment):

* ``AGENTSWARM_LLM_BASE_URL``: base URL up to and including ``/v1``, e.g. ``http://ollama:11434/v1``.
* ``AGENTSWARM_LLM_MODEL``: model name, e.g. ``llama3.1:8b``.
* ``AGENTSWARM_LLM_API_KEY``: bearer token, optional for local servers.
* ``AGENTSWARM_LLM_TIMEOUT_SECONDS``: how long to wait for the connection, for the response to start and
  between two streamed chunks (default 120).
* ``AGENTSWARM_LLM_MAX_RETRIES``: retries of one model call on 408/409/429/5xx, connection errors and
  timeouts (default 4), honouring ``Retry-After`` (see :mod:`agentswarm.llm.retry`).
* ``AGENTSWARM_LLM_TOOLS``: ``module:attribute`` of an :class:`agentswarm.llm.tools.ToolRegistry` whose
  functions the model may call (optional).
* ``AGENTSWARM_LLM_PRICES``: price table for the estimated cost in usage (:mod:`agentswarm.llm.prices`).

Payload::

    {"prompts": ["first question", "follow-up", ...],  # required, one turn each
     "system": "optional system prompt",
     "tools": ["search", ...],     # subset of the registry (default: all registered tools)
     "stream": true,               # default true: server-sent events, streamed as token events
     "max_tool_rounds": 8,         # model turns with tool calls per prompt, then it must answer
     "temperature": 0.2, "top_p": 1, "max_tokens": 512, "seed": 7}   # passed through when given

Result: ``{"answers": [...], "model": "<model the server reported>", "usage": {...}}``.

Durability: the conversation (OpenAI message format) and the usage so far are checkpointed after every
model response and every tool result. A resumed task continues from there: tool calls of a checkpointed
response whose results are in the history are not run again, and no finished model call is repeated.

Events: ``token`` (streamed text, coalesced), ``tool_call``, ``tool_result``, ``model_response``,
``retry`` (a failed attempt, with the wait; text streamed by that attempt is superseded) and ``usage``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agentswarm import tracing
from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext
from agentswarm.llm import metrics
from agentswarm.llm.chat_client import ChatClient
from agentswarm.llm.chat_config import DEFAULT_TIMEOUT_SECONDS as DEFAULT_TIMEOUT_SECONDS
from agentswarm.llm.chat_config import LLMConfig
from agentswarm.llm.chat_wire import Completion
from agentswarm.llm.errors import ModelCallError, PayloadError
from agentswarm.llm.events import preview
from agentswarm.llm.tools import Tool, ToolRegistry, load_registry
from agentswarm.llm.usage import Usage

DEFAULT_MAX_TOOL_ROUNDS = 8
#: Sampling parameters a payload may set, passed to the endpoint unchanged.
PASSTHROUGH_PARAMS = {"temperature": float, "top_p": float, "max_tokens": int, "seed": int}

__all__ = ["ChatClient", "Completion", "LLMConfig", "handle"]


# -- the handler -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChatRequest:
    """A validated payload."""

    prompts: list[str]
    system: str | None
    tool_names: list[str] | None
    stream: bool
    max_tool_rounds: int
    params: dict[str, Any]

    @classmethod
    def from_payload(cls, payload: Any) -> ChatRequest:
        if not isinstance(payload, dict):
            raise PayloadError("payload must be a JSON object with 'prompts'")
        prompts = payload.get("prompts")
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise PayloadError(f"payload.prompts={prompts!r}: must be a non-empty list of non-empty strings")
        system = payload.get("system")
        if system is not None and not isinstance(system, str):
            raise PayloadError(f"payload.system={system!r}: must be a string")
        tools = payload.get("tools")
        if tools is not None and not (isinstance(tools, list) and all(isinstance(t, str) for t in tools)):
            raise PayloadError(f"payload.tools={tools!r}: must be a list of registered tool names")
        stream = payload.get("stream", True)
        if not isinstance(stream, bool):
            raise PayloadError(f"payload.stream={stream!r}: must be true or false")
        rounds = payload.get("max_tool_rounds", DEFAULT_MAX_TOOL_ROUNDS)
        if not isinstance(rounds, int) or isinstance(rounds, bool) or not 0 <= rounds <= 64:
            raise PayloadError(f"payload.max_tool_rounds={rounds!r}: must be an integer 0-64")
        params: dict[str, Any] = {}
        for name, kind in PASSTHROUGH_PARAMS.items():
            if name in payload:
                value = payload[name]
                ok = isinstance(value, int | float) if kind is float else isinstance(value, int)
                if not ok or isinstance(value, bool):
                    raise PayloadError(f"payload.{name}={value!r}: must be a {kind.__name__}")
                params[name] = value
        return cls(prompts, system, tools, stream, rounds, params)


def _answers(messages: list[dict[str, Any]]) -> list[str]:
    """The final assistant text of each user turn so far."""
    answers: list[str] = []
    current: str | None = None
    seen_user = False
    for m in messages:
        if m.get("role") == "user":
            if seen_user:
                answers.append(current or "")
            seen_user, current = True, None
        elif m.get("role") == "assistant" and not m.get("tool_calls"):
            current = m.get("content") or ""
    if seen_user and current is not None:
        answers.append(current)
    return answers


def _pending_tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls of the latest assistant message that have no result in the history after it."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") == "user":
            return []
        if message.get("role") == "assistant":
            answered = {m.get("tool_call_id") for m in messages[index + 1 :] if m.get("role") == "tool"}
            return [c for c in message.get("tool_calls") or [] if c.get("id") not in answered]
    return []


def _since_last_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return messages[index + 1 :]
    return messages


async def _run_tool(
    registry: ToolRegistry | None, allowed: set[str], call: dict[str, Any], ctx: TaskContext, step: int
) -> dict[str, Any]:
    fn = call.get("function") or {}
    name, arguments = str(fn.get("name", "")), str(fn.get("arguments") or "")
    await ctx.emit(
        {"type": "tool_call", "tool": name, "call_id": call["id"], "args": preview(arguments), "step": step}
    )
    tool = registry.get(name) if registry is not None and name in allowed else None
    if tool is None:
        content = json.dumps({"error": f"no tool named {name!r}; available: {sorted(allowed)}"})
    else:
        attrs = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call["id"],
        }
        with tracing.span(f"execute_tool {name}", attrs):
            content = await tool.call(arguments)
        metrics.record_tool_call(name)
    await ctx.emit(
        {
            "type": "tool_result",
            "tool": name,
            "call_id": call["id"],
            "content": preview(content),
            "step": step,
        }
    )
    return {"role": "tool", "tool_call_id": call["id"], "content": content}


async def handle(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """The handler: see the module docstring."""
    config = LLMConfig.from_env()
    request = ChatRequest.from_payload(task.payload)
    registry = load_registry(config.tools_ref) if config.tools_ref else None
    if registry is None and request.tool_names:
        raise PayloadError("payload.tools: this agent has no tools (AGENTSWARM_LLM_TOOLS is not set)")
    tools = registry.select(request.tool_names) if registry is not None else []
    st = state if isinstance(state, dict) else {}
    messages: list[dict[str, Any]] = list(st.get("messages") or [])
    usage = Usage.from_json(st.get("usage"))
    model = str(st.get("model") or config.model)
    if not messages and request.system:
        messages.append({"role": "system", "content": request.system})
    attrs = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "openai_chat",
        "agentswarm.task_id": ctx.task_id,
        "agentswarm.attempt": ctx.attempt,
        "agentswarm.resumed_from_version": ctx.restored_version,
    }
    with tracing.span("invoke_agent openai_chat", attrs) as span:
        model = await _converse(config, request, registry, tools, messages, usage, ctx, model)
        tracing.set_attributes(
            span,
            {
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "agentswarm.requests": usage.requests,
            },
        )
    await ctx.emit(usage.event(model))
    return {"answers": _answers(messages), "model": model, "usage": usage.to_json()}


async def _converse(
    config: LLMConfig,
    request: ChatRequest,
    registry: ToolRegistry | None,
    tools: list[Tool],
    messages: list[dict[str, Any]],
    usage: Usage,
    ctx: TaskContext,
    model: str,
) -> str:
    """Model calls and tool calls until every prompt is answered, checkpointed; returns the model name."""
    allowed = {t.name for t in tools}

    async def save() -> None:
        await ctx.checkpoint({"messages": messages, "usage": usage.to_json(), "model": model})

    async with config.http_client() as http:
        client = ChatClient(config, http)
        while True:
            last = messages[-1] if messages else None
            step = usage.requests + 1
            pending = _pending_tool_calls(messages)
            if pending:
                # Tool calls of a checkpointed response whose results are not in the history yet.
                for call in pending:
                    messages.append(await _run_tool(registry, allowed, call, ctx, usage.requests))
                    usage.tool_calls += 1
                    await save()
                continue
            turn_done = last is None or last.get("role") not in ("user", "tool")
            if turn_done:
                started = sum(1 for m in messages if m.get("role") == "user")
                if started >= len(request.prompts):
                    break
                messages.append({"role": "user", "content": request.prompts[started]})
                continue
            rounds = sum(1 for m in _since_last_user(messages) if m.get("role") == "assistant")
            completion = await client.complete(
                messages,
                tools=tools,
                tool_choice="none" if rounds >= request.max_tool_rounds else None,
                stream=request.stream,
                params=request.params,
                emit=ctx.emit,
                step=step,
            )
            if completion.message.get("tool_calls") and rounds >= request.max_tool_rounds:
                raise ModelCallError(
                    f"the model called tools again after {rounds} rounds and tool_choice 'none' "
                    "(payload.max_tool_rounds)"
                )
            messages.append(completion.message)
            usage.add(completion.usage)
            model = completion.model
            await save()
            await ctx.emit(
                {
                    "type": "model_response",
                    "step": step,
                    "model": model,
                    "input_tokens": completion.usage.input_tokens,
                    "output_tokens": completion.usage.output_tokens,
                    "finish_reason": completion.finish_reason,
                    "tool_calls": [c["function"]["name"] for c in completion.message.get("tool_calls", [])],
                }
            )
    return model


metrics.start_exporter_for_handler()
