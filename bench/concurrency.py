"""Concurrency per worker: I/O-bound tasks (each awaits 200 ms) at 4 workers with concurrency 1, 10 and 50,
and no-op tasks at concurrency 10, against taskiq and Celery configured for the same concurrency.

``python -m bench.concurrency [--quick]`` prints a Markdown table (paste it into RESULTS.md) and writes
``bench/concurrency.json``. Same method as :mod:`bench.queues`: fresh state per cell, warm-up, then timed
batches from the first submit to the last recorded result; tasks/s median (min-max) over the batches. The
I/O cell's ceiling is ``workers x concurrency / 0.2 s``; "efficiency" is the measured rate over it.

Peers: taskiq ``--max-async-tasks N`` (one process, asyncio), Celery ``-P threads -c N`` (``-P solo`` at 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import NatsServer, RedisServer, Summary, stop_all
from bench.systems import LABELS, AgentswarmSystem, System, make_system

log = logging.getLogger("bench.concurrency")

WORKERS = 4
SLEEP = 0.2


def _ids(n: int, tag: str) -> list[str]:
    prefix = f"{tag}-{uuid.uuid4().hex[:8]}"
    return [f"{prefix}-{i}" for i in range(n)]


async def _cell(
    system: System, concurrency: int, payload: dict[str, Any], n: int, repeats: int
) -> list[float]:
    children = [system.worker(i, concurrency=concurrency).start() for i in range(WORKERS)]
    try:
        await system.open()
        try:
            warm = _ids(WORKERS * concurrency, "warm")
            await system.submit_many([(i, {"sleep": 0.05}) for i in warm])
            if await system.wait_done(warm, 120, interval=0.05) < len(warm):
                raise RuntimeError(f"{system.name}: warm-up did not finish")
            rates = []
            for _ in range(repeats):
                ids = _ids(n, "c")
                if isinstance(system, AgentswarmSystem):
                    await system.rebase()
                t0 = time.perf_counter()
                await system.submit_many([(i, payload) for i in ids])
                done = await system.wait_done(ids, 300, interval=0.025)
                elapsed = time.perf_counter() - t0
                if done < n:
                    raise RuntimeError(f"{system.name}: {done}/{n} results in 300 s")
                rates.append(n / elapsed)
                log.info("%s c=%d %s: %.0f tasks/s", system.name, concurrency, payload, rates[-1])
            return rates
        finally:
            await system.close()
    finally:
        stop_all(children)


async def run(systems: tuple[str, ...], quick: bool, workdir: Path) -> dict[str, Any]:
    repeats = 1 if quick else 2
    cells: list[tuple[str, int, dict[str, Any], int]] = [
        *(("io", c, {"sleep": SLEEP}, max(200, int(WORKERS * c / SLEEP * 4))) for c in (1, 10, 50)),
        ("noop", 10, {}, 1500),
    ]
    out: dict[str, Any] = {"workers": WORKERS, "sleep": SLEEP, "cells": {}, "errors": []}
    redis = RedisServer(workdir / "redis").start()
    nats = NatsServer(workdir / "nats").start() if "agentswarm-nats" in systems else None
    try:
        for kind, c, payload, n in cells:
            for name in systems:  # interleaved, so drift in machine load hits every system alike
                system = make_system(name, redis, nats, workdir / name)
                if isinstance(system, AgentswarmSystem):
                    system.new_namespace()
                else:
                    redis.flushall()
                key = f"{kind}-c{c}"
                try:
                    rates = await _cell(system, c, payload, n, repeats)
                    out["cells"].setdefault(key, {})[name] = {"tasks": n, **Summary.of(rates).as_dict()}
                except Exception as exc:
                    log.exception("%s %s failed", name, key)
                    out["errors"].append(f"{name} {key}: {type(exc).__name__}: {exc}")
    finally:
        redis.stop()
        if nats is not None:
            nats.stop()
    return out


def table(res: dict[str, Any], systems: tuple[str, ...]) -> str:
    cols = ["io-c1", "io-c10", "io-c50", "noop-c10"]
    head = [
        "I/O 200 ms, c=1",
        "I/O 200 ms, c=10",
        "I/O 200 ms, c=50",
        "no-op, c=10",
    ]
    lines = ["| system | " + " | ".join(head) + " |", "|---|" + "---:|" * len(cols)]
    for name in systems:
        row = []
        for col in cols:
            cell = res["cells"].get(col, {}).get(name)
            if cell is None:
                row.append("-")
            else:
                row.append(f"{cell['median']:,.0f} ({cell['min']:,.0f}-{cell['max']:,.0f})")
        lines.append(f"| {LABELS[name]} | " + " | ".join(row) + " |")
    ceiling = [f"{WORKERS * c / SLEEP:,.0f}" for c in (1, 10, 50)] + ["-"]
    lines.append("| ceiling (workers x c / 0.2 s) | " + " | ".join(ceiling) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrency")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--systems", default="agentswarm-redis,agentswarm-nats,taskiq,celery")
    parser.add_argument("--workdir", default="/tmp/bench-concurrency")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    systems = tuple(args.systems.split(","))
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    res = asyncio.run(run(systems, args.quick, Path(args.workdir)))
    res["started"] = started
    Path(__file__).with_name("concurrency.json").write_text(json.dumps(res, indent=2))
    print(table(res, systems))
    for err in res["errors"]:
        print("error:", err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
