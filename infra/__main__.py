"""The agentswarm Pulumi program: read the `agentswarm:` stack config, build the platform and the swarm.

A bad config value stops the program before any resource is registered with ONE line naming the key, the bad
value and what is allowed (pulumi.RunError is printed without a traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pulumi

# Pulumi runs this directory as the program; make the sibling `components` package importable even when the
# project is not pip-installed into the stack's virtualenv.
_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
if _PROJECT_ROOT not in sys.path:
    sys.path.insert(0, _PROJECT_ROOT)

from components.config_errors import ConfigError  # noqa: E402
from components.kind_cluster import PreflightError  # noqa: E402
from components.platform import deploy  # noqa: E402
from components.stack_config import load_stack_config  # noqa: E402

try:
    config = load_stack_config()
    deployment = deploy(config)
except (ConfigError, PreflightError) as err:
    raise pulumi.RunError(str(err)) from None

for key, value in deployment.outputs.items():
    pulumi.export(key, value)
