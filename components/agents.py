"""AgentPool: one StatefulSet of agent workers, whatever the number of agents.

Nothing grows per agent: replicas is a number in one StatefulSet, checkpoints come from
``volumeClaimTemplates``, and the stable pod name is the agent's identity: a rescheduled agent reattaches to
its own PVC and resumes from its last checkpoint.
"""

from __future__ import annotations

from typing import Any, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from components import _k8s
from components.config import AgentsConfig, SwarmConfig
from components.redis import RedisConnection, redis_ca_volume, redis_egress_rule, redis_env

CHECKPOINT_VOLUME = "checkpoints"
GCP_SA_ANNOTATION = "iam.gke.io/gcp-service-account"


def agent_shutdown_grace(agents: AgentsConfig) -> float:
    """Seconds the agent runtime may wait for a checkpoint after SIGTERM: 3/4 of the pod's grace period."""
    return round(agents.termination_grace_seconds * 0.75, 2)


def agent_service_account_name(instance: str) -> str:
    """Name of the agents' Kubernetes ServiceAccount (also the StatefulSet's name)."""
    return f"{instance}-agent"


class AgentPoolArgs(TypedDict, total=False):
    namespace: pulumi.Input[str]
    """Namespace to deploy into."""
    config: SwarmConfig
    """The whole validated swarm config (agents and image sections are read)."""
    redis: RedisConnection
    """Where the broker is."""
    coordinator_selector: dict[str, str]
    """Labels of the coordinator pods (egress peer)."""
    coordinator_port: int
    """Coordinator port (egress)."""
    image: pulumi.Input[str]
    """Image reference; defaults to ``config.image.reference``."""
    gcp_service_account: pulumi.Input[str]
    """Email of the GCP service account bound through Workload Identity (optional)."""


class AgentPool(pulumi.ComponentResource):
    """StatefulSet + headless Service + PDB + ServiceAccount + NetworkPolicy for the agents."""

    statefulset_name: pulumi.Output[str]
    service_account_name: pulumi.Output[str]
    replicas: pulumi.Output[int]

    def __init__(self, name: str, args: AgentPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:AgentPool", name, None, opts)
        cfg = SwarmConfig.model_validate(args["config"])
        a = cfg.agents
        conn = args["redis"]
        ns = args["namespace"]
        image = args.get("image", cfg.image.reference)
        instance = cfg.name
        component = "agent"
        sel = _k8s.selector_labels(instance, component)
        sts_name = agent_service_account_name(instance)

        sa_annotations = None
        gsa = args.get("gcp_service_account")
        if gsa is not None:
            sa_annotations = {GCP_SA_ANNOTATION: gsa}
        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=_k8s.metadata(sts_name, ns, instance, component, sa_annotations),
            automount_service_account_token=False,
            opts=_k8s.child_opts(self),
        )
        headless = k8s.core.v1.Service(
            f"{name}-service",
            metadata=_k8s.metadata(sts_name, ns, instance, component),
            spec=_k8s.spec({"clusterIP": "None", "selector": sel, "publishNotReadyAddresses": True}),
            opts=_k8s.child_opts(self),
        )
        ca_volumes, ca_mounts = redis_ca_volume(conn)
        env: list[Any] = [
            {
                "name": "AGENTSWARM_AGENT_ID",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            },
            *redis_env(conn),
            {"name": "AGENTSWARM_CHECKPOINT_DIR", "value": a.checkpoint_path},
            {"name": "AGENTSWARM_HANDLER", "value": a.handler},
            # The agent waits this long for the handler's next checkpoint after SIGTERM; the rest of the
            # pod's grace period is left for writing that checkpoint and exiting before the SIGKILL.
            {"name": "AGENTSWARM_SHUTDOWN_GRACE_SECONDS", "value": str(agent_shutdown_grace(a))},
        ]
        probe = {
            "exec": {"command": ["agentswarm", "probe", "--max-age-seconds", str(a.probe_max_age_seconds)]}
        }
        pod_spec: dict[str, Any] = {
            "serviceAccountName": service_account.metadata.name,
            "automountServiceAccountToken": False,
            "securityContext": _k8s.pod_security_context(),
            "terminationGracePeriodSeconds": a.termination_grace_seconds,
            "containers": [
                {
                    "name": "agent",
                    "image": image,
                    "imagePullPolicy": cfg.image.pull_policy,
                    "args": ["agent"],
                    "env": env,
                    "resources": a.resources.to_k8s(),
                    "securityContext": _k8s.container_security_context(),
                    "livenessProbe": {
                        **probe,
                        "initialDelaySeconds": a.probe_max_age_seconds,
                        "periodSeconds": 15,
                        "timeoutSeconds": 10,
                        "failureThreshold": 3,
                    },
                    "startupProbe": {
                        **probe,
                        "periodSeconds": 5,
                        "timeoutSeconds": 10,
                        "failureThreshold": 60,
                    },
                    "volumeMounts": [
                        {"name": CHECKPOINT_VOLUME, "mountPath": a.checkpoint_path},
                        _k8s.tmp_mount(),
                        *ca_mounts,
                    ],
                }
            ],
            "volumes": [_k8s.tmp_volume(), *ca_volumes],
        }
        if a.dedicated_nodes:
            pod_spec["nodeSelector"] = {_k8s.AGENT_POOL_LABEL: _k8s.AGENT_POOL_VALUE}
            pod_spec["tolerations"] = [
                {
                    "key": _k8s.AGENT_POOL_LABEL,
                    "operator": "Equal",
                    "value": _k8s.AGENT_POOL_VALUE,
                    "effect": "NoSchedule",
                }
            ]
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": a.storage_size}},
        }
        if a.storage_class:
            claim_spec["storageClassName"] = a.storage_class
        statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=_k8s.metadata(sts_name, ns, instance, component),
            spec=_k8s.spec(
                {
                    "serviceName": sts_name,
                    "replicas": a.replicas,
                    "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": sel},
                    "updateStrategy": {"type": "RollingUpdate"},
                    # Checkpoints outlive pods on purpose: a deleted or scaled-down agent resumes later.
                    "persistentVolumeClaimRetentionPolicy": {
                        "whenDeleted": a.pvc_retention_when_deleted,
                        "whenScaled": a.pvc_retention_when_scaled,
                    },
                    "template": {"metadata": {"labels": _k8s.labels(instance, component)}, "spec": pod_spec},
                    "volumeClaimTemplates": [
                        {
                            "metadata": {
                                "name": CHECKPOINT_VOLUME,
                                "labels": _k8s.labels(instance, component),
                            },
                            "spec": claim_spec,
                        }
                    ],
                }
            ),
            opts=_k8s.child_opts(self, depends_on=[headless]),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=_k8s.metadata(sts_name, ns, instance, component),
            spec=_k8s.spec(
                {"selector": {"matchLabels": sel}, "maxUnavailable": _int_or_str(a.max_unavailable)}
            ),
            opts=_k8s.child_opts(self),
        )
        egress: list[dict[str, Any]] = [
            redis_egress_rule(conn),
            _k8s.dns_egress_rule(),
            {
                "to": [{"podSelector": {"matchLabels": args["coordinator_selector"]}}],
                "ports": [{"protocol": "TCP", "port": args["coordinator_port"]}],
            },
        ]
        for rule in a.egress_allow:
            block: dict[str, Any] = {"cidr": rule.cidr}
            if rule.except_cidrs:
                block["except"] = list(rule.except_cidrs)
            egress.append(
                {"to": [{"ipBlock": block}], "ports": [{"protocol": "TCP", "port": p} for p in rule.ports]}
            )
        # No "ingress" key and Ingress in policyTypes: agent pods accept no connection from anyone,
        # including other agents.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=_k8s.metadata(sts_name, ns, instance, component),
            spec=_k8s.spec(
                {"podSelector": {"matchLabels": sel}, "policyTypes": ["Ingress", "Egress"], "egress": egress}
            ),
            opts=_k8s.child_opts(self),
        )
        self.statefulset_name = statefulset.metadata.name
        self.service_account_name = service_account.metadata.name
        self.replicas = pulumi.Output.from_input(a.replicas)
        self.register_outputs(
            {
                "statefulset_name": self.statefulset_name,
                "service_account_name": self.service_account_name,
                "replicas": self.replicas,
            }
        )


def _int_or_str(value: str) -> int | str:
    return int(value) if value.isdigit() else value
