"""The NATS JetStream implementation of :class:`~agentswarm.swarm.store.SwarmStore`, beside the queue.

KV buckets (``ns`` = namespace):

* ``ns_swarm`` (entries expire ``ttl_seconds`` after their last write): ``node.<id>`` (JSON :class:`Node`),
  ``wait.<parent>`` (the waiter: outstanding children, state, generation), ``spawned.<first child id>``
  (a spawn call enqueued all its children: a replay skips it) and ``dead.<id>`` (the error of a
  dead-lettered child; results live in the queue's ``ns_results`` bucket).
* ``ns_shtree`` (same expiry): ``<root>.<key>``, a tree's shared context. ``ns_shared``: swarm-wide, no
  expiry. The KV revision is the entry's version, so ``if_version`` is JetStream's expected-last-sequence.

Parking without a transaction: the waiter record changes only by revision compare-and-set. The parent
writes it (``state: parked``) and then re-checks its outstanding children, so a child that finished in
between is seen either by the parent's re-check or by the child's own update. The update that empties the
set moves the record to ``waking`` and publishes the parent to the task stream (the subject of its priority
class) with the message id ``wake-<parent>-<generation>`` (JetStream drops a duplicate), then to ``woken``; a
repeated ``child_finished`` that finds ``waking`` publishes again, so a crash in between loses no wake-up.
A parent that gathers with a timeout is also listed in ``timers`` (one entry, ``{parent: wake-up time}``,
compare-and-set); every agent reads it once a second and wakes the parents that are due the same way.
The parent's delivery counter (``ns_attempts``) is reset when it parks: parking never counts toward
dead-lettering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from agentswarm.broker.base import DEFAULT_PRIORITY, NewTask, TaskResult, validate_task_id
from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
from agentswarm.swarm.store import (
    ChildOutcome,
    ChildStatus,
    Grant,
    Node,
    NotAChild,
    SwarmStore,
    Versioned,
    limit_key,
)

_CAS_ERRORS = (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError)


class NatsSwarmStore(SwarmStore):
    """Tree bookkeeping, parking and shared context in JetStream KV, beside a NATS queue broker."""

    broker: NatsJetStreamBroker

    def __init__(self, broker: NatsJetStreamBroker, **kw: Any) -> None:
        super().__init__(broker, **kw)
        self._kv: dict[str, KeyValue] = {}

    async def connect(self) -> None:
        js = self.broker.js
        for name, ttl in (("swarm", self.ttl_seconds), ("shtree", self.ttl_seconds), ("shared", None)):
            bucket = f"{self.broker.ns}_{name}"
            try:
                self._kv[name] = await js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                config = KeyValueConfig(
                    bucket=bucket,
                    history=1,
                    ttl=float(ttl) if ttl else None,
                    storage=StorageType.FILE,
                    direct=True,
                )
                try:
                    self._kv[name] = await js.create_key_value(config)
                except nats.js.errors.BadRequestError:  # created concurrently by another agent
                    self._kv[name] = await js.key_value(bucket)

    async def _get(self, bucket: str, key: str) -> tuple[bytes | None, int]:
        """The value and revision of ``key`` (``(None, 0)`` when absent or deleted)."""
        try:
            entry = await self._kv[bucket].get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None, 0
        if entry.value is None or entry.operation in ("DEL", "PURGE"):
            return None, 0
        return entry.value, int(entry.revision or 0)

    async def _cas(self, bucket: str, key: str, value: bytes, revision: int) -> bool:
        """Write ``value`` if ``key`` is still at ``revision`` (0: absent). False when someone was first."""
        kv = self._kv[bucket]
        try:
            if revision == 0:
                await kv.create(key, value)
            else:
                await kv.update(key, value, last=revision)
        except _CAS_ERRORS:
            return False
        return True

    # -- tree ---------------------------------------------------------------------------------------------
    async def node(self, task_id: str) -> Node:
        raw, _ = await self._get("swarm", "node." + validate_task_id(task_id))
        if raw is None:
            return Node.root_of(task_id)
        return Node(**json.loads(raw))

    async def mark_spawner(self, node: Node) -> None:
        while True:  # creating its node if it is a root
            raw, rev = await self._get("swarm", "node." + validate_task_id(node.task_id))
            current = Node(**json.loads(raw)) if raw is not None else node
            if current.spawner:
                return
            marked = json.dumps({**asdict(current), "spawner": True}).encode()
            if await self._cas("swarm", "node." + node.task_id, marked, rev):
                return

    async def spawn(self, parent: Node, children: Sequence[NewTask], handler: str | None) -> int | None:
        if not children:
            return 0
        if (await self._get("swarm", "spawned." + validate_task_id(str(children[0].id))))[0] is not None:
            return None  # a replayed spawn: every child was recorded, enqueued and announced already
        await self.mark_spawner(parent)

        async def record(spec: NewTask) -> bool:
            cid = validate_task_id(str(spec.id))
            node = Node(cid, parent.root, parent.task_id, parent.depth + 1, handler)
            return await self._cas("swarm", "node." + cid, json.dumps(asdict(node)).encode(), 0)

        added = 0
        for start in range(0, len(children), 256):
            added += sum(await asyncio.gather(*(record(c) for c in children[start : start + 256])))
        await self.broker.enqueue_many(children)
        return added

    async def spawn_done(self, first_child: str) -> None:
        await self._kv["swarm"].put("spawned." + first_child, b"1")

    # -- parking ------------------------------------------------------------------------------------------
    async def _outcome(self, task_id: str) -> ChildOutcome:
        try:
            entry = await self.broker.kv("results").get(task_id)
            res = TaskResult.from_json(json.loads(entry.value or b"{}"))
            if res.cancelled:
                return ChildOutcome(task_id, "cancelled")
            return ChildOutcome(task_id, "done", res.value, agent_id=res.agent_id)
        except nats.js.errors.KeyNotFoundError:
            pass
        raw, _ = await self._get("swarm", "dead." + task_id)
        if raw is not None:
            return ChildOutcome(task_id, "dead", error=raw.decode())
        return ChildOutcome(task_id, None)

    async def outcomes(self, task_ids: Sequence[str]) -> list[ChildOutcome]:
        out: list[ChildOutcome] = []
        for start in range(0, len(task_ids), 256):
            out += await asyncio.gather(*(self._outcome(t) for t in task_ids[start : start + 256]))
        return out

    async def park(self, task_id: str, waiting_for: Sequence[str], wake_at: float | None = None) -> bool:
        key = "wait." + task_id

        async def check_child(cid: str) -> None:
            raw, _ = await self._get("swarm", "node." + validate_task_id(cid))
            if raw is None or json.loads(raw).get("parent") != task_id:
                raise NotAChild(f"task {cid!r} is not a child of task {task_id!r}")

        for start in range(0, len(waiting_for), 256):
            await asyncio.gather(*(check_child(c) for c in waiting_for[start : start + 256]))
        # A parked task's deliveries start counting again from here, and a fresh lease of its current
        # delivery must not make the wake-up delivery wait (the agent acknowledges it right after this).
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await self.broker.kv("attempts").delete(task_id)
        while True:  # 1. register the waiter, every child outstanding
            raw, rev = await self._get("swarm", key)
            gen = int(json.loads(raw).get("gen", 0)) + 1 if raw is not None else 1
            record = {"outstanding": list(waiting_for), "state": "parked", "gen": gen}
            if await self._cas("swarm", key, json.dumps(record).encode(), rev):
                break
        await self._set_timer(task_id, wake_at)
        await self.broker.kv("leases").delete(task_id)
        # 2. one pass over the children: those finished by now may have missed the waiter. Later ones see it
        # and remove themselves, so this set is applied (re-read on conflict) but never recomputed.
        finished = {o.id for o in await self.outcomes(waiting_for) if o.status is not None}
        while True:
            raw, rev = await self._get("swarm", key)
            if raw is None:
                return True  # expired meanwhile: cannot happen within the TTL; stay parked, safe side
            record = json.loads(raw)
            if record["state"] != "parked":
                return True  # a child already woke us: the wake-up delivery resumes the task
            still = [c for c in record["outstanding"] if c not in finished]
            if len(still) == len(record["outstanding"]):
                return True
            if still:
                record["outstanding"] = still
            else:
                record = {**record, "outstanding": [], "state": "resolved"}
            if await self._cas("swarm", key, json.dumps(record).encode(), rev):
                if not still:
                    await self._set_timer(task_id, None)
                return bool(still)

    async def child_finished(self, node: Node, status: ChildStatus, error: str | None = None) -> bool:
        if node.parent is None:
            return False
        if status == "dead":
            await self._kv["swarm"].put("dead." + node.task_id, (error or "").encode())
        key = "wait." + node.parent
        while True:
            raw, rev = await self._get("swarm", key)
            if raw is None:
                return False
            record = json.loads(raw)
            if record["state"] == "waking":
                await self._wake(node.parent, record, rev)
                return False
            if record["state"] != "parked" or node.task_id not in record["outstanding"]:
                return False
            record["outstanding"] = [c for c in record["outstanding"] if c != node.task_id]
            if record["outstanding"]:
                if await self._cas("swarm", key, json.dumps(record).encode(), rev):
                    return False
                continue
            record["state"] = "waking"
            if await self._cas("swarm", key, json.dumps(record).encode(), rev):
                _, rev = await self._get("swarm", key)
                await self._wake(node.parent, record, rev)
                return True

    # Wake-up times of parents that gather with a timeout: one KV entry ``timers`` = {parent: epoch seconds},
    # changed by compare-and-set, read once a second by every agent's wake_due.
    async def _set_timer(self, task_id: str, wake_at: float | None) -> None:
        while True:
            raw, rev = await self._get("swarm", "timers")
            timers = json.loads(raw) if raw is not None else {}
            if wake_at is None and task_id not in timers:
                return
            if wake_at is None:
                del timers[task_id]
            else:
                timers[task_id] = wake_at
            if await self._cas("swarm", "timers", json.dumps(timers).encode(), rev):
                return

    async def deadline(self, task_id: str, key: str, seconds: float) -> float:
        name = f"deadline.{task_id}.{key}"
        await self._cas("swarm", name, f"{time.time() + seconds:.3f}".encode(), 0)
        raw, _ = await self._get("swarm", name)
        return float(raw or b"0")

    async def wake_due(self, now: float) -> int:
        raw, _ = await self._get("swarm", "timers")
        if raw is None:
            return 0
        woken = 0
        for parent_id, at in json.loads(raw).items():
            if float(at) <= now:
                woken += await self.wake(parent_id)
                await self._set_timer(parent_id, None)
        return woken

    async def wake(self, task_id: str) -> bool:
        key = "wait." + task_id
        while True:
            raw, rev = await self._get("swarm", key)
            record = json.loads(raw) if raw is not None else None
            if record is None or record["state"] != "parked":
                return False
            record["state"] = "waking"
            if await self._cas("swarm", key, json.dumps(record).encode(), rev):
                _, rev = await self._get("swarm", key)
                await self._wake(task_id, record, rev)
                return True

    async def _wake(self, parent_id: str, record: dict[str, Any], rev: int) -> None:
        """Publish the parked parent to the task stream (deduplicated per generation), then mark it woken."""
        task = await self.broker.get_task(parent_id)
        if task is not None:
            body = {"id": parent_id, "payload": task.payload, "enqueued_at": task.enqueued_at}
            if task.meta:  # the woken parent stays in its trace
                body["meta"] = task.meta
            if task.priority != DEFAULT_PRIORITY:  # and in its priority class
                body["priority"] = task.priority
            await self.broker.js.publish(
                self.broker.subjects[task.priority],
                json.dumps(body).encode(),
                headers={"Nats-Msg-Id": f"wake-{parent_id}-{record.get('gen', 0)}"},
            )
        await self._cas("swarm", "wait." + parent_id, json.dumps({**record, "state": "woken"}).encode(), rev)
        await self._set_timer(parent_id, None)

    # -- rate limits --------------------------------------------------------------------------------------
    async def acquire(self, key: str, cost: float, per_second: float, burst: float) -> Grant:
        # GCRA with compare-and-set on the schedule. JetStream has no server clock to read, so "now" is this
        # agent's clock: agents whose clocks disagree by d seconds can exceed the rate by d x per_second
        # units once (docs/handlers.md); NTP keeps d in milliseconds.
        name = "limit." + limit_key(key)
        interval = cost / per_second
        tolerance = max(0.0, burst - cost) / per_second
        while True:
            raw, rev = await self._get("swarm", name)
            tat = float(raw) if raw is not None else 0.0
            now = time.time()
            at = max(now, tat - tolerance)
            if await self._cas("swarm", name, f"{max(tat, now) + interval:.6f}".encode(), rev):
                return Grant(at=at, wait=max(0.0, at - now))
            # Lost the race: back off a little (jittered) so that many waiters do not retry in lockstep.
            await asyncio.sleep(random.uniform(0.0, min(0.02, interval)))

    # -- shared context -----------------------------------------------------------------------------------
    def _where(self, scope: str | None, key: str) -> tuple[str, str]:
        return ("shared", key) if scope is None else ("shtree", f"{scope}.{key}")

    async def shared_get(self, scope: str | None, key: str) -> Versioned | None:
        bucket, k = self._where(scope, key)
        raw, rev = await self._get(bucket, k)
        return None if raw is None else Versioned(json.loads(raw), rev)

    async def shared_put(self, scope: str | None, key: str, raw: bytes, if_version: int | None) -> int | None:
        bucket, k = self._where(scope, key)
        kv = self._kv[bucket]
        if if_version is None:
            return int(await kv.put(k, raw))
        try:
            if if_version == 0:
                return int(await kv.create(k, raw))
            return int(await kv.update(k, raw, last=if_version))
        except _CAS_ERRORS:
            return None

    async def shared_delete(self, scope: str | None, key: str, if_version: int | None) -> bool | None:
        bucket, k = self._where(scope, key)
        _, rev = await self._get(bucket, k)
        if if_version is not None and rev != if_version:
            return None
        if rev == 0:
            return False
        try:
            await self._kv[bucket].delete(k, last=rev)
        except _CAS_ERRORS:
            return None if if_version is not None else await self.shared_delete(scope, key, None)
        return True

    async def shared_items(self, scope: str | None) -> dict[str, Versioned]:
        bucket = "shared" if scope is None else "shtree"
        prefix = "" if scope is None else scope + "."
        name = f"{self.broker.ns}_{bucket}"
        subjects = f"$KV.{name}."
        # The stream's own index of the scope's subjects, then one read per key. Not a KV watch: nats-py's
        # watch can signal "no more values" before a large first value has been handed over.
        info = await self.broker.js.stream_info(f"KV_{name}", subjects_filter=subjects + prefix + ">")
        out: dict[str, Versioned] = {}
        for subject in sorted(info.state.subjects or {}):
            key = subject[len(subjects) :]
            raw, rev = await self._get(bucket, key)
            if raw is not None:  # deleted keys keep their subject with a delete marker
                out[key[len(prefix) :]] = Versioned(json.loads(raw), rev)
        return out
