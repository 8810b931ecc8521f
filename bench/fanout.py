"""Benchmark 6: fan-out / fan-in, one root task spawning 1,000 children across 4 agents (Redis and NATS).

The root (``bench.fanout_handlers:root``) spawns ``children`` no-op children and gathers them; it parks while
they run (it holds no agent), and the last child to finish re-enqueues it. Per run:

* tasks/s = (children + 1) / (root submitted -> root result recorded);
* wake-up latency = the root's last delivery starting (``TaskResult.started_at``) - the last child's result
  recorded (max ``recorded_at`` of the children): re-enqueue, claim, tree lookup and checkpoint load;
* gather latency = the root's ``gather`` returning - the last child's result: wake-up plus the replayed
  ``spawn`` (1,000 idempotent enqueues that create nothing) and the outcome reads.

Each backend gets its own private server and 4 fresh agents; one warm-up fan-out, then ``repeats`` runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import NatsServer, RedisServer, Summary, git_state, stop_all, uptime_line
from bench.systems import AgentswarmSystem

log = logging.getLogger("bench.fanout")


@dataclass
class FanoutConfig:
    backends: tuple[str, ...] = ("redis", "nats")
    agents: int = 4
    children: int = 1000
    repeats: int = 3
    run_timeout: float = 180.0


async def _one_run(system: AgentswarmSystem, children: int, timeout: float) -> dict[str, Any]:
    root = f"fan-{uuid.uuid4().hex[:8]}"
    broker = system.broker
    t0 = time.time()
    await broker.enqueue({"children": children}, root)
    deadline = time.monotonic() + timeout
    while (result := await broker.get_result(root)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{system.name}: fan-out of {children} did not finish in {timeout}s")
        await asyncio.sleep(0.02)
    kids = [f"{root}-0-{i}" for i in range(children)]
    recorded = []
    for start in range(0, children, 200):
        got = await asyncio.gather(*(broker.get_result(k) for k in kids[start : start + 200]))
        recorded += [r.recorded_at for r in got if r is not None]
    if len(recorded) != children:
        raise RuntimeError(f"{system.name}: {children - len(recorded)} children have no result")
    events = await broker.read_events(root, None, limit=100_000)
    last_child = max(recorded)
    value = result.value if isinstance(result.value, dict) else {}
    return {
        "tasks_per_s": (children + 1) / (result.recorded_at - t0),
        "wake_ms": ((result.started_at or 0.0) - last_child) * 1000.0,
        "gather_ms": (float(value.get("gathered_at", 0.0)) - last_child) * 1000.0,
        "parks": sum(1 for e in events if e.data.get("type") == "parked"),
        "children_ok": int(value.get("done", 0)),
    }


async def _backend(backend: str, cfg: FanoutConfig, workdir: Path) -> dict[str, Any]:
    server = (RedisServer if backend == "redis" else NatsServer)(workdir / backend).start()
    system = AgentswarmSystem(server.url, server.port, workdir / f"agentswarm-{backend}", backend)
    system.new_namespace()
    agents = [system.worker(i, handler="bench.fanout_handlers:root").start() for i in range(cfg.agents)]
    runs: list[dict[str, Any]] = []
    try:
        await system.open()
        try:
            await _one_run(system, 20, 60.0)  # warm-up: every agent connected and imported
            for _ in range(cfg.repeats):
                runs.append(await _one_run(system, cfg.children, cfg.run_timeout))
                log.info("%s: %s", backend, runs[-1])
        finally:
            await system.close()
    finally:
        stop_all(agents)
        server.stop()
    return {
        "runs": runs,
        "tasks_per_s": Summary.of([r["tasks_per_s"] for r in runs]).as_dict(),
        "wake_ms": Summary.of([r["wake_ms"] for r in runs]).as_dict(),
        "gather_ms": Summary.of([r["gather_ms"] for r in runs]).as_dict(),
    }


async def run_fanout(cfg: FanoutConfig, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "config": dict(cfg.__dict__),
        "git": git_state(),
        "uptime_start": uptime_line(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "backends": {},
        "errors": [],
    }
    for backend in cfg.backends:
        try:
            out["backends"][backend] = await _backend(backend, cfg, workdir)
        except Exception as exc:
            log.exception("fan-out on %s failed", backend)
            out["errors"].append(f"{backend}: {type(exc).__name__}: {exc}")
    out["uptime_end"] = uptime_line()
    return out
