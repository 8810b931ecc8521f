"""AgentSwarm: the whole workload layer from one config object. This is what other programs import."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from components import _k8s
from components.agents import AgentPool
from components.config import SwarmConfig, parse_config
from components.coordinator import Coordinator
from components.namespace import SwarmNamespace
from components.redis import Redis, RedisArgs, RedisConnection

MANAGED_REDIS_PASSWORD_KEY = "auth-string"
MANAGED_REDIS_CA_KEY = "ca.crt"


class ManagedRedis(TypedDict):
    """A Redis that is not in the cluster (Memorystore): TLS, AUTH and a private IP."""

    host: pulumi.Input[str]
    port: pulumi.Input[int]
    auth_string: pulumi.Input[str]
    ca_certificate: pulumi.Input[str]


class AgentSwarmArgs(TypedDict, total=False):
    config: SwarmConfig | Mapping[str, Any]
    """The swarm config: a :class:`SwarmConfig` or the plain ``agentswarm:`` mapping (validated here)."""
    image: pulumi.Input[str]
    """Image reference overriding ``config.image`` (e.g. the digest of an image built in the same program)."""
    managed_redis: ManagedRedis
    """Required when ``redis.mode`` is ``memorystore``: connection data of the managed instance."""
    gcp_service_account: pulumi.Input[str]
    """GCP service account email to bind the agents' ServiceAccount to (Workload Identity)."""


class AgentSwarm(pulumi.ComponentResource):
    """Namespace + Redis (or a managed one) + Coordinator + AgentPool, wired to each other."""

    namespace: pulumi.Output[str]
    coordinator_service: pulumi.Output[str]
    coordinator_port: pulumi.Output[int]
    coordinator_address: pulumi.Output[str]
    """Public IP of the GKE Ingress load balancer (empty for other exposures and until provisioned)."""
    api_token_secret_name: pulumi.Output[str]
    redis_url: pulumi.Output[str]
    agent_statefulset: pulumi.Output[str]
    agent_replicas: pulumi.Output[int]

    def __init__(self, name: str, args: AgentSwarmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raw = args["config"]
        cfg = raw if isinstance(raw, SwarmConfig) else parse_config(raw)
        if cfg.redis.mode == "memorystore" and "managed_redis" not in args:
            raise ValueError("AgentSwarm: redis.mode is 'memorystore' but no managed_redis was given")
        super().__init__("agentswarm:index:AgentSwarm", name, None, opts)
        instance = cfg.name
        ns_component = SwarmNamespace(
            f"{name}-namespace", {"namespace": cfg.namespace, "instance": instance}, _k8s.child_opts(self)
        )
        ns = ns_component.namespace
        in_ns = _k8s.child_opts(self, depends_on=[ns_component])
        coordinator_sel = _k8s.selector_labels(instance, "coordinator")
        agent_sel = _k8s.selector_labels(instance, "agent")

        conn: RedisConnection
        if cfg.redis.mode == "in-cluster":
            redis_args: RedisArgs = {
                "namespace": ns,
                "instance": instance,
                "config": cfg.redis,
                "client_selectors": [coordinator_sel, agent_sel],
            }
            if cfg.redis_password is not None:
                redis_args["password"] = cfg.redis_password.get_secret_value()
            redis = Redis(f"{name}-redis", redis_args, in_ns)
            conn = redis.connection
        else:
            conn = self._managed_redis(name, instance, ns, args["managed_redis"], in_ns)

        image = args.get("image", cfg.image.reference)
        coordinator = Coordinator(
            f"{name}-coordinator", {"namespace": ns, "config": cfg, "redis": conn, "image": image}, in_ns
        )
        pool_args: dict[str, Any] = {
            "namespace": ns,
            "config": cfg,
            "redis": conn,
            "coordinator_selector": coordinator_sel,
            "coordinator_port": cfg.coordinator.port,
            "image": image,
        }
        if "gcp_service_account" in args:
            pool_args["gcp_service_account"] = args["gcp_service_account"]
        agents = AgentPool(f"{name}-agents", pool_args, in_ns)  # type: ignore[arg-type]

        self.config = cfg
        self.namespace = ns
        self.coordinator_service = coordinator.service_name
        self.coordinator_port = coordinator.port
        self.coordinator_address = coordinator.address
        self.api_token_secret_name = coordinator.api_token_secret_name
        self.redis_url = pulumi.Output.from_input(conn.url)
        self.agent_statefulset = agents.statefulset_name
        self.agent_replicas = agents.replicas
        self.register_outputs(
            {
                "namespace": self.namespace,
                "coordinator_service": self.coordinator_service,
                "coordinator_port": self.coordinator_port,
                "coordinator_address": self.coordinator_address,
                "api_token_secret_name": self.api_token_secret_name,
                "redis_url": self.redis_url,
                "agent_statefulset": self.agent_statefulset,
                "agent_replicas": self.agent_replicas,
            }
        )

    def _managed_redis(
        self,
        name: str,
        instance: str,
        ns: pulumi.Input[str],
        managed: ManagedRedis,
        opts: pulumi.ResourceOptions,
    ) -> RedisConnection:
        """Secrets for a managed instance's AUTH string and CA; clients use ``rediss://`` (TLS)."""
        auth = k8s.core.v1.Secret(
            f"{name}-managed-redis-auth",
            metadata=_k8s.metadata(f"{instance}-redis-auth", ns, instance, "redis"),
            type="Opaque",
            string_data={MANAGED_REDIS_PASSWORD_KEY: pulumi.Output.secret(managed["auth_string"])},
            opts=opts,
        )
        ca = k8s.core.v1.Secret(
            f"{name}-managed-redis-ca",
            metadata=_k8s.metadata(f"{instance}-redis-ca", ns, instance, "redis"),
            type="Opaque",
            string_data={MANAGED_REDIS_CA_KEY: managed["ca_certificate"]},
            opts=opts,
        )
        host = pulumi.Output.from_input(managed["host"])
        port = pulumi.Output.from_input(managed["port"])
        return RedisConnection(
            url=pulumi.Output.concat("rediss://", host, ":", port.apply(lambda p: str(int(p))), "/0"),
            password_secret=auth.metadata.name,
            password_key=MANAGED_REDIS_PASSWORD_KEY,
            ca_secret=ca.metadata.name,
            ca_key=MANAGED_REDIS_CA_KEY,
            ip_block=host.apply(lambda h: f"{h}/32"),
            port=6378,  # Memorystore serves TLS (SERVER_AUTHENTICATION) on 6378
        )
