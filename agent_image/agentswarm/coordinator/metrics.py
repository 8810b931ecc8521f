"""Prometheus metrics of one coordinator.

Each coordinator gets its own :class:`~prometheus_client.CollectorRegistry` (not the global one) so
that several coordinators in one process (tests) do not collide. Queue gauges are refreshed from the
broker at scrape time: the broker is the source of truth, and a coordinator restart must not reset
them.
"""

from __future__ import annotations

from collections import OrderedDict

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from agentswarm.broker.base import BrokerStats, BrokerUsage

#: Buckets for task durations: agent tasks run from seconds to hours.
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, float("inf"))

#: Values of the ``state`` label of ``agentswarm_tasks``.
TASK_STATES = ("queued", "running", "done", "dead")


class CoordinatorMetrics:
    """The coordinator's metric families, in a private registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tasks = Gauge(
            "agentswarm_tasks",
            "Tasks by state as reported by the queue backend (queued, running, done, dead = dead-lettered).",
            ["state"],
            registry=self.registry,
        )
        self.websocket_connections = Gauge(
            "agentswarm_websocket_connections", "Open websocket connections.", registry=self.registry
        )
        self.websocket_connections_total = Counter(
            "agentswarm_websocket_connections_opened",
            "Websocket connections accepted (authenticated or not).",
            registry=self.registry,
        )
        self.tasks_submitted = Counter(
            "agentswarm_tasks_submitted", "Tasks enqueued through this coordinator.", registry=self.registry
        )
        self.frame_errors = Counter(
            "agentswarm_frame_errors", "Error frames sent, by error code.", ["code"], registry=self.registry
        )
        self.lagged = Counter(
            "agentswarm_subscriptions_lagged",
            "Times a subscription's live feed was dropped because its connection's send buffer was full "
            "(it then caught up from its cursor).",
            registry=self.registry,
        )
        self.tasks_enqueued = Gauge(
            "agentswarm_tasks_enqueued",
            "Tasks ever enqueued, as reported by the queue backend.",
            registry=self.registry,
        )
        self.saturated = Gauge(
            "agentswarm_queue_saturated",
            "1 while queued tasks are held back by the backend's limit on unacknowledged deliveries.",
            registry=self.registry,
        )
        self.broker_up = Gauge(
            "agentswarm_broker_up", "1 when the last broker ping succeeded.", registry=self.registry
        )
        self.broker_bytes = Gauge(
            "agentswarm_broker_bytes",
            "Bytes the broker's server holds: Redis used_memory; NATS bytes of this swarm's streams and KV "
            "buckets (what retention keeps bounded; size Memorystore from it).",
            registry=self.registry,
        )
        self.broker_items = Gauge(
            "agentswarm_broker_items",
            "Keys (Redis DBSIZE) or messages (NATS, this swarm's streams and KV buckets) the broker holds.",
            registry=self.registry,
        )
        self.task_duration = Histogram(
            "agentswarm_task_duration_seconds",
            "Run time of finished tasks (first claim to recorded result) seen by this coordinator.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        # Durations are observed once per task even when many watchers (or reconnects) see its result.
        self._observed: OrderedDict[str, None] = OrderedDict()
        self._observed_cap = 100_000

    def update_from_stats(self, stats: BrokerStats) -> None:
        self.tasks.labels(state="queued").set(stats.queued)
        self.tasks.labels(state="running").set(stats.pending)
        self.tasks.labels(state="done").set(stats.done)
        self.tasks.labels(state="dead").set(stats.dead_lettered)
        self.tasks_enqueued.set(stats.enqueued_total)
        self.saturated.set(1 if stats.saturated else 0)

    def update_from_usage(self, usage: BrokerUsage) -> None:
        self.broker_bytes.set(usage.bytes)
        self.broker_items.set(usage.items)

    def observe_duration(self, task_id: str, seconds: float | None) -> None:
        if seconds is None or seconds < 0 or task_id in self._observed:
            return
        self._observed[task_id] = None
        if len(self._observed) > self._observed_cap:
            self._observed.popitem(last=False)
        self.task_duration.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
