"""The agents' readiness signal (``agentswarm probe --ready``), apart from liveness, on real processes.

Ready once a claim reached the broker; not ready while the broker is unreachable, although the process is
alive and its heartbeat fresh (liveness must not restart an agent that merely waits for Redis); not ready
after it stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .helpers import Swarm, wait_until


def _probe(checkpoint_dir: Path, *extra: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSWARM_")}
    env["AGENTSWARM_CHECKPOINT_DIR"] = str(checkpoint_dir)
    argv = [sys.executable, "-m", "agentswarm.cli", "probe", "--max-age-seconds", "30", *extra]
    return subprocess.run(argv, env=env, capture_output=True, timeout=60).returncode


def test_ready_follows_the_broker(tmp_path: Path, redis_factory: Any, unique_namespace: str) -> None:
    redis = redis_factory()
    swarm = Swarm(
        tmp_path, {"AGENTSWARM_BROKER": "redis", "AGENTSWARM_REDIS_URL": redis.url}, unique_namespace
    )
    checkpoint_dir = tmp_path / "ckpt" / "agent-0"
    try:
        agent = swarm.start_agent(0)
        wait_until(lambda: _probe(checkpoint_dir, "--ready") == 0, 60, "agent ready")
        assert _probe(checkpoint_dir) == 0

        redis.stop()  # the broker goes away: not ready, but alive
        wait_until(lambda: _probe(checkpoint_dir, "--ready") != 0, 60, "agent not ready")
        assert _probe(checkpoint_dir) == 0
        assert agent.proc is not None and agent.proc.poll() is None

        agent.stop()
        assert not (checkpoint_dir / ".ready").exists()
        assert _probe(checkpoint_dir, "--ready") != 0
    finally:
        swarm.stop()
