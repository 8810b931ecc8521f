"""The contract of the swarm store: task trees, parking, and shared context, kept next to the queue.

The queue (:class:`agentswarm.broker.base.Broker`) knows flat tasks. A :class:`SwarmStore` adds what a swarm
needs on the same server, through the same connection, with the same two implementations (Redis and NATS
JetStream, tested by one conformance suite):

* **Nodes.** ``spawn`` records, for every child, its parent, its tree's root, its depth and the handler that
  runs it (:class:`Node`); the agent reads that before running a delivery.
* **Parking.** A parent that waits for children registers a *waiter* (its id and the children still
  outstanding) with :meth:`SwarmStore.park` and gives its delivery back. Registration and the check of which
  children already finished are one atomic step (Redis: a Lua script; NATS: a KV record updated with revision
  compare-and-set, then re-checked), so a child finishing while its parent parks is never missed.
  :meth:`SwarmStore.child_finished` removes one child from its parent's waiter; the call that removes the last
  one re-enqueues the parent, exactly once. Both calls are idempotent, so at-least-once callers are safe.
* **Shared context.** Versioned JSON entries per tree (expiring with the tree) or swarm-wide.

Parking is deliberately generic: ``park(task_id, waiting_for, wake_at)`` registers a waiter, and whichever
comes first releases it exactly once: the last ``child_finished``, ``wake_due`` once ``wake_at`` passed, or an
explicit ``wake(task_id)`` (for anything else a task may wait for without holding an agent).
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentswarm.broker.base import JSON, Broker, BrokerError, NewTask, TaskResult
from agentswarm.broker.errors import contract_errors
from agentswarm.defaults import DEFAULT_TREE_TTL_SECONDS

#: Deepest allowed nesting of spawned tasks (a root task has depth 0).
MAX_TREE_DEPTH = 32

#: Most children one ``spawn`` call may create.
MAX_SPAWN = 10_000

ChildStatus = Literal["done", "dead", "cancelled"]


class SwarmError(BrokerError):
    """A swarm operation was refused (bad input or a broken rule); the message says what and why."""


class NotAChild(SwarmError):
    """``gather`` was given an id that this task did not spawn."""


class TreeTooDeep(SwarmError):
    """A spawn would nest deeper than :data:`MAX_TREE_DEPTH`."""


@dataclass(frozen=True)
class Node:
    """Where a task sits in its tree. A task nobody spawned is its own root, at depth 0, without a parent.

    ``handler`` is the ``module:function`` chosen by the spawning parent (None: the agent's own handler).
    ``spawner`` is True once the task has spawned children: its checkpoints then live in the broker, so a
    parked parent resumes on whichever agent takes it.
    """

    task_id: str
    root: str
    parent: str | None = None
    depth: int = 0
    handler: str | None = None
    spawner: bool = False

    @classmethod
    def root_of(cls, task_id: str) -> Node:
        return cls(task_id=task_id, root=task_id)


@dataclass(frozen=True)
class ChildOutcome:
    """A finished (or not yet finished, ``status=None``) child as seen by its parent."""

    id: str
    status: ChildStatus | None
    value: JSON = None
    error: str | None = None
    agent_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


@dataclass(frozen=True)
class Versioned:
    """A shared-context entry: its JSON ``value`` and the ``version`` its last write produced."""

    value: JSON
    version: int


@dataclass(frozen=True)
class Grant:
    """A rate-limit reservation: ``at`` (epoch seconds, the store's clock) and ``wait`` (seconds from now)."""

    at: float
    wait: float


def limit_key(key: str) -> str:
    """A rate-limit key in a form every backend stores (``openai:gpt-4o`` is not a NATS KV key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def child_id(parent_id: str, call: int, index: int) -> str:
    """The id of the ``index``-th child of the ``call``-th ``spawn`` of ``parent_id`` (both 0-based).

    Deterministic, so a parent that re-runs after a crash re-derives the same ids and enqueueing them again is
    a no-op. ``<parent>-<call>-<index>`` while that fits the 128 characters of a task id; deeper trees use a
    hash of the parent id instead (``h<40 hex>-<call>-<index>``), which keeps ids unique and bounded.
    """
    suffix = f"-{call}-{index}"
    if len(parent_id) + len(suffix) <= 128:
        return parent_id + suffix
    return "h" + hashlib.sha256(parent_id.encode()).hexdigest()[:40] + suffix


#: The store's operations whose backend exceptions become contract errors, as the broker's do.
STORE_OPERATIONS = (
    "connect",
    "node",
    "node_and_result",
    "spawn",
    "spawn_done",
    "mark_spawner",
    "outcomes",
    "park",
    "deadline",
    "wake",
    "wake_due",
    "child_finished",
    "shared_get",
    "shared_put",
    "shared_delete",
    "shared_items",
    "acquire",
)


class SwarmStore(abc.ABC):
    """Tree bookkeeping, parking and shared context on the broker's server (see module docstring).

    ``ttl_seconds`` bounds the life of a tree's records after their last write; swarm-wide shared entries
    do not expire (delete them, or keep them few). Like the broker's, its operations raise only
    :class:`~agentswarm.broker.base.BrokerError` and subclasses (``BrokerUnavailable`` during an outage).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for operation in STORE_OPERATIONS:
            if operation in cls.__dict__:
                setattr(cls, operation, contract_errors(cls.__dict__[operation]))

    def __init__(self, broker: Broker, *, ttl_seconds: int = DEFAULT_TREE_TTL_SECONDS) -> None:
        self.broker = broker
        self.ttl_seconds = ttl_seconds

    @property
    def name(self) -> str:
        return self.broker.name

    def is_transient(self, exc: BaseException) -> bool:
        return self.broker.is_transient(exc)

    @abc.abstractmethod
    async def connect(self) -> None:
        """Create what is missing (buckets); uses the broker's connection, so connect the broker first."""

    # -- tree ---------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def node(self, task_id: str) -> Node:
        """Where ``task_id`` sits (``Node.root_of(task_id)`` for a task nobody spawned)."""

    async def node_and_result(self, task_id: str) -> tuple[Node, TaskResult | None]:
        """:meth:`node` and the broker's ``get_result``, which an agent needs before every delivery: one
        round trip where the backend allows (here the two reads run concurrently)."""
        node, result = await asyncio.gather(self.node(task_id), self.broker.get_result(task_id))
        return node, result

    @abc.abstractmethod
    async def spawn(self, parent: Node, children: Sequence[NewTask], handler: str | None) -> int | None:
        """Record ``children`` (ids given) under ``parent``, mark the parent a spawner, enqueue the children.

        Idempotent per child id: returns how many children were new (0 for a parent re-running a spawn), or
        None without doing anything once :meth:`spawn_done` was called for this call (its first child).
        Nodes are recorded before the tasks are enqueued, so an agent never runs a child without its node.
        """

    @abc.abstractmethod
    async def mark_spawner(self, node: Node) -> None:
        """Record that ``node``'s checkpoints live in the broker (``spawn`` does it too), so that whichever
        agent resumes it after parking finds them. Idempotent."""

    @abc.abstractmethod
    async def spawn_done(self, first_child: str) -> None:
        """Mark the spawn call whose first child is ``first_child`` complete (enqueued and announced), so a
        re-run of the parent skips it."""

    # -- parking ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def outcomes(self, task_ids: Sequence[str]) -> list[ChildOutcome]:
        """The current outcome of each task (``status=None`` while it has neither result nor dead letter)."""

    @abc.abstractmethod
    async def park(self, task_id: str, waiting_for: Sequence[str], wake_at: float | None = None) -> bool:
        """Register ``task_id`` as waiting for its children ``waiting_for``; True if it is now parked.

        False means every child has finished already (nothing to wait for: carry on). With no children at
        all the task is parked until :meth:`wake` or ``wake_at`` (a waiter for something else, such as a
        human's answer). True means the caller
        must give its delivery back (acknowledge it without a result): the task is re-enqueued once the last
        outstanding child finishes, or by :meth:`wake_due` once the clock passes ``wake_at`` (epoch seconds),
        whichever comes first. Raises :class:`NotAChild` when an id is not a child of ``task_id``.
        """

    @abc.abstractmethod
    async def deadline(self, task_id: str, key: str, seconds: float) -> float:
        """The deadline (epoch seconds) named ``key`` of ``task_id``: ``now + seconds`` on the first call,
        the same value on every later call (a re-run task keeps the deadline of its first run)."""

    @abc.abstractmethod
    async def wake(self, task_id: str) -> bool:
        """Re-enqueue ``task_id`` now if it is parked, whatever it waits for; True if this call woke it.

        Exactly once like every wake-up: a parent woken this way is not woken again by its children.
        """

    @abc.abstractmethod
    async def wake_due(self, now: float) -> int:
        """Re-enqueue parked tasks whose ``wake_at`` is before ``now`` (each once); returns how many.

        Every agent calls this about once a second; concurrent callers never wake a task twice.
        """

    @abc.abstractmethod
    async def child_finished(self, node: Node, status: ChildStatus, error: str | None = None) -> bool:
        """Tell ``node``'s parent that this child finished; True if this call re-enqueued the parent.

        Call after the child's result (or dead letter) is stored and before its delivery is acknowledged;
        repeating the call is harmless.
        """

    # -- rate limits --------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def acquire(self, key: str, cost: float, per_second: float, burst: float) -> Grant:
        """Reserve ``cost`` units of the rate limit ``key`` (``per_second`` units per second, up to ``burst``
        at once); returns when they may be used. Never waits itself: the caller sleeps ``grant.wait``.

        A reservation (GCRA, the generic cell rate algorithm): every call atomically takes the next free slot
        of the key's schedule, so concurrent callers on any number of agents are spaced at the rate without
        retries, and a caller that gave up still used its slot (the rate is never exceeded).
        """

    # -- shared context -----------------------------------------------------------------------------------
    @abc.abstractmethod
    async def shared_get(self, scope: str | None, key: str) -> Versioned | None:
        """The entry ``key`` of a tree (``scope`` = its root id) or of the swarm (``scope=None``)."""

    @abc.abstractmethod
    async def shared_put(self, scope: str | None, key: str, raw: bytes, if_version: int | None) -> int | None:
        """Write ``raw`` (JSON text); returns the new version, or None when ``if_version`` did not match.

        ``if_version=0`` writes only if the key is absent; None writes unconditionally.
        """

    @abc.abstractmethod
    async def shared_delete(self, scope: str | None, key: str, if_version: int | None) -> bool | None:
        """Delete ``key``; True if it existed, False if not, None when ``if_version`` did not match."""

    @abc.abstractmethod
    async def shared_items(self, scope: str | None) -> dict[str, Versioned]:
        """Every entry of the scope (meant for small scopes: a reducer reading its workers' findings)."""
