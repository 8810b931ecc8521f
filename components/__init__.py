"""Pulumi components that provision and run swarms of AI agents on Kubernetes (GKE or kind).

Import :class:`AgentSwarm` into any Pulumi program; the other classes are its building blocks.
"""

from components.agents import AgentPool, AgentPoolArgs
from components.config import ConfigError, SwarmConfig, parse_config
from components.coordinator import Coordinator, CoordinatorArgs
from components.namespace import SwarmNamespace, SwarmNamespaceArgs
from components.redis import ManagedRedis, Redis, RedisArgs, RedisConnection
from components.stack_config import load_stack_config
from components.swarm import AgentSwarm, AgentSwarmArgs

__all__ = [
    "AgentPool",
    "AgentPoolArgs",
    "AgentSwarm",
    "AgentSwarmArgs",
    "ConfigError",
    "Coordinator",
    "CoordinatorArgs",
    "ManagedRedis",
    "Redis",
    "RedisArgs",
    "RedisConnection",
    "SwarmConfig",
    "SwarmNamespace",
    "SwarmNamespaceArgs",
    "load_stack_config",
    "parse_config",
]
