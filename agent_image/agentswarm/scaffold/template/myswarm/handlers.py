"""Your agents: a planner that hands each topic to a researcher agent and gathers what they found.

``plan`` ``{"topics": ["kubernetes", "pulumi"]}``: spawns one ``research`` task per topic, waits for them
without holding an agent (``ctx.gather`` parks the planner; the agents run the researchers meanwhile), then
returns every researcher's note, read from the tree's shared context.

``research`` ``{"index": 0, "topic": "kubernetes"}``: calls :func:`summarise` (your model call goes there),
writes the note into the shared context and returns it.

Run them locally: ``agentswarm local --handler myswarm.handlers:plan``; on a cluster the stack files name the
same handler. The API (checkpoints, spawn/gather, shared context, memory) is agentswarm's docs/handlers.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agentswarm.broker.base import JSON, Task
from agentswarm.handlers import TaskContext

RESEARCH = f"{__name__}:research"
"""The handler the planner's children run (any agent imports it by this name)."""


def _payload(task: Task) -> dict[str, Any]:
    if not isinstance(task.payload, dict):
        raise ValueError(f"the payload must be a JSON object, got {task.payload!r}")
    return task.payload


async def plan(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    topics = _payload(task).get("topics")
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
        raise ValueError('the payload needs "topics": a non-empty list of strings')
    # Re-running after parking returns the same ids and creates nothing twice.
    ids = await ctx.spawn([{"index": i, "topic": t} for i, t in enumerate(topics)], handler=RESEARCH)
    outcomes = await ctx.gather(ids)
    notes = await ctx.shared.items("note.")
    return {
        "topics": len(topics),
        "failed": [o.error for o in outcomes if not o.ok],
        "notes": [notes[key] for key in sorted(notes, key=lambda k: int(k.rpartition(".")[2]))],
    }


async def research(task: Task, state: JSON, ctx: TaskContext) -> JSON:
    p = _payload(task)
    index, topic = int(p["index"]), str(p["topic"])
    await ctx.emit({"topic": topic, "status": "researching"})
    note = {"topic": topic, "summary": await summarise(topic)}
    await ctx.shared.put(f"note.{index}", note)
    return note


async def summarise(topic: str) -> str:
    """Your model call goes here (an OpenAI-compatible client, a search API, ...).

    Keep blocking work off the event loop (``await asyncio.to_thread(...)``): the agent's heartbeat runs
    on it.
    """
    await asyncio.sleep(0.05)
    return f"{topic}: {len(topic.split())} word(s), {len(topic)} characters"
