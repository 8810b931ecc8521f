"""``agentswarm watch --tree``: a planner's whole tree, followed through the coordinator, line per level."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from agentswarm.handlers.tree import expected_pipeline

from .helpers import TOKEN, Proc, Swarm


def test_watch_tree_follows_spawned_children(redis_swarm: Swarm, tmp_path: Path) -> None:
    redis_swarm.start_coordinator()
    for i in range(2):
        env = {
            **redis_swarm.base_env,
            "AGENTSWARM_AGENT_ID": f"agent-{i}",
            "AGENTSWARM_CHECKPOINT_DIR": str(tmp_path / "ckpt" / f"agent-{i}"),
            "AGENTSWARM_HANDLER": "agentswarm.handlers.tree:plan",
        }
        redis_swarm.agents.append(Proc(f"agent-{i}", ["agent"], env, tmp_path).start())
    env = {**redis_swarm.base_env, "AGENTSWARM_URL": redis_swarm.url, "AGENTSWARM_API_TOKEN": TOKEN}
    cli = [sys.executable, "-m", "agentswarm.cli"]
    payload = '{"workers": 3, "steps": 2, "delay": 0.05}'
    out = subprocess.run(
        [*cli, "submit", "--no-watch", "--payload", payload, "--id", "tree-1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    out = subprocess.run(
        [*cli, "watch", "--tree", "tree-1", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    # One result frame per task of the tree: the planner, 3 workers and the reducer.
    frames = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(frames) == 5, out.stdout
    assert re.search(r"^level 0 .* 1/1 done", out.stderr, re.M), out.stderr
    assert re.search(r"^level 1 .* 4/4 done", out.stderr, re.M), out.stderr
    watch = [*cli, "watch", "--tree", "tree-1"]
    out = subprocess.run(watch, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    digest = expected_pipeline("tree-1", 3, 2)["digest"]
    assert re.search(r"^tree-1\s+done\s", out.stdout, re.M) and digest[:20] in out.stdout, out.stdout
