"""An agent whose handler cannot be imported refuses to start: exit 2 and ONE line naming the handler and why.

Real processes (``python -m agentswarm.cli agent``, as the image's entry point runs it), a real package on
disk that is missing, broken or raising at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import agentswarm
import pytest

RUNTIME = str(Path(agentswarm.__file__).resolve().parents[1])

CASES = {
    "missing package": (None, "no module named 'teamagents' (is your package installed in the image"),
    "missing dependency": ("import some_sdk_not_installed\n", "ModuleNotFoundError: No module named"),
    "syntax error": ("def plan(:\n", "SyntaxError: invalid syntax ("),
    "raises at import": (
        "import os\nKEY = os.environ['TEAM_API_KEY']\n",
        "KeyError: 'TEAM_API_KEY' (",
    ),
    "no such function": ("async def other(task, state, ctx):\n    return 1\n", "has no 'plan'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_agent_refuses_to_start_when_the_handler_does_not_import(tmp_path: Path, case: str) -> None:
    source, expected = CASES[case]
    if source is not None:
        (tmp_path / "teamagents").mkdir()
        (tmp_path / "teamagents" / "__init__.py").write_text("")
        (tmp_path / "teamagents" / "handlers.py").write_text(source)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": RUNTIME,
        "AGENTSWARM_HANDLER": "teamagents.handlers:plan",
        "AGENTSWARM_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "agentswarm.cli", "agent"],
        cwd=tmp_path,  # `python -m` puts the working directory on the path, as local mode does
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no traceback
    assert lines[0].startswith("agentswarm agent: AGENTSWARM_HANDLER='teamagents.handlers:plan': "), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
