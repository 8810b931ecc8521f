"""The swarm's agents: ordinary pydantic-ai agents, nothing agentswarm-specific in them.

* ``planner``: splits a question into a few sub-topics (structured output, :class:`Plan`).
* ``researcher``: researches one sub-topic with a tool over a small local notes corpus (so the example runs
  offline) and answers with findings.
* ``writer``: turns the findings into a short report.

Model: with ``AGENTSWARM_LLM_BASE_URL``, ``AGENTSWARM_LLM_API_KEY`` and ``AGENTSWARM_LLM_MODEL`` set, every
agent uses that OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp...). Without them, pydantic-ai's
``TestModel``: deterministic and free, it calls every tool once and answers from their results.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field
from pydantic_ai import Agent, RunContext
from pydantic_ai.models import Model
from pydantic_ai.models.test import TestModel

#: Sub-topics the planner proposes under TestModel (a real model chooses its own).
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


class Plan(BaseModel):
    """What the planner returns."""

    subtopics: list[str] = Field(description="2 to 5 short sub-topics, each researchable on its own")


def model(offline: TestModel) -> Model:
    """The configured OpenAI-compatible model, or ``offline`` when the three variables are not set."""
    base_url = os.environ.get("AGENTSWARM_LLM_BASE_URL")
    if not base_url:
        return offline
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=base_url, api_key=os.environ.get("AGENTSWARM_LLM_API_KEY") or "none")
    return OpenAIChatModel(os.environ.get("AGENTSWARM_LLM_MODEL", "gpt-4o-mini"), provider=provider)


planner = Agent(
    model(TestModel(custom_output_args={"subtopics": OFFLINE_PLAN})),
    output_type=Plan,
    instructions="Split the research question into 2 to 5 short, independent sub-topics.",
    name="planner",
)

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
def search_notes(ctx: RunContext[None], query: str) -> list[str]:
    """Notes whose title or text contains a word of the query (those on the sub-topic when none does)."""
    return _matching(query) or _matching(str(ctx.prompt or "")) or ["No notes found."]


writer = Agent(
    model(TestModel()),
    instructions="Write a concise report (one paragraph per sub-topic) from the findings you are given.",
    name="writer",
)
