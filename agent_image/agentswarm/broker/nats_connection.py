"""The NATS side of the JetStream broker: the connection, the server objects, outage logging.

Server objects (``NS`` = namespace upper-cased, ``ns`` as given):

* stream ``NS_TASKS`` (work-queue retention, file storage): acknowledged = deleted. One subject and one
  durable pull consumer per priority class: ``ns.tasks`` / ``ns-agents`` (``normal``), ``ns.tasks.high`` /
  ``ns-agents-high`` and ``ns.tasks.low`` / ``ns-agents-low`` (:mod:`agentswarm.broker.priority` says which
  one a claim reads). Each: explicit acks, ``AckWait = claim_idle_ms``, ``MaxAckPending`` from settings, no
  ``MaxDeliver`` (restarts must not use up deliveries; the broker counts strikes itself and dead-letters, so
  no message is ever left stuck after a server-side last delivery). Sequences are stream-wide.
* stream ``NS_SWARM`` (``ns.swarm``, at most ``SWARM_FEED_RETENTION`` messages, oldest dropped): the swarm
  feed (:mod:`agentswarm.broker.feed`).
* stream ``NS_DEAD`` (``ns.dead``): dead letters. Stream ``NS_EVENTS`` (``ns.events.<task id>``): event logs;
  an event id is the stream sequence, and watchers read the next message of their subject after it.
* Retention: the dead-letter, event and swarm streams and the KV buckets below have ``MaxAge`` (a KV
  bucket's TTL) = ``retention_seconds`` (0: none), so the server forgets a finished task's records that
  long after their last write; the task stream has none (queued tasks never expire).
* KV buckets ``ns_tasks`` (task data; makes enqueue idempotent and serves ``get_task``), ``ns_results``
  (``create``: first result wins), ``ns_errors`` (last error), ``ns_attempts`` (the task's
  :class:`~agentswarm.broker.base.DeliveryRecord`: deliveries and strikes so far),
  ``ns_leases`` (who works on a task, refreshed by keep-alive), ``ns_ckpt`` (history 2: the newest two
  checkpoint blobs per task).

During an outage nats-py reports every failed reconnect; this module logs one line when the connection
is lost and one when it is back, instead of a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.kv import KeyValue

from agentswarm.broker.base import (
    PRIORITIES,
    Broker,
    Priority,
)
from agentswarm.broker.feed import SWARM_FEED_RETENTION
from agentswarm.broker.priority import ClassOrder
from agentswarm.defaults import DEFAULT_RETENTION_SECONDS

if TYPE_CHECKING:
    from agentswarm.settings import Settings

log = logging.getLogger(__name__)

_TRANSIENT = (
    nats.errors.ConnectionClosedError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoServersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
)


class NatsConnection(Broker):
    """Connection and server objects shared by the parts of :class:`NatsJetStreamBroker`."""

    name = "nats"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "agentswarm",
        max_deliveries: int = 5,
        claim_idle_ms: int = 60_000,
        retry_backoff_ms: int = 0,
        max_ack_pending: int = 10_000,
        ledger_dir: Path | None = None,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        super().__init__(
            max_deliveries=max_deliveries,
            claim_idle_ms=claim_idle_ms,
            retry_backoff_ms=retry_backoff_ms,
            retention_seconds=retention_seconds,
        )
        self.url = url
        self.ns = namespace
        up = namespace.upper().replace("-", "_")
        self.s_tasks, self.s_dead, self.s_events = f"{up}_TASKS", f"{up}_DEAD", f"{up}_EVENTS"
        self.subj_tasks, self.subj_dead = f"{namespace}.tasks", f"{namespace}.dead"
        self.s_swarm, self.subj_swarm = f"{up}_SWARM", f"{namespace}.swarm"
        self.durable = f"{namespace}-agents"
        #: The subject and the durable consumer of each priority class (``normal``: the ones above).
        self.subjects: dict[Priority, str] = {
            c: self.subj_tasks if c == "normal" else f"{self.subj_tasks}.{c}" for c in PRIORITIES
        }
        self.durables: dict[Priority, str] = {
            c: self.durable if c == "normal" else f"{self.durable}-{c}" for c in PRIORITIES
        }
        self.max_ack_pending = max_ack_pending
        self.ledger_dir = Path(ledger_dir) if ledger_dir is not None else None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._subs: dict[Priority, JetStreamContext.PullSubscription] = {}
        self._orders: dict[str, ClassOrder] = {}
        self._kv: dict[str, KeyValue] = {}
        self._inflight: set[int] = set()
        self._ledgers: dict[str, dict[str, dict[str, Any]]] = {}
        self._last_saturation_check = 0.0
        self._ledger_lock = asyncio.Lock()
        #: True from the first error of an outage until the connection is back (one log line each way).
        self._outage = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            settings.nats_url,
            namespace=settings.namespace,
            max_deliveries=settings.max_deliveries,
            claim_idle_ms=settings.claim_idle_ms,
            retry_backoff_ms=settings.retry_backoff_ms,
            max_ack_pending=settings.max_ack_pending,
            ledger_dir=settings.broker_state_path,
            retention_seconds=settings.retention_seconds,
        )

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, _TRANSIENT) or super().is_transient(exc)

    # -- helpers ------------------------------------------------------------------------------------------
    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("broker is not connected: call connect() first")
        return self._js

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise RuntimeError("broker is not connected: call connect() first")
        return self._nc

    def _events_subject(self, task_id: str) -> str:
        return f"{self.ns}.events.{task_id}"

    def kv(self, name: str) -> KeyValue:
        return self._kv[name]

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def connect(self) -> None:
        self._nc = await nats.connect(
            servers=[u.strip() for u in self.url.split(",")],
            name=f"agentswarm-{os.getpid()}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            allow_reconnect=True,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._js = self._nc.jetstream(timeout=10)
        await self._ensure_stream(
            StreamConfig(
                name=self.s_tasks,
                subjects=list(self.subjects.values()),
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=120,
            )
        )
        info = await self.js.stream_info(self.s_tasks)
        if set(self.subjects.values()) - set(info.config.subjects or []):  # made before priority classes
            with contextlib.suppress(nats.js.errors.BadRequestError):  # updated concurrently
                await self.js.update_stream(
                    dataclasses.replace(info.config, subjects=list(self.subjects.values()))
                )
        max_age = self._max_age
        await self._ensure_stream(
            StreamConfig(
                name=self.s_dead,
                subjects=[self.subj_dead],
                storage=StorageType.FILE,
                duplicate_window=self._duplicate_window,
                max_age=max_age,
            )
        )
        await self._ensure_stream(
            StreamConfig(
                name=self.s_events,
                subjects=[f"{self.ns}.events.>"],
                storage=StorageType.FILE,
                duplicate_window=self._duplicate_window,
                max_age=max_age,
            )
        )
        await self._ensure_stream(
            StreamConfig(
                name=self.s_swarm,
                subjects=[self.subj_swarm],
                storage=StorageType.FILE,
                max_msgs=SWARM_FEED_RETENTION,
                discard=DiscardPolicy.OLD,
                max_age=max_age,
            )
        )
        for cls in PRIORITIES:
            durable = self.durables[cls]
            config = ConsumerConfig(
                durable_name=durable,
                name=durable,
                filter_subject=self.subjects[cls],
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.claim_idle_ms / 1000.0,
                max_deliver=-1,  # the broker counts strikes itself (DeliveryRecord): redeliver without limit
                max_ack_pending=self.max_ack_pending,
                max_waiting=4096,
            )
            try:
                await self.js.add_consumer(self.s_tasks, config=config)
            except nats.js.errors.BadRequestError as exc:
                # An existing consumer with other settings: keep it working, say what differs.
                log.warning("consumer %s exists with other settings (%s); using it as is", durable, exc)
            self._subs[cls] = await self.js.pull_subscribe_bind(durable=durable, stream=self.s_tasks)
        buckets = (("tasks", 1), ("results", 1), ("errors", 1), ("attempts", 1), ("leases", 1), ("ckpt", 2))
        for name, history in buckets:
            bucket = f"{self.ns}_{name}"
            try:
                self._kv[name] = await self.js.key_value(bucket)
                await self._set_max_age(f"KV_{bucket}", max_age)
            except nats.js.errors.BucketNotFoundError:
                self._kv[name] = await self.js.create_key_value(
                    KeyValueConfig(
                        bucket=bucket, history=history, storage=StorageType.FILE, ttl=max_age, direct=True
                    )
                )

    # nats-py calls these on every failed reconnect attempt (every reconnect_time_wait): log state changes.
    async def _on_error(self, exc: Exception) -> None:
        if self._outage:
            log.debug("nats: still unavailable: %s: %s", type(exc).__name__, exc)
            return
        self._outage = True
        log.warning("nats: connection lost (%s: %s); reconnecting in the background", type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        if not self._outage:
            self._outage = True
            log.warning("nats: connection lost; reconnecting in the background")

    async def _on_reconnected(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("nats: connection back")

    @property
    def _max_age(self) -> float:
        """``MaxAge`` (seconds) of the streams and KV buckets that hold finished tasks; 0 = unlimited."""
        return float(self.retention_seconds)

    @property
    def _duplicate_window(self) -> float:
        """2 minutes of ``Nats-Msg-Id`` deduplication, or the retention when shorter (the server's rule)."""
        return min(120.0, self._max_age) if self._max_age > 0 else 120.0

    async def _ensure_stream(self, config: StreamConfig) -> None:
        try:
            info = await self.js.stream_info(str(config.name))
        except nats.js.errors.NotFoundError:
            with contextlib.suppress(nats.js.errors.BadRequestError):  # created concurrently
                await self.js.add_stream(config)
            return
        await self._set_max_age(str(config.name), float(config.max_age or 0), info)

    async def _set_max_age(self, stream: str, max_age: float, info: StreamInfo | None = None) -> None:
        """Give an existing stream (or KV bucket) the retention of this broker when it has another one
        (``AGENTSWARM_RETENTION_SECONDS`` changed since it was created)."""
        info = info or await self.js.stream_info(stream)
        if abs(float(info.config.max_age or 0) - max_age) < 1e-3:
            return
        log.info("stream %s: MaxAge %ss -> %ss (retention)", stream, info.config.max_age or 0, max_age)
        window = float(info.config.duplicate_window or 120)  # unset = the server's default, 2 minutes
        if max_age > 0:
            window = min(window, max_age)
        config = dataclasses.replace(info.config, max_age=max_age, duplicate_window=window)
        await self.js.update_stream(config)

    async def close(self) -> None:
        self._outage = True  # nats-py reports a deliberate close as a disconnect: nothing to warn about
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._js = None
        self._subs.clear()
        self._kv.clear()

    async def ping(self) -> bool:
        try:
            if self._nc is None or not self._nc.is_connected:
                return False
            await asyncio.wait_for(self.js.account_info(), timeout=2)
            return True
        except Exception:
            return False
