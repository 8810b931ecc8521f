"""The platform layer: where the swarm runs, chosen by stack config, and the program built from it.

- ``cluster.create`` on ``kind``: preflight (kind, docker), KindCluster, optional image build + ``kind load``.
- ``cluster.create`` on ``gke``: GkeCluster (its kubeconfig feeds the provider), optional Artifact Registry
  build, Workload Identity for agents, optional Memorystore.
- otherwise: a provider for an existing kubeconfig context, or one rendering YAML to a directory.

The workload layer (AgentSwarm) is the same in every case; only its provider and inputs differ.
``deploy`` is the whole program: infra/__main__.py reads the config and calls it, so tests run what
``pulumi up`` runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import _k8s
from components.agents import agent_service_account_name
from components.config import SwarmConfig
from components.coordinator import EdgeRefs
from components.gcp_services import AgentIdentity, AgentImage, Memorystore
from components.gke_cluster import GkeCluster
from components.gke_edge import CoordinatorEdge
from components.kind_cluster import KindCluster, kind_load, preflight
from components.secrets import SecretManagerAccess
from components.swarm import AgentSwarm, AgentSwarmArgs


@dataclass
class Deployment:
    """What ``deploy`` built, for exports and tests."""

    provider: k8s.Provider
    swarm: AgentSwarm
    outputs: dict[str, Any] = field(default_factory=dict)


def render_directory(path: str) -> str:
    """A relative render directory is taken from the project root (where Pulumi.yaml is), not from the
    program's working directory (``main: infra/``), so `render: render` means `<project>/render`."""
    root = pulumi.get_root_directory()  # None under mocks
    if os.path.isabs(path) or not root:
        return path
    return os.path.join(root, path)


def kubernetes_provider(name: str, cfg: SwarmConfig) -> k8s.Provider:
    """A Kubernetes provider for an existing cluster: ambient context, a named context, or render-to-YAML."""
    kwargs: dict[str, Any] = {"enable_server_side_apply": True}
    if cfg.kubernetes.context:
        kwargs["context"] = cfg.kubernetes.context
    if cfg.kubernetes.render_yaml_to_directory:
        kwargs["render_yaml_to_directory"] = render_directory(cfg.kubernetes.render_yaml_to_directory)
    return k8s.Provider(name, **kwargs)


PLAIN_HTTP_WARNING = (
    "coordinator.tls.mode is none: the coordinator is exposed over plain HTTP and every client sends the "
    "API token in clear text; use it only behind your own TLS terminator"
)


@dataclass
class Platform:
    """Where a swarm goes, built from the config: what :class:`AgentSwarm` needs besides the config.

    A program of your own builds the swarm itself from these (``docs/your-agents.md``)::

        platform = prepare_platform(config)
        swarm = AgentSwarm(config.name, {**platform.swarm_args, "config": config}, platform.swarm_options)
    """

    provider: k8s.Provider
    swarm_args: AgentSwarmArgs
    """The image built here (reference and digest), the managed Redis, the agents' GCP identity."""
    depends_on: list[pulumi.Resource]
    outputs: dict[str, Any]
    """Stack outputs of the platform (kubeconfig, cluster, image, ...)."""

    @property
    def swarm_options(self) -> pulumi.ResourceOptions:
        """The swarm's resource options: this platform's provider, after the cluster."""
        return pulumi.ResourceOptions(providers=[self.provider], depends_on=self.depends_on)


def deploy(cfg: SwarmConfig) -> Deployment:
    """Build the platform from the config and instantiate the swarm on it."""
    platform = prepare_platform(cfg)
    swarm = AgentSwarm(cfg.name, platform.swarm_args, platform.swarm_options)
    outputs = dict(platform.outputs)
    outputs.update(swarm_outputs(swarm))
    return Deployment(provider=platform.provider, swarm=swarm, outputs=outputs)


def swarm_outputs(swarm: AgentSwarm) -> dict[str, Any]:
    """The swarm's stack outputs (how to reach it, what runs)."""
    return {
        "namespace": swarm.namespace,
        "coordinator_service": swarm.coordinator_service,
        "coordinator_port": swarm.coordinator_port,
        "coordinator_address": swarm.coordinator_address,
        "api_token_secret_name": swarm.api_token_secret_name,
        "agent_statefulset": swarm.agent_statefulset,
        "agent_replicas": swarm.agent_replicas,
    }


def prepare_platform(cfg: SwarmConfig) -> Platform:
    """The cluster (kind, GKE, or an existing one), the image build and the cloud services the config asks
    for; everything but the swarm itself."""
    if cfg.platform == "kind" and cfg.cluster.create:
        preflight()  # before any resource: one clear message when kind or docker is missing
    if cfg.platform == "gke" and cfg.tls_mode == "none":
        pulumi.log.warn(PLAIN_HTTP_WARNING)  # shown by `pulumi preview` as well as `pulumi up`

    swarm_args: AgentSwarmArgs = {"config": cfg}
    outputs: dict[str, Any] = {"platform": cfg.platform, "exposure": cfg.exposure}
    swarm_opts: list[pulumi.Resource] = []
    name = cfg.name

    if cfg.platform == "kind" and cfg.cluster.create:
        kind = KindCluster(
            f"{name}-kind",
            {
                "cluster_name": cfg.cluster.name,
                "config": cfg.cluster.kind,
                "node_port": cfg.coordinator.node_port,
            },
        )
        provider = kind.provider
        outputs["kubeconfig"] = kind.kubeconfig
        outputs["coordinator_url"] = f"http://127.0.0.1:{cfg.cluster.kind.host_port}"
        if cfg.image.build.enabled:
            image = AgentImage(f"{name}-image", {"config": cfg.image})
            loaded = kind_load(
                f"{name}-kind-load",
                cfg.cluster.name,
                f"{cfg.image.repository}:{cfg.image.tag or 'latest'}",
                image.digest,  # reload whenever the build changes
                _k8s.child_opts(kind, depends_on=[image, kind.command]),
            )
            # The pods' reference stays `repository:tag`; only after the node holds the new build do the
            # reference and the digest (a pod-template annotation: a new build rolls the pods) reach them.
            swarm_args["image"] = pulumi.Output.all(image.ref, loaded.stdout).apply(lambda v: str(v[0]))
            swarm_args["image_digest"] = pulumi.Output.all(image.digest, loaded.stdout).apply(
                lambda v: str(v[0])
            )
    elif cfg.platform == "gke" and cfg.cluster.create:
        assert cfg.gcp is not None  # enforced by SwarmConfig
        gke = GkeCluster(
            f"{name}-gke",
            {
                "project": cfg.gcp.project,
                "region": cfg.gcp.region,
                "cluster_name": cfg.cluster.name,
                "config": cfg.cluster.gke,
                "gateway_api": cfg.exposure == "gateway",
                "managed_prometheus": cfg.monitoring.managed_prometheus,
            },
        )
        provider = gke.provider
        outputs["cluster_name"] = gke.cluster_name
        outputs["cluster_endpoint"] = gke.endpoint
        outputs["kubeconfig"] = gke.kubeconfig
        network_id: pulumi.Input[str] = gke.network_id
        swarm_opts.append(gke)
    else:
        provider = kubernetes_provider(f"{name}-k8s", cfg)
        network_id = cfg.redis.memorystore.network or ""

    if cfg.platform == "gke" and cfg.gcp is not None:
        gcp_cfg = cfg.gcp
        if cfg.image.build.enabled:
            registry = f"{gcp_cfg.region}-docker.pkg.dev/{gcp_cfg.project}/{gcp_cfg.artifact_repository}"
            image = AgentImage(
                f"{name}-image",
                {
                    "config": cfg.image,
                    "registry": registry,
                    "project": gcp_cfg.project,
                    "region": gcp_cfg.region,
                    "repository_id": gcp_cfg.artifact_repository,
                },
            )
            swarm_args["image"] = image.ref
            outputs["image"] = image.ref
        if cfg.workload_identity:
            identity = AgentIdentity(
                f"{name}-identity",
                {
                    "project": gcp_cfg.project,
                    "namespace": cfg.namespace,
                    "service_account": agent_service_account_name(cfg.name),
                    "account_id": f"{cfg.name}-agents"[:30],
                },
                pulumi.ResourceOptions(depends_on=swarm_opts),  # the workload pool exists with the cluster
            )
            swarm_args["gcp_service_account"] = identity.email
            outputs["agent_gcp_service_account"] = identity.email
            if cfg.agents.secret_manager:
                SecretManagerAccess(
                    f"{name}-secret-access",
                    {
                        "secrets": sorted(cfg.agents.secret_manager.values()),
                        "service_account_email": identity.email,
                    },
                )
        if cfg.redis.mode == "memorystore":
            store = Memorystore(
                f"{name}-memorystore",
                {
                    "project": gcp_cfg.project,
                    "region": gcp_cfg.region,
                    "network_id": network_id,
                    "instance_name": f"{cfg.name}-redis",
                    "config": cfg.redis.memorystore,
                },
                pulumi.ResourceOptions(depends_on=swarm_opts),
            )
            swarm_args["managed_redis"] = {
                "host": store.host,
                "port": store.port,
                "auth_string": store.auth_string,
                "ca_certificate": store.ca_certificate,
            }

    if cfg.platform == "gke" and cfg.gcp is not None:
        edge = CoordinatorEdge(f"{name}-edge", {"config": cfg})
        refs: EdgeRefs = {}
        if edge.static_ip_name is not None:
            refs["static_ip_name"] = edge.static_ip_name
        if edge.certificate_map is not None:
            refs["certificate_map"] = edge.certificate_map
        if edge.regional_certificates is not None:
            refs["regional_certificates"] = edge.regional_certificates
        if edge.security_policy is not None:
            refs["security_policy"] = edge.security_policy
        swarm_args["edge"] = refs
        if cfg.tls_mode != "none" and cfg.global_load_balancer:
            outputs["coordinator_static_ip"] = edge.static_ip
        if cfg.exposure == "gateway" and not cfg.global_load_balancer and cfg.tls_mode == "managed":
            outputs["certificate_dns_authorization"] = edge.dns_authorization_record
    if cfg.coordinator.hostname and cfg.platform == "gke":
        scheme = "http" if cfg.tls_mode == "none" else "https"
        outputs["coordinator_url"] = f"{scheme}://{cfg.coordinator.hostname}"

    return Platform(provider=provider, swarm_args=swarm_args, depends_on=swarm_opts, outputs=outputs)
