"""The queue backend contract shared by the Redis Streams and NATS JetStream brokers.

Everything above this module (agents, the coordinator, the local supervisor) talks to a
:class:`Broker` and never to redis-py or nats-py directly, so both backends pass one conformance suite.

Delivery semantics (both backends, tested in ``tests/runtime/test_conformance.py``):

* **At least once.** A task is delivered again until it is acknowledged or dead-lettered, so a handler
  may run more than once; :meth:`Broker.record_result` therefore keeps the *first* result only.
* **Claim order.** :meth:`Broker.claim` hands a consumer (1) its *own* unacknowledged deliveries first
  (a restarted agent with the same identity gets back what it was working on and resumes from its
  checkpoint), then (2) deliveries abandoned by other consumers whose keep-alive is older than
  ``claim_idle_ms`` (NATS: in their priority class's turn, ahead of its new tasks), then (3) new tasks by
  priority class (:data:`PRIORITIES`: ``high``, ``normal``, ``low``), each class in enqueue order (FIFO; with
  several consumers "in order" means *handed out* in order, not *finished* in order), with the starvation
  rule of :mod:`agentswarm.broker.priority`: after :data:`STARVATION_LIMIT` new tasks taken from classes
  above a waiting class, a consumer takes one of that class.
* **Long tasks.** While a delivery is in flight its owner calls :meth:`Broker.keep_alive` more often
  than ``claim_idle_ms``; nobody else can take it in the meantime, however long it runs.
* **Dead letters.** Only *unproductive* deliveries count toward ``max_deliveries`` (see
  :class:`DeliveryRecord`): a delivery that raised (:meth:`Broker.fail`), or one that was abandoned (its
  consumer died) without reporting checkpoint progress (:meth:`Broker.progress`). A delivery handed back
  gracefully (:meth:`Broker.release`, an agent stopping on SIGTERM) or one that made progress never counts.
  When the count reaches ``max_deliveries`` the broker moves the task to the dead-letter log with its last
  recorded error, emits a terminal ``{"type": "dead_lettered"}`` event and removes it from the queue.
* **Dead-lettering is resumable.** It is three steps: (1) *bury*: record the dead letter and its terminal
  event, once per task, and mark the task buried; (2) run the dead-letter listeners (a parked parent learns
  that its child died); (3) remove the task from the queue. The task leaves the queue only after (2)
  succeeded, so an agent dying anywhere in between leaves it pending: its next delivery (after
  ``claim_idle_ms``, to whoever claims it) finds the mark and repeats (2) and (3) instead of handing it out.
  Listeners must therefore be idempotent.
* **Events.** Every task has an append-only event log. Ids are opaque, strictly increasing per task strings;
  :meth:`Broker.read_events` returns the events *after* a given id, so a watcher that remembers the last
  id it saw resumes with nothing lost and nothing repeated. Recording the first result appends a terminal
  ``{"type": "result", ...}`` event; dead-lettering appends ``{"type": "dead_lettered", ...}``.
* **Retention.** A finished task (result, cancellation or dead letter) is remembered for
  ``retention_seconds`` after it finished: its result, event log, task data, delivery record and last
  error, then forgotten (its id may then be enqueued again). Entries of the dead-letter log and of the swarm
  feed are dropped by age too. ``0`` keeps everything forever. NATS JetStream expires them on the server
  (``MaxAge`` of the streams, TTL of the KV buckets: measured from a record's last write); Redis, which has
  no per-field expiry before 7.4, keeps an index of finished tasks by time and needs :meth:`Broker.trim`
  called regularly (the coordinator does, see :mod:`agentswarm.retention`).
* **Cancellation.** :meth:`Broker.cancel` records a terminal *cancelled* outcome in the result store, where
  the first of a result and a cancellation wins (so a handler finishing after its cancellation records
  nothing), and appends the terminal ``{"type": "cancelled"}`` event once. A queued task whose outcome is
  recorded is acknowledged unrun by whichever agent claims it; a running handler sees it at its next
  ``emit``/``checkpoint``. Cancelling a finished (or dead-lettered) task changes nothing.

Errors: a contract operation raises only :class:`BrokerError` and its subclasses, one per kind of problem
(:class:`InvalidTaskId`, :class:`InvalidCursor` for malformed input; :class:`BrokerUnavailable` when the
server is unreachable or restarting), never redis-py's or nats-py's own exceptions, so that the coordinator
maps them to error frames without knowing the backend. The only exceptions let through are ``TypeError`` /
``ValueError`` for data that is not JSON (the caller's bug, reported as it is).

Task ids are caller-chosen or generated (uuid4 hex); they must match :data:`TASK_ID_PATTERN` because
NATS uses them as subject tokens and Redis as key suffixes.
"""

from __future__ import annotations

import abc
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from agentswarm.broker.errors import (
    CONTRACT_OPERATIONS,
    BrokerError,
    BrokerUnavailable,
    InvalidCursor,
    InvalidTaskId,
    contract_errors,
)
from agentswarm.broker.feed import FeedReset, SwarmEvent
from agentswarm.broker.types import (
    DEFAULT_PRIORITY,
    JSON,
    PRIORITIES,
    STARVATION_LIMIT,
    TASK_ID_PATTERN,
    TERMINAL_EVENT_TYPES,
    BrokerStats,
    BrokerUsage,
    CancelOutcome,
    DeadLetter,
    DeadLetterListener,
    Delivery,
    DeliveryRecord,
    NewTask,
    Priority,
    Task,
    TaskEvent,
    TaskResult,
    abandoned_reason,
    new_task_id,
    task_from_record,
    task_record,
    validate_priority,
    validate_task_id,
)
from agentswarm.defaults import DEFAULT_RETENTION_SECONDS

#: The contract and, re-exported, its data types (:mod:`agentswarm.broker.types`) and errors.
__all__ = [
    "DEFAULT_PRIORITY",
    "JSON",
    "PRIORITIES",
    "STARVATION_LIMIT",
    "TASK_ID_PATTERN",
    "TERMINAL_EVENT_TYPES",
    "Broker",
    "BrokerError",
    "BrokerStats",
    "BrokerUnavailable",
    "BrokerUsage",
    "CancelOutcome",
    "DeadLetter",
    "DeadLetterListener",
    "Delivery",
    "DeliveryRecord",
    "InvalidCursor",
    "InvalidTaskId",
    "NewTask",
    "Priority",
    "Task",
    "TaskEvent",
    "TaskResult",
    "abandoned_reason",
    "new_task_id",
    "task_from_record",
    "task_record",
    "validate_priority",
    "validate_task_id",
]

log = logging.getLogger(__name__)


class Broker(abc.ABC):
    """Queue + result store + event log. One instance per process; methods are coroutine-safe.

    Construct via :func:`agentswarm.broker.open_broker`. ``max_deliveries`` and ``claim_idle_ms`` come from
    :class:`agentswarm.settings.Settings`.
    """

    name: str = "abstract"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for operation in CONTRACT_OPERATIONS:
            if operation in cls.__dict__:
                setattr(cls, operation, contract_errors(cls.__dict__[operation]))

    def __init__(
        self,
        *,
        max_deliveries: int,
        claim_idle_ms: int,
        retry_backoff_ms: int = 0,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        if retention_seconds < 0:
            raise ValueError(f"retention_seconds={retention_seconds}: use 0 (keep forever) or more seconds")
        self.max_deliveries = max_deliveries
        self.retention_seconds = retention_seconds
        self.claim_idle_ms = claim_idle_ms
        self.retry_backoff_ms = retry_backoff_ms
        self._dead_letter_listeners: list[DeadLetterListener] = []

    def retry_delay(self, attempt: int) -> float:
        """Seconds before a failed attempt is retried: ``retry_backoff_ms``, doubling, capped at 30 s."""
        if self.retry_backoff_ms <= 0:
            return 0.0
        return float(min(self.retry_backoff_ms * 2 ** max(attempt - 1, 0), 30_000)) / 1000.0

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def is_transient(self, exc: BaseException) -> bool:
        """True if ``exc`` means "server unreachable or restarting, retry later", not a bad request.

        Agents retry such errors with backoff instead of failing the task; backends extend the list.
        """
        return isinstance(exc, (BrokerUnavailable, ConnectionError, TimeoutError, OSError))

    def check_cursor(self, after: str | None) -> None:
        """Raise :class:`InvalidCursor` unless ``after`` is None, "" / "0" or an event id of this backend."""
        if after in (None, "", "0"):
            return
        if not isinstance(after, str) or not self.cursor_pattern.match(after):
            raise InvalidCursor(
                f"invalid event cursor {after!r}: use an event id of this task ({self.cursor_hint})"
            )

    #: What an event id of this backend looks like (checked by :meth:`check_cursor`).
    cursor_pattern: re.Pattern[str] = re.compile(r"^[0-9]{1,20}$")
    cursor_hint: str = "a sequence number"

    # -- lifecycle ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect and create the streams/groups/buckets if missing (idempotent, safe to race)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close connections. In-flight deliveries stay unacknowledged (they are redelivered)."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the server answers right now (used by /readyz). Never raises."""

    # -- producing ----------------------------------------------------------------------------------------
    async def enqueue(self, payload: JSON, task_id: str | None = None) -> str:
        """Enqueue one task; returns its id. Idempotent per id: a second enqueue of the same id is a no-op."""
        ids = await self.enqueue_many([NewTask(payload=payload, id=task_id)])
        return ids[0]

    @abc.abstractmethod
    async def enqueue_many(self, tasks: Sequence[NewTask]) -> list[str]:
        """Enqueue several tasks in order; returns their ids in the same order.

        Idempotent per task id: ids already known to the broker (queued, running, done or dead) are not
        enqueued again. Raises :class:`InvalidTaskId` before enqueuing anything if an id is malformed.
        """

    @abc.abstractmethod
    async def get_task(self, task_id: str) -> Task | None:
        """The stored task, or None if this id was never enqueued."""

    # -- consuming ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def claim(self, consumer: str, *, count: int = 1, block_ms: int = 1000) -> list[Delivery]:
        """Hand up to ``count`` deliveries to ``consumer`` (own pending, then abandoned, then new).

        Blocks up to ``block_ms`` for new tasks when there is nothing to hand out; returns ``[]`` on timeout
        (and may return ``[]`` early, e.g. when what it took was dead-lettered: just call again).
        A task whose strikes reach ``max_deliveries`` (see :class:`DeliveryRecord`) is dead-lettered here
        instead of being returned.
        """

    @abc.abstractmethod
    async def keep_alive(self, deliveries: Sequence[Delivery]) -> None:
        """Tell the broker these in-flight deliveries are still being worked on (resets their idle time)."""

    @abc.abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """Finish a delivery: remove the task from the queue for good. Call after record_result."""

    @abc.abstractmethod
    async def fail(self, delivery: Delivery, error: str) -> bool:
        """Record ``error`` as the task's last error, count a strike and give the delivery back.

        The retry is delivered no sooner than :meth:`retry_delay` seconds later (exponential backoff), so a
        failing dependency is not hammered and ``max_deliveries`` is not burnt in a few milliseconds.

        Returns True if this was the last allowed strike and the task was dead-lettered, False if it will be
        delivered again.
        """

    @abc.abstractmethod
    async def progress(self, delivery: Delivery) -> None:
        """Report that this delivery stored a checkpoint newer than the one it started from.

        An agent calls it once per delivery, after its first checkpoint; a delivery that reported progress
        and then died does not count toward ``max_deliveries``.
        """

    @abc.abstractmethod
    async def release(self, delivery: Delivery) -> None:
        """Hand a delivery back without a strike (graceful handover: the agent stops on SIGTERM).

        The delivery stays this consumer's (a restart under the same identity takes it first), and after
        ``claim_idle_ms`` without keep-alive anybody's.
        """

    @abc.abstractmethod
    async def dead_letter(self, delivery: Delivery, error: str) -> None:
        """Move the task to the dead-letter log with ``error``, emit ``dead_lettered`` and remove it.

        Resumable (see the module docstring): the dead letter and its event are recorded once per task, and
        the task leaves the queue only after the dead-letter listeners ran.
        """

    # -- dead-letter listeners (a waiting parent must learn that its child died) ---------------------------
    def add_dead_letter_listener(self, listener: DeadLetterListener) -> None:
        """Call ``listener(task_id, error)`` after every dead-lettering done through this instance.

        It may be called more than once for one task (when an agent died before the task left the queue).
        """
        self._dead_letter_listeners.append(listener)

    async def _dead_lettered(self, task_id: str, error: str) -> bool:
        """Run the listeners of a buried task (step 2 of dead-lettering); True if all of them succeeded.

        Listener errors are logged, not raised: the backend then leaves the task in the queue, buried, and
        its next delivery runs the listeners again (see "Dead-lettering is resumable" above).
        """
        ok = True
        for listener in self._dead_letter_listeners:
            try:
                await listener(task_id, error)
            except Exception as exc:
                log.warning("dead-letter listener failed for task %s (retried later): %s", task_id, exc)
                ok = False
        return ok

    @abc.abstractmethod
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead-lettered tasks."""

    # -- results ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def record_result(self, result: TaskResult) -> bool:
        """Store ``result`` unless the task already has one. True if this call recorded it.

        The first recorded result also appends a terminal ``result`` event to the task's event log.
        """

    async def finish(self, delivery: Delivery, result: TaskResult) -> bool:
        """:meth:`record_result` then :meth:`ack`: one round trip where the backend allows. For a task no
        parent waits for only (a parent must learn of its child between the two). Returns what
        :meth:`record_result` returns; safe to retry after a transient error, like both."""
        recorded = await self.record_result(result)
        await self.ack(delivery)
        return recorded

    @abc.abstractmethod
    async def get_result(self, task_id: str) -> TaskResult | None:
        """The recorded result of a task (``status="cancelled"`` for a cancelled one), or None."""

    @abc.abstractmethod
    async def cancel(self, task_id: str) -> CancelOutcome:
        """Record a cancellation as the task's terminal outcome unless it has one (see the module docstring).

        ``"cancelled"``: recorded now, with a terminal ``{"type": "cancelled"}`` event. ``"finished"``: the
        task already has a result, a cancellation or a dead letter; nothing changed. ``"not_found"``: the id
        was never enqueued. Cancelling the children of a task tree is :mod:`agentswarm.swarm.cancel`'s job.
        """

    # -- events -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def publish_event(self, task_id: str, data: dict[str, JSON]) -> str:
        """Append ``data`` to the task's event log; returns the new event id."""

    async def publish_events(self, events: Sequence[tuple[str, dict[str, JSON]]]) -> list[str]:
        """Append several ``(task_id, data)`` events in this order (one round trip where the backend allows);
        returns their ids. Each task's events keep their order; a failure may leave a prefix stored."""
        return [await self.publish_event(task_id, data) for task_id, data in events]

    @abc.abstractmethod
    async def read_events(
        self, task_id: str, after: str | None = None, *, limit: int = 100, block_ms: int = 0
    ) -> list[TaskEvent]:
        """Events of ``task_id`` with id after ``after`` (None or "0" = from the start), oldest first.

        When there are none and ``block_ms > 0``, waits up to ``block_ms`` for the next one.
        Raises :class:`InvalidCursor` when ``after`` is not an event id of this backend.
        """

    def event_order(self, event_id: str) -> tuple[int, ...]:
        """Sort key of an event id of this backend (task events and swarm events alike)."""
        return tuple(int(part) for part in event_id.split("-"))

    # -- live feed and swarm feed (see agentswarm.broker.feed) -------------------------------------------
    @abc.abstractmethod
    def follow(self) -> AsyncIterator[list[TaskEvent | SwarmEvent] | FeedReset]:
        """Every task event and swarm event appended from now on, pushed, with a bounded number of broker
        operations however many tasks exist; a :class:`FeedReset` first and after anything that may have
        lost items (see :mod:`agentswarm.broker.feed`). Runs until the consumer stops iterating; broker
        outages are retried inside (each recovery yields a reset)."""

    @abc.abstractmethod
    async def publish_swarm_event(self, data: dict[str, JSON]) -> str:
        """Append ``data`` to the swarm feed's bounded log; returns its id."""

    async def publish_batch(
        self, events: Sequence[tuple[str, dict[str, JSON]]], swarm: Sequence[dict[str, JSON]]
    ) -> list[str]:
        """Append task ``events`` (as :meth:`publish_events`) and swarm feed entries ``swarm`` (as
        :meth:`publish_swarm_event`) together: one round trip where the backend allows, which is what an
        agent's event writer sends for each batch. Returns the events' ids; a failure may leave a prefix of
        either stored."""
        ids = await self.publish_events(events) if events else []
        for data in swarm:
            await self.publish_swarm_event(data)
        return ids

    @abc.abstractmethod
    async def read_swarm_events(self, after: str | None = None, *, limit: int = 100) -> list[SwarmEvent]:
        """Swarm events with id after ``after`` (None or "0" = the oldest retained), oldest first."""

    # -- checkpoints (used by the "broker" checkpoint backend) -------------------------------------------
    @abc.abstractmethod
    async def put_checkpoint(self, task_id: str, blob: bytes) -> None:
        """Store an opaque checkpoint blob for a task; the previous blob is kept as a fallback."""

    @abc.abstractmethod
    async def get_checkpoints(self, task_id: str) -> list[bytes]:
        """Stored checkpoint blobs for a task, newest first (at most two). Empty if none."""

    @abc.abstractmethod
    async def delete_checkpoints(self, task_id: str) -> None:
        """Forget a task's checkpoints (after its result is recorded)."""

    # -- metrics ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def stats(self) -> BrokerStats:
        """Current counters (see :class:`BrokerStats`)."""

    @abc.abstractmethod
    async def backlog(self) -> int:
        """Tasks not finished yet: queued, plus handed out and not acknowledged (running, waiting for a
        retry, or handed back by an agent that stopped). 0 exactly when the swarm has nothing to do.

        This is the autoscaling signal (local mode's autoscaler; on a cluster KEDA reads the same number
        from the server, one trigger per priority class summed: ``XLEN`` of each class's task stream, or
        ``num_pending + num_ack_pending`` of each class's JetStream consumer): it rises with the backlog and
        falls to 0 only when no task is outstanding, so scaling to zero never strands a task that waits for a
        retry or was handed back. One round trip.
        """

    # -- retention ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def trim(self, *, limit: int) -> int:
        """Forget up to ``limit`` tasks that finished more than ``retention_seconds`` ago, and drop the
        dead-letter and feed log entries older than that; returns how many tasks were forgotten.

        Bounded work per call (call again while it returns ``limit``); safe to call from several processes
        at once (a backend may skip a call while another process trims). Does nothing with retention 0, and
        nothing on a backend whose server expires records by itself (NATS JetStream).
        """

    @abc.abstractmethod
    async def usage(self) -> BrokerUsage:
        """What the broker's server holds now, in bytes and keys/messages (see :class:`BrokerUsage`)."""
