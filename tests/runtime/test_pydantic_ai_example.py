"""The research swarm example (examples/research_swarm) runs to completion in ``agentswarm local``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_research_swarm_runs_in_local_mode_against_test_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSWARM_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(EXAMPLES), os.environ.get("PYTHONPATH", "")] if p)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "research_swarm",
            "--json",
            "--agents",
            "2",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=200,
    )
    local_log = tmp_path / "s" / "research-swarm-local.out"
    assert proc.returncode == 0, proc.stdout + proc.stderr + local_log.read_text()
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["subtopics"] == ["durable execution", "checkpoints", "token costs"]
    assert isinstance(outcome["report"], str) and outcome["report"]
    # planner 1 call, each researcher 2 calls (tools, then answer), writer 1 call.
    assert outcome["usage"]["requests"] == 1 + 3 * 2 + 1
    assert outcome["usage"]["input_tokens"] > 0
    assert "calls read_note" in proc.stdout  # tool calls were streamed as events to the client
    assert "stopped" in local_log.read_text()  # the local swarm was shut down cleanly
