"""The Pulumi program: your agents on the stack's cluster (``local``: kind here; ``gke``: Google Cloud).

Every setting lives in the stack file (``Pulumi.<stack>.yaml``, keys ``agentswarm:*``, validated before any
resource is registered; the reference is agentswarm's docs/config.md). ``prepare_platform`` builds what the
stack asks for besides the swarm: the cluster and your image (``image.build``: this directory's Dockerfile);
``AgentSwarm`` is the swarm itself: namespace, Redis, coordinator and one StatefulSet of agents.
"""

from __future__ import annotations

import pulumi

from components import AgentSwarm, AgentSwarmArgs, ConfigError, load_stack_config
from components.kind_cluster import PreflightError
from components.platform import prepare_platform, swarm_outputs

try:
    config = load_stack_config()
    platform = prepare_platform(config)
except (ConfigError, PreflightError) as err:  # one line naming the key, the value and what is allowed
    raise pulumi.RunError(str(err)) from None

args: AgentSwarmArgs = {**platform.swarm_args, "config": config}
swarm = AgentSwarm(config.name, args, platform.swarm_options)

for key, value in {**platform.outputs, **swarm_outputs(swarm)}.items():
    pulumi.export(key, value)
pulumi.export("handler", config.agents.handler)
