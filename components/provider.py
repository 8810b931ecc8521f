"""The components as a Pulumi component package: what TypeScript, Go, C#, Java and YAML programs consume.

`provider/` (a `PulumiPlugin.yaml` with runtime python) runs :func:`serve`, Pulumi's Python component
provider host, which infers the package schema from the classes below: their `args` TypedDicts (plain
TypedDicts with `NotRequired` keys, Enums, `pulumi.Input`) and their `pulumi.Output` annotations, with the
docstrings as descriptions. The analyzer cannot read pydantic models, `Literal` or unions, so the public args
take the generated mirror of the config (:mod:`components.public_args`) and :func:`swarm_config` validates it
with the pydantic models, exactly as a stack's config is validated: the same one-line errors.

The classes subclass the Python components, so the resources and type tokens (`agentswarm:index:<Class>`)
are the same whichever language creates them.
"""

# No `from __future__ import annotations`: Pulumi's schema analyzer reads these annotations at runtime.
from collections.abc import Mapping
from enum import Enum
from importlib import metadata
from typing import Any, NotRequired, TypedDict

import pulumi

from components import namespace, swarm
from components.config import SwarmConfig as ValidatedConfig
from components.config import parse_config
from components.public_args import SwarmConfig

PACKAGE = "agentswarm"
"""The package name: every type token is `agentswarm:index:<Class>`."""


def _plain(value: Any) -> Any:
    """Enum members to their values, recursively (what the provider hands over for Enum-typed inputs)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def swarm_config(public: Mapping[str, Any]) -> ValidatedConfig:
    """The validated config from the public args shape (:class:`components.public_args.SwarmConfig`).

    ``cluster.create`` is false: the package deploys into the cluster the consumer's Kubernetes provider
    reaches. Raises :class:`components.config.ConfigError` with one line naming the key, the value and what is
    allowed.
    """
    # The package deploys into the cluster the consumer's Kubernetes provider reaches; it never creates one.
    return parse_config({**_plain(public), "cluster": {"create": False}})


class ManagedRedis(TypedDict):
    """A Redis that is not in the cluster (Memorystore): TLS, AUTH and a private IP."""

    host: pulumi.Input[str]
    """Private IP or host name of the instance."""
    port: pulumi.Input[int]
    """Its TLS port."""
    auth_string: pulumi.Input[str]
    """The AUTH string (kept secret)."""
    ca_certificate: pulumi.Input[str]
    """PEM of the CA that signed the server certificate."""


class AgentSwarmArgs(TypedDict):
    """Inputs of :class:`AgentSwarm`."""

    config: SwarmConfig
    """The swarm config: the keys of a stack's `agentswarm:` namespace that the workload layer reads."""
    image: NotRequired[pulumi.Input[str]]
    """Image reference overriding `config.image` (e.g. the digest of an image built in the same program)."""
    image_digest: NotRequired[pulumi.Input[str]]
    """Digest of the image when its reference does not carry it (a kind-loaded build); pods roll on change."""
    managed_redis: NotRequired[ManagedRedis]
    """Required when `config.redis.mode` is `memorystore`: connection data of the managed instance."""
    gcp_service_account: NotRequired[pulumi.Input[str]]
    """GCP service account email to bind the agents' ServiceAccount to (Workload Identity)."""


class AgentSwarm(swarm.AgentSwarm):
    """A swarm of AI agents on Kubernetes: namespace, broker, coordinator and agents, wired to each other."""

    namespace: pulumi.Output[str]
    """The namespace everything runs in."""
    coordinator_service: pulumi.Output[str]
    """Name of the coordinator's Service."""
    coordinator_port: pulumi.Output[int]
    """The coordinator's HTTP + websocket port."""
    coordinator_address: pulumi.Output[str]
    """Public IP of the GKE Ingress load balancer (empty for other exposures and until provisioned)."""
    api_token_secret_name: pulumi.Output[str]
    """Secret holding the coordinator API token (key `token`)."""
    redis_url: pulumi.Output[str]
    """URL of the Redis broker, without password (empty with broker `nats`)."""
    agent_statefulset: pulumi.Output[str]
    """Name of the agents' StatefulSet."""
    agent_replicas: pulumi.Output[int]
    """Agent replicas requested."""

    def __init__(self, name: str, args: AgentSwarmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        inner: swarm.AgentSwarmArgs = {"config": swarm_config(args["config"])}
        for key in ("image", "image_digest", "gcp_service_account"):
            if key in args:
                inner[key] = args[key]
        if "managed_redis" in args:
            inner["managed_redis"] = {**args["managed_redis"]}
        super().__init__(name, inner, opts)


class SwarmNamespaceArgs(TypedDict):
    """Inputs of :class:`SwarmNamespace`."""

    namespace: str
    """Namespace name (a DNS label)."""
    instance: NotRequired[str]
    """Swarm instance name, used in the `app.kubernetes.io/instance` label. Default: `"agentswarm"`."""


class SwarmNamespace(namespace.SwarmNamespace):
    """A namespace enforcing Pod Security `restricted`, with default-deny ingress/egress plus DNS."""

    namespace: pulumi.Output[str]
    """The namespace's name."""

    def __init__(
        self, name: str, args: SwarmNamespaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, {**args}, opts)


COMPONENTS: list[type[pulumi.ComponentResource]] = [AgentSwarm, SwarmNamespace]
"""What the package exposes."""


def version() -> str:
    """The package version: the installed distribution's (`agentswarm-components`)."""
    try:
        return metadata.version("agentswarm-components")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def serve() -> None:
    """Run the component provider (called by `provider/__main__.py` when the engine starts the plugin)."""
    from pulumi.provider.experimental import component_provider_host

    component_provider_host(COMPONENTS, name=PACKAGE, version=version())
