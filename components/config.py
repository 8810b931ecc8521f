"""Typed stack configuration for an agent swarm.

Every value a stack can set lives here, with its default, its bounds and the cross-field rules between values.
The models are read from the stack's ``agentswarm:`` namespace (see :func:`load_stack_config`) and are the
single source for ``docs/config.schema.json`` and ``docs/config.md``.

A bad value raises :class:`ConfigError` whose ``str`` is ONE line naming the key, the bad value and what is
allowed, so the Pulumi CLI shows an actionable message, not a traceback wall, before any resource exists.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "AgentsConfig",
    "ClusterConfig",
    "ConfigError",
    "CoordinatorConfig",
    "EgressRule",
    "GcpConfig",
    "GkeClusterConfig",
    "ImageBuildConfig",
    "ImageConfig",
    "KindClusterConfig",
    "KubernetesConfig",
    "MemorystoreConfig",
    "NodePoolConfig",
    "RedisConfig",
    "Resources",
    "SwarmConfig",
    "config_json_schema",
    "load_stack_config",
    "parse_config",
]

NAMESPACE = "agentswarm"
"""The Pulumi config namespace every key lives in (``agentswarm:<key>``)."""

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_HANDLER = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"


def _check_cidr(value: str) -> str:
    """``value`` unchanged if it is a network address with its prefix (host bits zero), else ValueError."""
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"not a CIDR block ({exc})") from None
    return value


Quantity = Annotated[str, Field(pattern=_QUANTITY, description="Kubernetes quantity, e.g. `500m`, `1Gi`.")]
DnsLabel = Annotated[str, Field(pattern=_DNS_LABEL, max_length=63)]


#: Stack-config keys that hold secrets: they must be stored with `pulumi config set --secret`.
SECRET_KEYS = ("api_token", "redis_password")
#: Shortest accepted user-supplied token or password.
MIN_SECRET_LENGTH = 16


class ConfigError(ValueError):
    """A stack config value is wrong. ``str(err)`` is one line: key, bad value, what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid stack config {key}: got {value!r}; {allowed}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ResourceAmounts(_Model):
    """CPU and memory amounts (Kubernetes quantities)."""

    cpu: Quantity | None = Field(default=None, description="CPU, e.g. `250m` or `1`.")
    memory: Quantity | None = Field(default=None, description="Memory, e.g. `256Mi`.")


class Resources(_Model):
    """Container requests and limits."""

    requests: ResourceAmounts = Field(default_factory=ResourceAmounts, description="Scheduling requests.")
    limits: ResourceAmounts = Field(default_factory=ResourceAmounts, description="Hard limits.")

    def to_k8s(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for kind in ("requests", "limits"):
            amounts = getattr(self, kind).model_dump(exclude_none=True)
            if amounts:
                out[kind] = amounts
        return out


def _resources(cpu: str, memory: str, cpu_limit: str | None, memory_limit: str) -> Resources:
    return Resources(
        requests=ResourceAmounts(cpu=cpu, memory=memory),
        limits=ResourceAmounts(cpu=cpu_limit, memory=memory_limit),
    )


class KubernetesConfig(_Model):
    """How the program reaches Kubernetes when it does not create the cluster itself."""

    context: str | None = Field(
        default=None,
        description="kubeconfig context to deploy into; unset means the ambient current context.",
    )
    render_yaml_to_directory: str | None = Field(
        default=None,
        description=(
            "When set, the Kubernetes provider writes manifests into this directory instead of talking to a "
            "cluster (Pulumi `renderYamlToDirectory`); no cluster is created."
        ),
    )


class ImageBuildConfig(_Model):
    """Build the agent image from source (pulumi-docker-build) instead of using a prebuilt one."""

    enabled: bool = Field(default=False, description="Build `agent_image/` during `pulumi up`.")
    context: str = Field(
        default="agent_image", description="Docker build context, relative to the project root."
    )
    dockerfile: str = Field(default="agent_image/Dockerfile", description="Dockerfile path.")
    platform: Literal["linux/amd64", "linux/arm64"] = Field(
        default="linux/amd64", description="Target platform of the build."
    )


class ImageConfig(_Model):
    """The one agentswarm image used by the coordinator and the agents."""

    repository: str = Field(
        default="agentswarm",
        min_length=1,
        description=(
            "Image repository. The default is the local name `docker build -t agentswarm:dev agent_image/` "
            "gives; without `build.enabled` on GKE set your registry's path. With `build.enabled` on GKE the "
            "Artifact Registry path replaces it."
        ),
    )
    tag: str | None = Field(default="dev", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", description="Tag.")
    digest: str | None = Field(
        default=None,
        pattern=r"^sha256:[a-f0-9]{64}$",
        description="Digest; when set it wins over the tag (immutable reference).",
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Kubernetes imagePullPolicy."
    )
    build: ImageBuildConfig = Field(default_factory=ImageBuildConfig, description="Build from source.")

    @model_validator(mode="after")
    def _reference(self) -> ImageConfig:
        if self.tag is None and self.digest is None:
            raise ConfigError("image.tag", None, "set image.tag or image.digest")
        return self

    @property
    def reference(self) -> str:
        """``repository@digest`` or ``repository:tag``."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


class CoordinatorConfig(_Model):
    """The coordinator Deployment and how it is exposed."""

    replicas: int = Field(default=1, ge=1, le=10, description="Coordinator replicas.")
    port: int = Field(default=8080, ge=1024, le=65535, description="HTTP + websocket port (non-privileged).")
    websocket_backend_timeout_seconds: int = Field(
        default=3600,
        ge=1,
        le=86400,
        description=(
            "GKE load-balancer backend timeout = maximum lifetime of a websocket. GKE default: 30 s; above "
            "24 h is discouraged (Google front ends restart for maintenance)."
        ),
    )
    connection_draining_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Load-balancer connection draining and the coordinator's SIGTERM drain time.",
    )
    prestop_delay_seconds: int = Field(
        default=5, ge=0, le=120, description="preStop sleep so endpoints are removed before draining starts."
    )
    termination_grace_seconds: int = Field(
        default=90,
        ge=1,
        le=3600,
        description="Pod terminationGracePeriodSeconds; must exceed preStop + drain.",
    )
    node_port: int = Field(
        default=30080, ge=30000, le=32767, description="kind only: fixed NodePort mapped to the host."
    )
    gateway_class: Literal[
        "gke-l7-global-external-managed", "gke-l7-regional-external-managed", "gke-l7-rilb", "gke-l7-gxlb"
    ] = Field(default="gke-l7-global-external-managed", description="GKE GatewayClass (exposure gateway).")
    hostname: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$",
        description="Optional public hostname for the Ingress rule / HTTPRoute.",
    )
    resources: Resources = Field(
        default_factory=lambda: _resources("250m", "256Mi", None, "512Mi"), description="Container resources."
    )

    @model_validator(mode="after")
    def _grace(self) -> CoordinatorConfig:
        need = self.prestop_delay_seconds + self.connection_draining_seconds
        if self.termination_grace_seconds <= need:
            raise ConfigError(
                "coordinator.termination_grace_seconds",
                self.termination_grace_seconds,
                "must be greater than coordinator.prestop_delay_seconds + "
                f"coordinator.connection_draining_seconds"
                f" = {need}",
            )
        return self


class EgressRule(_Model):
    """One model-API destination agents may reach (NetworkPolicy ipBlock)."""

    cidr: str = Field(description="Destination CIDR, e.g. `0.0.0.0/0` or `203.0.113.0/24`.")
    except_cidrs: list[str] = Field(default_factory=list, description="CIDRs carved out of `cidr`.")
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=lambda: [443], min_length=1, description="TCP ports."
    )

    @field_validator("cidr", "except_cidrs")
    @classmethod
    def _cidr(cls, value: str | list[str]) -> str | list[str]:
        for item in [value] if isinstance(value, str) else value:
            _check_cidr(item)
        return value


_PUBLIC_HTTPS = EgressRule(cidr="0.0.0.0/0", except_cidrs=["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])


class AgentsConfig(_Model):
    """The agent StatefulSet."""

    replicas: int = Field(default=50, ge=0, le=10000, description="Number of agent pods.")
    handler: str = Field(
        default="agentswarm.handlers.steps:handle",
        pattern=_HANDLER,
        description="`module:function` of the async task handler (AGENTSWARM_HANDLER).",
    )
    storage_size: Quantity = Field(default="1Gi", description="Per-agent checkpoint PVC size.")
    storage_class: str | None = Field(
        default=None, description="StorageClass of the PVCs; unset = cluster default."
    )
    checkpoint_path: str = Field(
        default="/var/lib/agentswarm",
        pattern=r"^/[A-Za-z0-9._/-]*$",
        description="Mount path of the checkpoint volume (AGENTSWARM_CHECKPOINT_DIR).",
    )
    resources: Resources = Field(
        default_factory=lambda: _resources("100m", "256Mi", None, "512Mi"), description="Container resources."
    )
    termination_grace_seconds: int = Field(
        default=60, ge=5, le=3600, description="Time an agent gets to checkpoint after SIGTERM."
    )
    probe_max_age_seconds: int = Field(
        default=60, ge=5, le=3600, description="Liveness: heartbeat file must be younger than this."
    )
    egress_allow: list[EgressRule] = Field(
        default_factory=lambda: [_PUBLIC_HTTPS],
        description="Model-API allow-list; default: public internet on 443, private ranges excluded.",
    )
    pvc_retention_when_deleted: Literal["Retain", "Delete"] = Field(
        default="Retain", description="Keep checkpoints when the StatefulSet is deleted."
    )
    pvc_retention_when_scaled: Literal["Retain", "Delete"] = Field(
        default="Retain", description="Keep checkpoints of scaled-down agents so they resume when scaled up."
    )
    max_unavailable: str = Field(
        default="10%", pattern=r"^([0-9]+|[0-9]{1,3}%)$", description="PodDisruptionBudget maxUnavailable."
    )
    dedicated_nodes: bool = Field(
        default=True,
        description=(
            "Select nodes labelled `agentswarm.io/pool=agents` and tolerate their taint. The clusters this "
            "project creates carry that label; set false for a plain existing cluster."
        ),
    )


class MemorystoreConfig(_Model):
    """Managed Redis (GKE only)."""

    tier: Literal["BASIC", "STANDARD_HA"] = Field(default="BASIC", description="Memorystore tier.")
    memory_size_gb: int = Field(default=1, ge=1, le=300, description="Instance size.")
    redis_version: str = Field(default="REDIS_7_2", pattern=r"^REDIS_[0-9]+_[0-9X]+$", description="Version.")
    network: str | None = Field(
        default=None,
        description="VPC id to peer with when the cluster is not created here; default: the cluster's VPC.",
    )


class RedisConfig(_Model):
    """The queue and state store."""

    mode: Literal["in-cluster", "memorystore"] = Field(default="in-cluster", description="Where Redis runs.")
    image: str = Field(default="docker.io/library/redis:7.4.2-bookworm", description="Pinned official image.")
    storage_size: Quantity = Field(default="8Gi", description="In-cluster data PVC size.")
    storage_class: str | None = Field(default=None, description="StorageClass; unset = cluster default.")
    aof: bool = Field(default=True, description="AOF persistence with appendfsync everysec.")
    resources: Resources = Field(
        default_factory=lambda: _resources("250m", "512Mi", None, "1Gi"), description="Container resources."
    )
    memorystore: MemorystoreConfig = Field(
        default_factory=MemorystoreConfig, description="Memorystore settings."
    )


class NodePoolConfig(_Model):
    """An autoscaling GKE node pool."""

    machine_type: str = Field(default="e2-standard-4", description="Machine type.")
    min_nodes: int = Field(default=1, ge=0, le=1000, description="Autoscaling minimum per zone.")
    max_nodes: int = Field(default=3, ge=1, le=1000, description="Autoscaling maximum per zone.")
    spot: bool = Field(default=False, description="Use spot VMs.")
    disk_size_gb: int = Field(default=50, ge=10, le=65536, description="Boot disk size.")

    @model_validator(mode="after")
    def _bounds(self) -> NodePoolConfig:
        if self.max_nodes < self.min_nodes:
            raise ConfigError("max_nodes", self.max_nodes, f"must be >= min_nodes ({self.min_nodes})")
        return self


class SystemPoolConfig(NodePoolConfig):
    """Node pool for the coordinator and Redis."""

    machine_type: str = Field(default="e2-standard-2", description="Machine type.")


class AgentNodePoolConfig(NodePoolConfig):
    """Node pool for the agents, tainted and labelled `agentswarm.io/pool=agents`."""

    min_nodes: int = Field(default=0, ge=0, le=1000, description="Autoscaling minimum per zone.")
    max_nodes: int = Field(default=10, ge=1, le=1000, description="Autoscaling maximum per zone.")


class AuthorizedNetwork(_Model):
    """A CIDR allowed to reach the GKE control plane."""

    cidr: str = Field(description="CIDR block.")
    display_name: str = Field(default="", description="Label shown in the console.")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return _check_cidr(value)


class MaintenanceWindow(_Model):
    """Recurring maintenance window (RFC 3339 times and an RRULE)."""

    start_time: str = Field(default="2026-01-03T03:00:00Z", description="First window start.")
    end_time: str = Field(default="2026-01-03T07:00:00Z", description="First window end.")
    recurrence: str = Field(default="FREQ=WEEKLY;BYDAY=SA,SU", description="RRULE.")


class GkeClusterConfig(_Model):
    """A hardened GKE cluster."""

    location: str = Field(
        default="", description="Zone (zonal cluster) or region (regional); empty = gcp.region."
    )
    autopilot: bool = Field(default=False, description="Autopilot instead of Standard with node pools.")
    release_channel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] = Field(default="REGULAR")
    network_cidr: str = Field(default="10.10.0.0/20", description="Subnet primary range (nodes).")
    pods_cidr: str = Field(default="10.20.0.0/14", description="Secondary range for pods.")
    services_cidr: str = Field(default="10.24.0.0/20", description="Secondary range for services.")
    master_cidr: str = Field(default="172.16.0.0/28", description="Control-plane /28 for private clusters.")
    private_endpoint: bool = Field(default=False, description="Control plane reachable only privately.")
    master_authorized_networks: list[AuthorizedNetwork] = Field(
        default_factory=list, description="CIDRs allowed to reach the control plane."
    )
    deletion_protection: bool = Field(default=True, description="Refuse to delete the cluster.")
    system_pool: SystemPoolConfig = Field(
        default_factory=SystemPoolConfig, description="Pool for coordinator and Redis."
    )
    agent_pool: AgentNodePoolConfig = Field(
        default_factory=AgentNodePoolConfig,
        description="Pool for agents (tainted and labelled `agentswarm.io/pool=agents`).",
    )
    maintenance_window: MaintenanceWindow = Field(default_factory=MaintenanceWindow)

    @field_validator("network_cidr", "pods_cidr", "services_cidr", "master_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return _check_cidr(value)


class KindClusterConfig(_Model):
    """A local kind cluster."""

    node_image: str = Field(
        default="kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f",
        description="Node image; pins the Kubernetes version.",
    )
    host_port: int = Field(
        default=8080, ge=1, le=65535, description="Host port mapped to the coordinator NodePort."
    )


class ClusterConfig(_Model):
    """Whether the program creates the cluster or deploys into an existing one."""

    create: bool = Field(
        default=True, description="Create the cluster (kind or GKE); false = use `kubernetes`."
    )
    name: DnsLabel = Field(default="agentswarm", description="Cluster name.")
    gke: GkeClusterConfig = Field(default_factory=GkeClusterConfig)
    kind: KindClusterConfig = Field(default_factory=KindClusterConfig)


class GcpConfig(_Model):
    """Google Cloud project settings (GKE resources, Memorystore, Artifact Registry, Workload Identity)."""

    project: str = Field(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$", description="GCP project id.")
    region: str = Field(default="europe-west1", pattern=r"^[a-z]+-[a-z]+[0-9]+$", description="Region.")
    workload_identity: bool = Field(
        default=True, description="Bind the agents' ServiceAccount to a GCP service account."
    )
    artifact_repository: DnsLabel = Field(
        default="agentswarm", description="Artifact Registry repository id."
    )


class SwarmConfig(_Model):
    """Everything a swarm needs, read from the stack's `agentswarm:` namespace."""

    platform: Literal["kind", "gke"] = Field(description="Where the swarm runs.")
    name: DnsLabel = Field(
        default="agentswarm", description="Swarm instance name (label and resource prefix)."
    )
    namespace: DnsLabel = Field(default="agentswarm", description="Kubernetes namespace.")
    exposure: Literal["ingress", "gateway", "nodeport"] | None = Field(
        default=None, description="How the coordinator is reached; default ingress on gke, nodeport on kind."
    )
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    gcp: GcpConfig | None = Field(default=None, description="Required for GCP resources.")
    image: ImageConfig = Field(default_factory=ImageConfig)
    coordinator: CoordinatorConfig = Field(default_factory=CoordinatorConfig)
    agents: AgentsConfig = Field(default_factory=AgentsConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    api_token: SecretStr | None = Field(
        default=None,
        description="Coordinator API token; unset: generated (pulumi-random). Set it with "
        "`pulumi config set --secret agentswarm:api_token ...`.",
    )
    redis_password: SecretStr | None = Field(
        default=None,
        description="In-cluster Redis password; unset: generated (pulumi-random). Set it with "
        "`pulumi config set --secret agentswarm:redis_password ...`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_exposure(cls, data: Any) -> Any:
        """Exposure defaults by platform: ``nodeport`` on kind, ``ingress`` on gke."""
        if (
            isinstance(data, Mapping)
            and data.get("exposure") is None
            and data.get("platform") in ("kind", "gke")
        ):
            data = {**data, "exposure": "nodeport" if data["platform"] == "kind" else "ingress"}
        return data

    @model_validator(mode="after")
    def _cross(self) -> SwarmConfig:
        if self.platform == "kind":
            if self.exposure != "nodeport":
                raise ConfigError("exposure", self.exposure, "platform kind allows only 'nodeport'")
            if self.redis.mode == "memorystore":
                raise ConfigError("redis.mode", self.redis.mode, "platform kind allows only 'in-cluster'")
        else:
            if self.exposure == "nodeport":
                raise ConfigError("exposure", self.exposure, "platform gke allows 'ingress' or 'gateway'")
        if self.agents.termination_grace_seconds <= 0:  # pragma: no cover - bounded by Field
            raise ConfigError(
                "agents.termination_grace_seconds", self.agents.termination_grace_seconds, "> 0"
            )
        if self.coordinator.connection_draining_seconds >= self.coordinator.termination_grace_seconds:
            raise ConfigError(  # pragma: no cover - implied by CoordinatorConfig._grace
                "coordinator.connection_draining_seconds",
                self.coordinator.connection_draining_seconds,
                "must be shorter than coordinator.termination_grace_seconds",
            )
        if self.redis_password is not None and self.redis.mode == "memorystore":
            raise ConfigError(
                "redis_password",
                "<secret>",
                "must be unset with redis.mode memorystore (its AUTH string is used)",
            )
        for key, secret in (("api_token", self.api_token), ("redis_password", self.redis_password)):
            if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
                raise ConfigError(key, "<secret>", f"must be at least {MIN_SECRET_LENGTH} characters")
        if self.cluster.create and self.kubernetes.context is not None:
            raise ConfigError(
                "kubernetes.context",
                self.kubernetes.context,
                "must be unset when cluster.create is true (the created cluster's kubeconfig is used)",
            )
        render = self.kubernetes.render_yaml_to_directory is not None
        if render and self.cluster.create:
            raise ConfigError(
                "cluster.create", True, "must be false when kubernetes.render_yaml_to_directory is set"
            )
        if self.platform == "gke" and self.gcp is None:
            for needs, key, value in (
                (self.cluster.create, "cluster.create", True),
                (self.redis.mode == "memorystore", "redis.mode", "memorystore"),
                (self.image.build.enabled, "image.build.enabled", True),
            ):
                if needs:
                    raise ConfigError(key, value, "needs the gcp section (gcp.project) on platform gke")
        if render and (self.redis.mode == "memorystore" or self.image.build.enabled):
            key, value = (
                ("redis.mode", "memorystore")
                if self.redis.mode == "memorystore"
                else ("image.build.enabled", True)
            )
            raise ConfigError(key, value, "not allowed with kubernetes.render_yaml_to_directory")
        if (
            self.redis.mode == "memorystore"
            and not self.cluster.create
            and self.redis.memorystore.network is None
        ):
            raise ConfigError(
                "redis.memorystore.network",
                None,
                "needed (VPC id) with memorystore when cluster.create is false",
            )
        gke = self.cluster.gke
        if (
            self.platform == "gke"
            and self.cluster.create
            and not gke.private_endpoint
            and not gke.master_authorized_networks
        ):
            raise ConfigError(
                "cluster.gke.master_authorized_networks",
                [],
                "list at least the CIDR of the machine running `pulumi up` (only those reach the API)",
            )
        if self.image.build.enabled and self.image.digest is not None:
            raise ConfigError(
                "image.digest",
                self.image.digest,
                "must be unset with image.build.enabled (the build's digest is used)",
            )
        if self.platform == "kind" and self.image.build.enabled and self.image.pull_policy == "Always":
            raise ConfigError(
                "image.pull_policy",
                "Always",
                "a kind-loaded image is not in any registry: use IfNotPresent or Never",
            )
        if self.platform == "kind" and self.gcp is not None:
            raise ConfigError("gcp", self.gcp.project, "platform kind creates no GCP resource; remove gcp")
        if self.platform == "kind" and self.cluster.create and self.coordinator.node_port is None:
            raise ConfigError("coordinator.node_port", None, "needed by kind")  # pragma: no cover
        return self

    @property
    def workload_identity(self) -> bool:
        """True when the agents' ServiceAccount is bound to a GCP service account."""
        return self.platform == "gke" and self.gcp is not None and self.gcp.workload_identity


def _loc_key(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(item)
    return "".join(parts)


def _lookup(data: Any, loc: tuple[int | str, ...]) -> Any:
    for item in loc:
        try:
            data = data[item]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _allowed(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "literal_error":
        return f"allowed: {ctx.get('expected')}"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see docs/config.md)"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg.replace("Input should be", "must be", 1)


def parse_config(data: Mapping[str, Any]) -> SwarmConfig:
    """Validate a plain mapping (the ``agentswarm:`` namespace) into a :class:`SwarmConfig`.

    Raises :class:`ConfigError` with a single-line message for the first problem found.
    """
    try:
        return SwarmConfig.model_validate(dict(data))
    except ConfigError:
        raise
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        inner = (err.get("ctx") or {}).get("error")
        loc = tuple(err["loc"])
        if isinstance(inner, ConfigError):
            # model validators report keys relative to their model: prefix the location
            prefix = _loc_key(loc)
            key = inner.key if not prefix or inner.key.startswith(prefix) else f"{prefix}.{inner.key}"
            raise ConfigError(key, inner.value, inner.allowed) from None
        raise ConfigError(_loc_key(loc) or "<root>", _lookup(data, loc), _allowed(err)) from None


def _decode(raw: str) -> Any:
    """Sections arrive JSON-encoded; scalars stay strings (a namespace "123" is a name, not a number)."""
    if raw.lstrip().startswith(("{", "[")):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_stack_config(
    values: Mapping[str, str] | None = None, secret_keys: Collection[str] | None = None
) -> SwarmConfig:
    """Read every ``agentswarm:*`` key of the current stack and validate it.

    ``values`` maps ``"agentswarm:<key>"`` (or bare ``<key>``) to the raw string Pulumi stores; structured
    values arrive JSON-encoded. Without it the running program's config is read. ``secret_keys`` are the
    full keys stored encrypted (default: the running program's); a :data:`SECRET_KEYS` value outside them
    is refused, so a token never sits in plain text in a stack file.
    """
    if values is None:
        from pulumi.runtime import config as runtime_config  # keeps the models importable without an engine

        values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    data: dict[str, Any] = {}
    for full_key, raw in values.items():
        ns, _, key = full_key.rpartition(":")
        if ns and ns != NAMESPACE:
            continue
        if not _KEY.match(key):
            raise ConfigError(key, raw, "config keys are snake_case names")
        data[key] = _decode(raw) if isinstance(raw, str) and key not in SECRET_KEYS else raw
    if secret_keys is None:
        from pulumi.runtime import config as runtime_config

        secret_keys = {*runtime_config.get_config_secret_keys_env(), *runtime_config._SECRET_KEYS.get()}
    for key in SECRET_KEYS:
        if key in data and f"{NAMESPACE}:{key}" not in secret_keys:
            raise ConfigError(
                key,
                "<plain text>",
                f"store it encrypted: `pulumi config set --secret {NAMESPACE}:{key} <value>`",
            )
    return parse_config(data)


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of the ``agentswarm:`` namespace (written to docs/config.schema.json)."""
    schema = SwarmConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _type_name(annotation: Any) -> str:
    origin = getattr(annotation, "__origin__", None)
    args: tuple[Any, ...] = tuple(getattr(annotation, "__args__", ()) or ())
    if getattr(annotation, "__metadata__", None) is not None:  # Annotated[T, ...]
        return _type_name(origin)
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if args and type(None) in args:  # Optional
        return " \\| ".join(_type_name(a) for a in args if a is not type(None)) + " (optional)"
    if args:
        return " \\| ".join(_type_name(a) for a in args)
    return getattr(annotation, "__name__", str(annotation))


def _walk_fields(
    model: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None
) -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every key, nested sections flattened with dots."""
    rows: list[tuple[str, str, str, str]] = []
    for field_name, info in model.model_fields.items():
        key = f"{prefix}{field_name}"
        annotation = info.annotation
        nested = _nested_model(annotation)
        if defaults is not None:
            value = getattr(defaults, field_name)
        elif info.is_required():
            value = None
        else:
            value = info.get_default(call_default_factory=True)
        if nested is not None:
            doc = (nested.__doc__ or "").strip().splitlines()[0]
            rows.append((key, "section", "", info.description or doc))
            listed = _is_list(annotation) or (defaults is None and value is None and not info.is_required())
            inner = f"{key}[]." if _is_list(annotation) else f"{key}."
            rows.extend(_walk_fields(nested, inner, None if listed or value is None else value))
            continue
        if info.is_required() and defaults is None:
            default = "required"
        else:
            default = "unset" if value is None else f"`{json.dumps(value)}`"
        rows.append((key, _type_name(annotation), default, info.description or ""))
    return rows


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _is_list(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is list


def config_keys() -> list[str]:
    """Every documented key, dotted (``coordinator.port``); list items as ``agents.egress_allow[].cidr``."""
    return [row[0] for row in _walk_fields(SwarmConfig)]


def config_markdown() -> str:
    """docs/config.md, generated from the models so it cannot drift."""
    lines = [
        "# Stack configuration reference",
        "",
        "<!-- Generated by `python -m components.config`; do not edit by hand. -->",
        "",
        "Every key lives in the stack's `agentswarm:` namespace (`stacks/Pulumi.<stack>.yaml`), e.g.",
        "",
        "```yaml",
        "config:",
        "  agentswarm:platform: gke",
        "  agentswarm:coordinator:",
        "    websocket_backend_timeout_seconds: 3600",
        "```",
        "",
        "A bad value stops `pulumi up`/`preview` before any resource is registered, with one line",
        "naming the key, the bad value and what is allowed.",
        "Machine-readable: [config.schema.json](config.schema.json).",
        "",
        "Cross-field rules:",
        "",
        "- `platform: kind` allows only `exposure: nodeport` and `redis.mode: in-cluster`, no `gcp` section.",
        "- `platform: gke` allows `exposure: ingress` (default) or `gateway`.",
        "- `coordinator.termination_grace_seconds` > `coordinator.prestop_delay_seconds` +",
        "  `coordinator.connection_draining_seconds` (draining must end before the pod is killed).",
        "- `kubernetes.render_yaml_to_directory` needs `cluster.create: false` and allows neither",
        "  Memorystore nor an image build.",
        "- A created GKE cluster with a public endpoint needs `cluster.gke.master_authorized_networks`.",
        "- `kubernetes.context` is for existing clusters: unset it when `cluster.create` is true.",
        "- On `gke`, `cluster.create`, `redis.mode: memorystore`, `image.build.enabled` need `gcp.project`.",
        "- `image`: set `tag` or `digest`; no `digest` with `build.enabled`; a kind-loaded build cannot use",
        "  `pull_policy: Always`. Node pools: `max_nodes >= min_nodes`.",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
    ]
    for key, type_name, default, desc in _walk_fields(SwarmConfig):
        lines.append(f"| `{key}` | {type_name} | {default.replace('|', '/')} | {desc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
