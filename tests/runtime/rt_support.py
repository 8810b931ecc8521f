"""Helpers for the runtime tests: broker construction, agent processes, step-log analysis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from agentswarm.broker import Broker
from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
from agentswarm.broker.redis_streams import RedisStreamsBroker
from agentswarm.defaults import DEFAULT_RETENTION_SECONDS


def make_test_broker(
    backend: str,
    url: str,
    namespace: str,
    *,
    max_deliveries: int = 5,
    claim_idle_ms: int = 30_000,
    ledger_dir: Path | None = None,
    retry_backoff_ms: int = 0,
    retention_seconds: int = DEFAULT_RETENTION_SECONDS,
) -> Broker:
    if backend == "redis":
        return RedisStreamsBroker(
            url,
            namespace=namespace,
            max_deliveries=max_deliveries,
            claim_idle_ms=claim_idle_ms,
            retry_backoff_ms=retry_backoff_ms,
            retention_seconds=retention_seconds,
        )
    return NatsJetStreamBroker(
        url,
        namespace=namespace,
        max_deliveries=max_deliveries,
        claim_idle_ms=claim_idle_ms,
        ledger_dir=ledger_dir,
        retry_backoff_ms=retry_backoff_ms,
        retention_seconds=retention_seconds,
    )


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, within: float, interval: float = 0.1, what: str = "condition"
) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``within`` seconds (a deadline only)."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {within}s")
        await asyncio.sleep(interval)


@dataclass
class AgentProcess:
    """``python -m agentswarm.agent`` as a real child process with a stable identity and volume."""

    agent_id: str
    env: dict[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    pids: list[int] = field(default_factory=list)
    started_at: float = 0.0

    @property
    def checkpoint_dir(self) -> Path:
        return self.workdir / self.agent_id

    def start(self) -> AgentProcess:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.env,
            "AGENTSWARM_AGENT_ID": self.agent_id,
            "AGENTSWARM_CHECKPOINT_DIR": str(self.checkpoint_dir),
        }
        log = (self.workdir / f"{self.agent_id}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentswarm.agent"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.starts += 1
        self.started_at = time.monotonic()
        self.pids.append(self.proc.pid)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.alive:
            try:
                self.terminate(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        path = self.workdir / f"{self.agent_id}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class StepLog:
    """Parsed lines of the steps handler's log: ``exec|ckpt <task> <step> <agent> <attempt>``."""

    lines: list[tuple[str, str, int, str, int]]

    @classmethod
    def read(cls, path: Path) -> StepLog:
        rows = []
        if path.exists():
            for raw in path.read_text().splitlines():
                kind, task, step, agent, attempt = raw.split()
                rows.append((kind, task, int(step), agent, int(attempt)))
        return cls(rows)

    def by_task(self) -> dict[str, list[tuple[str, int, str, int]]]:
        out: dict[str, list[tuple[str, int, str, int]]] = defaultdict(list)
        for kind, task, step, agent, attempt in self.lines:
            out[task].append((kind, step, agent, attempt))
        return out

    def violations(self) -> list[str]:
        """Steps executed again after their checkpoint was stored: a resume that ignored a checkpoint."""
        bad = []
        for task, rows in self.by_task().items():
            stored: set[int] = set()
            for kind, step, agent, attempt in rows:
                if kind == "ckpt":
                    stored.add(step)
                elif step in stored:
                    bad.append(
                        f"task {task}: step {step} re-executed by {agent} (attempt {attempt}) "
                        "after its checkpoint was stored"
                    )
        return bad

    def resumed(self) -> dict[str, int]:
        """Tasks whose later attempt started past step 0 (resumed from a checkpoint): task -> first step."""
        out = {}
        for task, rows in self.by_task().items():
            first_of_attempt: dict[int, int] = {}
            for kind, step, _agent, attempt in rows:
                if kind == "exec":
                    first_of_attempt.setdefault(attempt, step)
            later = [s for a, s in first_of_attempt.items() if a > min(first_of_attempt)]
            if later and max(later) > 0:
                out[task] = max(later)
        return out

    def interrupted(self) -> set[str]:
        """Tasks executed in more than one attempt."""
        return {t for t, rows in self.by_task().items() if len({r[3] for r in rows}) > 1}

    def executed_steps(self, task: str) -> set[int]:
        return {step for kind, step, _a, _t in self.by_task().get(task, []) if kind == "exec"}
