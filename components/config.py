"""The stack config: :class:`SwarmConfig`, the root of every value a stack can set, and :func:`parse_config`.

The sections live in :mod:`components.config_base`, :mod:`components.config_workload` and
:mod:`components.config_platform` and are re-exported here. The models are the single source of
docs/config.md and docs/config.schema.json (:mod:`components.docs`); the rules between values are the table
in :mod:`components.config_rules`, one-line errors :mod:`components.config_errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator

from components.config_base import (
    CHECKPOINT_DIR,
    COORDINATOR_PORT,
    DEFAULT_HANDLER,
    HANDLER_PATTERN,
    NODE_PORT,
    QUEUE_NAMESPACE,
    RETENTION_SECONDS,
    Cidr,
    DnsLabel,
    Quantity,
    ResourceAmounts,
    Resources,
    _Model,
)
from components.config_errors import (
    ConfigError,
    one_line_error,
)
from components.config_platform import (
    AgentNodePoolConfig,
    AuthorizedNetwork,
    ClusterConfig,
    GcpConfig,
    GkeClusterConfig,
    KindClusterConfig,
    MaintenanceWindow,
    MemorystoreConfig,
    MonitoringConfig,
    NatsConfig,
    NodePoolConfig,
    RedisConfig,
    SystemPoolConfig,
    TokenBudgetConfig,
)
from components.config_workload import (
    GLOBAL_GATEWAY_CLASSES,
    HANDLER_ENV_PREFIXES,
    REGIONAL_GATEWAY_CLASSES,
    AgentsConfig,
    AutoscalingConfig,
    CloudArmorConfig,
    CoordinatorConfig,
    EgressRule,
    EnvName,
    ImageBuildConfig,
    ImageConfig,
    KubernetesConfig,
    RateLimitConfig,
    SecretVersion,
    TlsConfig,
)

#: Every name of the config models, the sections re-exported from :mod:`components.config_base`,
#: :mod:`components.config_workload` and :mod:`components.config_platform`.
__all__ = [
    "CHECKPOINT_DIR",
    "COORDINATOR_PORT",
    "DEFAULT_HANDLER",
    "GLOBAL_GATEWAY_CLASSES",
    "HANDLER_ENV_PREFIXES",
    "HANDLER_PATTERN",
    "NODE_PORT",
    "QUEUE_NAMESPACE",
    "REGIONAL_GATEWAY_CLASSES",
    "RETENTION_SECONDS",
    "AgentNodePoolConfig",
    "AgentsConfig",
    "AuthorizedNetwork",
    "AutoscalingConfig",
    "Cidr",
    "CloudArmorConfig",
    "ClusterConfig",
    "ConfigError",
    "CoordinatorConfig",
    "DnsLabel",
    "EgressRule",
    "EnvName",
    "GcpConfig",
    "GkeClusterConfig",
    "ImageBuildConfig",
    "ImageConfig",
    "KindClusterConfig",
    "KubernetesConfig",
    "MaintenanceWindow",
    "MemorystoreConfig",
    "MonitoringConfig",
    "NatsConfig",
    "NodePoolConfig",
    "Quantity",
    "RateLimitConfig",
    "RedisConfig",
    "ResourceAmounts",
    "Resources",
    "SecretVersion",
    "SwarmConfig",
    "SystemPoolConfig",
    "TlsConfig",
    "TokenBudgetConfig",
    "parse_config",
]


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
    retention_seconds: int = Field(
        default=RETENTION_SECONDS,
        ge=0,
        description="How long the broker keeps a finished task (its result, event log and records), dead "
        "letters and the swarm feed, in seconds (AGENTSWARM_RETENTION_SECONDS); 0 keeps them forever. "
        "Size the broker from it: see docs/retention.md.",
    )
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

    def runtime_env(self) -> list[dict[str, str]]:
        """Plain ``AGENTSWARM_*`` variables both roles get (see :func:`runtime_env`)."""
        return runtime_env(self.retention_seconds, self.token_budget)

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


def runtime_env(retention_seconds: int, token_budget: TokenBudgetConfig) -> list[dict[str, str]]:
    """Plain ``AGENTSWARM_*`` variables both roles get: the retention (the coordinator trims by it, the
    agents' brokers configure the server objects with it) and the token budget."""
    if retention_seconds < 0:
        raise ConfigError("retention_seconds", retention_seconds, "must be >= 0 (0 keeps everything)")
    retention = {"name": "AGENTSWARM_RETENTION_SECONDS", "value": str(retention_seconds)}
    return [retention, *token_budget.env()]
