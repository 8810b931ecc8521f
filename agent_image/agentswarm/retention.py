"""Retention: the loop that makes the broker forget finished tasks after ``AGENTSWARM_RETENTION_SECONDS``.

Why the coordinator runs it: it is the one long-lived process per swarm that is not scaled with the load
(agents are, up to hundreds), so the trimming work neither grows with the number of agents nor stops when
they scale to zero. Each round is bounded (at most ``batches`` calls of :meth:`Broker.trim` of ``batch``
tasks each), so a broker far behind is caught up over several rounds instead of in one long stall; several
coordinator replicas share the work through the backend's trim lock. NATS JetStream expires records on the
server (``MaxAge``), so there the rounds find nothing to do.
"""

from __future__ import annotations

import asyncio
import logging

from agentswarm.broker.base import Broker
from agentswarm.defaults import RETENTION_BATCH, RETENTION_BATCHES_PER_ROUND, RETENTION_INTERVAL_SECONDS

log = logging.getLogger(__name__)


class Trimmer:
    """Calls :meth:`Broker.trim` every ``interval`` seconds, ``batches`` times ``batch`` tasks at most."""

    def __init__(
        self,
        broker: Broker,
        *,
        interval: float = RETENTION_INTERVAL_SECONDS,
        batch: int = RETENTION_BATCH,
        batches: int = RETENTION_BATCHES_PER_ROUND,
    ) -> None:
        self.broker = broker
        self.interval = interval
        self.batch = batch
        self.batches = batches
        #: Tasks forgotten by this process so far.
        self.trimmed = 0

    async def round(self) -> int:
        """One bounded round; returns the number of tasks forgotten."""
        total = 0
        for _ in range(self.batches):
            forgotten = await self.broker.trim(limit=self.batch)
            total += forgotten
            if forgotten < self.batch:
                break
        self.trimmed += total
        return total

    async def run(self) -> None:
        """Trim forever (until cancelled); broker errors are logged and the next round retries."""
        if self.broker.retention_seconds <= 0:
            log.info("retention 0: the broker keeps every finished task forever")
            return
        while True:
            await asyncio.sleep(self.interval)  # first round after one interval: the broker connects first
            try:
                forgotten = await self.round()
                if forgotten:
                    log.debug("retention: forgot %d finished tasks", forgotten)
            except Exception as exc:
                log.warning("retention: trimming failed (retried in %.0fs): %s", self.interval, exc)
