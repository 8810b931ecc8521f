"""The config sections of the platform: the queue backends (Redis, Memorystore, NATS), the cluster (GKE or
kind, node pools), GCP, monitoring and the token budget."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from components.config_base import (
    COORDINATOR_PORT,
    Cidr,
    DnsLabel,
    Quantity,
    Resources,
    _Model,
    _resources,
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
