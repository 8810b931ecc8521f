"""GkeCluster: a hardened, VPC-native, private GKE cluster and the provider for the workload layer.

Hardening, each set once here: private nodes behind Cloud NAT (they still reach model APIs), control plane
limited to authorized networks, Dataplane V2 (``ADVANCED_DATAPATH``, which enforces NetworkPolicy), shielded
nodes with secure boot, Workload Identity with the GKE metadata server on every pool, a release channel and a
maintenance window, deletion protection unless the stack turns it off, and no default node pool.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components import _k8s
from components.config import GkeClusterConfig, NodePoolConfig

PODS_RANGE = "pods"
SERVICES_RANGE = "services"
OAUTH_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def gke_kubeconfig(name: str, endpoint: str, ca_certificate: str) -> str:
    """A kubeconfig that authenticates with ``gke-gcloud-auth-plugin`` (no static credentials in it)."""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    certificate-authority-data: {ca_certificate}
    server: https://{endpoint}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: {name}
current-context: {name}
users:
- name: {name}
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: gke-gcloud-auth-plugin
      installHint: Install gke-gcloud-auth-plugin (gcloud components install gke-gcloud-auth-plugin)
      provideClusterInfo: true
"""


class GkeClusterArgs(TypedDict):
    project: str
    """GCP project id."""
    region: str
    """Region of the network (and of the cluster when ``config.location`` is empty)."""
    cluster_name: NotRequired[str]
    """Cluster name; default ``agentswarm``."""
    config: NotRequired[GkeClusterConfig]
    """Validated ``cluster.gke`` section; default: every default."""
    gateway_api: NotRequired[bool]
    """Enable the Gateway API controller (exposure ``gateway``); default false."""
    managed_prometheus: NotRequired[bool]
    """Turn on managed collection (Managed Service for Prometheus) for PodMonitoring; default false."""


class GkeCluster(pulumi.ComponentResource):
    """VPC + subnet (pods/services secondary ranges) + Cloud Router/NAT + cluster + system and agent pools."""

    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    network_id: pulumi.Output[str]
    workload_pool: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: GkeClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:GkeCluster", name, None, opts)
        cfg = GkeClusterConfig.model_validate(args.get("config", {}))
        project = args["project"]
        region = args["region"]
        cluster_name = args.get("cluster_name", "agentswarm")
        location = cfg.location or region
        child = _k8s.child_opts(self)

        network = gcp.compute.Network(
            f"{name}-network",
            name=f"{cluster_name}-vpc",
            project=project,
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            opts=child,
        )
        subnet = gcp.compute.Subnetwork(
            f"{name}-subnet",
            name=f"{cluster_name}-nodes",
            project=project,
            region=region,
            network=network.id,
            ip_cidr_range=cfg.network_cidr,
            private_ip_google_access=True,
            secondary_ip_ranges=[
                {"range_name": PODS_RANGE, "ip_cidr_range": cfg.pods_cidr},
                {"range_name": SERVICES_RANGE, "ip_cidr_range": cfg.services_cidr},
            ],
            opts=child,
        )
        router = gcp.compute.Router(
            f"{name}-router",
            name=f"{cluster_name}-router",
            project=project,
            region=region,
            network=network.id,
            opts=child,
        )
        gcp.compute.RouterNat(
            f"{name}-nat",
            name=f"{cluster_name}-nat",
            project=project,
            region=region,
            router=router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config={"enable": True, "filter": "ERRORS_ONLY"},
            opts=child,
        )

        workload_pool = f"{project}.svc.id.goog"
        cluster_args: dict[str, Any] = {
            "name": cluster_name,
            "project": project,
            "location": location,
            "network": network.id,
            "subnetwork": subnet.id,
            "networking_mode": "VPC_NATIVE",
            "ip_allocation_policy": {
                "cluster_secondary_range_name": PODS_RANGE,
                "services_secondary_range_name": SERVICES_RANGE,
            },
            "release_channel": {"channel": cfg.release_channel},
            "workload_identity_config": {"workload_pool": workload_pool},
            **(
                {"monitoring_config": {"managed_prometheus": {"enabled": True}}}
                if args.get("managed_prometheus")
                else {}
            ),
            "private_cluster_config": {
                "enable_private_nodes": True,
                "enable_private_endpoint": cfg.private_endpoint,
                "master_ipv4_cidr_block": cfg.master_cidr,
                "master_global_access_config": {"enabled": True},
            },
            "master_authorized_networks_config": {
                "cidr_blocks": [
                    {"cidr_block": n.cidr, "display_name": n.display_name or n.cidr}
                    for n in cfg.master_authorized_networks
                ],
            },
            "datapath_provider": "ADVANCED_DATAPATH",
            "maintenance_policy": {
                "recurring_window": {
                    "start_time": cfg.maintenance_window.start_time,
                    "end_time": cfg.maintenance_window.end_time,
                    "recurrence": cfg.maintenance_window.recurrence,
                }
            },
            "deletion_protection": cfg.deletion_protection,
        }
        if args.get("gateway_api"):
            cluster_args["gateway_api_config"] = {"channel": "CHANNEL_STANDARD"}
        if cfg.autopilot:
            # Autopilot manages nodes (shielded, GKE metadata server, Dataplane V2) itself.
            cluster_args["enable_autopilot"] = True
        else:
            cluster_args.update(
                remove_default_node_pool=True,
                initial_node_count=1,
                enable_shielded_nodes=True,
                # the default pool lives only until it is removed, but it must not be weaker meanwhile
                node_config=_node_config(NodePoolConfig(), {}, None),
            )
        cluster = gcp.container.Cluster(
            f"{name}-cluster",
            opts=child,
            **cluster_args,
        )
        self.node_pools: list[gcp.container.NodePool] = []
        if not cfg.autopilot:
            self.node_pools.append(
                _node_pool(
                    self,
                    f"{name}-system-pool",
                    f"{cluster_name}-system",
                    cluster,
                    project,
                    location,
                    cfg.system_pool,
                    {"agentswarm.io/pool": "system"},
                    None,
                )
            )
            self.node_pools.append(
                _node_pool(
                    self,
                    f"{name}-agent-pool",
                    f"{cluster_name}-agents",
                    cluster,
                    project,
                    location,
                    cfg.agent_pool,
                    {_k8s.AGENT_POOL_LABEL: _k8s.AGENT_POOL_VALUE},
                    {"key": _k8s.AGENT_POOL_LABEL, "value": _k8s.AGENT_POOL_VALUE, "effect": "NO_SCHEDULE"},
                )
            )

        self.cluster = cluster
        self.network = network
        self.cluster_name = cluster.name
        self.endpoint = cluster.endpoint
        self.network_id = network.id
        self.workload_pool = pulumi.Output.from_input(workload_pool)
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(cluster.name, cluster.endpoint, cluster.master_auth).apply(
                lambda v: gke_kubeconfig(f"gke_{project}_{location}_{v[0]}", v[1], _ca(v[2]))
            )
        )
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=_k8s.child_opts(self, depends_on=[cluster, *self.node_pools]),
        )
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "endpoint": self.endpoint,
                "kubeconfig": self.kubeconfig,
                "network_id": self.network_id,
                "workload_pool": self.workload_pool,
            }
        )


def _ca(master_auth: Any) -> str:
    if isinstance(master_auth, dict):
        return str(master_auth.get("cluster_ca_certificate") or master_auth.get("clusterCaCertificate") or "")
    return str(getattr(master_auth, "cluster_ca_certificate", "") or "")


def _node_config(
    pool: NodePoolConfig, labels: dict[str, str], taint: dict[str, str] | None
) -> dict[str, Any]:
    node: dict[str, Any] = {
        "machine_type": pool.machine_type,
        "disk_size_gb": pool.disk_size_gb,
        "spot": pool.spot,
        "oauth_scopes": OAUTH_SCOPES,
        "labels": labels,
        "workload_metadata_config": {"mode": "GKE_METADATA"},
        "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
        "metadata": {"disable-legacy-endpoints": "true"},
    }
    if taint:
        node["taints"] = [taint]
    return node


def _node_pool(
    parent: pulumi.Resource,
    resource_name: str,
    pool_name: str,
    cluster: gcp.container.Cluster,
    project: str,
    location: str,
    pool: NodePoolConfig,
    labels: dict[str, str],
    taint: dict[str, str] | None,
) -> gcp.container.NodePool:
    return gcp.container.NodePool(
        resource_name,
        name=pool_name,
        project=project,
        location=location,
        cluster=cluster.name,
        initial_node_count=pool.min_nodes if pool.min_nodes > 0 else 1,
        autoscaling={
            "min_node_count": pool.min_nodes,
            "max_node_count": pool.max_nodes,
            "location_policy": "ANY" if pool.spot else "BALANCED",
        },
        management={"auto_repair": True, "auto_upgrade": True},
        node_config=_node_config(pool, labels, taint),
        opts=_k8s.child_opts(parent, ignore_changes=["initial_node_count"]),
    )
