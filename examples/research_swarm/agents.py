"""The swarm's agents: ordinary pydantic-ai agents, nothing agentswarm-specific in them.

* ``planner``: splits a question into a few sub-topics (structured output, :class:`Plan`).
* ``researcher``: researches one sub-topic with tools (a small local notes corpus, so the example runs
  offline) and answers with findings.
* ``writer``: turns the findings into a short report.

Model: with ``AGENTSWARM_LLM_BASE_URL``, ``AGENTSWARM_LLM_API_KEY`` and ``AGENTSWARM_LLM_MODEL`` set, every
agent uses that OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp...). Without them, pydantic-ai's
``TestModel``: deterministic and free, it calls every tool once and answers from their results.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field
from pydantic_ai import Agent
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
        "Research the sub-topic you are given. Use list_notes to see what notes exist and read_note to read "
        "the relevant ones. Answer with 2-3 sentences of findings, citing the note titles you used."
    ),
    name="researcher",
)


@researcher.tool_plain
def list_notes() -> list[str]:
    """Titles of the notes available."""
    return sorted(NOTES)


@researcher.tool_plain
def read_note(title: str) -> str:
    """The text of one note (by its exact title)."""
    return NOTES.get(
        title.strip().lower(), f"No note titled {title!r}. Available: {', '.join(sorted(NOTES))}"
    )


writer = Agent(
    model(TestModel()),
    instructions="Write a concise report (one paragraph per sub-topic) from the findings you are given.",
    name="writer",
)
