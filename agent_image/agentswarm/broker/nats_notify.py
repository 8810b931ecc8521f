"""The NATS side of the live feed (:mod:`agentswarm.broker.feed`): two ordered push consumers, one over the
event stream (``ns.events.>``) and one over the swarm stream, both starting at "new messages only". The
server pushes each stored message with its stream sequence (the event id); an idle feed costs the server
only its heartbeats, however many tasks a coordinator watches.

nats-py's ordered consumer recreates itself, gaplessly, when it notices a sequence gap or a missed
heartbeat. After a reconnect of the client the feed is rebuilt and a :class:`FeedReset` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from agentswarm.backoff import Backoff
from agentswarm.broker.base import JSON, TaskEvent, validate_task_id
from agentswarm.broker.feed import FEED_BLOCK_MS, FeedReset, SwarmEvent
from agentswarm.broker.nats_records import NatsRecords

log = logging.getLogger(__name__)

#: How long the feed waits for an unsubscribe when it stops or rebuilds.
_UNSUBSCRIBE_SECONDS = 2.0


class NatsNotify(NatsRecords):
    """Pipelined event appends, the swarm feed's log, and :meth:`follow`."""

    async def publish_events(self, events: Sequence[tuple[str, dict[str, JSON]]]) -> list[str]:
        return await self.publish_batch(events, ())

    async def publish_batch(
        self, events: Sequence[tuple[str, dict[str, JSON]]], swarm: Sequence[dict[str, JSON]]
    ) -> list[str]:
        if len(events) == 1 and not swarm:  # the common case of an awaited emit: a plain publish, no futures
            task_id, data = events[0]
            subject = self._events_subject(validate_task_id(task_id))
            return [str((await self.js.publish(subject, json.dumps(data).encode())).seq)]
        # Sent in order on one connection, acknowledged together (one round trip for the batch).
        pending = [
            await self.js.publish_async(
                self._events_subject(validate_task_id(task_id)), json.dumps(data).encode()
            )
            for task_id, data in events
        ]
        pending += [await self._swarm_async(data) for data in swarm]
        acks = await self._acked(pending)
        return [str(ack.seq) for ack in acks[: len(events)]]

    async def publish_swarm_event(self, data: dict[str, JSON]) -> str:
        ack = await self.js.publish(self.subj_swarm, json.dumps(data).encode())
        return str(ack.seq)

    async def read_swarm_events(self, after: str | None = None, *, limit: int = 100) -> list[SwarmEvent]:
        import nats.js.errors

        self.check_cursor(after)
        seq = int(after) if after not in (None, "") else 0
        out: list[SwarmEvent] = []
        while len(out) < limit:
            try:
                raw = await self.js.get_msg(self.s_swarm, seq + 1, subject=self.subj_swarm, next=True)
            except nats.js.errors.NotFoundError:
                break
            seq = int(raw.seq or 0)
            out.append(SwarmEvent(id=str(seq), data=json.loads(raw.data or b"{}")))
        return out

    async def follow(self) -> AsyncIterator[list[TaskEvent | SwarmEvent] | FeedReset]:
        backoff = Backoff(initial=0.2, maximum=5.0)
        reason = "feed started"
        prefix = f"{self.ns}.events."
        while True:
            items: list[TaskEvent | SwarmEvent] = []
            wake = asyncio.Event()

            async def on_event(msg: Msg, items: list[Any] = items, wake: asyncio.Event = wake) -> None:
                task_id = msg.subject[len(prefix) :]
                seq = str(msg.metadata.sequence.stream)
                items.append(TaskEvent(id=seq, task_id=task_id, data=json.loads(msg.data or b"{}")))
                wake.set()

            async def on_swarm(msg: Msg, items: list[Any] = items, wake: asyncio.Event = wake) -> None:
                seq = str(msg.metadata.sequence.stream)
                items.append(SwarmEvent(id=seq, data=json.loads(msg.data or b"{}")))
                wake.set()

            subs: list[Any] = []
            try:
                reconnects = self.nc.stats["reconnects"]
                for subject, stream, cb in (
                    (f"{prefix}>", self.s_events, on_event),
                    (self.subj_swarm, self.s_swarm, on_swarm),
                ):
                    subs.append(
                        await self.js.subscribe(
                            subject,
                            stream=stream,
                            cb=cb,
                            ordered_consumer=True,
                            deliver_policy=DeliverPolicy.NEW,
                        )
                    )
            except Exception as exc:
                await self._unsubscribe(subs)
                if not self.is_transient(exc):
                    raise
                log.warning("nats feed not available (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            try:
                yield FeedReset(reason)
                while self.nc.stats["reconnects"] == reconnects:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), FEED_BLOCK_MS / 1000)
                    wake.clear()
                    if items:
                        batch, items[:] = list(items), []
                        yield batch
            finally:
                await self._unsubscribe(subs)
            reason = "broker connection lost"

    async def _unsubscribe(self, subs: list[Any]) -> None:
        # Bounded: nats-py's unsubscribe of an ordered consumer can wait on its helper tasks for long
        # (seen under load); the ephemeral consumer is removed by the server once it is inactive anyway.
        for sub in subs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sub.unsubscribe(), _UNSUBSCRIBE_SECONDS)
