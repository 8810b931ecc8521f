"""The swarm's agents: ordinary pydantic-ai agents; the planner's tool hands work to the swarm.

* ``planner``: splits a question into sub-topics, calls its ``research`` tool once with all of them, and
  writes the report from the findings. ``research`` spawns one ``researcher`` task per sub-topic
  (``ctx.spawn``) and gathers their outputs (``ctx.gather``): the researchers run in parallel on the swarm's
  agents, and the waiting planner *parks* meanwhile, holding no agent.
* ``researcher``: researches one sub-topic with tools (a small local notes corpus, so the example runs
  offline) and answers with findings.

Model: with ``AGENTSWARM_LLM_BASE_URL``, ``AGENTSWARM_LLM_API_KEY`` and ``AGENTSWARM_LLM_MODEL`` set, every
agent uses that OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp...). Without them the researchers
use pydantic-ai's ``TestModel`` (deterministic and free: it calls every tool once and answers from their
results) and the planner a scripted ``FunctionModel`` that researches :data:`OFFLINE_PLAN` (``TestModel``
cannot choose a tool's arguments).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

from agentswarm.handlers.pydantic_ai import current_task
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ToolReturnPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.models.test import TestModel

RESEARCHER = "research_swarm.agents:researcher"
MAX_SUBTOPICS = 5
#: Sub-topics the offline planner researches (a real model chooses its own).
OFFLINE_PLAN = ["durable execution", "checkpoints", "token costs"]

NOTES: dict[str, str] = {
    "durable execution": (
        "Durable execution records each completed step of a long-running program so that after a crash "
        "it resumes at the first unfinished step instead of starting over."
    ),
    "checkpoints": (
        "A checkpoint is a versioned, checksummed snapshot of a task's state written atomically; the "
        "newest intact version is restored when the task resumes."
    ),
    "token costs": (
        "Model calls are billed per input and output token; a resumed agent that replays recorded "
        "responses instead of calling the model again does not pay twice."
    ),
    "queues": (
        "Work queues with acknowledgements give at-least-once delivery: a task lost with its worker "
        "returns to the queue."
    ),
}


def model(offline: Model) -> Model:
    """The configured OpenAI-compatible model, or ``offline`` when the three variables are not set."""
    base_url = os.environ.get("AGENTSWARM_LLM_BASE_URL")
    if not base_url:
        return offline
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=base_url, api_key=os.environ.get("AGENTSWARM_LLM_API_KEY") or "none")
    return OpenAIChatModel(os.environ.get("AGENTSWARM_LLM_MODEL", "gpt-4o-mini"), provider=provider)


# -- the planner ----------------------------------------------------------------------------------------
async def _offline_planner(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    """Without a model: research the offline plan, then write the report from the findings."""
    findings = [
        part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]
    if not findings:
        yield {0: DeltaToolCall("research", json.dumps({"subtopics": OFFLINE_PLAN}), tool_call_id="plan")}
        return
    texts = findings[0] if isinstance(findings[0], list) else [findings[0]]
    for topic, text in zip(OFFLINE_PLAN, texts, strict=False):
        yield f"{topic}: {text}\n\n"


planner = Agent(
    model(FunctionModel(stream_function=_offline_planner, model_name="offline-planner")),
    instructions=(
        "Split the research question into 2 to 5 short, independent sub-topics, call research once with all "
        "of them, then write a concise report (one paragraph per sub-topic) from the findings."
    ),
    name="planner",
)


@planner.tool_plain
async def research(subtopics: list[str]) -> list[str]:
    """Research each sub-topic in parallel, one researcher agent each; returns their findings in order."""
    ctx = current_task()
    ids = await ctx.spawn([{"prompt": topic, "agent": RESEARCHER} for topic in subtopics[:MAX_SUBTOPICS]])
    outcomes = await ctx.gather(ids)  # parks the planner (no agent held) until every researcher is done
    return [str(o.value["output"]) if o.ok else f"(research failed: {o.error})" for o in outcomes]


# -- the researchers ------------------------------------------------------------------------------------
researcher = Agent(
    model(TestModel()),
    instructions=(
        "Research the sub-topic you are given: search the notes with search_notes, then answer with 2-3 "
        "sentences of findings, citing the note titles you used."
    ),
    name="researcher",
)


def _matching(query: str) -> list[str]:
    words = [w for w in query.lower().split() if len(w) > 2]
    return [
        f"{title}: {text}"
        for title, text in NOTES.items()
        if any(w in title or w in text.lower() for w in words)
    ]


@researcher.tool
def search_notes(ctx: RunContext[object], query: str) -> list[str]:
    """Notes whose title or text contains a word of the query (those on the sub-topic when none does)."""
    return _matching(query) or _matching(str(ctx.prompt or "")) or ["No notes found."]
