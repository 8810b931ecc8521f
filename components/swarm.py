"""AgentSwarm: the whole workload layer from one config object. This is what other programs import."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

import pulumi

from components import _k8s
from components.agents import COMPONENT as AGENT
from components.agents import AgentPool, AgentPoolArgs
from components.autoscaling import AgentAutoscaler, AgentAutoscalerArgs, keda_ingress_rule, scaling_rule
from components.config import QUEUE_NAMESPACE, SwarmConfig, parse_config
from components.coordinator import COMPONENT as COORDINATOR
from components.coordinator import Coordinator, CoordinatorArgs, EdgeRefs
from components.monitoring import ScrapeTarget, SwarmMonitoring
from components.namespace import SwarmNamespace
from components.nats import NATS_MONITORING_PORT, Nats, NatsArgs, NatsConnection
from components.redis import (
    REDIS_PORT,
    ManagedRedis,
    Redis,
    RedisArgs,
    managed_redis_connection,
)
from components.workload import BrokerConnection

IMAGE_DIGEST_ANNOTATION = "agentswarm.io/image-digest"
"""Pod-template annotation carrying the digest of an image built under a fixed name (kind): a rebuild changes
it, so the coordinator and the agents roll onto the new code; an unchanged build changes nothing."""


class AgentSwarmArgs(TypedDict):
    config: SwarmConfig | Mapping[str, Any]
    """The swarm config: a :class:`SwarmConfig` or the plain ``agentswarm:`` mapping (validated here)."""
    image: NotRequired[pulumi.Input[str]]
    """Image reference overriding ``config.image`` (e.g. the digest of an image built in the same program)."""
    image_digest: NotRequired[pulumi.Input[str]]
    """Digest of the image when its reference does not carry it (a kind-loaded build): pods roll when it
    changes."""
    managed_redis: NotRequired[ManagedRedis]
    """Required when ``redis.mode`` is ``memorystore``: connection data of the managed instance."""
    gcp_service_account: NotRequired[pulumi.Input[str]]
    """GCP service account email to bind the agents' ServiceAccount to (Workload Identity)."""
    edge: NotRequired[EdgeRefs]
    """Names of the GCP objects in front of the coordinator (:class:`components.gke_edge.CoordinatorEdge`)."""


class AgentSwarm(pulumi.ComponentResource):
    """Namespace + the broker (Redis, a managed Redis, or NATS) + Coordinator + AgentPool (+ AgentAutoscaler),
    wired to each other."""

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
        coordinator_sel = _k8s.selector_labels(instance, COORDINATOR)
        agent_sel = _k8s.selector_labels(instance, AGENT)

        autoscaling = cfg.agents.autoscaling.enabled
        conn: BrokerConnection
        if cfg.broker == "nats":
            nats_args: NatsArgs = {
                "namespace": ns,
                "instance": instance,
                "config": cfg.nats,
                "client_selectors": [coordinator_sel, agent_sel],
            }
            if autoscaling:  # KEDA's operator reads /jsz on the monitoring port
                nats_args["monitoring_ingress"] = [keda_ingress_rule(NATS_MONITORING_PORT)]
            conn = Nats(f"{name}-nats", nats_args, in_ns).connection
        elif cfg.redis.mode == "in-cluster":
            redis_args: RedisArgs = {
                "namespace": ns,
                "instance": instance,
                "config": cfg.redis,
                "client_selectors": [coordinator_sel, agent_sel],
            }
            if autoscaling:  # KEDA's operator reads the backlog (XLEN)
                redis_args["extra_ingress"] = [keda_ingress_rule(REDIS_PORT)]
            if cfg.redis_password is not None:
                redis_args["password"] = cfg.redis_password.get_secret_value()
            conn = Redis(f"{name}-redis", redis_args, in_ns).connection
        else:
            conn = managed_redis_connection(name, instance, ns, args["managed_redis"], in_ns)
        broker: dict[str, Any] = {"nats": conn} if isinstance(conn, NatsConnection) else {"redis": conn}

        image = args.get("image", cfg.image.reference)
        coordinator_args: CoordinatorArgs = {
            "namespace": ns,
            "instance": instance,
            "config": cfg.coordinator,
            "exposure": cfg.exposure or "ingress",
            "image": image,
            "image_pull_policy": cfg.image.pull_policy,
            **broker,  # type: ignore[typeddict-item]
            "tls_mode": cfg.tls_mode,
        }
        if "edge" in args:
            coordinator_args["edge"] = args["edge"]
        pool_args: AgentPoolArgs = {
            "namespace": ns,
            "instance": instance,
            "config": cfg.agents,
            "image": image,
            "image_pull_policy": cfg.image.pull_policy,
            **broker,  # type: ignore[typeddict-item]
            "coordinator_selector": coordinator_sel,
            "coordinator_port": cfg.coordinator.port,
        }
        # Both roles: retention (the coordinator trims) and the token budget (agents enforce it, the
        # coordinator reports it).
        coordinator_args["runtime_env"] = pool_args["runtime_env"] = cfg.runtime_env()
        if cfg.api_token is not None:
            coordinator_args["api_token"] = cfg.api_token.get_secret_value()
        if cfg.api_token_next is not None:
            coordinator_args["api_token_next"] = cfg.api_token_next.get_secret_value()
        if "gcp_service_account" in args:
            pool_args["gcp_service_account"] = args["gcp_service_account"]
        if "image_digest" in args:
            rolls = {IMAGE_DIGEST_ANNOTATION: args["image_digest"]}
            coordinator_args["pod_annotations"] = pool_args["pod_annotations"] = rolls
        coordinator = Coordinator(f"{name}-coordinator", coordinator_args, in_ns)
        agents = AgentPool(f"{name}-agents", pool_args, in_ns)
        if autoscaling:
            scaler_args: AgentAutoscalerArgs = {
                "namespace": ns,
                "instance": instance,
                "statefulset_name": agents.statefulset_name,
                "rule": scaling_rule(cfg.agents.autoscaling),
                "queue_namespace": QUEUE_NAMESPACE,
                "install_keda": cfg.agents.autoscaling.install_keda,
            }
            if isinstance(conn, NatsConnection):
                scaler_args["nats_monitoring_endpoint"] = conn.monitoring_endpoint
            else:
                scaler_args["redis"] = {
                    "url": conn.url,
                    "password_secret": conn.password_secret,
                    "password_key": conn.password_key,
                    "ca_secret": conn.ca_secret,
                    "ca_key": conn.ca_key,
                }
            AgentAutoscaler(f"{name}-autoscaler", scaler_args, in_ns)
        if cfg.monitoring.managed_prometheus:
            target: ScrapeTarget = {"component": COORDINATOR, "selector": coordinator_sel, "port": "http"}
            SwarmMonitoring(
                f"{name}-monitoring",
                {"namespace": ns, "instance": instance, "config": cfg.monitoring, "targets": [target]},
                in_ns,
            )

        self.config = cfg
        self.namespace = ns
        self.coordinator_service = coordinator.service_name
        self.coordinator_port = coordinator.port
        self.coordinator_address = coordinator.address
        self.api_token_secret_name = coordinator.api_token_secret_name
        # Empty with broker nats (its URL carries a password placeholder that only pods expand).
        self.redis_url = pulumi.Output.from_input("" if isinstance(conn, NatsConnection) else conn.url)
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
