"""Benchmark 3: SIGKILL an agent mid-task; how long until the task runs again, and how much is redone.

Workload: ``steps`` steps of ``delay`` s each (bench/peers/work.py). agentswarm checkpoints after every step
(checkpoint interval = one step); arq and Celery have no checkpoints, so they start over. Two workers run;
the one that started the task (found by the pid in the task's ``start`` line) is SIGKILLed (its whole process
group) right after step ``kill_after`` was executed, then:

* ``restart`` scenarios: the killed worker is started again at once with the same identity (a StatefulSet pod
  coming back); for agentswarm it takes back its own pending delivery and resumes from its checkpoint on its
  volume (file checkpoints);
* ``reclaim`` scenarios: it stays dead and the other agent takes the task over once its keep-alive is older
  than ``claim_idle_ms``, resuming from the checkpoint in the broker (``checkpoint_backend=broker``).

Each system's "abandoned" timeout is set to the same ``abandon_s`` so that it does not dominate:
agentswarm ``claim_idle_ms``, Celery ``visibility_timeout`` (default 1 h), arq ``job_timeout`` (default
300 s; arq retries when the in-progress key, ``job_timeout + 10 s``, expires).

Recovery time = first ``start`` line after the kill - kill time. Redone = steps executed in total - steps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Child, NatsServer, RedisServer, Summary, stop_all
from bench.systems import AgentswarmSystem, ArqSystem, CelerySystem, System

log = logging.getLogger("bench.recovery")


@dataclass
class RecoveryConfig:
    scenarios: tuple[str, ...] = (
        "agentswarm-redis/restart",
        "agentswarm-redis/reclaim",
        "agentswarm-nats/restart",
        "agentswarm-nats/reclaim",
        "celery/restart",
        "arq/restart",
    )
    trials: int = 3
    steps: int = 20
    delay: float = 0.1
    kill_after: int = 10
    abandon_s: float = 5.0
    bound_s: float = 45.0
    #: kombu re-checks unacknowledged messages every 10th of its 10 s polls (kombu/transport/redis.py
    #: QoS.restore_visible(interval=10)), so a Celery task comes back after up to ~100 s: wait that long.
    celery_bound_s: float = 130.0
    celery_trials: int = 2


def _read(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _make(system_name: str, redis: RedisServer, nats: NatsServer | None, workdir: Path) -> System:
    if system_name == "agentswarm-redis":
        return AgentswarmSystem(redis.url, redis.port, workdir, "redis")
    if system_name == "agentswarm-nats":
        assert nats is not None
        return AgentswarmSystem(nats.url, nats.port, workdir, "nats")
    if system_name == "celery":
        return CelerySystem(redis.url, redis.port, workdir)
    return ArqSystem(redis.url, redis.port, workdir)


def _workers(system: System, mode: str, cfg: RecoveryConfig) -> list[Child]:
    if isinstance(system, AgentswarmSystem):
        settings: dict[str, Any] = {"claim_idle_ms": int(cfg.abandon_s * 1000), "claim_block_ms": 500}
        if mode == "reclaim":
            settings["checkpoint_backend"] = "broker"
        return [
            system.worker(i, handler="bench.peers.agentswarm_handlers:steps", settings=settings)
            for i in range(2)
        ]
    if isinstance(system, CelerySystem):
        return [system.worker(i, visibility_timeout=int(cfg.abandon_s)) for i in range(2)]
    return [system.worker(i, job_timeout=int(cfg.abandon_s)) for i in range(2)]


async def _submit(system: System, task_id: str, payload: dict[str, Any]) -> None:
    if isinstance(system, (ArqSystem, CelerySystem)):
        await system.submit_many([(task_id, payload)], function="steps")
    else:
        await system.submit_many([(task_id, payload)])


def _owner(children: list[Child], pid: int) -> Child | None:
    for child in children:
        if child.proc is None:
            continue
        if child.proc.pid == pid:
            return child
        try:
            if os.getpgid(pid) == child.proc.pid:
                return child
        except ProcessLookupError:
            continue
    return None


async def _trial(system: System, mode: str, cfg: RecoveryConfig, workdir: Path) -> dict[str, Any]:
    if isinstance(system, AgentswarmSystem):
        system.new_namespace()
    children = [c.start() for c in _workers(system, mode, cfg)]
    try:
        await system.open()
        try:
            # warm-up: both workers connected and imported (a 1-step task each, then a short settle)
            warm = workdir / f"warm-{uuid.uuid4().hex[:6]}.log"
            wids = [f"warm-{uuid.uuid4().hex[:8]}" for _ in range(4)]
            for wid in wids:
                await _submit(system, wid, {"steps": 1, "delay": 0.2, "log": str(warm)})
            deadline = time.monotonic() + 60
            while len({r[1] for r in _read(warm) if r[0] == "exec"}) < len(wids):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{system.name}: warm-up tasks did not run")
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)

            logf = workdir / f"trial-{uuid.uuid4().hex[:6]}.log"
            task_id = f"rec-{uuid.uuid4().hex[:10]}"
            await _submit(system, task_id, {"steps": cfg.steps, "delay": cfg.delay, "log": str(logf)})
            deadline = time.monotonic() + 30
            victim: Child | None = None
            while True:
                rows = _read(logf)
                if any(r[0] == "exec" and int(r[2]) >= cfg.kill_after - 1 for r in rows):
                    starts = [r for r in rows if r[0] == "start"]
                    victim = _owner(children, int(starts[-1][4]))
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{system.name}: task did not reach step {cfg.kill_after}")
                await asyncio.sleep(0.005)
            if victim is None:
                raise RuntimeError(f"{system.name}: cannot tell which worker runs the task")
            t_kill = time.time()
            victim.kill()
            if mode == "restart":
                victim.start()
            t_resume: float | None = None
            resumed_from: int | None = None
            bound = cfg.celery_bound_s if isinstance(system, CelerySystem) else cfg.bound_s
            deadline = time.monotonic() + bound
            while time.monotonic() < deadline:
                rows = _read(logf)
                later = [r for r in rows if r[0] == "start" and float(r[3]) > t_kill]
                if later and t_resume is None:
                    t_resume = float(later[0][3])
                    resumed_from = int(later[0][2])
                if t_resume is not None and {int(r[2]) for r in rows if r[0] == "exec"} >= set(
                    range(cfg.steps)
                ):
                    break
                await asyncio.sleep(0.02)
            rows = _read(logf)
            executed = [int(r[2]) for r in rows if r[0] == "exec"]
            done_before_kill = len([r for r in rows if r[0] == "exec" and float(r[3]) <= t_kill])
            complete = set(executed) >= set(range(cfg.steps))
            return {
                "recovery_s": None if t_resume is None else t_resume - t_kill,
                "resumed_from_step": resumed_from,
                "steps_done_before_kill": done_before_kill,
                "steps_executed": len(executed),
                "steps_redone": len(executed) - len(set(executed)) if complete else None,
                "redone_fraction": (len(executed) - len(set(executed))) / cfg.steps if complete else None,
                "completed": complete,
                "bound_s": bound,
            }
        finally:
            await system.close()
    finally:
        stop_all(children)


async def run_recovery(cfg: RecoveryConfig, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"config": cfg.__dict__, "scenarios": {}, "errors": []}
    redis = RedisServer(workdir / "redis").start()
    nats = (
        NatsServer(workdir / "nats").start()
        if any(s.startswith("agentswarm-nats") for s in cfg.scenarios)
        else None
    )
    try:
        for scenario in cfg.scenarios:
            system_name, mode = scenario.split("/")
            trials: list[dict[str, Any]] = []
            for k in range(cfg.celery_trials if system_name == "celery" else cfg.trials):
                if not system_name.startswith("agentswarm"):
                    redis.flushall()
                system = _make(system_name, redis, nats, workdir / "rec" / system_name)
                try:
                    trials.append(await _trial(system, mode, cfg, workdir / "rec" / system_name))
                    log.info("%s trial %d: %s", scenario, k, trials[-1])
                except Exception as exc:
                    log.exception("%s trial %d failed", scenario, k)
                    out["errors"].append(f"{scenario} trial {k}: {type(exc).__name__}: {exc}")
            rec = [t["recovery_s"] for t in trials if t["recovery_s"] is not None]
            red = [t["redone_fraction"] for t in trials if t["redone_fraction"] is not None]
            out["scenarios"][scenario] = {
                "trials": trials,
                "recovery_s": Summary.of(rec).as_dict(),
                "redone_fraction": Summary.of(red).as_dict(),
                "recovered": f"{len(rec)}/{len(trials)}",
            }
    finally:
        redis.stop()
        if nats is not None:
            nats.stop()
    return out
