"""One agent worker process: the claim loop and the life of each delivery it claims.

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

import asyncio
import contextlib
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agentswarm import tracing
from agentswarm.backoff import Backoff
from agentswarm.broker import Broker, Delivery, TaskResult
from agentswarm.broker.base import JSON, Task
from agentswarm.broker.feed import agent_status, task_transition
from agentswarm.budget import Budget
from agentswarm.budget_hold import charge_budget, hold_for_budget
from agentswarm.checkpoint import CheckpointStore
from agentswarm.checkpoint_sweep import sweep_checkpoints
from agentswarm.emitter import EventWriter
from agentswarm.handlers import Cancelled, Handler, HandlerLoadError, ShutdownRequested
from agentswarm.health import write_heartbeat, write_ready
from agentswarm.settings import Settings
from agentswarm.swarm.cancel import cancel_descendants
from agentswarm.swarm.runtime import Parked, TreeRuntime
from agentswarm.swarm.store import ChildStatus
from agentswarm.task_context import _Context

log = logging.getLogger("agentswarm.agent")
T = TypeVar("T")


class _GiveUp(Exception):
    """The broker stayed unreachable past the shutdown grace period."""


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
        write_heartbeat(self.settings.heartbeat_file, self.agent_id)

    def set_ready(self, ready: bool) -> None:
        """Write or remove ``.ready`` (the readiness probe's file) when the state changes."""
        if ready == self.ready:
            return
        self.ready = ready
        write_ready(self.settings.checkpoint_dir, self.agent_id, ready)

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
                        await self.release(delivery)
                        continue
                    if await hold_for_budget(self, delivery):
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
        """Forget local checkpoints of tasks that finished elsewhere (see agentswarm.checkpoint_sweep)."""
        await sweep_checkpoints(self.store, self.broker)

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
        node, existing = await self.retrying(lambda: self.tree.store.node_and_result(task.id), "node")
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
                    await self.release(delivery)
                    return
            try:
                value = run.result()
            except _GiveUp:
                raise
            except ShutdownRequested:
                log.info("task %s paused at checkpoint %s; left unacknowledged", task.id, ctx.last_version)
                await self.release(delivery)
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
            if ctx.node.parent is None:  # nobody waits for it: result and acknowledgement in one step
                recorded = await self.retrying(lambda: self.broker.finish(delivery, result), "finish")
            else:  # the parent learns between the two, so a death in between is redone, not lost
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
        await charge_budget(self, task, event)

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

    async def release(self, delivery: Delivery) -> None:
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
