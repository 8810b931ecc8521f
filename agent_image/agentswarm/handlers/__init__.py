"""The handler API: what user code gets, and how ``AGENTSWARM_HANDLER=module:function`` is loaded.

A handler is ``async def handle(task: Task, state: JSON | None, ctx: TaskContext) -> JSON``:

* ``task``: :class:`agentswarm.broker.base.Task` (``task.id``, ``task.payload``).
* ``state``: what the handler last passed to ``ctx.checkpoint`` for this task (on this agent's volume, or in
  the broker with ``AGENTSWARM_CHECKPOINT_BACKEND=broker``), or ``None`` on a fresh start.
* ``ctx.checkpoint(state)``: durably store ``state`` (returns the version). Call it after every step that
  should not be repeated. On SIGTERM the agent lets the handler run until its next checkpoint, then stops it
  there (the call raises :class:`ShutdownRequested` after the state is stored; do not catch it).
* ``ctx.emit(event)``: append a progress event (a JSON object; ``type`` defaults to ``"progress"``) to the
  task's event log, which watchers read and resume by id; returns its id once it is stored.
* ``ctx.stream(event)``: the same for token-rate streams, without waiting for the broker: the event is
  queued and stored in order within about a round trip (see :mod:`agentswarm.emitter` for what a SIGKILL
  can lose: only streamed events not yet written, never an awaited ``emit`` or anything before a
  checkpoint).
* ``ctx.spawn(payloads, handler=None, priority=None)`` / ``ctx.gather(ids)``: create child tasks (in this
  task's priority class unless ``priority`` names another) and wait for their outcomes;
  a waiting task *parks* (it holds no agent) and is re-run from its last checkpoint when the last child
  finishes, so the code before ``gather`` must be safe to re-run (see :mod:`agentswarm.swarm.runtime`).
* ``ctx.shared``: JSON entries shared by the task tree (``ctx.shared.swarm``: by the whole swarm), with
  compare-and-set versions (:mod:`agentswarm.swarm.shared`).
* ``ctx.memory``: this agent's own durable key-value store and directory, across tasks and restarts
  (:mod:`agentswarm.swarm.memory`).

Handlers run on the agent's event loop: keep blocking work (CPU, sync I/O) in ``asyncio.to_thread`` or the
heartbeat stops and the liveness probe restarts the pod. One task runs at a time per agent process.

The return value (JSON) is recorded as the task's result, once. Raising an exception records the error and
retries the task, up to ``AGENTSWARM_MAX_DELIVERIES`` attempts, then dead-letters it. A handler may run more
than once for the same task (at-least-once delivery); side effects outside checkpoints must be idempotent.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from agentswarm.broker.base import JSON, Priority, Task
from agentswarm.defaults import HANDLER_PATTERN

if TYPE_CHECKING:
    from agentswarm.swarm.memory import AgentMemory
    from agentswarm.swarm.shared import SharedContext
    from agentswarm.swarm.store import ChildOutcome


class ShutdownRequested(BaseException):
    """Raised by ``ctx.checkpoint`` once the state is stored when the agent is shutting down (SIGTERM).

    A BaseException so that handlers' ``except Exception`` blocks do not swallow it.
    """


class Cancelled(BaseException):
    """Raised by ``ctx.emit`` / ``ctx.checkpoint`` once the task was cancelled (``ctx.cancelled`` is True).

    The cancellation is already recorded as the task's outcome; the agent cancels the task's children and
    moves on. A BaseException so that handlers' ``except Exception`` blocks do not swallow it; a handler
    may catch it to clean up, and should re-raise it.
    """


class TaskContext(Protocol):
    """What a handler can do besides computing: checkpoint, emit progress, spawn and share."""

    task_id: str
    agent_id: str
    attempt: int
    restored_version: int | None

    @property
    def cancelled(self) -> bool:
        """True once the agent has seen that this task was cancelled (see :class:`Cancelled`)."""
        ...

    @property
    def stopping(self) -> bool:
        """True once the agent received SIGTERM (handlers may checkpoint early and return)."""
        ...

    async def checkpoint(self, state: JSON) -> int: ...

    async def emit(self, event: dict[str, Any]) -> str: ...

    async def stream(self, event: dict[str, Any]) -> None: ...

    # -- swarm primitives (agentswarm.swarm) --------------------------------------------------------------
    shared: SharedContext
    memory: AgentMemory

    async def spawn(
        self, payloads: Sequence[JSON], handler: str | None = None, *, priority: Priority | None = None
    ) -> list[str]: ...

    # The timeout spans parking and re-runs on other agents: asyncio.timeout cannot express it.
    async def gather(self, ids: Sequence[str], timeout: float | None = None) -> list[ChildOutcome]: ...  # noqa: ASYNC109

    async def ask(self, question: JSON, timeout: float | None = None) -> JSON: ...  # noqa: ASYNC109

    async def limit(
        self, key: str, cost: float = 1.0, *, per_second: float | None = None, burst: float | None = None
    ) -> float: ...


Handler = Callable[[Task, JSON, TaskContext], Coroutine[Any, Any, JSON]]


class HandlerLoadError(ImportError):
    """``AGENTSWARM_HANDLER`` does not name an importable async function."""


def _import_failure(module_name: str, exc: BaseException) -> str:
    """Why ``module_name`` did not import, on one line, with the likely fix when the module itself is missing.

    A handler module missing from the image (or from the local working directory) is the usual first-day
    mistake; a module that is there but fails inside (a dependency missing, a syntax error, an exception at
    import time) is a bug in that module, so the message names its file and line.
    """
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing and (module_name == missing or module_name.startswith(missing + ".")):
        return (
            f"cannot import {module_name!r}: no module named {missing!r} (is your package installed in the "
            "image, or the working directory its parent? see docs/your-agents.md)"
        )
    if isinstance(exc, SyntaxError):
        where = f" ({exc.filename}, line {exc.lineno})" if exc.filename else ""
        return f"cannot import {module_name!r}: SyntaxError: {exc.msg}{where}"
    detail = str(exc).splitlines()[0] if str(exc) else ""
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None and not isinstance(exc, ImportError):
        where = f" ({tb.tb_frame.f_code.co_filename}, line {tb.tb_lineno})"
    return f"cannot import {module_name!r}: {type(exc).__name__}: {detail}{where}"


def load_handler(spec: str) -> Handler:
    """Import ``module:function`` and check it is a coroutine function."""
    import inspect

    if not HANDLER_PATTERN.match(spec):
        raise HandlerLoadError(f"AGENTSWARM_HANDLER={spec!r}: expected 'package.module:function'")
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # anything the module raises while importing: one line, not a traceback
        raise HandlerLoadError(f"AGENTSWARM_HANDLER={spec!r}: {_import_failure(module_name, exc)}") from exc
    func = getattr(module, func_name, None)
    if func is None:
        raise HandlerLoadError(f"AGENTSWARM_HANDLER={spec!r}: module {module_name!r} has no {func_name!r}")
    if not inspect.iscoroutinefunction(func):
        raise HandlerLoadError(f"AGENTSWARM_HANDLER={spec!r}: {func_name!r} must be an 'async def' function")
    handler: Handler = func
    return handler
