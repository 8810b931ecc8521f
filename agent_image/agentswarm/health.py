"""The agent's health files and the exec probes that read them.

``$AGENTSWARM_CHECKPOINT_DIR/.heartbeat`` is rewritten every ``heartbeat_interval_seconds``; ``.ready`` exists
while the agent's last claim reached the broker. :func:`probe` (``agentswarm probe``) exits 0 while the
heartbeat is younger than ``max_age_seconds``, else 1 with the reason on stderr; with ``ready`` (the readiness
probe) ``.ready`` must exist too.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from agentswarm.defaults import DEFAULT_CHECKPOINT_DIR, HEARTBEAT_FILE, READY_FILE
from agentswarm.settings import Settings

log = logging.getLogger("agentswarm.agent")

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_CONFIG = 2


def write_heartbeat(path: Path, agent_id: str) -> None:
    """Replace the heartbeat file atomically (its mtime is what the liveness probe checks)."""
    tmp = path.with_name(f".heartbeat.{os.getpid()}.tmp")
    tmp.write_text(f"{time.time():.3f} {agent_id} {os.getpid()}\n")
    os.replace(tmp, path)


def write_ready(checkpoint_dir: Path, agent_id: str, ready: bool) -> None:
    """Write or remove ``.ready`` (the readiness probe's file); errors are logged, never raised."""
    path = checkpoint_dir / READY_FILE
    try:
        if ready:
            path.write_text(f"{agent_id} {os.getpid()}\n")
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        log.error("cannot update readiness file %s: %s", path, exc)


def probe(max_age_seconds: float, settings: Settings | None = None, ready: bool = False) -> int:
    """Exit code for the exec liveness probe, or with ``ready`` the readiness probe (see module docstring)."""
    if settings is None:
        checkpoint_dir = Path(os.environ.get("AGENTSWARM_CHECKPOINT_DIR", DEFAULT_CHECKPOINT_DIR))
    else:
        checkpoint_dir = settings.checkpoint_dir
    path = checkpoint_dir / HEARTBEAT_FILE
    if ready and not (checkpoint_dir / READY_FILE).exists():
        print(
            f"not ready: no claim has reached the broker ({checkpoint_dir / READY_FILE} absent)",
            file=sys.stderr,
        )
        return EXIT_UNHEALTHY
    try:
        age = time.time() - path.stat().st_mtime
    except OSError as exc:
        print(f"unhealthy: no heartbeat file {path} ({exc.strerror})", file=sys.stderr)
        return EXIT_UNHEALTHY
    if age > max_age_seconds:
        print(f"unhealthy: heartbeat {path} is {age:.1f}s old (limit {max_age_seconds}s)", file=sys.stderr)
        return EXIT_UNHEALTHY
    return EXIT_OK
