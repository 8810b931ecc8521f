"""The stack config models: every value a stack can set, with its default and its bounds.

The single source of docs/config.md and docs/config.schema.json (:mod:`components.docs`); the rules between
values are the table in :mod:`components.config_rules`, one-line errors :mod:`components.config_errors`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from components.config_errors import ConfigError, one_line_error
from components.config_rules import CLOUD_ARMOR_INTERVALS, check_rules

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

# Settings the runtime reads too, each defined once on this side; tests/infra/test_infra_contract.py asserts
# them equal to the defaults of agentswarm.settings across the package boundary.
COORDINATOR_PORT = 8080
"""The coordinator's HTTP + websocket port (AGENTSWARM_PORT); kind maps the same port on the host."""
DEFAULT_HANDLER = "agentswarm.handlers.steps:handle"
"""``module:function`` of the task handler an agent runs unless told otherwise (AGENTSWARM_HANDLER)."""
HANDLER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
"""What a handler reference looks like: a dotted module path, a colon, a function name."""
QUEUE_NAMESPACE = "agentswarm"
"""The runtime's AGENTSWARM_NAMESPACE (stream, consumer and key prefix), which the components leave at its
default; the KEDA trigger names the stream and consumer from it."""
CHECKPOINT_DIR = "/var/lib/agentswarm"
"""Where an agent's checkpoint volume is mounted (AGENTSWARM_CHECKPOINT_DIR)."""
NODE_PORT = 30080
"""kind: the coordinator's fixed NodePort, mapped to the host port."""


def _check_cidr(value: str) -> str:
    """``value`` unchanged if it is a network address with its prefix (host bits zero), else ValueError."""
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"not a CIDR block ({exc})") from None
    return value


Cidr = Annotated[str, AfterValidator(_check_cidr)]
Quantity = Annotated[str, Field(pattern=_QUANTITY, description="Kubernetes quantity, e.g. `500m`, `1Gi`.")]
DnsLabel = Annotated[str, Field(pattern=_DNS_LABEL, max_length=63)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="after")
    def _rules(self) -> Self:
        check_rules(self)  # the cross-field rules of this model's class, from the one table
        return self


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


def _resources(cpu: str, memory: str, memory_limit: str) -> Resources:
    """Requests of both, a memory limit, no CPU limit (throttling hurts more than sharing)."""
    return Resources(
        requests=ResourceAmounts(cpu=cpu, memory=memory), limits=ResourceAmounts(memory=memory_limit)
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

    enabled: bool = Field(
        default=False, description="Build the image during `pulumi up` (`agent_image/`, or your own project)."
    )
    context: str = Field(
        default="agent_image",
        description="Docker build context, relative to the project root (`.` in a project of your own).",
    )
    dockerfile: str = Field(
        default="agent_image/Dockerfile", description="Dockerfile path, relative to the project root."
    )
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
            "image is pushed as `<Artifact Registry path>/<last segment of this>`."
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

    @property
    def reference(self) -> str:
        """``repository@digest`` or ``repository:tag``."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


GLOBAL_GATEWAY_CLASSES = ("gke-l7-global-external-managed", "gke-l7-gxlb")
"""GatewayClasses whose load balancer is global: a Certificate Manager map, a global address, Cloud Armor."""
REGIONAL_GATEWAY_CLASSES = ("gke-l7-regional-external-managed", "gke-l7-rilb")
"""GatewayClasses whose load balancer is regional: regional Certificate Manager certificates, no map."""


class TlsConfig(_Model):
    """TLS at the GKE load balancer: clients use `https://` and `wss://`; the pods behind it speak HTTP."""

    mode: Literal["managed", "pre-shared", "none"] | None = Field(
        default=None,
        description=(
            "`managed`: a Google-managed certificate for `coordinator.hostname` (Ingress: a "
            "ManagedCertificate; Gateway: Certificate Manager); `pre-shared`: Compute Engine SSL "
            "certificates you created, named in `pre_shared_certificates`; `none`: plain HTTP, the API "
            "token in clear text (must be explicit on "
            "gke and warns at preview). Unset: `managed` on gke, `none` on kind."
        ),
    )
    pre_shared_certificates: list[DnsLabel] = Field(
        default_factory=list,
        max_length=15,
        description="Names of existing Compute Engine SSL certificates (mode `pre-shared` only).",
    )
    static_ip_name: DnsLabel | None = Field(
        default=None,
        description=(
            "Name of an existing reserved global address for the load balancer; unset: one is reserved "
            "(needs the gcp section). Global load balancers only (Ingress, global GatewayClasses)."
        ),
    )


class RateLimitConfig(_Model):
    """A per-client-IP rate limit (Cloud Armor ``rateLimitOptions``, enforced on key ``IP``)."""

    requests: int = Field(default=600, ge=1, le=1_000_000, description="Requests allowed per interval.")
    interval_seconds: int = Field(
        default=60,
        ge=10,
        le=3600,
        description=f"Interval of the count, in seconds: {', '.join(map(str, CLOUD_ARMOR_INTERVALS))}.",
    )
    action: Literal["throttle", "rate_based_ban"] = Field(
        default="throttle",
        description="`throttle`: refuse (429) what exceeds the rate; `rate_based_ban`: also ban the IP.",
    )
    ban_seconds: int = Field(
        default=600, ge=1, le=86400, description="How long a banned IP stays banned (`rate_based_ban`)."
    )


class CloudArmorConfig(_Model):
    """A Cloud Armor security policy on the coordinator's backend, created by the components."""

    enabled: bool = Field(
        default=False, description="Create the policy and attach it (needs the gcp section)."
    )
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig, description="Per-IP rate limit.")


class CoordinatorConfig(_Model):
    """The coordinator Deployment and how it is exposed."""

    replicas: int = Field(default=1, ge=1, le=10, description="Coordinator replicas.")
    port: int = Field(
        default=COORDINATOR_PORT, ge=1024, le=65535, description="HTTP + websocket port (non-privileged)."
    )
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
        default=NODE_PORT, ge=30000, le=32767, description="kind only: fixed NodePort mapped to the host."
    )
    gateway_class: Literal[
        "gke-l7-global-external-managed", "gke-l7-regional-external-managed", "gke-l7-rilb", "gke-l7-gxlb"
    ] = Field(default="gke-l7-global-external-managed", description="GKE GatewayClass (exposure gateway).")
    hostname: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$",
        description=(
            "Public hostname of the coordinator (Ingress rule / HTTPRoute, and the managed certificate's "
            "domain); needed by `tls.mode: managed`, the gke default."
        ),
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS at the load balancer (GKE).")
    cloud_armor: CloudArmorConfig = Field(
        default_factory=CloudArmorConfig, description="Optional Cloud Armor policy with a per-IP rate limit."
    )
    resources: Resources = Field(
        default_factory=lambda: _resources("250m", "256Mi", "512Mi"), description="Container resources."
    )


class EgressRule(_Model):
    """One model-API destination agents may reach (NetworkPolicy ipBlock)."""

    cidr: Cidr = Field(description="Destination CIDR, e.g. `0.0.0.0/0` or `203.0.113.0/24`.")
    except_cidrs: list[Cidr] = Field(default_factory=list, description="CIDRs carved out of `cidr`.")
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=lambda: [443], min_length=1, description="TCP ports."
    )


_PUBLIC_HTTPS = EgressRule(cidr="0.0.0.0/0", except_cidrs=["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])


class AutoscalingConfig(_Model):
    """Agents that follow the queue's backlog through KEDA, down to zero (docs/autoscaling.md)."""

    enabled: bool = Field(
        default=False,
        description=(
            "Create a KEDA ScaledObject for the agent StatefulSet (KEDA must be installed, or set "
            "`install_keda`); `agents.replicas` is then ignored and agents use broker checkpoints."
        ),
    )
    min_replicas: int = Field(default=0, ge=0, le=10000, description="Fewest agents; 0 = none while idle.")
    max_replicas: int = Field(default=50, ge=1, le=10000, description="Most agents.")
    target_tasks_per_agent: int = Field(
        default=1, ge=1, le=100000, description="Outstanding tasks (queued + running) per agent."
    )
    activation_tasks: int = Field(
        default=0, ge=0, le=100000, description="Backlog above which agents start from zero (activation)."
    )
    polling_interval_seconds: int = Field(
        default=30, ge=1, le=3600, description="How often KEDA reads the backlog (pollingInterval)."
    )
    cooldown_seconds: int = Field(
        default=300, ge=0, le=86400, description="Idle seconds before the last step to min_replicas."
    )
    scale_down_stabilization_seconds: int = Field(
        default=300, ge=0, le=3600, description="HPA scale-down stabilisation window between 1 and max."
    )
    install_keda: bool = Field(
        default=False, description="Install KEDA from the kedacore Helm chart (pinned); needs chart access."
    )


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_SECRET_VERSION = r"^projects/[a-z0-9-]{6,30}/secrets/[A-Za-z0-9_-]{1,255}/versions/([0-9]+|latest)$"


#: ``AGENTSWARM_*`` variables a handler reads (the LLM handlers' settings); the other ``AGENTSWARM_*`` ones
#: are the runtime's, set by the components from their own config keys.
HANDLER_ENV_PREFIXES = ("AGENTSWARM_LLM_", "AGENTSWARM_PYDANTIC_AI_")


def _check_env_name(name: str) -> str:
    """A handler variable name: not one of the runtime's own ``AGENTSWARM_*`` settings."""
    import re

    if not re.match(_ENV_NAME, name):
        raise ValueError(f"{name!r} is not an environment variable name (letters, digits, '_')")
    if name.upper().startswith("AGENTSWARM_") and not name.startswith(HANDLER_ENV_PREFIXES):
        raise ValueError(
            f"{name!r}: AGENTSWARM_* runtime settings come from their own config keys; "
            "only AGENTSWARM_LLM_* and AGENTSWARM_PYDANTIC_AI_* are handler settings"
        )
    return name


EnvName = Annotated[str, AfterValidator(_check_env_name)]
SecretVersion = Annotated[str, Field(pattern=_SECRET_VERSION)]


class AgentsConfig(_Model):
    """The agent StatefulSet."""

    replicas: int = Field(default=50, ge=0, le=10000, description="Number of agent pods.")
    handler: str = Field(
        default=DEFAULT_HANDLER,
        pattern=HANDLER_PATTERN,
        description="`module:function` of the async task handler (AGENTSWARM_HANDLER).",
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Tasks one agent pod runs at once, for I/O-bound handlers (AGENTSWARM_CONCURRENCY).",
    )
    storage_size: Quantity = Field(default="1Gi", description="Per-agent checkpoint PVC size.")
    storage_class: str | None = Field(
        default=None, description="StorageClass of the PVCs; unset = cluster default."
    )
    checkpoint_path: str = Field(
        default=CHECKPOINT_DIR,
        pattern=r"^/[A-Za-z0-9._/-]*$",
        description="Mount path of the checkpoint volume (AGENTSWARM_CHECKPOINT_DIR).",
    )
    resources: Resources = Field(
        default_factory=lambda: _resources("100m", "256Mi", "512Mi"), description="Container resources."
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
    autoscaling: AutoscalingConfig = Field(
        default_factory=AutoscalingConfig, description="Scale with the queue (KEDA)."
    )
    env: dict[EnvName, str] = Field(
        default_factory=dict,
        description="Plain environment variables for the handler (model name, base URL); never secrets.",
    )
    secret_env: dict[EnvName, SecretStr] = Field(
        default_factory=dict,
        description="Handler secrets (model API keys), set with `pulumi config set --secret --path "
        "agentswarm:agents.secret_env.NAME ...`: a Kubernetes Secret mounted as files, NAME_FILE in the pod, "
        "NAME in the handler's environment.",
    )
    secret_manager: dict[EnvName, SecretVersion] = Field(
        default_factory=dict,
        description="GKE: handler secrets from Secret Manager (`projects/P/secrets/S/versions/V`), "
        "mounted as files by the Secret Manager add-on through Workload Identity; the agents' GCP "
        "service account gets secretAccessor on each secret.",
    )

    @model_validator(mode="after")
    def _one_source_per_name(self) -> Self:
        seen: dict[str, str] = {}
        for section in ("env", "secret_env", "secret_manager"):
            for name in getattr(self, section):
                if name in seen:
                    raise ConfigError(section, name, f"already set in agents.{seen[name]}")
                seen[name] = section
        for name in [*self.secret_env, *self.secret_manager]:
            if f"{name}_FILE" in seen:
                raise ConfigError(
                    seen[f"{name}_FILE"], f"{name}_FILE", f"is the path variable of secret {name}"
                )
        return self


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
        default_factory=lambda: _resources("250m", "512Mi", "1Gi"), description="Container resources."
    )
    memorystore: MemorystoreConfig = Field(
        default_factory=MemorystoreConfig, description="Memorystore settings."
    )


class NatsConfig(_Model):
    """In-cluster NATS with JetStream (used when `broker` is `nats`)."""

    image: str = Field(
        default="docker.io/library/nats:2.10.14-alpine3.19", description="Pinned official image."
    )
    storage_size: Quantity = Field(default="8Gi", description="JetStream file store PVC size.")
    storage_class: str | None = Field(default=None, description="StorageClass; unset = cluster default.")
    resources: Resources = Field(
        default_factory=lambda: _resources("100m", "256Mi", "1Gi"), description="Container resources."
    )


class NodePoolConfig(_Model):
    """An autoscaling GKE node pool."""

    machine_type: str = Field(default="e2-standard-4", description="Machine type.")
    min_nodes: int = Field(default=1, ge=0, le=1000, description="Autoscaling minimum per zone.")
    max_nodes: int = Field(default=3, ge=1, le=1000, description="Autoscaling maximum per zone.")
    spot: bool = Field(default=False, description="Use spot VMs.")
    disk_size_gb: int = Field(default=50, ge=10, le=65536, description="Boot disk size.")


class SystemPoolConfig(NodePoolConfig):
    """Node pool for the coordinator and Redis."""

    machine_type: str = Field(default="e2-standard-2", description="Machine type.")


class AgentNodePoolConfig(NodePoolConfig):
    """Node pool for the agents, tainted and labelled `agentswarm.io/pool=agents`."""

    min_nodes: int = Field(default=0, ge=0, le=1000, description="Autoscaling minimum per zone.")
    max_nodes: int = Field(default=10, ge=1, le=1000, description="Autoscaling maximum per zone.")


class AuthorizedNetwork(_Model):
    """A CIDR allowed to reach the GKE control plane."""

    cidr: Cidr = Field(description="CIDR block.")
    display_name: str = Field(default="", description="Label shown in the console.")


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
    network_cidr: Cidr = Field(default="10.10.0.0/20", description="Subnet primary range (nodes).")
    pods_cidr: Cidr = Field(default="10.20.0.0/14", description="Secondary range for pods.")
    services_cidr: Cidr = Field(default="10.24.0.0/20", description="Secondary range for services.")
    master_cidr: Cidr = Field(default="172.16.0.0/28", description="Control-plane /28 for private clusters.")
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


class KindClusterConfig(_Model):
    """A local kind cluster."""

    node_image: str = Field(
        default="kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f",
        description="Node image; pins the Kubernetes version.",
    )
    host_port: int = Field(
        default=COORDINATOR_PORT,
        ge=1,
        le=65535,
        description="Host port mapped to the coordinator NodePort (default: where the CLI looks first).",
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


class MonitoringConfig(_Model):
    """Metrics collection by Google Cloud Managed Service for Prometheus (see docs/metrics.md)."""

    managed_prometheus: bool = Field(
        default=False,
        description="gke only: PodMonitoring objects (monitoring.googleapis.com/v1) that scrape the "
        "coordinator's /metrics; needs managed collection on the cluster (on by default since GKE 1.27).",
    )
    scrape_interval: str = Field(
        default="30s",
        pattern=r"^[1-9][0-9]*(s|m)$",
        description="How often Managed Prometheus scrapes, a Prometheus duration in s or m (e.g. 30s, 1m).",
    )


class TokenBudgetConfig(_Model):
    """The swarm-wide LLM token budget per UTC day (agents and coordinator; see docs/runtime-contract.md)."""

    tokens_per_day: int = Field(
        default=0, ge=0, description="Total tokens per UTC day for all agents; 0 = no total limit."
    )
    model_tokens_per_day: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description="Tokens per UTC day per model name (the task's model)."
    )

    def env(self) -> list[dict[str, str]]:
        """``AGENTSWARM_BUDGET_*`` for the coordinator and the agents; empty without a limit."""
        import json

        env = []
        if self.tokens_per_day:
            env.append({"name": "AGENTSWARM_BUDGET_TOKENS_PER_DAY", "value": str(self.tokens_per_day)})
        if self.model_tokens_per_day:
            value = json.dumps(self.model_tokens_per_day, sort_keys=True)
            env.append({"name": "AGENTSWARM_BUDGET_MODEL_TOKENS_PER_DAY", "value": value})
        return env


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
    broker: Literal["redis", "nats"] = Field(
        default="redis",
        description="Queue backend: Redis Streams (`redis` section) or NATS JetStream (`nats`).",
    )
    redis: RedisConfig = Field(default_factory=RedisConfig)
    nats: NatsConfig = Field(default_factory=NatsConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    token_budget: TokenBudgetConfig = Field(
        default_factory=TokenBudgetConfig,
        description="Swarm-wide LLM token budget: spent = no new LLM task until midnight UTC.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Coordinator API token; unset: generated (pulumi-random). Set it with "
        "`pulumi config set --secret agentswarm:api_token ...`.",
    )
    api_token_next: SecretStr | None = Field(
        default=None,
        description="A second valid API token during a rotation: set it and `pulumi up` (both tokens work; "
        "the coordinator re-reads its token file, no restart), move the clients to it, then make it "
        "`api_token` and unset this. `pulumi config set --secret agentswarm:api_token_next ...`.",
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

    @property
    def tls_mode(self) -> Literal["managed", "pre-shared", "none"]:
        """``coordinator.tls.mode`` or the platform's default: managed certificates on gke, none on kind."""
        if self.coordinator.tls.mode is not None:
            return self.coordinator.tls.mode
        return "managed" if self.platform == "gke" else "none"

    @property
    def global_load_balancer(self) -> bool:
        """True when the coordinator's load balancer is global (Ingress or a global GatewayClass)."""
        return self.exposure == "ingress" or (
            self.exposure == "gateway" and self.coordinator.gateway_class in GLOBAL_GATEWAY_CLASSES
        )

    @property
    def workload_identity(self) -> bool:
        """True when the agents' ServiceAccount is bound to a GCP service account."""
        return self.platform == "gke" and self.gcp is not None and self.gcp.workload_identity


def parse_config(data: Mapping[str, Any]) -> SwarmConfig:
    """Validate a plain mapping (the ``agentswarm:`` namespace) into a :class:`SwarmConfig`.

    Raises :class:`ConfigError` with a single-line message for the first problem found.
    """
    try:
        return SwarmConfig.model_validate(dict(data))
    except ConfigError:
        raise
    except ValidationError as exc:
        raise one_line_error(exc, data) from None
