"""The platform layer: where the swarm runs (a cluster created here, or an existing kubeconfig context).

``deploy`` is the whole Pulumi program in one function: infra/__main__.py only reads the config and calls it,
so tests run exactly what ``pulumi up`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config import SwarmConfig
from components.swarm import AgentSwarm, AgentSwarmArgs


@dataclass
class Deployment:
    """What ``deploy`` built, for exports and tests."""

    provider: k8s.Provider
    swarm: AgentSwarm
    outputs: dict[str, Any] = field(default_factory=dict)


def kubernetes_provider(name: str, cfg: SwarmConfig, **extra: Any) -> k8s.Provider:
    """A Kubernetes provider for an existing cluster: ambient context, a named context, or render-to-YAML."""
    kwargs: dict[str, Any] = {"enable_server_side_apply": True, **extra}
    if cfg.kubernetes.context:
        kwargs["context"] = cfg.kubernetes.context
    if cfg.kubernetes.render_yaml_to_directory:
        kwargs["render_yaml_to_directory"] = cfg.kubernetes.render_yaml_to_directory
    return k8s.Provider(name, **kwargs)


def deploy(cfg: SwarmConfig) -> Deployment:
    """Build providers from the config and instantiate the swarm on them."""
    swarm_args: AgentSwarmArgs = {"config": cfg}
    provider = kubernetes_provider(f"{cfg.name}-k8s", cfg)
    swarm = AgentSwarm(cfg.name, swarm_args, pulumi.ResourceOptions(providers=[provider]))
    outputs: dict[str, Any] = {
        "platform": cfg.platform,
        "exposure": cfg.exposure,
        "namespace": swarm.namespace,
        "coordinator_service": swarm.coordinator_service,
        "coordinator_port": swarm.coordinator_port,
        "api_token_secret_name": swarm.api_token_secret_name,
        "agent_statefulset": swarm.agent_statefulset,
        "agent_replicas": swarm.agent_replicas,
    }
    return Deployment(provider=provider, swarm=swarm, outputs=outputs)
