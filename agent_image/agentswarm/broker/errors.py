"""The broker contract's exception tree, and the wrapper that keeps backend exceptions inside a backend.

Callers (agents, the coordinator, local mode) catch these and nothing of redis-py or nats-py: each kind of
malformed input has its own error, and an unreachable server is :class:`BrokerUnavailable`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any


class BrokerError(RuntimeError):
    """A broker operation failed for a reason the caller can act on (bad input, server refused, ...)."""


class InvalidTaskId(BrokerError, ValueError):
    """A task id does not match :data:`TASK_ID_PATTERN`."""


class InvalidCursor(BrokerError, ValueError):
    """An event cursor (``after``) is not an event id of this backend (see :meth:`Broker.check_cursor`)."""


class BrokerUnavailable(BrokerError):
    """The server is unreachable or restarting: retry later (:meth:`Broker.is_transient` is True)."""


#: The contract's operations whose backend exceptions :class:`Broker` translates into contract errors.
CONTRACT_OPERATIONS = (
    "connect",
    "enqueue_many",
    "get_task",
    "claim",
    "keep_alive",
    "ack",
    "fail",
    "progress",
    "release",
    "dead_letter",
    "dead_letters",
    "record_result",
    "finish",
    "get_result",
    "cancel",
    "publish_event",
    "publish_events",
    "read_events",
    "publish_swarm_event",
    "publish_batch",
    "read_swarm_events",
    "put_checkpoint",
    "get_checkpoints",
    "delete_checkpoints",
    "stats",
    "backlog",
    "trim",
    "usage",
)


def contract_errors(operation: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap one backend operation so that only contract errors (and non-JSON data errors) escape it."""

    @functools.wraps(operation)
    async def translated(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await operation(self, *args, **kwargs)
        except (BrokerError, TypeError, ValueError):
            raise
        except Exception as exc:
            detail = f"{self.name} broker: {type(exc).__name__}: {exc}"
            if self.is_transient(exc):
                raise BrokerUnavailable(detail) from exc
            raise BrokerError(detail) from exc

    return translated
