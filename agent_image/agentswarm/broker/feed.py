"""The broker's live feed: every new task event and swarm event, pushed, in one stream per process.

Why a feed: a coordinator that polls every watched task's log costs the broker one read per watched task
per poll, however idle the tasks are. :meth:`Broker.follow` instead gives one process one live stream of
*everything* appended from now on, read with a bounded number of broker operations (Redis: one blocking
``XREAD`` over the notification and swarm streams; NATS: two ordered push consumers), and the coordinator
fans it out to its websockets (:mod:`agentswarm.coordinator.fanout`).

The logs stay the source of truth. The feed promises, between two :class:`FeedReset` items, every event
appended to any log exactly once, each task's events in log order. A :class:`FeedReset` (always the first
item, and again after a reconnect or anything else that may have lost items) means "events appended before
this point may be missing from the feed": a consumer re-reads the logs from its own cursors
(:meth:`Broker.read_events`, :meth:`Broker.read_swarm_events`) after each reset, drops what it already has
by event order (:meth:`Broker.event_order`), and is then complete again.

The swarm feed is a bounded log of task state transitions and agent status changes (see
:class:`SwarmEvent` and docs/protocol.md): the broker writes ``queued``, ``done`` and ``dead``; agents write
``running`` and their own status through :meth:`Broker.publish_swarm_event`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

#: Newest entries kept in the swarm feed's log (Redis ``MAXLEN ~``, NATS ``max_msgs``); older ones are
#: dropped, so the log never grows without bound. A client resuming from a cursor older than that gets
#: what is left (the frames say so: ``truncated``).
SWARM_FEED_RETENTION: Final = 100_000
#: Newest entries kept in Redis's notification stream. The coordinator reads it continuously; only a
#: coordinator stalled for this many events would miss some, and it resynchronises from the logs then.
NOTIFY_RETENTION: Final = 100_000
#: How long one blocking read of the feed waits before it is issued again when nothing happens (ms).
FEED_BLOCK_MS: Final = 5_000


@dataclass(frozen=True)
class SwarmEvent:
    """One entry of the swarm feed. ``id`` is opaque and increasing, like a task event id."""

    id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class FeedReset:
    """Items before this one may have been missed: re-read the logs from your cursors."""

    reason: str


def task_transition(task_id: str, state: str, *, at: float, **fields: Any) -> dict[str, Any]:
    """A swarm feed entry for a task state change (``queued``, ``running``, ``retrying``, ``done``,
    ``dead``); extra fields (``agent``, ``attempt``, ``error``) are included when not None."""
    entry: dict[str, Any] = {"kind": "task", "task_id": task_id, "state": state, "at": at}
    entry.update({k: v for k, v in fields.items() if v is not None})
    return entry


def agent_status(agent_id: str, status: str, *, at: float, task_id: str | None = None) -> dict[str, Any]:
    """A swarm feed entry for an agent status change (``alive``, ``busy`` with ``task_id``, ``idle``,
    ``gone``)."""
    entry: dict[str, Any] = {"kind": "agent", "agent": agent_id, "status": status, "at": at}
    if task_id is not None:
        entry["task_id"] = task_id
    return entry
