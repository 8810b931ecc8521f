"""Human in the loop: ``ctx.ask`` parks a task until somebody answers (``answer`` frame / CLI).

A question is a waiter without children (:meth:`~agentswarm.swarm.store.SwarmStore.park` with nothing to wait
for): the agent is freed while a human thinks, and the answer re-enqueues the task on any agent, which re-runs
the handler from its last checkpoint (the replay model of :mod:`agentswarm.swarm.runtime`). The ``n``-th
``ask`` of a run is question ``n``; its answer is stored once, so the re-run gets it back from the same call.

Storage, in the swarm store's tree-scoped shared context under the scope ``ask=<task id>`` (``=`` never occurs
in a task id, so it never meets a tree's own entries; it expires with the tree's records):

* ``pending``: ``{"n", "question", "timeout_at"}`` of the question the task waits on (written after parking,
  so an answer always finds the task parked);
* ``answer.<n>``: ``{"input": ...}`` or ``{"timed_out": true}``, written only if absent: the first of an
  answer and the timeout wins, and a second answer is refused with :class:`AlreadyAnswered`.
"""

from __future__ import annotations

import json
import time
import weakref
from typing import Any

from agentswarm.broker.base import JSON, Broker
from agentswarm.swarm.shared import MAX_SHARED_VALUE_BYTES, encode_value
from agentswarm.swarm.store import SwarmError, SwarmStore


class NotWaitingForInput(SwarmError):
    """An answer to a task that asked nothing (or is unknown)."""


class AlreadyAnswered(SwarmError):
    """A second answer to a question (or an answer after its timeout)."""


def ask_scope(task_id: str) -> str:
    return f"ask={task_id}"


async def stored_answer(store: SwarmStore, task_id: str, n: int) -> dict[str, Any] | None:
    entry = await store.shared_get(ask_scope(task_id), f"answer.{n}")
    return entry.value if entry is not None and isinstance(entry.value, dict) else None


async def time_out(store: SwarmStore, task_id: str, n: int) -> dict[str, Any]:
    """Record that question ``n`` timed out unless it was answered first; returns what is stored."""
    raw = json.dumps({"timed_out": True, "at": time.time()}).encode()
    await store.shared_put(ask_scope(task_id), f"answer.{n}", raw, 0)
    stored = await stored_answer(store, task_id, n)
    assert stored is not None
    return stored


async def publish_question(
    store: SwarmStore, task_id: str, n: int, question: JSON, timeout_at: float | None
) -> None:
    raw = encode_value("question", {"n": n, "question": question, "timeout_at": timeout_at}, 64 * 1024)
    await store.shared_put(ask_scope(task_id), "pending", raw, None)


async def answer(store: SwarmStore, task_id: str, value: JSON) -> int:
    """Answer the question ``task_id`` waits on and wake it; returns the question's number.

    Raises :class:`NotWaitingForInput` if the task never asked anything or ended (e.g. was cancelled) while
    its question was open, :class:`AlreadyAnswered` if its current question already has an answer (or
    timed out), ``TypeError``/:class:`ValueTooLarge` for an input that is not JSON or too large.
    """
    scope = ask_scope(task_id)
    pending = await store.shared_get(scope, "pending")
    if pending is None or not isinstance(pending.value, dict):
        raise NotWaitingForInput(f"task {task_id} is not waiting for input")
    n = int(pending.value["n"])
    raw = encode_value("input", {"input": value, "at": time.time()}, MAX_SHARED_VALUE_BYTES)
    if await store.shared_get(scope, f"answer.{n}") is not None:
        raise AlreadyAnswered(f"question {n} of task {task_id} was already answered or timed out")
    outcome = await store.broker.get_result(task_id)
    if outcome is not None:  # cancelled (or finished) while its question was open: nobody will read it
        ended = "was cancelled" if outcome.cancelled else "has finished"
        raise NotWaitingForInput(f"task {task_id} {ended}: its question {n} takes no answer")
    if await store.shared_put(scope, f"answer.{n}", raw, 0) is None:
        raise AlreadyAnswered(f"question {n} of task {task_id} was already answered or timed out")
    await store.wake(task_id)
    return n


_stores: weakref.WeakKeyDictionary[Broker, SwarmStore] = weakref.WeakKeyDictionary()


async def store_for(broker: Broker) -> SwarmStore:
    """A connected swarm store sharing ``broker``'s connection (one per broker; for the coordinator)."""
    from agentswarm.swarm.runtime import make_swarm_store

    if broker not in _stores:
        store = make_swarm_store(broker)
        await store.connect()
        _stores[broker] = store
    return _stores[broker]
