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

import contextvars

try:
    from pydantic_ai import ModelMessagesTypeAdapter
except ImportError as exc:  # the optional extra is not installed in this image
    raise ImportError(f"{exc}; the pydantic-ai handler needs: pip install 'agentswarm[agents]'") from exc
from pydantic_ai.messages import ModelResponse
from pydantic_core import to_jsonable_python

from agentswarm import tracing
from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext
from agentswarm.llm import metrics
from agentswarm.llm.agent_policy import AGENT_VARIABLE, ALLOWED_VARIABLE, AgentPolicy, load_agent
from agentswarm.llm.durable_run import DurableCapability, run_agent
from agentswarm.llm.errors import PayloadError
from agentswarm.llm.events import EventSender
from agentswarm.llm.journal import STATE_FORMAT, Journal, history_usage
from agentswarm.llm.prices import PriceTable

__all__ = [
    "AGENT_VARIABLE",
    "ALLOWED_VARIABLE",
    "STATE_FORMAT",
    "AgentPolicy",
    "DurableCapability",
    "Journal",
    "ModelMessagesTypeAdapter",
    "current_task",
    "handle",
    "history_usage",
    "load_agent",
    "run_agent",
]

# -- the swarm, from inside a tool ----------------------------------------------------------------------
_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("agentswarm_task")


def current_task() -> TaskContext:
    """The swarm context of the task whose agent is running: call it from a tool to use the swarm.

    For example ``await current_task().emit({"type": "progress", "found": 3})`` streams an event to the
    task's watchers. Raises :class:`LookupError` outside a task run by this handler.
    """
    return _current.get()


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
