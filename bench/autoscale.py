"""A bursty day in compressed time: the local autoscaler against a fixed pool of MAX agents.

Both runs replay the same day through ``agentswarm local`` (in-process :class:`LocalSwarm`, embedded broker,
real agent processes running the steps handler): ``--bursts`` bursts of ``--tasks`` tasks, ``--idle`` seconds
of nothing between them. Measured per run:

* **agent-seconds**: the integral of running agent processes over the day (sampled every 0.1 s), the cost;
* **queue wait**: handler start of the recorded result minus enqueue time, p50 and p95 over all tasks;
* for the autoscaler, per burst: seconds from the burst's enqueue to MAX agents running, and from its last
  result to zero agents.

Goal: autoscaled agent-seconds at most 30 % of the fixed pool's, with p95 queue wait under 2x.

    python -m bench.autoscale                       # 8 bursts of 300 tasks, 40 s idle, 0..8 agents
    python -m bench.autoscale --bursts 2 --tasks 50 --idle 15     # a quick look

Prints a Markdown section (paste it into RESULTS.md) and writes ``bench/autoscale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentswarm.broker import Broker, NewTask, open_broker
from agentswarm.local import LocalOptions, LocalSwarm
from agentswarm.settings import load_settings

from bench.common import percentile, uptime_line

HERE = Path(__file__).resolve().parent


@dataclass
class Run:
    mode: str
    agent_seconds: float = 0.0
    wall_seconds: float = 0.0
    waits: list[float] = field(default_factory=list)
    to_max: list[float] = field(default_factory=list)
    to_zero: list[float] = field(default_factory=list)
    peak_agents: int = 0
    scale_ins: int = 0
    redone_steps: int = 0

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("waits")
        data["tasks"] = len(self.waits)
        data["wait_p50"] = percentile(self.waits, 50)
        data["wait_p95"] = percentile(self.waits, 95)
        return data


async def _sample(swarm: LocalSwarm, run: Run, stop: asyncio.Event, trace: list[tuple[float, int]]) -> None:
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.1)
        now = time.monotonic()
        running = sum(1 for a in swarm.agents if a.running)
        run.agent_seconds += running * (now - last)
        run.peak_agents = max(run.peak_agents, running)
        trace.append((now, running))
        last = now


async def _wait(check: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def replay(args: argparse.Namespace, mode: str, state: Path) -> Run:
    autoscaled = mode == "autoscaled"
    opts = LocalOptions(
        broker=args.broker,
        state_dir=state,
        port=0,
        agents=args.max,
        autoscale=f"0..{args.max}" if autoscaled else None,
        autoscale_interval=args.interval,
        autoscale_cooldown=args.cooldown,
        autoscale_stabilization=args.stabilization,
        out=io.StringIO(),
    )
    swarm = LocalSwarm(opts, load_settings(handler="agentswarm.handlers.steps:handle"))
    await swarm.start()
    supervising = asyncio.create_task(swarm.supervise())
    assert swarm.broker is not None
    broker: Broker = await open_broker(swarm.broker.settings(swarm.settings))
    run = Run(mode)
    trace: list[tuple[float, int]] = []
    stop = asyncio.Event()
    log_path = state / "steps.log"
    try:
        if not autoscaled:  # the fixed pool is up before the day starts, like a StatefulSet of MAX
            await _wait(lambda: _true(all(a.running for a in swarm.agents)), 30)
        sampler = asyncio.create_task(_sample(swarm, run, stop, trace))
        started = time.monotonic()
        ids: list[str] = []
        for burst in range(args.bursts):
            payload = {"steps": args.steps, "delay": args.delay, "log": str(log_path)}
            t0 = time.monotonic()
            batch = await broker.enqueue_many(
                [NewTask(payload, f"{mode}-{burst}-{i:04d}") for i in range(args.tasks)]
            )
            ids += batch
            if autoscaled:

                async def at_max() -> bool:
                    return sum(1 for a in swarm.agents if a.running) >= args.max

                if await _wait(at_max, 120):
                    run.to_max.append(time.monotonic() - t0)

            async def drained(batch: list[str] = batch) -> bool:
                return all([await broker.get_result(t) is not None for t in batch[-20:]]) and (
                    await broker.backlog() == 0
                )

            await _wait(drained, 600)
            done_at = time.monotonic()
            if autoscaled:

                async def at_zero() -> bool:
                    return not any(a.running for a in swarm.agents)

                if await _wait(at_zero, args.idle):
                    run.to_zero.append(time.monotonic() - done_at)
            rest = args.idle - (time.monotonic() - done_at)
            if rest > 0:
                await asyncio.sleep(rest)
        run.wall_seconds = time.monotonic() - started
        stop.set()
        await sampler
        for task_id in ids:
            result = await broker.get_result(task_id)
            task = await broker.get_task(task_id)
            if result is not None and task is not None and result.started_at is not None:
                run.waits.append(result.started_at - task.enqueued_at)
        if swarm.autoscaler is not None:
            run.scale_ins = swarm.autoscaler.scale_ins
        run.redone_steps = _redone(log_path)
    finally:
        await broker.close()
        supervising.cancel()
        await asyncio.gather(supervising, return_exceptions=True)
        await swarm.stop()
    return run


async def _true(value: bool) -> bool:
    return value


def _redone(path: Path) -> int:
    seen: set[tuple[str, str]] = set()
    redone = 0
    if path.exists():
        for line in path.read_text().splitlines():
            kind, task, step, *_ = line.split()
            if kind == "exec":
                redone += (task, step) in seen
                seen.add((task, step))
    return redone


def report(args: argparse.Namespace, runs: dict[str, Run], when: tuple[str, str]) -> str:
    fixed, auto = runs["fixed"], runs["autoscaled"]
    cost = auto.agent_seconds / fixed.agent_seconds if fixed.agent_seconds else float("nan")
    f95, a95 = percentile(fixed.waits, 95), percentile(auto.waits, 95)
    wait_ratio = a95 / f95 if f95 else float("nan")

    def span(values: list[float]) -> str:
        if not values:
            return "-"
        ordered = sorted(values)
        return f"{percentile(ordered, 50):.1f} s (min {ordered[0]:.1f}, max {ordered[-1]:.1f})"

    lines = [
        "## 6. Autoscaling: a bursty day, autoscaler vs a fixed pool",
        "",
        f"Generated by `python -m bench.autoscale` ({when[0]} → {when[1]}); not part of `python -m bench`. "
        f"{args.bursts} bursts of {args.tasks} tasks ({args.steps} steps of {args.delay} s each, steps "
        f"handler), {args.idle:.0f} s idle between bursts, {args.broker} broker, local mode. Fixed pool: "
        f"{args.max} agents all day. Autoscaled: `--autoscale 0..{args.max}`, interval {args.interval} s, "
        f"stabilisation {args.stabilization} s, cooldown {args.cooldown} s.",
        "",
        "| | fixed pool | autoscaled | autoscaled ÷ fixed |",
        "|---|---:|---:|---:|",
        f"| agent-seconds (cost) | {fixed.agent_seconds:,.0f} | {auto.agent_seconds:,.0f} | {cost:.2f} |",
        f"| queue wait p50 (s) | {percentile(fixed.waits, 50):.2f} | {percentile(auto.waits, 50):.2f} | "
        f"{percentile(auto.waits, 50) / max(percentile(fixed.waits, 50), 1e-9):.2f} |",
        f"| queue wait p95 (s) | {f95:.2f} | {a95:.2f} | {wait_ratio:.2f} |",
        f"| tasks done | {len(fixed.waits)} | {len(auto.waits)} | |",
        f"| wall time of the day (s) | {fixed.wall_seconds:.0f} | {auto.wall_seconds:.0f} | |",
        f"| steps executed twice | {fixed.redone_steps} | "
        f"{auto.redone_steps} (over {auto.scale_ins} scale-ins) | |",
        "",
        f"- First task of a burst → {args.max} agents running: {span(auto.to_max)}.",
        f"- Last task of a burst done → zero agents: {span(auto.to_zero)} "
        f"(stabilisation {args.stabilization} s + cooldown {args.cooldown} s by design).",
        "",
        "| Goal | Target | Measured | Status |",
        "|---|---|---|---|",
        f"| Cost of the autoscaled day | ≤ 0.30 of the fixed pool's agent-seconds | {cost:.2f} | "
        f"**{'met' if cost <= 0.30 else 'missed'}** |",
        f"| p95 queue wait | < 2x the fixed pool's | {wait_ratio:.2f}x ({a95:.2f} s vs {f95:.2f} s) | "
        f"**{'met' if wait_ratio < 2 else 'missed'}** |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.autoscale", description=__doc__.split("\n")[0])
    parser.add_argument("--bursts", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--idle", type=float, default=40.0, help="seconds between bursts")
    parser.add_argument("--max", type=int, default=8)
    parser.add_argument("--broker", choices=("redis", "nats"), default="redis")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--cooldown", type=float, default=5.0)
    parser.add_argument("--stabilization", type=float, default=3.0)
    args = parser.parse_args()
    for name in [k for k in os.environ if k.startswith("AGENTSWARM_")]:
        del os.environ[name]
    os.environ["AGENTSWARM_CLAIM_IDLE_MS"] = "3000"  # both runs: a handed-back task is taken over in 3 s
    start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load = uptime_line()
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="bench-autoscale-") as tmp:
        for mode in ("fixed", "autoscaled"):
            runs[mode] = asyncio.run(replay(args, mode, Path(tmp) / mode))
            print(f"{mode}: {json.dumps(runs[mode].summary())}", flush=True)
    end = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    text = report(args, runs, (start, end))
    text += f"\nLoad: start `{load}`; end `{uptime_line()}`.\n"
    summaries = {m: r.summary() for m, r in runs.items()}
    data = {"args": vars(args), "start": start, "end": end, "runs": summaries}
    (HERE / "autoscale.json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
