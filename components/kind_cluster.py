"""KindCluster: a local Kubernetes cluster in Docker, created and deleted by the ``kind`` CLI.

The cluster is a ``pulumi-command`` ``local.Command``: ``kind create cluster`` with a generated config on
create, ``kind delete cluster`` on destroy. Its stdout is the kubeconfig (secret), from which the Kubernetes
provider for the workload layer is built. The coordinator's NodePort is mapped to a host port, and the node
carries the agent-pool label so the same AgentPool schedules here and on GKE.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import yaml

from components import _k8s
from components.config import NODE_PORT, KindClusterConfig

INSTALL_HINTS = {
    "kind": "install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation "
    "(e.g. `go install sigs.k8s.io/kind@v0.29.0` or `brew install kind`)",
    "docker": "install Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/ and start it",
}


class PreflightError(RuntimeError):
    """A local tool the stack needs is missing. ``str(err)`` is one line naming it and how to install it."""


def preflight(
    tools: tuple[str, ...] = ("kind", "docker"), which: Callable[[str], str | None] = shutil.which
) -> None:
    """Fail before any resource exists when ``kind`` or ``docker`` is not on PATH."""
    missing = [tool for tool in tools if which(tool) is None]
    if missing:
        hints = "; ".join(INSTALL_HINTS.get(tool, f"install {tool}") for tool in missing)
        raise PreflightError(f"the kind platform needs {' and '.join(missing)} on PATH, not found: {hints}")


def kind_config(name: str, cfg: KindClusterConfig, node_port: int) -> str:
    """The kind cluster config (kind.x-k8s.io/v1alpha4)."""
    config: dict[str, Any] = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": name,
        "nodes": [
            {
                "role": "control-plane",
                "image": cfg.node_image,
                "labels": {_k8s.AGENT_POOL_LABEL: _k8s.AGENT_POOL_VALUE},
                "extraPortMappings": [
                    {
                        "containerPort": node_port,
                        "hostPort": cfg.host_port,
                        "listenAddress": "127.0.0.1",
                        "protocol": "TCP",
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


class KindClusterArgs(TypedDict):
    cluster_name: NotRequired[str]
    """kind cluster name (the kubeconfig context becomes ``kind-<name>``); default ``agentswarm``."""
    config: NotRequired[KindClusterConfig]
    """Validated ``cluster.kind`` section; default: every default."""
    node_port: NotRequired[int]
    """Coordinator NodePort to map to ``config.host_port`` on 127.0.0.1; default the coordinator's."""


class KindCluster(pulumi.ComponentResource):
    """``kind create cluster`` / ``kind delete cluster`` as a resource, plus a provider for it."""

    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: KindClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:KindCluster", name, None, opts)
        cfg = KindClusterConfig.model_validate(args.get("config", {}))
        cluster_name = args.get("cluster_name", "agentswarm")
        config_yaml = kind_config(cluster_name, cfg, args.get("node_port", NODE_PORT))
        create = (
            f"kind create cluster --name {cluster_name} --config=- --wait 180s 1>&2"
            f" && kind get kubeconfig --name {cluster_name}"
        )
        cluster = command.local.Command(
            f"{name}-cluster",
            create=create,
            delete=f"kind delete cluster --name {cluster_name}",
            stdin=config_yaml,
            # a changed config (node image, port mapping) means a new cluster
            triggers=[config_yaml],
            opts=_k8s.child_opts(self, additional_secret_outputs=["stdout"]),
        )
        self.cluster_name = pulumi.Output.from_input(cluster_name)
        self.kubeconfig = pulumi.Output.secret(cluster.stdout)
        self.config_yaml = config_yaml
        self.command = cluster
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=_k8s.child_opts(self, depends_on=[cluster]),
        )
        self.register_outputs({"cluster_name": self.cluster_name, "kubeconfig": self.kubeconfig})


def kind_load(
    name: str, cluster_name: str, image: str, trigger: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> command.local.Command:
    """``kind load docker-image`` so the nodes have a locally built image without a registry."""
    return command.local.Command(
        name,
        create=f"kind load docker-image {image} --name {cluster_name}",
        triggers=[trigger],
        opts=opts,
    )
