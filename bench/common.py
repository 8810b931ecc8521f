"""Shared plumbing: private servers on free ports, child processes, statistics, machine facts.

Every server is started by the benchmark on 127.0.0.1 in a temporary directory and stopped by it; every
child process is started in its own session so that it (and whatever it forks) can be ended by pid.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentswarm import servers as agentswarm_servers
from agentswarm.process import ChildProcess
from agentswarm.servers import free_port, nats_server_binary, wait_for_port

__all__ = ["NatsServer", "RedisServer", "free_port", "nats_server_binary", "wait_for_port"]

ROOT = Path(__file__).resolve().parents[1]
REDIS_BENCHMARK = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"


def script(name: str) -> str:
    """Path of a console script installed next to this interpreter (celery, arq, taskiq)."""
    for candidate in (Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found; pip install -r bench/requirements.txt")
    return found


class RedisServer(agentswarm_servers.RedisServer):
    """redis-server with AOF ``appendfsync everysec`` (the common production setting), no RDB snapshots.

    The same server configuration serves every system in a comparison, including redis-benchmark.
    """

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, appendfsync="everysec")

    def command(self) -> list[str]:
        return [*super().command(), "--maxclients", "20000"]

    def flushall(self) -> None:
        import redis

        r = redis.Redis(host="127.0.0.1", port=self.port)
        r.flushall()
        r.close()


NatsServer = agentswarm_servers.NatsServer
"""nats-server -js with a file store (what the NATS backend is specified against)."""


class Child(ChildProcess):
    """A worker process (agent or peer worker) run from the repository root, with its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        full = {**os.environ, **env}
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full.get("PYTHONPATH", "")]))
        super().__init__(name, argv, env=full, log_path=log, cwd=ROOT)

    @property
    def alive(self) -> bool:
        return self.running


def stop_all(children: Sequence[Child]) -> None:
    """SIGTERM every child at once, give them 8 s together, then SIGKILL what is left of each group."""
    for child in children:
        if child.running:
            child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + 8
    for child in children:
        if child.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        child.kill()


@dataclass
class Summary:
    """Median of several runs with min and max."""

    median: float
    min: float
    max: float
    n: int
    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        vals = [float(v) for v in values]
        if not vals:
            return cls(float("nan"), float("nan"), float("nan"), 0, [])
        return cls(statistics.median(vals), min(vals), max(vals), len(vals), vals)

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n, "values": self.values}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    vals = sorted(values)
    if not vals:
        return float("nan")
    k = max(0, min(len(vals) - 1, round(q / 100.0 * len(vals) + 0.5) - 1))
    return vals[k]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def uptime_line() -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    return f"load average: {load_average()}"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_state() -> str:
    """HEAD of the checkout plus the runtime files that differ from it (the runtime is installed editable,
    so uncommitted changes are what runs)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "agent_image", "infra", "components"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in (
        "agentswarm",
        "redis",
        "nats-py",
        "websockets",
        "arq",
        "celery",
        "kombu",
        "taskiq",
        "taskiq-redis",
        "pulumi",
        "pulumi-kubernetes",
        "pulumi-gcp",
        "matplotlib",
        "psutil",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    with contextlib.suppress(Exception):
        out["redis-server"] = (
            subprocess.run(
                [agentswarm_servers.redis_server_binary(), "--version"], capture_output=True, text=True
            )
            .stdout.split()[2]
            .removeprefix("v=")
        )
    with contextlib.suppress(Exception):
        out["nats-server"] = (
            subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True)
            .stdout.strip()
            .split()[-1]
        )
    return out
