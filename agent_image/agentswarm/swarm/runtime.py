"""The agent's side of task trees: ``ctx.spawn`` / ``ctx.gather`` / ``ctx.shared`` / ``ctx.memory``.

How a parent waits without holding an agent (the *replay* model). A handler that spawns is re-run from the
top when it resumes, with the state of its last ``ctx.checkpoint``:

1. ``ctx.spawn(payloads)`` derives the children's ids from the task id and the call's position
   (:func:`~agentswarm.swarm.store.child_id`) and enqueues them idempotently: a re-run, after a crash or after
   parking, gets the same ids and creates nothing twice. From its first spawn on, a task's checkpoints live in
   the broker (whatever ``AGENTSWARM_CHECKPOINT_BACKEND`` says), so any agent can resume it.
2. ``ctx.gather(ids)`` returns the children's outcomes at once if they have all finished. Otherwise it parks
   the task (:meth:`~agentswarm.swarm.store.SwarmStore.park`) and raises :class:`Parked`; the agent then
   acknowledges the delivery (no result, no error: parking never counts toward dead-lettering) and takes
   other work. The last child to finish re-enqueues the parent, which re-runs, re-spawns (a no-op) and this
   time ``gather`` returns.

So code between ``spawn`` and ``gather`` may run more than once, as any handler code may (at-least-once);
checkpoint what must not be repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentswarm import tracing
from agentswarm.broker.base import JSON, Broker, NewTask, Priority, validate_priority
from agentswarm.checkpoint import BrokerCheckpointStore, CheckpointStore
from agentswarm.defaults import DEFAULT_TREE_TTL_SECONDS
from agentswarm.handlers import Handler, load_handler
from agentswarm.swarm import ask as asking
from agentswarm.swarm.memory import AgentMemory
from agentswarm.swarm.shared import SharedContext
from agentswarm.swarm.store import (
    MAX_SPAWN,
    MAX_TREE_DEPTH,
    ChildOutcome,
    ChildStatus,
    Node,
    SwarmError,
    SwarmStore,
    TreeTooDeep,
    child_id,
)

log = logging.getLogger("agentswarm.swarm")

#: How often every agent looks for parked tasks whose ``gather`` timed out (a timeout fires this much late).
TIMER_INTERVAL_SECONDS = 1.0


class Parked(BaseException):
    """Raised by ``ctx.gather`` once the task is parked: the agent releases the delivery. Do not catch it.

    A BaseException so that handlers' ``except Exception`` blocks do not swallow it.
    """


def make_swarm_store(broker: Broker, ttl_seconds: int = DEFAULT_TREE_TTL_SECONDS) -> SwarmStore:
    """The swarm store for ``broker``'s backend, sharing its connection."""
    from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
    from agentswarm.broker.redis_streams import RedisStreamsBroker

    if isinstance(broker, RedisStreamsBroker):
        from agentswarm.swarm.redis_store import RedisSwarmStore

        return RedisSwarmStore(broker, ttl_seconds=ttl_seconds)
    if isinstance(broker, NatsJetStreamBroker):
        from agentswarm.swarm.nats_store import NatsSwarmStore

        return NatsSwarmStore(broker, ttl_seconds=ttl_seconds)
    raise SwarmError(f"no swarm store for the {broker.name!r} broker")


class TreeRuntime:
    """One per agent process: the swarm store, the shared checkpoint store, the memory, handler lookup."""

    def __init__(
        self,
        broker: Broker,
        memory_root: Path,
        ttl_seconds: int = DEFAULT_TREE_TTL_SECONDS,
        rate_limits: dict[str, float] | None = None,
    ) -> None:
        self.broker = broker
        self.rate_limits = dict(rate_limits or {})
        self.store = make_swarm_store(broker, ttl_seconds)
        self.checkpoints = BrokerCheckpointStore(broker)
        self.memory = AgentMemory(memory_root)
        self._handlers: dict[str, Handler] = {}
        self._timers: asyncio.Task[None] | None = None
        broker.add_dead_letter_listener(self._on_dead_letter)

    async def connect(self) -> None:
        """Create the store's buckets/scripts and start waking parents whose ``gather`` timed out."""
        await self.store.connect()
        if self._timers is None:
            self._timers = asyncio.create_task(self._timer_loop(), name="gather-timers")

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(TIMER_INTERVAL_SECONDS)
            try:
                woken = await self.store.wake_due(time.time())
                if woken:
                    log.info("woke %d parked task(s) whose gather timed out", woken)
            except Exception as exc:
                log.warning("waking timed-out gathers failed (retrying): %s", exc)

    def handler(self, spec: str) -> Handler:
        """The handler named ``module:function``, imported once (raises HandlerLoadError)."""
        if spec not in self._handlers:
            self._handlers[spec] = load_handler(spec)
        return self._handlers[spec]

    async def finished(self, node: Node, status: ChildStatus, error: str | None = None) -> None:
        """Tell ``node``'s parent (if any) that it finished; idempotent."""
        if node.parent is not None and await self.store.child_finished(node, status, error):
            log.info("task %s was the last child of %s: parent re-enqueued", node.task_id, node.parent)

    async def _on_dead_letter(self, task_id: str, error: str) -> None:
        """Wake a parent waiting for a dead-lettered child, riding out a short broker outage."""
        delay = 0.1
        for attempt in range(12):
            try:
                node = await self.store.node(task_id)
                await self.finished(node, "dead", error)
                if node.spawner:  # a dead parent never resumes: its checkpoints in the broker can go
                    await self.checkpoints.clear(task_id)
                return
            except Exception as exc:
                if not self.broker.is_transient(exc) or attempt == 11:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        if self._timers is not None:
            self._timers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timers
            self._timers = None
        self.memory.close()


class SwarmContextMixin:
    """The tree part of the handler's :class:`agentswarm.handlers.TaskContext` (mixed into the agent's).

    The host class sets ``task_id``, ``priority``, ``store`` (the checkpoint store in use) and calls
    :meth:`_init_swarm`.
    """

    task_id: str
    priority: Priority
    store: CheckpointStore
    last_version: int | None
    emit: Callable[[dict[str, Any]], Awaitable[str]]
    emit_unchecked: Callable[[dict[str, Any]], Awaitable[str]]

    def _init_swarm(self, tree: TreeRuntime, node: Node, state: JSON) -> None:
        self._tree = tree
        self.node = node
        self._state = state
        self._spawn_calls = 0
        self._ask_calls = 0
        self.parking = False
        self.shared = SharedContext(tree.store, node.root)
        self.memory = tree.memory

    async def _become_spawner(self) -> None:
        """Move this task's checkpoints to the broker so that whichever agent resumes it finds them."""
        if self.store is self._tree.checkpoints:
            return
        local = self.store
        if self._state is not None:
            self.last_version = await self._tree.checkpoints.save(self.task_id, self._state)
        self.store = self._tree.checkpoints
        try:
            await local.clear(self.task_id)
        except Exception as exc:  # a leftover is harmless: a spawner always resumes from the broker
            log.warning("could not remove local checkpoints of task %s: %s", self.task_id, exc)

    async def spawn(
        self, payloads: Sequence[JSON], handler: str | None = None, *, priority: Priority | None = None
    ) -> list[str]:
        """Enqueue one child task per payload; returns their ids, in order.

        ``handler`` (``module:function``) runs the children; by default they run this task's own handler.
        ``priority`` (``high``, ``normal``, ``low``) is the children's priority class; by default this task's
        own, so a ``high`` tree stays ``high`` all the way down. Idempotent: a re-run of this task gets the
        same ids back and creates nothing twice.
        """
        priority = self.priority if priority is None else validate_priority(priority)
        payloads = list(payloads)
        if handler is None:
            handler = self.node.handler
        if len(payloads) > MAX_SPAWN:
            raise SwarmError(f"spawn of {len(payloads)} children: at most {MAX_SPAWN} per call")
        if self.node.depth + 1 > MAX_TREE_DEPTH:
            raise TreeTooDeep(
                f"task {self.task_id} is at depth {self.node.depth}: trees nest at most {MAX_TREE_DEPTH} deep"
            )
        if handler is not None:
            self._tree.handler(handler)  # fail here, in the parent, rather than in every child
        call = self._spawn_calls
        self._spawn_calls += 1
        ids = [child_id(self.task_id, call, i) for i in range(len(payloads))]
        if not payloads:
            return ids
        await self._become_spawner()
        meta = tracing.task_meta()  # children join the trace of the span that spawns them
        specs = [
            NewTask(payload=p, id=i, meta=meta, priority=priority) for p, i in zip(payloads, ids, strict=True)
        ]
        added = await self._tree.store.spawn(self.node, specs, handler)
        self.node = replace(self.node, spawner=True)
        if added is not None:  # announced at least once: a crash before spawn_done repeats the event
            event: dict[str, Any] = {"type": "spawned", "call": call, "children": ids}
            if handler is not None:
                event["handler"] = handler
            # Published even if the task was cancelled meanwhile: a tree cancel finds children by this event.
            await self.emit_unchecked(event)
            await self._tree.store.spawn_done(ids[0])
        return ids

    # The timeout is a deadline across parking and re-runs, not an in-process wait (asyncio.timeout).
    async def gather(
        self,
        ids: Sequence[str],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[ChildOutcome]:
        """The outcomes of these children, in order, once all have finished (``done`` / ``dead``).

        If some are still running, the task parks: this raises :class:`Parked`, the agent is freed, and the
        task is re-run when the last child finishes (see the module docstring). A dead child does not raise:
        check ``outcome.status`` / ``outcome.ok``. With ``timeout`` (seconds, counted from this task's first
        call of this ``gather``), the task is also re-run once the timeout has passed, and ``gather`` then
        returns the outcomes as they are: children still running have ``status=None``.
        """
        ids = list(ids)
        if not ids:
            return []
        outcomes = await self._tree.store.outcomes(ids)
        if all(o.status is not None for o in outcomes):
            return outcomes
        wake_at = None
        if timeout is not None:
            wake_at = await self._tree.store.deadline(self.task_id, ids[0], max(0.0, float(timeout)))
            if time.time() >= wake_at:
                return outcomes
        self.parking = True
        if not await self._tree.store.park(self.task_id, ids, wake_at):
            self.parking = False
            return await self._tree.store.outcomes(ids)
        waiting = sum(1 for o in outcomes if o.status is None)
        await self.emit({"type": "parked", "waiting_for": waiting, "of": len(ids)})
        raise Parked(f"task {self.task_id} parked until {waiting} more of its {len(ids)} children finish")

    # The timeout is a deadline across parking and re-runs, like gather's.
    async def ask(self, question: JSON, timeout: float | None = None) -> JSON:  # noqa: ASYNC109
        """Ask a human ``question`` (JSON) and return their answer (see :mod:`agentswarm.swarm.ask`).

        Emits ``input_required`` and parks the task (raising :class:`Parked`; the agent is freed) until an
        ``answer`` frame or ``agentswarm answer`` arrives; the task then re-runs on any agent and this call
        returns the answer. With ``timeout`` (seconds from the first time this question was asked) it raises
        ``TimeoutError`` once that has passed without an answer.
        """
        n = self._ask_calls
        self._ask_calls += 1
        store = self._tree.store
        stored = await asking.stored_answer(store, self.task_id, n)
        wake_at = None
        if stored is None and timeout is not None:
            wake_at = await store.deadline(self.task_id, f"ask-{n}", max(0.0, float(timeout)))
            if time.time() >= wake_at:
                stored = await asking.time_out(store, self.task_id, n)
        if stored is not None:
            if stored.get("timed_out"):
                raise TimeoutError(f"question {n} of task {self.task_id} was not answered within {timeout}s")
            return stored.get("input")
        # Resumable anywhere: checkpoints to the broker, and the node says so to whoever resumes it.
        await self._become_spawner()
        if not self.node.spawner:
            await store.mark_spawner(self.node)
            self.node = replace(self.node, spawner=True)
        self.parking = True
        await store.park(self.task_id, [], wake_at)
        await asking.publish_question(store, self.task_id, n, question, wake_at)
        await self.emit({"type": "input_required", "question": question, "n": n, "timeout_at": wake_at})
        raise Parked(f"task {self.task_id} parked until question {n} is answered")

    async def limit(
        self, key: str, cost: float = 1.0, *, per_second: float | None = None, burst: float | None = None
    ) -> float:
        """Wait until ``cost`` units of the rate limit ``key`` are granted; returns the grant time (epoch s).

        The limit is shared by every agent of the swarm (a reservation in the broker, see
        :meth:`~agentswarm.swarm.store.SwarmStore.acquire`): use one key per third-party quota, such as
        ``"openai:gpt-4o"``. Its rate is ``per_second``, else ``AGENTSWARM_RATE_LIMITS[key]``; ``burst``
        (default ``cost``: evenly spaced) lets that many units go at once after a quiet spell. The wait is an
        ``asyncio.sleep`` until the granted time: no polling, no busy loop.
        """
        rate = per_second if per_second is not None else self._tree.rate_limits.get(key)
        if rate is None or rate <= 0:
            raise SwarmError(
                f"no rate for limit {key!r}: pass per_second= or set AGENTSWARM_RATE_LIMITS "
                f'(a JSON object such as {{"{key}": 10}}, units per second)'
            )
        if cost <= 0:
            raise SwarmError(f"limit {key!r}: cost must be positive, not {cost!r}")
        grant = await self._tree.store.acquire(key, float(cost), float(rate), float(burst or cost))
        if grant.wait > 0:
            await asyncio.sleep(grant.wait)
        return grant.at
