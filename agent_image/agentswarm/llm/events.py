"""Events LLM handlers emit: streamed text coalesced into ``token`` events, bounded previews of values.

Every ``ctx.emit`` is one write to the broker. Emitting each streamed delta (often one token, a few
bytes) would cost a broker round trip per token, so :class:`TokenStream` gathers deltas and emits them
at most every ``interval`` seconds (and whenever ``max_chars`` are pending, and at the end of a part):
a watcher sees text within 50 ms by default, at a small fraction of the writes.

Event shapes (``data`` of the task's events)::

    {"type": "token", "text": "The answer", "step": 3}
    {"type": "tool_call", "tool": "search", "call_id": "c1", "args": {...}, "step": 3}
    {"type": "tool_result", "tool": "search", "call_id": "c1", "content": ..., "step": 3}
    {"type": "model_response", "step": 3, "model": "gpt-x", "input_tokens": 10, "output_tokens": 5}
    {"type": "usage", "model": "gpt-x", "input_tokens": ..., "output_tokens": ..., "requests": ...}

``step`` counts model calls of the task from 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_core import to_jsonable_python

#: Default coalescing interval of :class:`TokenStream`.
TOKEN_FLUSH_SECONDS = 0.05
#: Emit pending text once this many characters are buffered, whatever the interval.
TOKEN_FLUSH_CHARS = 1024
#: How long a handler that stops with an error (or pauses) waits for its queued events to be sent.
FLUSH_ON_ERROR_SECONDS = 2.0
#: Tool arguments and results larger than this (as JSON) are shown truncated in events.
PREVIEW_CHARS = 4096

Emit = Callable[[dict[str, Any]], Awaitable[Any]]


class TokenStream:
    """Coalesce streamed text deltas into ``token`` events."""

    def __init__(
        self,
        emit: Emit,
        *,
        step: int,
        interval: float = TOKEN_FLUSH_SECONDS,
        max_chars: int = TOKEN_FLUSH_CHARS,
    ) -> None:
        self._emit = emit
        self.step = step
        self.interval = interval
        self.max_chars = max_chars
        self._pending: list[str] = []
        self._chars = 0
        self._last = time.monotonic()
        self.text_chars = 0

    async def add(self, text: str) -> None:
        if not text:
            return
        self._pending.append(text)
        self._chars += len(text)
        self.text_chars += len(text)
        if self._chars >= self.max_chars or time.monotonic() - self._last >= self.interval:
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._chars = 0
        self._last = time.monotonic()
        await self._emit({"type": "token", "text": text, "step": self.step})


class EventSender:
    """Emit events in order from a background task, so broker round trips overlap the handler's work.

    ``send`` queues and returns at once; ``flush`` waits until everything queued is written and re-raises
    the first error the sender met (``ctx.emit`` already retries a broker outage, so that is a real
    error). Use as an async context manager: leaving it flushes (for at most ``FLUSH_ON_ERROR_SECONDS``
    when leaving with an exception, not at all when cancelled). A SIGKILL loses the events still queued:
    they are progress reports, the checkpoints are the record.
    """

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def __aenter__(self) -> EventSender:
        self._task = asyncio.create_task(self._run(), name="event-sender")
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._task is not None
        if exc_type is None:
            await self.flush()
            self._queue.put_nowait(None)
            await self._task
            return
        if exc_type is not asyncio.CancelledError:
            # Pausing at a checkpoint (SIGTERM) or failing: what was said so far still reaches the watchers.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.join(), FLUSH_ON_ERROR_SECONDS)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                if event is None:
                    return
                if self._error is None:
                    await self._emit(event)
            except Exception as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    async def send(self, event: dict[str, Any]) -> str:
        if self._error is not None:
            raise self._error
        self._queue.put_nowait(event)
        return ""

    async def flush(self) -> None:
        await self._queue.join()
        if self._error is not None:
            raise self._error


def preview(value: Any, limit: int = PREVIEW_CHARS) -> Any:
    """``value`` as JSON-compatible data, or a truncated JSON string when it is larger than ``limit``."""
    data = to_jsonable_python(value, fallback=repr)
    text = json.dumps(data, ensure_ascii=False)
    if len(text) <= limit:
        return data
    return {"truncated": True, "chars": len(text), "head": text[:limit]}
