"""When and how long to wait before retrying a model HTTP call.

Model endpoints shed load with ``429 Too Many Requests`` and ``503``, often with a ``Retry-After``
header (seconds or an HTTP date; OpenAI also sends ``retry-after-ms``). The policy: retry 408, 409, 429
and every 5xx, connection errors and timeouts, up to ``max_retries`` times; wait what the server asked
(``Retry-After``) when it did, else the runtime's :class:`agentswarm.backoff.Backoff` with full jitter
(``base_delay`` doubling up to ``max_delay``). A server asking for more than ``max_retry_after`` seconds is
not waited for: the attempt fails and the task's own retry (with its checkpoint) takes over, instead of a
pod sitting idle for an hour.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

from agentswarm.backoff import Backoff

#: HTTP statuses worth retrying (besides every 5xx).
RETRYABLE_STATUSES = frozenset({408, 409, 429})

DEFAULT_MAX_RETRIES = 4
DEFAULT_BASE_DELAY = 0.5
DEFAULT_MAX_DELAY = 30.0
DEFAULT_MAX_RETRY_AFTER = 120.0


def retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After`` seconds or date), or None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(float(raw_ms) / 1000.0, 0.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for model calls; see the module docstring. One :meth:`backoff` per model call."""

    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    def backoff(self) -> Backoff:
        """The pace of one call's retries when the server gives no hint (full jitter)."""
        return Backoff(initial=self.base_delay, maximum=self.max_delay, jitter=1.0)

    def delay(self, retry: int, retry_after: float | None, backoff: Backoff) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based), or None to give up."""
        if retry > self.max_retries:
            return None
        pace = backoff.next_delay()  # grows on every retry, hinted or not
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return pace
