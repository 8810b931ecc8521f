"""The work itself, shared by all systems so they do exactly the same thing.

* ``noop(payload)``: returns the wall-clock time at which the handler started (used as the dispatch
  latency end point); ``payload["sleep"]`` (optional) makes warm-up tasks last long enough to reach
  every worker.
* ``steps(task_id, payload, start_step)``: the recovery workload: ``payload["steps"]`` steps of
  ``payload["delay"]`` seconds, one ``exec`` line per executed step in ``payload["log"]`` (one ``write``
  on an ``O_APPEND`` descriptor, so lines from different processes never interleave) and a ``start`` line
  when the handler starts. Peers have no checkpoints, so they always start at step 0.
"""

from __future__ import annotations

import os
import time
from typing import Any

# the same append-only line writer as agentswarm's step handler: concurrent workers never interleave lines
from agentswarm.handlers.steps import append_line as log_line


def started(task_id: str, payload: dict[str, Any], start_step: int) -> None:
    log_line(payload.get("log"), f"start {task_id} {start_step} {time.time():.6f} {os.getpid()}")


def executed(task_id: str, payload: dict[str, Any], step: int) -> None:
    log_line(payload.get("log"), f"exec {task_id} {step} {time.time():.6f} {os.getpid()}")
