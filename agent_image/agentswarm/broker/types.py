"""The data the broker contract speaks in: tasks, deliveries, results, events, dead letters, counters, the
task-id rules and the delivery record both backends store (the contract: :mod:`agentswarm.broker.base`)."""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agentswarm.broker.errors import InvalidTaskId

#: Allowed task ids: letters, digits, ``_`` and ``-``, 1 to 128 characters.
TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

#: Event types the runtime itself emits (handlers may emit any other ``type``).
TERMINAL_EVENT_TYPES = frozenset({"result", "dead_lettered", "cancelled"})

CancelOutcome = Literal["cancelled", "finished", "not_found"]
"""What :meth:`Broker.cancel` did: cancelled it now, nothing (it had finished already), or no such task."""

JSON = Any
"""A JSON-serialisable value (dict, list, str, int, float, bool or None)."""

DeadLetterListener = Callable[[str, str], Awaitable[None]]
"""``async def listener(task_id, error)``, called after a task was dead-lettered."""

Priority = Literal["high", "normal", "low"]
"""A task's priority class: agents take new ``high`` tasks before ``normal`` ones before ``low`` ones."""

#: The priority classes, highest first (the order in which agents look for new tasks).
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
DEFAULT_PRIORITY: Priority = "normal"

#: The starvation rule: after this many consecutive new tasks an agent took from classes above a class, it
#: looks at that class first, so a waiting ``low`` (or ``normal``) task is passed over at most this many times
#: by one agent however many higher tasks keep arriving.
STARVATION_LIMIT = 10


def validate_priority(priority: object) -> Priority:
    """Return ``priority`` unchanged or raise ``ValueError`` naming the bad value and the allowed ones."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}: use one of {', '.join(PRIORITIES)}")
    return priority


def validate_task_id(task_id: str) -> str:
    """Return ``task_id`` unchanged or raise :class:`InvalidTaskId` with a message naming the bad value."""
    if not isinstance(task_id, str) or not TASK_ID_PATTERN.match(task_id):
        raise InvalidTaskId(
            f"invalid task id {task_id!r}: use 1-128 characters from A-Z, a-z, 0-9, '_' and '-'"
        )
    return task_id


def new_task_id() -> str:
    """A fresh random task id (uuid4 hex)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class NewTask:
    """A task to enqueue. ``id=None`` lets the broker generate one."""

    payload: JSON
    id: str | None = None
    meta: dict[str, JSON] | None = field(default=None, compare=False, hash=False)
    """Runtime metadata that travels with the task: the trace context, ``{"trace": {"traceparent": ...}}``."""
    priority: Priority = DEFAULT_PRIORITY
    """The task's priority class (see :data:`PRIORITIES` and :data:`STARVATION_LIMIT`)."""

    def __post_init__(self) -> None:
        validate_priority(self.priority)


@dataclass(frozen=True)
class Task:
    """A task as stored in the queue."""

    id: str
    payload: JSON
    enqueued_at: float = 0.0
    meta: dict[str, JSON] | None = field(default=None, compare=False, hash=False)
    """:attr:`NewTask.meta` as enqueued."""
    priority: Priority = DEFAULT_PRIORITY
    """:attr:`NewTask.priority` as enqueued."""


def task_record(spec: NewTask, now: float) -> dict[str, JSON]:
    """How a task is stored by both brokers: payload, enqueue time and (when set) its metadata and a
    priority other than the default."""
    record: dict[str, JSON] = {"payload": spec.payload, "enqueued_at": now}
    if spec.meta:
        record["meta"] = spec.meta
    if spec.priority != DEFAULT_PRIORITY:
        record["priority"] = spec.priority
    return record


def task_from_record(task_id: str, data: Mapping[str, Any]) -> Task:
    """The :class:`Task` of a stored :func:`task_record`."""
    meta = data.get("meta")
    priority = data.get("priority", DEFAULT_PRIORITY)
    return Task(
        id=task_id,
        payload=data.get("payload"),
        enqueued_at=float(data.get("enqueued_at", 0)),
        meta=meta if isinstance(meta, dict) else None,
        priority=priority if priority in PRIORITIES else DEFAULT_PRIORITY,
    )


@dataclass
class Delivery:
    """One hand-out of a task to one consumer; pass it back to keep_alive/ack/fail/dead_letter.

    ``attempt`` is 1 for the first delivery and grows with every redelivery (including a restarted
    consumer re-taking its own pending delivery). ``source`` says which claim stage produced it.
    ``handle`` is backend-private (a stream entry id, a JetStream message); do not interpret it.
    """

    task: Task
    consumer: str
    attempt: int
    source: Literal["own", "reclaimed", "new"]
    handle: Any = field(default=None, repr=False, compare=False)
    last_error: str | None = None


@dataclass
class DeliveryRecord:
    """What counts toward ``max_deliveries`` for one task; both backends store it as JSON per task.

    ``strikes`` counts unproductive deliveries: each :meth:`Broker.fail` (the handler raised) and each
    delivery that was abandoned (neither acknowledged, failed nor released: its consumer died) without
    reporting checkpoint progress. A released delivery (graceful handover on SIGTERM) or one that reported
    progress ends without a strike. ``attempt`` is the number of deliveries handed out so far. ``buried`` is
    the dead-letter reason once the task is in the dead-letter log but not yet out of the queue (see
    "Dead-lettering is resumable" in the module docstring).
    """

    strikes: int = 0
    attempt: int = 0
    open: bool = False
    progressed: bool = False
    buried: str | None = None

    def admit(self) -> None:
        """A new delivery starts: the previous one, if abandoned without progress, is a strike."""
        if self.open and not self.progressed:
            self.strikes += 1
        self.open, self.progressed = True, False

    def failed(self) -> None:
        self.strikes += 1
        self.open = False

    def released(self) -> None:
        self.open = False

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes | None) -> DeliveryRecord:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls()
        if isinstance(data, int):  # a bare delivery count (older stores)
            return cls(attempt=data)
        if not isinstance(data, dict):
            return cls()
        return cls(
            strikes=int(data.get("strikes", 0)),
            attempt=int(data.get("attempt", 0)),
            open=bool(data.get("open", False)),
            progressed=bool(data.get("progressed", False)),
            buried=None if data.get("buried") is None else str(data["buried"]),
        )


def abandoned_reason(last_error: str | None, record: DeliveryRecord) -> str:
    """The dead-letter reason of a task whose last strike was an abandoned delivery."""
    return last_error or f"abandoned {record.strikes} times without a result or checkpoint progress"


@dataclass(frozen=True)
class TaskResult:
    """The recorded outcome of a task. ``value`` is the handler's JSON return value.

    ``status`` is ``"done"`` for a handler's result and ``"cancelled"`` for a cancellation (then ``value`` is
    None and ``agent_id`` empty): both are terminal, and the first one recorded wins.
    """

    task_id: str
    value: JSON
    agent_id: str
    attempt: int
    recorded_at: float = field(default_factory=time.time)
    started_at: float | None = None
    status: Literal["done", "cancelled"] = "done"

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @property
    def event_type(self) -> str:
        """The type of the terminal event that announces this outcome."""
        return "cancelled" if self.cancelled else "result"

    @classmethod
    def cancellation(cls, task_id: str) -> TaskResult:
        return cls(task_id=task_id, value=None, agent_id="", attempt=0, status="cancelled")

    def to_json(self) -> dict[str, JSON]:
        return {
            "task_id": self.task_id,
            "value": self.value,
            "agent_id": self.agent_id,
            "attempt": self.attempt,
            "recorded_at": self.recorded_at,
            "started_at": self.started_at,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, data: dict[str, JSON]) -> TaskResult:
        return cls(
            task_id=str(data["task_id"]),
            value=data.get("value"),
            agent_id=str(data.get("agent_id", "")),
            attempt=int(data.get("attempt", 0)),
            recorded_at=float(data.get("recorded_at", 0.0)),
            started_at=None if data.get("started_at") is None else float(data["started_at"]),
            status="cancelled" if data.get("status") == "cancelled" else "done",
        )


@dataclass(frozen=True)
class DeadLetter:
    """A task that exhausted its deliveries, with the last error recorded for it."""

    task: Task
    error: str
    deliveries: int
    consumer: str
    dead_lettered_at: float


@dataclass(frozen=True)
class TaskEvent:
    """One entry of a task's event log. ``id`` is opaque and increasing; resume with ``after=id``."""

    id: str
    task_id: str
    data: dict[str, JSON]


@dataclass(frozen=True)
class BrokerStats:
    """Counters for /metrics and for tests.

    ``queued``: enqueued, never handed out yet. ``pending``: handed out, not yet acknowledged (running or
    abandoned). ``done``: tasks with a recorded result. ``dead_lettered``: entries in the dead-letter log.
    ``saturated`` is True while queued tasks are held back because the backend's limit on unacknowledged
    deliveries is reached (delivery resumes when something is acknowledged). A backend without such a
    limit (Redis) never saturates.
    """

    queued: int
    pending: int
    done: int
    dead_lettered: int
    enqueued_total: int = 0
    saturated: bool = False


@dataclass(frozen=True)
class BrokerUsage:
    """What the broker's server holds, for ``agentswarm_broker_bytes`` / ``agentswarm_broker_items``.

    Redis: ``bytes`` is ``used_memory`` of ``INFO memory`` (what a Memorystore instance is sized for:
    data, client buffers, scripts), ``data_bytes`` its ``used_memory_dataset`` (the stored data alone, what
    retention bounds) and ``items`` is ``DBSIZE`` (the whole database). NATS: bytes and messages of this
    namespace's streams and KV buckets (``data_bytes`` = ``bytes``).
    """

    bytes: int
    items: int
    data_bytes: int = 0
