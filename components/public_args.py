"""The swarm config as TypedDicts and Enums: the public args shape of the component package.

Generated from :mod:`components.config` by ``python -m components.public_args_gen``; do not edit.
Validation stays with the pydantic models (:func:`components.provider.swarm_config`).
"""

# ruff: noqa: E501
# No `from __future__ import annotations`: Pulumi's schema analyzer reads them at runtime.
from enum import StrEnum
from typing import NotRequired, TypedDict


class SwarmPlatform(StrEnum):
    """Choices of ``SwarmConfig.platform``."""

    KIND = "kind"
    """``kind``."""
    GKE = "gke"
    """``gke``."""


class SwarmExposure(StrEnum):
    """Choices of ``SwarmConfig.exposure``."""

    INGRESS = "ingress"
    """``ingress``."""
    GATEWAY = "gateway"
    """``gateway``."""
    NODEPORT = "nodeport"
    """``nodeport``."""


class ImagePullPolicy(StrEnum):
    """Choices of ``ImageConfig.pull_policy``."""

    ALWAYS = "Always"
    """``Always``."""
    IF_NOT_PRESENT = "IfNotPresent"
    """``IfNotPresent``."""
    NEVER = "Never"
    """``Never``."""


class ImageConfig(TypedDict):
    """The one agentswarm image used by the coordinator and the agents."""

    repository: NotRequired[str]
    """Image repository. The default is the local name `docker build -t agentswarm:dev agent_image/` gives; without `build.enabled` on GKE set your registry's path. With `build.enabled` on GKE the image is pushed as `<Artifact Registry path>/<last segment of this>`. Default: ``"agentswarm"``."""
    tag: NotRequired[str]
    """Tag. Default: ``"dev"``."""
    digest: NotRequired[str]
    """Digest; when set it wins over the tag (immutable reference)."""
    pull_policy: NotRequired[ImagePullPolicy]
    """Kubernetes imagePullPolicy. Default: ``"IfNotPresent"``."""


class CoordinatorGatewayClass(StrEnum):
    """Choices of ``CoordinatorConfig.gateway_class``."""

    GKE_L7_GLOBAL_EXTERNAL_MANAGED = "gke-l7-global-external-managed"
    """``gke-l7-global-external-managed``."""
    GKE_L7_REGIONAL_EXTERNAL_MANAGED = "gke-l7-regional-external-managed"
    """``gke-l7-regional-external-managed``."""
    GKE_L7_RILB = "gke-l7-rilb"
    """``gke-l7-rilb``."""
    GKE_L7_GXLB = "gke-l7-gxlb"
    """``gke-l7-gxlb``."""


class TlsMode(StrEnum):
    """Choices of ``TlsConfig.mode``."""

    MANAGED = "managed"
    """``managed``."""
    PRE_SHARED = "pre-shared"
    """``pre-shared``."""
    NONE = "none"
    """``none``."""


class TlsConfig(TypedDict):
    """TLS at the GKE load balancer: clients use `https://` and `wss://`; the pods behind it speak HTTP."""

    mode: NotRequired[TlsMode]
    """`managed`: a Google-managed certificate for `coordinator.hostname` (Ingress: a ManagedCertificate; Gateway: Certificate Manager); `pre-shared`: Compute Engine SSL certificates you created, named in `pre_shared_certificates`; `none`: plain HTTP, the API token in clear text (must be explicit on gke and warns at preview). Unset: `managed` on gke, `none` on kind."""
    pre_shared_certificates: NotRequired[list[str]]
    """Names of existing Compute Engine SSL certificates (mode `pre-shared` only)."""
    static_ip_name: NotRequired[str]
    """Name of an existing reserved global address for the load balancer; unset: one is reserved (needs the gcp section). Global load balancers only (Ingress, global GatewayClasses)."""


class RateLimitAction(StrEnum):
    """Choices of ``RateLimitConfig.action``."""

    THROTTLE = "throttle"
    """``throttle``."""
    RATE_BASED_BAN = "rate_based_ban"
    """``rate_based_ban``."""


class RateLimitConfig(TypedDict):
    """A per-client-IP rate limit (Cloud Armor ``rateLimitOptions``, enforced on key ``IP``)."""

    requests: NotRequired[int]
    """Requests allowed per interval. Default: ``600``."""
    interval_seconds: NotRequired[int]
    """Interval of the count, in seconds: 10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600. Default: ``60``."""
    action: NotRequired[RateLimitAction]
    """`throttle`: refuse (429) what exceeds the rate; `rate_based_ban`: also ban the IP. Default: ``"throttle"``."""
    ban_seconds: NotRequired[int]
    """How long a banned IP stays banned (`rate_based_ban`). Default: ``600``."""


class CloudArmorConfig(TypedDict):
    """A Cloud Armor security policy on the coordinator's backend, created by the components."""

    enabled: NotRequired[bool]
    """Create the policy and attach it (needs the gcp section). Default: ``false``."""
    rate_limit: NotRequired[RateLimitConfig]
    """Per-IP rate limit."""


class ResourceAmounts(TypedDict):
    """CPU and memory amounts (Kubernetes quantities)."""

    cpu: NotRequired[str]
    """CPU, e.g. `250m` or `1`."""
    memory: NotRequired[str]
    """Memory, e.g. `256Mi`."""


class Resources(TypedDict):
    """Container requests and limits."""

    requests: NotRequired[ResourceAmounts]
    """Scheduling requests."""
    limits: NotRequired[ResourceAmounts]
    """Hard limits."""


class CoordinatorConfig(TypedDict):
    """The coordinator Deployment and how it is exposed."""

    replicas: NotRequired[int]
    """Coordinator replicas. Default: ``1``."""
    port: NotRequired[int]
    """HTTP + websocket port (non-privileged). Default: ``8080``."""
    websocket_backend_timeout_seconds: NotRequired[int]
    """GKE load-balancer backend timeout = maximum lifetime of a websocket. GKE default: 30 s; above 24 h is discouraged (Google front ends restart for maintenance). Default: ``3600``."""
    connection_draining_seconds: NotRequired[int]
    """Load-balancer connection draining and the coordinator's SIGTERM drain time. Default: ``60``."""
    prestop_delay_seconds: NotRequired[int]
    """preStop sleep so endpoints are removed before draining starts. Default: ``5``."""
    termination_grace_seconds: NotRequired[int]
    """Pod terminationGracePeriodSeconds; must exceed preStop + drain. Default: ``90``."""
    node_port: NotRequired[int]
    """kind only: fixed NodePort mapped to the host. Default: ``30080``."""
    gateway_class: NotRequired[CoordinatorGatewayClass]
    """GKE GatewayClass (exposure gateway). Default: ``"gke-l7-global-external-managed"``."""
    hostname: NotRequired[str]
    """Public hostname of the coordinator (Ingress rule / HTTPRoute, and the managed certificate's domain); needed by `tls.mode: managed`, the gke default."""
    tls: NotRequired[TlsConfig]
    """TLS at the load balancer (GKE)."""
    cloud_armor: NotRequired[CloudArmorConfig]
    """Optional Cloud Armor policy with a per-IP rate limit."""
    resources: NotRequired[Resources]
    """Container resources."""


class EgressRule(TypedDict):
    """One model-API destination agents may reach (NetworkPolicy ipBlock)."""

    cidr: str
    """Destination CIDR, e.g. `0.0.0.0/0` or `203.0.113.0/24`."""
    except_cidrs: NotRequired[list[str]]
    """CIDRs carved out of `cidr`."""
    ports: NotRequired[list[int]]
    """TCP ports."""


class AgentsPvcRetentionWhenDeleted(StrEnum):
    """Choices of ``AgentsConfig.pvc_retention_when_deleted``."""

    RETAIN = "Retain"
    """``Retain``."""
    DELETE = "Delete"
    """``Delete``."""


class AgentsPvcRetentionWhenScaled(StrEnum):
    """Choices of ``AgentsConfig.pvc_retention_when_scaled``."""

    RETAIN = "Retain"
    """``Retain``."""
    DELETE = "Delete"
    """``Delete``."""


class AutoscalingConfig(TypedDict):
    """Agents that follow the queue's backlog through KEDA, down to zero (docs/autoscaling.md)."""

    enabled: NotRequired[bool]
    """Create a KEDA ScaledObject for the agent StatefulSet (KEDA must be installed, or set `install_keda`); `agents.replicas` is then ignored and agents use broker checkpoints. Default: ``false``."""
    min_replicas: NotRequired[int]
    """Fewest agents; 0 = none while idle. Default: ``0``."""
    max_replicas: NotRequired[int]
    """Most agents. Default: ``50``."""
    target_tasks_per_agent: NotRequired[int]
    """Outstanding tasks (queued + running) per agent. Default: ``1``."""
    activation_tasks: NotRequired[int]
    """Backlog above which agents start from zero (activation). Default: ``0``."""
    polling_interval_seconds: NotRequired[int]
    """How often KEDA reads the backlog (pollingInterval). Default: ``30``."""
    cooldown_seconds: NotRequired[int]
    """Idle seconds before the last step to min_replicas. Default: ``300``."""
    scale_down_stabilization_seconds: NotRequired[int]
    """HPA scale-down stabilisation window between 1 and max. Default: ``300``."""
    install_keda: NotRequired[bool]
    """Install KEDA from the kedacore Helm chart (pinned); needs chart access. Default: ``false``."""


class AgentsConfig(TypedDict):
    """The agent StatefulSet."""

    replicas: NotRequired[int]
    """Number of agent pods. Default: ``50``."""
    handler: NotRequired[str]
    """`module:function` of the async task handler (AGENTSWARM_HANDLER). Default: ``"agentswarm.handlers.steps:handle"``."""
    concurrency: NotRequired[int]
    """Tasks one agent pod runs at once, for I/O-bound handlers (AGENTSWARM_CONCURRENCY). Default: ``1``."""
    storage_size: NotRequired[str]
    """Per-agent checkpoint PVC size. Default: ``"1Gi"``."""
    storage_class: NotRequired[str]
    """StorageClass of the PVCs; unset = cluster default."""
    checkpoint_path: NotRequired[str]
    """Mount path of the checkpoint volume (AGENTSWARM_CHECKPOINT_DIR). Default: ``"/var/lib/agentswarm"``."""
    resources: NotRequired[Resources]
    """Container resources."""
    termination_grace_seconds: NotRequired[int]
    """Time an agent gets to checkpoint after SIGTERM. Default: ``60``."""
    probe_max_age_seconds: NotRequired[int]
    """Liveness: heartbeat file must be younger than this. Default: ``60``."""
    egress_allow: NotRequired[list[EgressRule]]
    """Model-API allow-list; default: public internet on 443, private ranges excluded."""
    pvc_retention_when_deleted: NotRequired[AgentsPvcRetentionWhenDeleted]
    """Keep checkpoints when the StatefulSet is deleted. Default: ``"Retain"``."""
    pvc_retention_when_scaled: NotRequired[AgentsPvcRetentionWhenScaled]
    """Keep checkpoints of scaled-down agents so they resume when scaled up. Default: ``"Retain"``."""
    max_unavailable: NotRequired[str]
    """PodDisruptionBudget maxUnavailable. Default: ``"10%"``."""
    dedicated_nodes: NotRequired[bool]
    """Select nodes labelled `agentswarm.io/pool=agents` and tolerate their taint. The clusters this project creates carry that label; set false for a plain existing cluster. Default: ``true``."""
    autoscaling: NotRequired[AutoscalingConfig]
    """Scale with the queue (KEDA)."""
    env: NotRequired[dict[str, str]]
    """Plain environment variables for the handler (model name, base URL); never secrets."""
    secret_env: NotRequired[dict[str, str]]
    """Handler secrets (model API keys), set with `pulumi config set --secret --path agentswarm:agents.secret_env.NAME ...`: a Kubernetes Secret mounted as files, NAME_FILE in the pod, NAME in the handler's environment."""
    secret_manager: NotRequired[dict[str, str]]
    """GKE: handler secrets from Secret Manager (`projects/P/secrets/S/versions/V`), mounted as files by the Secret Manager add-on through Workload Identity; the agents' GCP service account gets secretAccessor on each secret."""


class SwarmBroker(StrEnum):
    """Choices of ``SwarmConfig.broker``."""

    REDIS = "redis"
    """``redis``."""
    NATS = "nats"
    """``nats``."""


class RedisMode(StrEnum):
    """Choices of ``RedisConfig.mode``."""

    IN_CLUSTER = "in-cluster"
    """``in-cluster``."""
    MEMORYSTORE = "memorystore"
    """``memorystore``."""


class MemorystoreTier(StrEnum):
    """Choices of ``MemorystoreConfig.tier``."""

    BASIC = "BASIC"
    """``BASIC``."""
    STANDARD_HA = "STANDARD_HA"
    """``STANDARD_HA``."""


class MemorystoreConfig(TypedDict):
    """Managed Redis (GKE only)."""

    tier: NotRequired[MemorystoreTier]
    """Memorystore tier. Default: ``"BASIC"``."""
    memory_size_gb: NotRequired[int]
    """Instance size. Default: ``1``."""
    redis_version: NotRequired[str]
    """Version. Default: ``"REDIS_7_2"``."""
    network: NotRequired[str]
    """VPC id to peer with when the cluster is not created here; default: the cluster's VPC."""


class RedisConfig(TypedDict):
    """The queue and state store."""

    mode: NotRequired[RedisMode]
    """Where Redis runs. Default: ``"in-cluster"``."""
    image: NotRequired[str]
    """Pinned official image. Default: ``"docker.io/library/redis:7.4.2-bookworm"``."""
    storage_size: NotRequired[str]
    """In-cluster data PVC size. Default: ``"8Gi"``."""
    storage_class: NotRequired[str]
    """StorageClass; unset = cluster default."""
    aof: NotRequired[bool]
    """AOF persistence with appendfsync everysec. Default: ``true``."""
    resources: NotRequired[Resources]
    """Container resources."""
    memorystore: NotRequired[MemorystoreConfig]
    """Memorystore settings."""


class NatsConfig(TypedDict):
    """In-cluster NATS with JetStream (used when `broker` is `nats`)."""

    image: NotRequired[str]
    """Pinned official image. Default: ``"docker.io/library/nats:2.10.14-alpine3.19"``."""
    storage_size: NotRequired[str]
    """JetStream file store PVC size. Default: ``"8Gi"``."""
    storage_class: NotRequired[str]
    """StorageClass; unset = cluster default."""
    resources: NotRequired[Resources]
    """Container resources."""


class MonitoringConfig(TypedDict):
    """Metrics collection by Google Cloud Managed Service for Prometheus (see docs/metrics.md)."""

    managed_prometheus: NotRequired[bool]
    """gke only: PodMonitoring objects (monitoring.googleapis.com/v1) that scrape the coordinator's /metrics; needs managed collection on the cluster (on by default since GKE 1.27). Default: ``false``."""
    scrape_interval: NotRequired[str]
    """How often Managed Prometheus scrapes, a Prometheus duration in s or m (e.g. 30s, 1m). Default: ``"30s"``."""


class TokenBudgetConfig(TypedDict):
    """The swarm-wide LLM token budget per UTC day (agents and coordinator; see docs/runtime-contract.md)."""

    tokens_per_day: NotRequired[int]
    """Total tokens per UTC day for all agents; 0 = no total limit. Default: ``0``."""
    model_tokens_per_day: NotRequired[dict[str, int]]
    """Tokens per UTC day per model name (the task's model)."""


class SwarmConfig(TypedDict):
    """Everything a swarm needs, read from the stack's `agentswarm:` namespace."""

    platform: SwarmPlatform
    """Where the swarm runs."""
    name: NotRequired[str]
    """Swarm instance name (label and resource prefix). Default: ``"agentswarm"``."""
    namespace: NotRequired[str]
    """Kubernetes namespace. Default: ``"agentswarm"``."""
    exposure: NotRequired[SwarmExposure]
    """How the coordinator is reached; default ingress on gke, nodeport on kind."""
    image: NotRequired[ImageConfig]
    """The one agentswarm image used by the coordinator and the agents."""
    coordinator: NotRequired[CoordinatorConfig]
    """The coordinator Deployment and how it is exposed."""
    agents: NotRequired[AgentsConfig]
    """The agent StatefulSet."""
    broker: NotRequired[SwarmBroker]
    """Queue backend: Redis Streams (`redis` section) or NATS JetStream (`nats`). Default: ``"redis"``."""
    redis: NotRequired[RedisConfig]
    """The queue and state store."""
    nats: NotRequired[NatsConfig]
    """In-cluster NATS with JetStream (used when `broker` is `nats`)."""
    monitoring: NotRequired[MonitoringConfig]
    """Metrics collection by Google Cloud Managed Service for Prometheus (see docs/metrics.md)."""
    retention_seconds: NotRequired[int]
    """How long the broker keeps a finished task (its result, event log and records), dead letters and the swarm feed, in seconds (AGENTSWARM_RETENTION_SECONDS); 0 keeps them forever. Size the broker from it: see docs/retention.md. Default: ``604800``."""
    token_budget: NotRequired[TokenBudgetConfig]
    """Swarm-wide LLM token budget: spent = no new LLM task until midnight UTC."""
    api_token: NotRequired[str]
    """Coordinator API token; unset: generated (pulumi-random). Set it with `pulumi config set --secret agentswarm:api_token ...`."""
    api_token_next: NotRequired[str]
    """A second valid API token during a rotation: set it and `pulumi up` (both tokens work; the coordinator re-reads its token file, no restart), move the clients to it, then make it `api_token` and unset this. `pulumi config set --secret agentswarm:api_token_next ...`."""
    redis_password: NotRequired[str]
    """In-cluster Redis password; unset: generated (pulumi-random). Set it with `pulumi config set --secret agentswarm:redis_password ...`."""
