"""The swarm's token budget as the agent applies it: charging a handler's token usage, and holding an LLM
task (its lease kept, nothing paid) while the budget is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from agentswarm.broker import Delivery
from agentswarm.broker.base import Task
from agentswarm.budget import is_llm_task, task_model, usage_of_event

if TYPE_CHECKING:
    from agentswarm.worker import Agent

log = logging.getLogger("agentswarm.agent")


async def charge_budget(agent: Agent, task: Task, event: dict[str, Any]) -> None:
    """Add the tokens of a handler's ``model_response`` event to the swarm's budget."""
    usage = usage_of_event(event) if agent.budget is not None else None
    if usage is None or agent.budget is None:
        return
    model, tokens = usage
    budget = agent.budget
    await agent.retrying(lambda: budget.charge(task_model(task) or model, tokens), "budget")


async def hold_for_budget(agent: Agent, delivery: Delivery) -> bool:
    """Wait while ``delivery`` is an LLM task and the budget is spent; True when it was handed back.

    The agent keeps the delivery (its lease renewed, nothing paid) and takes no other task until the
    budget allows it: at the window's reset, or when the limits are raised. Handing it back instead would
    only have it delivered again at once. On SIGTERM it is released like any task not yet started.
    """
    budget = agent.budget
    if budget is None or not is_llm_task(delivery.task, agent.handler):
        return False
    status = await agent.retrying(budget.status, "budget")
    if not status.blocks(task_model(delivery.task)):
        return False
    log.warning(
        "token budget spent (%s tokens today%s); holding LLM task %s until it resets",
        status.spent.get("*", 0),
        f", models {', '.join(status.exhausted_models)}" if status.exhausted_models else "",
        delivery.task.id,
    )
    agent.held_for_budget = delivery.task.id
    last_renewal = time.monotonic()
    try:
        while status.blocks(task_model(delivery.task)):
            pause = max(0.01, min(budget.poll_seconds, status.resets_at - budget.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(agent.stopping.wait(), timeout=pause)
            if agent.stopping.is_set():
                await agent.release(delivery)
                return True
            if time.monotonic() - last_renewal >= agent.settings.keepalive_seconds:
                with contextlib.suppress(Exception):
                    await agent.broker.keep_alive([delivery])
                last_renewal = time.monotonic()
            status = await agent.retrying(budget.status, "budget")
    finally:
        agent.held_for_budget = None
    log.info("token budget available again; starting task %s", delivery.task.id)
    return False
