"""The :class:`agentswarm.handlers.TaskContext` an agent hands to its handler for one delivery.

It owns what a handler may do with its running task: checkpoint, emit and stream events, and notice a
cancellation; the swarm calls (spawn, memory) come from :class:`~agentswarm.swarm.runtime.SwarmContextMixin`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from agentswarm.broker import Delivery
from agentswarm.broker.base import JSON
from agentswarm.checkpoint import Checkpoint, CheckpointStore
from agentswarm.handlers import Cancelled, ShutdownRequested
from agentswarm.swarm.runtime import SwarmContextMixin
from agentswarm.swarm.store import Node

if TYPE_CHECKING:
    from agentswarm.worker import Agent

#: Seconds between two lookups of a cancellation by ``ctx.emit``: a handler emitting in a tight loop reads
#: the broker at this pace, not once per event (checkpoints always look, the keep-alive loop looks too).
CANCEL_POLL_SECONDS: Final = 0.1


class _Context(SwarmContextMixin):
    """The :class:`agentswarm.handlers.TaskContext` given to handlers."""

    def __init__(
        self,
        agent: Agent,
        delivery: Delivery,
        restored: Checkpoint | None,
        node: Node,
        store: CheckpointStore,
    ) -> None:
        self._agent = agent
        self._delivery = delivery
        self._progress_reported = False
        self._cancelled = False
        self._cancel_polled_at = float("-inf")
        self.task_id = delivery.task.id
        self.priority = delivery.task.priority
        self.agent_id = agent.agent_id
        self.attempt = delivery.attempt
        self.restored_version = restored.version if restored else None
        self.last_version = self.restored_version
        self.store = store
        self._init_swarm(agent.tree, node, restored.state if restored else None)

    @property
    def stopping(self) -> bool:
        return self._agent.stopping.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    async def poll_cancelled(self) -> bool:
        """Look the task's outcome up: True (and ``cancelled`` from now on) once it was cancelled."""
        if not self._cancelled:
            outcome = await self._agent.retrying(
                lambda: self._agent.broker.get_result(self.task_id), "get_result"
            )
            self._cancelled = outcome is not None and outcome.cancelled
        return self._cancelled

    async def _raise_if_cancelled(self) -> None:
        if await self.poll_cancelled():
            raise Cancelled(f"task {self.task_id} was cancelled")

    async def checkpoint(self, state: JSON) -> int:
        await self._raise_if_cancelled()
        store = self.store
        version = await self._agent.retrying(lambda: store.save(self.task_id, state), "checkpoint")
        await self._agent.events.flush()  # what was streamed before a checkpoint is stored with it
        self.last_version = version
        self._state = state
        if not self._progress_reported:
            # A newer checkpoint than this delivery started from: if the agent dies now, the next
            # delivery does not count toward max_deliveries (see Broker.progress).
            await self._agent.retrying(lambda: self._agent.broker.progress(self._delivery), "progress")
            self._progress_reported = True
        if self.stopping:
            raise ShutdownRequested(f"checkpoint {version} stored; agent is shutting down")
        return version

    async def emit(self, event: dict[str, Any]) -> str:
        now = time.monotonic()
        if now - self._cancel_polled_at >= CANCEL_POLL_SECONDS:
            self._cancel_polled_at = now
            await self._raise_if_cancelled()
        elif self._cancelled:
            raise Cancelled(f"task {self.task_id} was cancelled")
        return await self.emit_unchecked(event)

    async def emit_unchecked(self, event: dict[str, Any]) -> str:
        """Publish without looking for a cancellation (the runtime's own events)."""
        data = {"type": "progress", **event}
        event_id = await self._agent.events.emit(self.task_id, data)
        await self._agent.charge_budget(self._delivery.task, data)
        return event_id

    async def stream(self, event: dict[str, Any]) -> None:
        # The token-rate path never waits for the broker: it raises Cancelled once the cancellation is
        # known (seen by an emit, a checkpoint or the keep-alive loop), without a lookup of its own.
        if self._cancelled:
            raise Cancelled(f"task {self.task_id} was cancelled")
        data = {"type": "progress", **event}
        await self._agent.events.stream(self.task_id, data)
        await self._agent.charge_budget(self._delivery.task, data)
