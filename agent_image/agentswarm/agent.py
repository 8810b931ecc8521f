"""The agent worker: claim a task, restore its checkpoint, run the handler, record the result, ack.

Entry points (used by ``agentswarm.cli`` for ``agentswarm agent`` and ``agentswarm probe``)::

    async def run(settings: Settings) -> int
        Run the worker loop until SIGTERM/SIGINT; returns the process exit code (0 after a clean stop,
        2 when the handler cannot be loaded). Installs its own SIGTERM/SIGINT handlers on the running loop.

    def probe(max_age_seconds: float, settings: Settings | None = None, ready: bool = False) -> int
        Exec-probe check: 0 while ``$AGENTSWARM_CHECKPOINT_DIR/.heartbeat`` is younger than
        ``max_age_seconds``, else 1 (with the reason on stderr). With ``ready`` (the readiness probe) also
        ``.ready`` must exist: the agent writes it once a claim reached the broker and removes it while the
        broker is unreachable and when it stops.

    python -m agentswarm.agent                           # same as ``agentswarm agent``
    python -m agentswarm.agent probe --max-age-seconds N # same as ``agentswarm probe``

Life of a delivery (``AGENTSWARM_CONCURRENCY`` of them at once per agent process, each in its own asyncio
task):

1. ``broker.claim(agent_id)``: own unacknowledged deliveries first (a restart under the same identity resumes
   what it was doing), then abandoned ones, then new ones.
2. If the task already has a result (it ran to completion before, but the ack was lost), ack and move on.
3. Restore the newest intact checkpoint and call the handler; a background task keeps the delivery alive
   every ``keepalive_interval_ms`` so long tasks are never taken over while running.
4. Success: ``record_result`` (first result wins), then ``ack``, then forget the checkpoints.
   Exception: ``fail`` records the error; the task is retried, or dead-lettered after ``max_deliveries``.
5. SIGTERM: no new claims. The running handler continues until its next ``ctx.checkpoint`` (which stores the
   state and then raises :class:`ShutdownRequested`), or at most ``shutdown_grace_seconds``; the delivery is
   left unacknowledged, so the agent (or another one) resumes it from that checkpoint.

Broker outages (Redis restarted, NATS unreachable) are retried with backoff everywhere: they never count
as a task failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from agentswarm import tracing
from agentswarm.backoff import Backoff
from agentswarm.broker import Broker, Delivery, TaskResult, open_broker
from agentswarm.broker.base import JSON, Task
from agentswarm.broker.feed import agent_status, task_transition
from agentswarm.budget import (
    Budget,
    budget_from_settings,
    is_llm_task,
    task_model,
    usage_of_event,
)
from agentswarm.checkpoint import Checkpoint, CheckpointStore, make_store
from agentswarm.defaults import DEFAULT_CHECKPOINT_DIR, HEARTBEAT_FILE, READY_FILE
from agentswarm.emitter import EventWriter
from agentswarm.handlers import Cancelled, Handler, HandlerLoadError, ShutdownRequested, load_handler
from agentswarm.secrets_env import SecretEnvError, resolve_secret_env_files
from agentswarm.settings import Settings, SettingsError, load_settings, unknown_variables
from agentswarm.swarm.cancel import cancel_descendants
from agentswarm.swarm.runtime import Parked, SwarmContextMixin, TreeRuntime
from agentswarm.swarm.store import ChildStatus, Node

log = logging.getLogger("agentswarm.agent")
T = TypeVar("T")

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_CONFIG = 2


class _GiveUp(Exception):
    """The broker stayed unreachable past the shutdown grace period."""


class _Context(SwarmContextMixin):
    """The :class:`agentswarm.handlers.TaskContext` given to handlers."""

    def __init__(
        self,
        agent: Agent,
        delivery: Delivery,
        restored: Checkpoint | None,
        node: Node,
        store: CheckpointStore,
    ) -> None:
        self._agent = agent
        self._delivery = delivery
        self._progress_reported = False
        self._cancelled = False
        self.task_id = delivery.task.id
        self.agent_id = agent.agent_id
        self.attempt = delivery.attempt
        self.restored_version = restored.version if restored else None
        self.last_version = self.restored_version
        self.store = store
        self._init_swarm(agent.tree, node, restored.state if restored else None)

    @property
    def stopping(self) -> bool:
        return self._agent.stopping.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    async def poll_cancelled(self) -> bool:
        """Look the task's outcome up: True (and ``cancelled`` from now on) once it was cancelled."""
        if not self._cancelled:
            outcome = await self._agent.retrying(
                lambda: self._agent.broker.get_result(self.task_id), "get_result"
            )
            self._cancelled = outcome is not None and outcome.cancelled
        return self._cancelled

    async def _raise_if_cancelled(self) -> None:
        if await self.poll_cancelled():
            raise Cancelled(f"task {self.task_id} was cancelled")

    async def checkpoint(self, state: JSON) -> int:
        await self._raise_if_cancelled()
        store = self.store
        version = await self._agent.retrying(lambda: store.save(self.task_id, state), "checkpoint")
        await self._agent.events.flush()  # what was streamed before a checkpoint is stored with it
        self.last_version = version
        self._state = state
        if not self._progress_reported:
            # A newer checkpoint than this delivery started from: if the agent dies now, the next
            # delivery does not count toward max_deliveries (see Broker.progress).
            await self._agent.retrying(lambda: self._agent.broker.progress(self._delivery), "progress")
            self._progress_reported = True
        if self.stopping:
            raise ShutdownRequested(f"checkpoint {version} stored; agent is shutting down")
        return version

    async def emit(self, event: dict[str, Any]) -> str:
        await self._raise_if_cancelled()
        return await self.emit_unchecked(event)

    async def emit_unchecked(self, event: dict[str, Any]) -> str:
        """Publish without looking for a cancellation (the runtime's own events)."""
        data = {"type": "progress", **event}
        event_id = await self._agent.events.emit(self.task_id, data)
        await self._agent.charge_budget(self._delivery.task, data)
        return event_id

    async def stream(self, event: dict[str, Any]) -> None:
        # The token-rate path never waits for the broker: it raises Cancelled once the cancellation is
        # known (seen by an emit, a checkpoint or the keep-alive loop), without a lookup of its own.
        if self._cancelled:
            raise Cancelled(f"task {self.task_id} was cancelled")
        data = {"type": "progress", **event}
        await self._agent.events.stream(self.task_id, data)
        await self._agent.charge_budget(self._delivery.task, data)


class Agent:
    """One worker process: a broker connection, a checkpoint store and a handler."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        store: CheckpointStore,
        handler: Handler,
        tree: TreeRuntime | None = None,
    ) -> None:
        self.settings = settings
        self.agent_id = settings.agent_id
        self.broker = broker
        self.store = store
        self.handler = handler
        self.tree = tree or TreeRuntime(
            broker, settings.checkpoint_dir / "memory", settings.tree_ttl_seconds, settings.rate_limits
        )
        self.stopping = asyncio.Event()
        self.stop_deadline = float("inf")
        self.tasks_done = 0
        self._fatal: Exception | None = None
        #: The swarm's token budget (see agentswarm.budget); None when unlimited.
        self.budget: Budget | None = None
        #: The LLM task this agent holds while the budget is spent, if any.
        self.held_for_budget: str | None = None
        #: True while ``.ready`` exists: the last claim reached the broker.
        self.ready = False
        #: Batches this process's task events and swarm feed entries (see agentswarm.emitter).
        self.events = EventWriter(broker, self.retrying)

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            log.info(
                "agent %s: stop requested; no new tasks, finishing at the next checkpoint", self.agent_id
            )
            self.stop_deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        self.stopping.set()

    async def retrying(self, make: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``make()`` until it succeeds, retrying transient broker errors with capped backoff."""
        backoff = Backoff(initial=0.05, maximum=2.0)
        while True:
            try:
                return await make()
            except Exception as exc:
                if not self.broker.is_transient(exc):
                    raise
                if self.stopping.is_set() and time.monotonic() > self.stop_deadline:
                    # Shutting down and the broker is still away: stop trying, the delivery stays pending.
                    raise _GiveUp(f"{what}: broker unavailable during shutdown ({exc!r})") from exc
                delay = backoff.next_delay()
                log.warning(
                    "%s: broker unavailable (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay
                )
            await asyncio.sleep(delay)

    # -- heartbeat ----------------------------------------------------------------------------------------
    def write_heartbeat(self) -> None:
        path = self.settings.heartbeat_file
        tmp = path.with_name(f".heartbeat.{os.getpid()}.tmp")
        tmp.write_text(f"{time.time():.3f} {self.agent_id} {os.getpid()}\n")
        os.replace(tmp, path)

    def set_ready(self, ready: bool) -> None:
        """Write or remove ``.ready`` (the readiness probe's file) when the state changes."""
        if ready == self.ready:
            return
        self.ready = ready
        path = self.settings.checkpoint_dir / READY_FILE
        try:
            if ready:
                path.write_text(f"{self.agent_id} {os.getpid()}\n")
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("cannot update readiness file %s: %s", path, exc)

    async def heartbeat_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.write_heartbeat)
            except OSError as exc:
                log.error("cannot write heartbeat %s: %s", self.settings.heartbeat_file, exc)
            await asyncio.sleep(self.settings.heartbeat_interval_seconds)

    # -- main loop ----------------------------------------------------------------------------------------
    async def serve(self) -> None:
        """Claim and process deliveries, up to ``concurrency`` at once, until :meth:`request_stop`.

        Every delivery runs in its own asyncio task with its own context, checkpoint and keep-alive, all under
        this agent's one consumer identity. On SIGTERM each running handler gets its own chance to reach a
        checkpoint within the grace period; after a SIGKILL the restarted agent re-takes all of them first.
        """
        self.settings.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        heartbeat = asyncio.create_task(self.heartbeat_loop(), name="heartbeat")
        await self.retrying(self.tree.connect, "swarm store")
        await self.events.swarm(agent_status(self.agent_id, "alive", at=time.time()))
        await self.sweep_checkpoints()
        backoff = Backoff(initial=0.05, maximum=2.0)
        slots = self.settings.concurrency
        running: set[asyncio.Task[None]] = set()
        stop_wait = asyncio.create_task(self.stopping.wait(), name="stop-wait")
        try:
            while not self.stopping.is_set():
                self._raise_fatal()
                if len(running) >= slots:
                    await asyncio.wait({*running, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    deliveries = await self.broker.claim(
                        self.agent_id, count=slots - len(running), block_ms=self.settings.claim_block_ms
                    )
                    backoff.reset()
                    self.set_ready(True)
                except Exception as exc:
                    if not self.broker.is_transient(exc):
                        raise
                    self.set_ready(False)
                    delay = backoff.next_delay()
                    log.warning(
                        "claim: broker unavailable (%s: %s); retrying in %.2fs",
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                    continue
                for delivery in deliveries:
                    if self.stopping.is_set():
                        # Claimed but not started: handed back without a strike; our restart takes it first.
                        await self._release(delivery)
                        continue
                    if await self._budget_holds(delivery):
                        continue
                    task = asyncio.create_task(self._run(delivery), name=f"delivery-{delivery.task.id}")
                    running.add(task)
                    task.add_done_callback(running.discard)
            if running:  # each handler stops at its next checkpoint, within the grace period
                await asyncio.wait(running)
            self._raise_fatal()
        finally:
            for task in running:
                task.cancel()
            stop_wait.cancel()
            self.set_ready(False)
            heartbeat.cancel()
            for t in (*running, stop_wait, heartbeat):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await self.tree.close()
            await self.events.swarm(agent_status(self.agent_id, "gone", at=time.time()))
            await self.events.close()

    async def _run(self, delivery: Delivery) -> None:
        try:
            await self.process(delivery)
        except _GiveUp as exc:
            log.error("%s; task %s stays pending", exc, delivery.task.id)
        except Exception as exc:  # a broker refusing a request: the agent exits (and is restarted)
            if self._fatal is None:
                self._fatal = exc
            self.request_stop()

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    async def sweep_checkpoints(self) -> None:
        """Forget local checkpoints of tasks that finished elsewhere (taken over after this agent died).

        Best effort at start-up; tasks still unfinished keep theirs, so they resume if they come back here.
        """
        for task_id in await self.store.stranded_task_ids():
            try:
                if await self.broker.get_result(task_id) is not None:
                    await self.store.clear(task_id)
                    log.info("removed checkpoints of task %s (finished elsewhere)", task_id)
                elif await self.broker.get_task(task_id) is None:
                    log.warning("checkpoints of unknown task %s kept in %s", task_id, self.store.location)
            except Exception as exc:
                log.warning("checkpoint sweep stopped: %s", exc)
                return

    async def _keep_alive_loop(self, delivery: Delivery, ctx: _Context) -> None:
        while True:
            await asyncio.sleep(self.settings.keepalive_seconds)
            if ctx.parking:  # the delivery may be released in a moment: do not renew its lease now
                continue
            try:
                await self.broker.keep_alive([delivery])
                # So that ``ctx.cancelled`` turns True even for a handler that neither emits nor checkpoints.
                await ctx.poll_cancelled()
            except _GiveUp:
                pass
            except Exception as exc:
                log.warning("keep-alive of task %s failed: %s", delivery.task.id, exc)

    async def process(self, delivery: Delivery) -> None:
        task = delivery.task
        node = await self.retrying(lambda: self.tree.store.node(task.id), "node")
        existing = await self.retrying(lambda: self.broker.get_result(task.id), "get_result")
        if existing is not None:
            if existing.cancelled:
                log.info("task %s was cancelled; acknowledging it unrun", task.id)
            else:
                log.info("task %s already has a result (from %s); acknowledging", task.id, existing.agent_id)
            # Recording again is a no-op, except that it appends the terminal event if the first recorder
            # died between storing the result and appending it (watchers wait for that event).
            await self.retrying(lambda: self.broker.record_result(existing), "record_result")
            status: ChildStatus = "cancelled" if existing.cancelled else "done"
            await self.retrying(lambda: self.tree.finished(node, status), "child_finished")
            await self.retrying(lambda: self.broker.ack(delivery), "ack")
            await self.store.clear(task.id)
            return
        try:
            handler = self.handler if node.handler is None else self.tree.handler(node.handler)
        except HandlerLoadError as exc:  # cannot get better by retrying
            reason = str(exc)
            await self.retrying(lambda: self.broker.dead_letter(delivery, reason), "dead_letter")
            return
        store = self.tree.checkpoints if node.spawner else self.store
        restored = await self.retrying(lambda: store.load(task.id), "load checkpoint")
        ctx = _Context(self, delivery, restored, node, store)
        now = time.time()
        await self.events.swarm(
            task_transition(task.id, "running", at=now, agent=self.agent_id, attempt=delivery.attempt)
        )
        await self.events.swarm(agent_status(self.agent_id, "busy", at=now, task_id=task.id))
        await ctx.emit_unchecked(
            {
                "type": "started",
                "agent": self.agent_id,
                "attempt": delivery.attempt,
                "resumed_from_version": ctx.restored_version,
            }
        )
        log.info(
            "task %s attempt %d (%s) from checkpoint %s",
            task.id,
            delivery.attempt,
            delivery.source,
            ctx.restored_version,
        )
        started = time.time()
        keeper = asyncio.create_task(self._keep_alive_loop(delivery, ctx), name=f"keepalive-{task.id}")
        run = asyncio.create_task(
            self._traced(handler, task, restored.state if restored else None, ctx, delivery),
            name=f"task-{task.id}",
        )
        stop_wait = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({run, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                # SIGTERM: give the handler until its next checkpoint, bounded by the grace period.
                await asyncio.wait({run}, timeout=self.settings.shutdown_grace_seconds)
                if not run.done():
                    log.warning(
                        "task %s did not reach a checkpoint within the grace period; stopping it", task.id
                    )
                    run.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ShutdownRequested, Exception):
                        await run
                    await self._release(delivery)
                    return
            try:
                value = run.result()
            except _GiveUp:
                raise
            except ShutdownRequested:
                log.info("task %s paused at checkpoint %s; left unacknowledged", task.id, ctx.last_version)
                await self._release(delivery)
                return
            except Cancelled:
                await self._cancelled(delivery, ctx)
                return
            except Parked:
                # Released, not failed: the last child to finish re-enqueues the task.
                await self.events.flush()
                parked = task_transition(task.id, "parked", at=time.time(), agent=self.agent_id)
                await self.events.swarm(parked)
                await self.retrying(lambda: self.broker.ack(delivery), "ack")
                log.info("task %s parked, waiting for its children", task.id)
                return
            except asyncio.CancelledError:
                return
            except Exception as exc:
                await self._failed(delivery, exc)
                return
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                await self._failed(delivery, TypeError(f"handler returned a value that is not JSON: {exc}"))
                return
            result = TaskResult(
                task_id=task.id,
                value=value,
                agent_id=self.agent_id,
                attempt=delivery.attempt,
                started_at=started,
            )
            await self.events.flush()  # every streamed event before the terminal one
            recorded = await self.retrying(lambda: self.broker.record_result(result), "record_result")
            await self.retrying(lambda: self.tree.finished(ctx.node, "done"), "child_finished")
            await self.retrying(lambda: self.broker.ack(delivery), "ack")
            self.tasks_done += 1
            log.info("task %s done (%s)", task.id, "recorded" if recorded else "result already recorded")
            try:
                if restored is not None or ctx.last_version is not None:
                    await ctx.store.clear(task.id)
            except Exception as exc:  # leftovers are harmless: a finished task is never resumed
                log.warning("could not remove checkpoints of task %s: %s", task.id, exc)
        finally:
            await self.events.swarm(agent_status(self.agent_id, "idle", at=time.time()))
            keeper.cancel()
            stop_wait.cancel()
            for t in (keeper, stop_wait):
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _cancelled(self, delivery: Delivery, ctx: _Context) -> None:
        """The handler saw its cancellation: cancel what it spawned, tell its parent, acknowledge."""
        task_id = delivery.task.id
        n = await self.retrying(lambda: cancel_descendants(self.broker, task_id), "cancel children")
        log.info("task %s cancelled at its agent (%d tasks below it cancelled too)", task_id, n)
        await self.retrying(lambda: self.tree.finished(ctx.node, "cancelled"), "child_finished")
        await self.retrying(lambda: self.broker.ack(delivery), "ack")
        try:
            await ctx.store.clear(task_id)
        except Exception as exc:  # leftovers are harmless: a cancelled task is never resumed
            log.warning("could not remove checkpoints of task %s: %s", task_id, exc)

    async def charge_budget(self, task: Task, event: dict[str, Any]) -> None:
        """Add the tokens of a handler's ``model_response`` event to the swarm's budget."""
        usage = usage_of_event(event) if self.budget is not None else None
        if usage is None or self.budget is None:
            return
        model, tokens = usage
        budget = self.budget
        await self.retrying(lambda: budget.charge(task_model(task) or model, tokens), "budget")

    async def _budget_holds(self, delivery: Delivery) -> bool:
        """Wait while ``delivery`` is an LLM task and the budget is spent; True when it was handed back.

        The agent keeps the delivery (its lease renewed, nothing paid) and takes no other task until the
        budget allows it: at the window's reset, or when the limits are raised. Handing it back instead would
        only have it delivered again at once. On SIGTERM it is released like any task not yet started.
        """
        budget = self.budget
        if budget is None or not is_llm_task(delivery.task, self.handler):
            return False
        status = await self.retrying(budget.status, "budget")
        if not status.blocks(task_model(delivery.task)):
            return False
        log.warning(
            "token budget spent (%s tokens today%s); holding LLM task %s until it resets",
            status.spent.get("*", 0),
            f", models {', '.join(status.exhausted_models)}" if status.exhausted_models else "",
            delivery.task.id,
        )
        self.held_for_budget = delivery.task.id
        last_renewal = time.monotonic()
        try:
            while status.blocks(task_model(delivery.task)):
                pause = max(0.01, min(budget.poll_seconds, status.resets_at - budget.clock()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=pause)
                if self.stopping.is_set():
                    await self._release(delivery)
                    return True
                if time.monotonic() - last_renewal >= self.settings.keepalive_seconds:
                    with contextlib.suppress(Exception):
                        await self.broker.keep_alive([delivery])
                    last_renewal = time.monotonic()
                status = await self.retrying(budget.status, "budget")
        finally:
            self.held_for_budget = None
        log.info("token budget available again; starting task %s", delivery.task.id)
        return False

    async def _traced(
        self, handler: Handler, task: Task, state: JSON, ctx: _Context, delivery: Delivery
    ) -> Any:
        """The handler in a ``process_task`` span under the task's trace (no-op when tracing is off)."""
        attrs = {
            "agentswarm.task_id": task.id,
            "agentswarm.agent_id": self.agent_id,
            "agentswarm.attempt": delivery.attempt,
            "agentswarm.resumed_from_version": ctx.restored_version,
        }
        with tracing.span("process_task", attrs, context=tracing.task_context(task.meta)):
            return await handler(task, state, ctx)

    async def _release(self, delivery: Delivery) -> None:
        """Graceful handover on SIGTERM: the delivery goes back without counting toward max_deliveries."""
        await self.events.flush()
        await self.events.swarm(
            task_transition(delivery.task.id, "queued", at=time.time(), reason="released")
        )
        try:
            await self.retrying(lambda: self.broker.release(delivery), "release")
        except _GiveUp as exc:
            log.warning("%s; task %s stays pending", exc, delivery.task.id)

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        task = delivery.task
        error = f"{type(exc).__name__}: {exc}"
        log.warning("task %s attempt %d failed: %s", task.id, delivery.attempt, error)
        log.debug("%s", "".join(traceback.format_exception(exc)))
        await self.events.emit(task.id, {"type": "error", "error": error, "attempt": delivery.attempt})
        dead = await self.retrying(lambda: self.broker.fail(delivery, error), "fail")
        if not dead:
            retry = task_transition(
                task.id, "retrying", at=time.time(), attempt=delivery.attempt, error=error
            )
            await self.events.swarm(retry)
        if dead:
            with contextlib.suppress(Exception):
                await self.store.clear(task.id)


async def run(settings: Settings) -> int:
    """Run one agent until SIGTERM/SIGINT. Returns the exit code (see module docstring)."""
    try:
        resolve_secret_env_files()  # before the handler's import, which may read its keys
    except SecretEnvError as exc:
        print(f"agentswarm agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        handler = load_handler(settings.handler)
    except HandlerLoadError as exc:
        print(f"agentswarm agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for name in unknown_variables():
        log.warning("ignoring unknown environment variable %s (a typo?)", name)
    settings.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    agent: Agent | None = None
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop_requested.set()
        if agent is not None:
            agent.request_stop()
        if signals >= 3:  # impatient operator: leave now, the delivery stays pending anyway
            os._exit(EXIT_OK)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    broker: Broker | None = None
    try:
        backoff = Backoff(initial=0.1, maximum=5.0)
        while broker is None:
            try:
                broker = await open_broker(settings)
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning(
                    "cannot connect to the %s broker yet (%s); retrying in %.1fs", settings.broker, exc, delay
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_requested.wait(), timeout=delay)
                if stop_requested.is_set():
                    return EXIT_OK
        agent = Agent(settings, broker, make_store(settings, broker), handler)
        agent.budget = budget_from_settings(broker, settings)
        if stop_requested.is_set():
            agent.request_stop()
        log.info(
            "agent %s serving (%s broker, handler %s)", settings.agent_id, settings.broker, settings.handler
        )
        await agent.serve()
        return EXIT_OK
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if broker is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broker.close(), timeout=5)


def probe(max_age_seconds: float, settings: Settings | None = None, ready: bool = False) -> int:
    """Exit code for the exec liveness probe, or with ``ready`` the readiness probe (see module docstring)."""
    if settings is None:
        checkpoint_dir = Path(os.environ.get("AGENTSWARM_CHECKPOINT_DIR", DEFAULT_CHECKPOINT_DIR))
    else:
        checkpoint_dir = settings.checkpoint_dir
    path = checkpoint_dir / HEARTBEAT_FILE
    if ready and not (checkpoint_dir / READY_FILE).exists():
        print(
            f"not ready: no claim has reached the broker ({checkpoint_dir / READY_FILE} absent)",
            file=sys.stderr,
        )
        return EXIT_UNHEALTHY
    try:
        age = time.time() - path.stat().st_mtime
    except OSError as exc:
        print(f"unhealthy: no heartbeat file {path} ({exc.strerror})", file=sys.stderr)
        return EXIT_UNHEALTHY
    if age > max_age_seconds:
        print(f"unhealthy: heartbeat {path} is {age:.1f}s old (limit {max_age_seconds}s)", file=sys.stderr)
        return EXIT_UNHEALTHY
    return EXIT_OK


def configure_logging() -> None:
    level = os.environ.get("AGENTSWARM_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m agentswarm.agent [probe --max-age-seconds N]``."""
    parser = argparse.ArgumentParser(prog="python -m agentswarm.agent")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("probe", help="exit 0 while the heartbeat file is fresh")
    p.add_argument("--max-age-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.command == "probe":
        return probe(args.max_age_seconds)
    configure_logging()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"agentswarm agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
