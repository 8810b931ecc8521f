"""Run a pydantic-ai ``Agent`` as a durable swarm task: resumed after a crash without paying twice.

Use with ``AGENTSWARM_HANDLER=agentswarm.handlers.pydantic_ai:handle`` (install ``agentswarm[agents]``).

Configuration (environment of the agent process, set by the operator):

* ``AGENTSWARM_PYDANTIC_AI_AGENT``: ``package.module:attribute`` of the agent used when the payload names
  none, e.g. ``myproject.agents:researcher``. Always allowed.
* ``AGENTSWARM_PYDANTIC_AI_ALLOWED``: comma-separated allow-list of the agents a payload may name:
  exact references (``myproject.agents:writer``), every attribute of a module (``myproject.agents:*``) or
  every module under a package (``myproject.*``). Empty (the default): payloads can only use the default
  agent. A reference outside the list is refused *before anything is imported*, so a client cannot make
  the agent import arbitrary modules.
* ``AGENTSWARM_LLM_PRICES``: optional price table; usage then carries the estimated cost
  (:mod:`agentswarm.llm.prices`).

Payload: ``{"prompt": "...", "agent": "myproject.agents:writer"}`` (``agent`` optional). Result::

    {"output": <the agent's output as JSON>, "usage": {"input_tokens", "output_tokens", "requests",
     "tool_calls"}, "model": "<model name>", "agent": "<reference>", "messages": <history length>}

How it stays durable: the agent is driven node by node (``Agent.iter``). After each model response the
message history (pydantic-ai's own ``ModelMessagesTypeAdapter`` JSON) is checkpointed; after each tool
call, the results of the tool calls of the current response that already ran are added to it (the
history itself is saved again after a tools step only if some result is not in that journal, for
example a tool that failed). A task resumed from such a checkpoint continues the run from that history:

* history ending in a model response: the response is replayed (a ``SkipModelRequest`` from this
  handler's capability) instead of asking the model again, then its tool calls run;
* a tool call whose result is in the checkpoint returns that result (its JSON form) without running;
* history ending in the tool results: the next model call is made.

So a finished model call or tool call is never paid for twice; only the call in flight when the process
died is repeated. Usage is computed from the responses in the history, so it counts each paid call once,
across attempts.

Events: ``token`` (streamed text, coalesced), ``tool_call``, ``tool_result``, ``model_response`` (per
model call, with its tokens) and, at the end, ``usage``; see :mod:`agentswarm.llm.events`.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

try:
    from pydantic_ai import Agent, ModelMessagesTypeAdapter
except ImportError as exc:  # the optional extra is not installed in this image
    raise ImportError(f"{exc}; the pydantic-ai handler needs: pip install 'agentswarm[agents]'") from exc
from pydantic_ai.agent import AbstractAgent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import SkipModelRequest
from pydantic_ai.messages import (
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.usage import RunUsage
from pydantic_core import to_jsonable_python

from agentswarm import tracing
from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import ShutdownRequested, TaskContext
from agentswarm.llm import metrics
from agentswarm.llm.errors import AgentRefError, LLMConfigError, PayloadError
from agentswarm.llm.events import Emit, EventSender, TokenStream, preview
from agentswarm.llm.prices import PriceTable
from agentswarm.llm.usage import Usage

AGENT_VARIABLE = "AGENTSWARM_PYDANTIC_AI_AGENT"
ALLOWED_VARIABLE = "AGENTSWARM_PYDANTIC_AI_ALLOWED"

#: ``format`` of the checkpointed state; bump when its shape changes incompatibly.
STATE_FORMAT = "pydantic-ai/1"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REF_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}$")
_MODULE_WILDCARD_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:\*$")
_PACKAGE_WILDCARD_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*\.\*$")


# -- the swarm, from inside a tool ----------------------------------------------------------------------
_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("agentswarm_task")


def current_task() -> TaskContext:
    """The swarm context of the task whose agent is running: call it from a tool to use the swarm.

    For example ``await current_task().emit({"type": "progress", "found": 3})`` streams an event to the
    task's watchers. Raises :class:`LookupError` outside a task run by this handler.
    """
    return _current.get()


# -- which agents may run -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AgentPolicy:
    """The operator's choice of agents: a default reference and an allow-list for payloads."""

    default: str | None = None
    allowed: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgentPolicy:
        env = os.environ if environ is None else environ
        default = env.get(AGENT_VARIABLE, "").strip() or None
        if default is not None and not _REF_RE.match(default):
            raise LLMConfigError(f"{AGENT_VARIABLE}={default!r}: expected 'package.module:attribute'")
        allowed = tuple(p.strip() for p in env.get(ALLOWED_VARIABLE, "").split(",") if p.strip())
        for pattern in allowed:
            if not (
                _REF_RE.match(pattern)
                or _MODULE_WILDCARD_RE.match(pattern)
                or _PACKAGE_WILDCARD_RE.match(pattern)
            ):
                raise LLMConfigError(
                    f"{ALLOWED_VARIABLE}: entry {pattern!r} is not 'package.module:attribute', "
                    "'package.module:*' or 'package.*'"
                )
        return cls(default=default, allowed=allowed)

    def permits(self, ref: str) -> bool:
        """Whether a payload may name ``ref`` (assumed well-formed)."""
        if ref == self.default:
            return True
        module, _, _attr = ref.partition(":")
        for pattern in self.allowed:
            if pattern == ref or pattern == f"{module}:*":
                return True
            if pattern.endswith(".*") and module.startswith(pattern[:-1]):
                return True
        return False

    def choose(self, requested: Any) -> str:
        """The reference to run for a payload's ``agent`` field (``None`` = the default)."""
        if requested is None:
            if self.default is None:
                raise AgentRefError(f"payload.agent is not given and {AGENT_VARIABLE} is not set")
            return self.default
        if not isinstance(requested, str) or not _REF_RE.match(requested):
            raise AgentRefError(f"payload.agent={requested!r}: expected 'package.module:attribute'")
        if not self.permits(requested):
            raise AgentRefError(
                f"payload.agent={requested!r}: not allowed; allowed are the default "
                f"{AGENT_VARIABLE}={self.default!r} and {ALLOWED_VARIABLE}={','.join(self.allowed)!r}"
            )
        return requested


_agents: dict[str, AbstractAgent[Any, Any]] = {}


def load_agent(ref: str) -> AbstractAgent[Any, Any]:
    """Import ``module:attribute`` (already checked against the policy) and check it is an agent."""
    cached = _agents.get(ref)
    if cached is not None:
        return cached
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentRefError(f"agent {ref!r}: cannot import {module_name!r}: {exc}") from exc
    agent = getattr(module, attr, None)
    if not isinstance(agent, AbstractAgent):
        raise AgentRefError(
            f"agent {ref!r}: {module_name}.{attr} is {type(agent).__name__}, not a pydantic_ai.Agent"
        )
    _agents[ref] = agent
    return agent


# -- the journal: what a checkpoint holds ---------------------------------------------------------------
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


# -- the run ---------------------------------------------------------------------------------------------
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


async def handle(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    """The handler: see the module docstring."""
    payload = task.payload if isinstance(task.payload, dict) else None
    if payload is None:
        raise PayloadError("payload must be a JSON object with a 'prompt'")
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise PayloadError(f"payload.prompt={prompt!r}: must be a non-empty string")
    ref = AgentPolicy.from_env().choose(payload.get("agent"))
    prices = PriceTable.from_env()
    agent = load_agent(ref)
    journal = Journal(ctx, ref, state)
    _current.set(ctx)
    attrs = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent.name or ref,
        "agentswarm.agent_ref": ref,
        "agentswarm.task_id": ctx.task_id,
        "agentswarm.attempt": ctx.attempt,
        "agentswarm.resumed_from_version": ctx.restored_version,
    }
    with tracing.span(f"invoke_agent {agent.name or ref}", attrs) as span:
        async with EventSender(ctx.emit) as events:
            output, messages = await run_agent(agent, prompt, journal, events.send, prices)
            usage = history_usage(messages, prices)
            model = next(
                (m.model_name for m in reversed(messages) if isinstance(m, ModelResponse) and m.model_name),
                None,
            )
            await events.send(usage.event(model))
        tracing.set_attributes(
            span,
            {
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "agentswarm.requests": usage.requests,
            },
        )
    return {
        "output": to_jsonable_python(output, fallback=repr),
        "usage": usage.to_json(),
        "model": model,
        "agent": ref,
        "messages": len(messages),
    }


metrics.start_exporter_for_handler()
