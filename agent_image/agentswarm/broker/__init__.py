"""Queue backends behind one contract (:mod:`agentswarm.broker.base`) and the factory that picks one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentswarm.broker.base import (
    DEFAULT_PRIORITY,
    PRIORITIES,
    STARVATION_LIMIT,
    Broker,
    BrokerError,
    BrokerStats,
    BrokerUnavailable,
    BrokerUsage,
    CancelOutcome,
    DeadLetter,
    Delivery,
    DeliveryRecord,
    InvalidCursor,
    InvalidTaskId,
    NewTask,
    Priority,
    Task,
    TaskEvent,
    TaskResult,
    new_task_id,
    validate_priority,
    validate_task_id,
)

if TYPE_CHECKING:
    from agentswarm.settings import Settings

__all__ = [
    "DEFAULT_PRIORITY",
    "PRIORITIES",
    "STARVATION_LIMIT",
    "Broker",
    "BrokerError",
    "BrokerStats",
    "BrokerUnavailable",
    "BrokerUsage",
    "CancelOutcome",
    "DeadLetter",
    "Delivery",
    "DeliveryRecord",
    "InvalidCursor",
    "InvalidTaskId",
    "NewTask",
    "Priority",
    "Task",
    "TaskEvent",
    "TaskResult",
    "make_broker",
    "new_task_id",
    "open_broker",
    "validate_priority",
    "validate_task_id",
]


def make_broker(settings: Settings) -> Broker:
    """Build (but do not connect) the broker named by ``settings.broker``."""
    if settings.broker == "redis":
        from agentswarm.broker.redis_streams import RedisStreamsBroker

        return RedisStreamsBroker.from_settings(settings)
    if settings.broker == "nats":
        from agentswarm.broker.nats_jetstream import NatsJetStreamBroker

        return NatsJetStreamBroker.from_settings(settings)
    raise BrokerError(f"unknown broker {settings.broker!r}: use 'redis' or 'nats'")


async def open_broker(settings: Settings) -> Broker:
    """Build the broker named by ``settings.broker`` and connect it (streams/groups created if missing).

    Use as ``broker = await open_broker(s)`` and ``await broker.close()``, or
    ``async with make_broker(s) as broker:``.
    """
    broker = make_broker(settings)
    await broker.connect()
    return broker
