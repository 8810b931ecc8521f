"""Benchmarks 1 and 2: end-to-end throughput at 1/2/4/8 agents, and dispatch latency idle / under load.

For each system and agent count: fresh state (new namespace, or FLUSHALL with no worker running), start the
workers, warm up (a few sleeping tasks so every worker is connected and has imported everything), then
``repeats`` timed batches: the clock runs from the first submit to the moment the last result is recorded.
At ``latency_agents`` agents the same workers then serve the latency runs:

* idle: one task at a time, the next submitted 10 ms after the previous finished;
* under load: tasks submitted one by one at a fixed open-loop rate (the same rate for every system).

Latency = handler start (the no-op's return value, ``time.time()`` in the worker) - time just before the
submit call (same clock, same machine).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import NatsServer, RedisServer, Summary, percentile, stop_all
from bench.systems import AgentswarmSystem, System, make_system

log = logging.getLogger("bench.queues")


@dataclass
class QueueConfig:
    systems: tuple[str, ...]
    agent_counts: tuple[int, ...] = (1, 2, 4, 8)
    tasks: int = 2000
    repeats: int = 3
    run_timeout: float = 120.0
    latency_agents: int = 4
    idle_samples: int = 200
    idle_budget_s: float = 20.0
    load_rate: float = 150.0
    load_seconds: float = 4.0


@dataclass
class QueueResults:
    throughput: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _ids(n: int, tag: str) -> list[str]:
    prefix = f"{tag}-{uuid.uuid4().hex[:8]}"
    return [f"{prefix}-{i}" for i in range(n)]


async def _warm_up(system: System, agents: int, timeout: float) -> None:
    ids = _ids(agents * 3, "warm")
    await system.submit_many([(i, {"sleep": 0.05}) for i in ids])
    done = await system.wait_done(ids, timeout, interval=0.05)
    if done < len(ids):
        raise RuntimeError(f"{system.name}: warm-up finished {done}/{len(ids)} tasks in {timeout}s")


async def _throughput_run(system: System, n: int, timeout: float) -> tuple[float, int]:
    ids = _ids(n, "tp")
    if isinstance(system, AgentswarmSystem):
        await system.rebase()
    t0 = time.perf_counter()
    await system.submit_many([(i, {}) for i in ids])
    done = await system.wait_done(ids, timeout, interval=0.025)
    elapsed = time.perf_counter() - t0
    return elapsed, done


async def _latency_idle(system: System, samples: int, budget: float) -> list[float]:
    out: list[float] = []
    deadline = time.monotonic() + budget
    for _ in range(samples):
        if time.monotonic() > deadline:
            break
        (task_id,) = _ids(1, "lat")
        t_submit = time.time()
        await system.submit_one(task_id, {})
        if await system.wait_done([task_id], timeout=10, interval=0.002) < 1:
            raise RuntimeError(f"{system.name}: idle latency task did not finish in 10s")
        starts = await system.handler_starts([task_id])
        if task_id in starts:
            out.append((starts[task_id] - t_submit) * 1000.0)
        await asyncio.sleep(0.01)
    return out


async def _latency_load(
    system: System, rate: float, seconds: float, timeout: float
) -> tuple[list[float], int]:
    n = int(rate * seconds)
    ids = _ids(n, "load")
    submitted: dict[str, float] = {}
    if isinstance(system, AgentswarmSystem):
        await system.rebase()

    async def one(task_id: str) -> None:
        submitted[task_id] = time.time()
        await system.submit_one(task_id, {})

    t0 = time.monotonic()
    pending = []
    for k, task_id in enumerate(ids):
        delay = t0 + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(one(task_id)))
    await asyncio.gather(*pending)
    done = await system.wait_done(ids, timeout, interval=0.05)
    starts = await system.handler_starts(ids)
    lat = [(starts[i] - submitted[i]) * 1000.0 for i in ids if i in starts]
    return lat, done


def _lat_summary(values: list[float]) -> dict[str, Any]:
    return {
        "samples": len(values),
        "p50_ms": percentile(values, 50) if values else None,
        "p99_ms": percentile(values, 99) if values else None,
        "max_ms": max(values) if values else None,
    }


async def _session(system: System, agents: int, cfg: QueueConfig, res: QueueResults) -> None:
    children = [system.worker(i).start() for i in range(agents)]
    try:
        await system.open()
        try:
            await _warm_up(system, agents, timeout=90)
            dead = [c.name for c in children if not c.alive]
            if dead:
                raise RuntimeError(f"{system.name}: workers exited: {dead}")
            rates: list[float] = []
            for r in range(cfg.repeats):
                elapsed, done = await _throughput_run(system, cfg.tasks, cfg.run_timeout)
                if done < cfg.tasks:
                    res.errors.append(
                        f"{system.name} x{agents} run {r}: only {done}/{cfg.tasks} results "
                        f"within {cfg.run_timeout}s"
                    )
                    break
                rates.append(cfg.tasks / elapsed)
                log.info("%s x%d run %d: %.0f tasks/s", system.name, agents, r, rates[-1])
            res.throughput.setdefault(system.name, {})[agents] = Summary.of(rates).as_dict()
            if agents == cfg.latency_agents:
                idle = await _latency_idle(system, cfg.idle_samples, cfg.idle_budget_s)
                load, done = await _latency_load(system, cfg.load_rate, cfg.load_seconds, cfg.run_timeout)
                res.latency[system.name] = {
                    "agents": agents,
                    "idle": _lat_summary(idle),
                    "load": {
                        **_lat_summary(load),
                        "rate": cfg.load_rate,
                        "done": done,
                        "submitted": int(cfg.load_rate * cfg.load_seconds),
                    },
                }
                log.info("%s latency: %s", system.name, res.latency[system.name])
        finally:
            await system.close()
    finally:
        stop_all(children)


async def run_queues(cfg: QueueConfig, workdir: Path) -> QueueResults:
    res = QueueResults()
    redis = RedisServer(workdir / "redis").start()
    nats = NatsServer(workdir / "nats").start() if "agentswarm-nats" in cfg.systems else None
    try:
        # Interleave systems per agent count, so slow drift in machine load hits every system alike.
        for agents in cfg.agent_counts:
            for name in cfg.systems:
                system = make_system(name, redis, nats, workdir / name)
                if isinstance(system, AgentswarmSystem):
                    system.new_namespace()
                else:
                    redis.flushall()
                try:
                    await _session(system, agents, cfg, res)
                except Exception as exc:  # one system failing must not lose the others' numbers
                    log.exception("%s x%d failed", name, agents)
                    res.errors.append(f"{name} x{agents}: {type(exc).__name__}: {exc}")
    finally:
        redis.stop()
        if nats is not None:
            nats.stop()
    return res
