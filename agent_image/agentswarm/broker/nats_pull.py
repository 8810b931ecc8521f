"""Taking messages from the NATS work queue in priority order: the per-class pull consumers of
:class:`NatsPull`, and the MaxAckPending saturation check.

Why its own module: JetStream has one pull consumer per priority class (see
:mod:`agentswarm.broker.priority`), and nats-py's one-message ``fetch`` lingers until its timeout when a
class is empty, so a claim that looks at the classes in order needs JetStream's ``no_wait`` pull, which
nats-py does not offer: :meth:`NatsPull._pull_now` sends it on the subscription's own inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import nats
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentswarm.broker.base import PRIORITIES
from agentswarm.broker.nats_notify import NatsNotify
from agentswarm.broker.priority import ClassOrder

# The queue's logger: operators filter on it for the saturation error, wherever the code lives.
log = logging.getLogger("agentswarm.broker.nats_jetstream")

#: How long a no-wait pull waits for the server's answer (normally well under a millisecond).
_NO_WAIT_ANSWER_SECONDS = 0.5


class NatsPull(NatsNotify):
    """Pulls from the per-class consumers: what waits now in class order, else the first to arrive."""

    async def _pull(self, consumer: str, count: int, block_ms: int) -> list[Msg]:
        """Up to ``count`` messages: what waits now, classes in :class:`ClassOrder` order (one no-wait pull
        per class looked at); only when every class is empty, the first to arrive in any of them."""
        classes = self._orders.setdefault(consumer, ClassOrder())
        msgs: list[Msg] = []
        for cls, starved in classes.order():
            if len(msgs) >= count:
                break
            got = await self._pull_now(self._subs[cls], 1 if starved else count - len(msgs))
            if got:
                classes.took(cls, len(got))
            else:
                classes.empty(cls)
            msgs += got
        if msgs or block_ms <= 0:
            return msgs
        # Nothing waits: a lingering pull on every class, the first answer wins.
        timeout = max(block_ms, 10) / 1000.0
        fetches = {
            asyncio.ensure_future(self._subs[cls].fetch(count, timeout=timeout)): cls for cls in PRIORITIES
        }
        done, pending = await asyncio.wait(fetches, return_when=asyncio.FIRST_COMPLETED)
        for fetch in pending:  # a message that answers its pull later waits in that class's subscription
            fetch.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for fetch in sorted(done, key=lambda f: PRIORITIES.index(fetches[f])):
            cls = fetches[fetch]
            if fetch.cancelled():
                continue
            exc = fetch.exception()
            if isinstance(exc, nats.errors.TimeoutError):
                continue
            if exc is not None:
                raise exc
            got = fetch.result()
            classes.took(cls, len(got))
            msgs += got
        if not msgs:
            await self._check_saturation()
        # Several classes answered at once (a rare race): hand out the highest ``count``, give the rest back.
        for extra in msgs[count:]:
            await extra.nak()
        return msgs[:count]

    async def _pull_now(self, sub: JetStreamContext.PullSubscription, n: int) -> list[Msg]:
        """Up to ``n`` messages that wait for ``sub``'s consumer right now, without waiting for new ones.

        nats-py's ``fetch`` of one message lingers until its timeout when there is none, which would make
        every claim wait on each empty class; this sends JetStream's ``no_wait`` pull request instead (the
        server answers with the messages it has, then a 404 status) on the subscription's own inbox, after
        taking the messages that answered an earlier, timed-out pull.
        """
        msgs: list[Msg] = []
        inbox = sub._sub  # the subscription the pull answers arrive on
        while len(msgs) < n and not inbox._pending_queue.empty():
            msg = await inbox.next_msg(timeout=1)
            if not JetStreamContext.is_status_msg(msg):
                msgs.append(msg)
        if len(msgs) >= n:
            return msgs
        # No ``expires``: with one the server ignores ``no_wait`` and lingers until it passes.
        request = json.dumps({"batch": n - len(msgs), "no_wait": True}).encode()
        await self.nc.publish(sub._nms, request, reply=sub._deliver)
        while len(msgs) < n:
            try:
                msg = await inbox.next_msg(timeout=_NO_WAIT_ANSWER_SECONDS)
            except nats.errors.TimeoutError:
                # No answer: the consumer is at MaxAckPending (the server holds the request until an ack
                # frees a slot; what it then sends waits in the inbox for the next claim), or the server is
                # slow. Either way nothing is to be had from this class right now.
                break
            status = JetStreamContext.is_status_msg(msg)
            if status is None:
                msgs.append(msg)
            elif status != "100":  # not a heartbeat: 404 no messages / 408 timeout: nothing more now
                break
        return msgs

    async def _check_saturation(self) -> None:
        now = time.monotonic()
        if now - self._last_saturation_check < 10:
            return
        self._last_saturation_check = now
        with contextlib.suppress(Exception):
            for durable, (waiting, ack_pending) in (await self._class_consumers()).items():
                if self._saturated(waiting, ack_pending):
                    log.error(
                        "JetStream consumer %s is stalled: %d unacknowledged deliveries = MaxAckPending (%d) "
                        "while %d tasks wait; raise AGENTSWARM_MAX_ACK_PENDING or lower "
                        "AGENTSWARM_CLAIM_IDLE_MS",
                        durable,
                        ack_pending,
                        self.max_ack_pending,
                        waiting,
                    )
