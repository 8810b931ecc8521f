"""AgentPool: one StatefulSet of agent workers, whatever the number of agents.

Nothing grows per agent: replicas is a number in one StatefulSet, checkpoints come from
``volumeClaimTemplates``, and the stable pod name is the agent's identity: a rescheduled agent reattaches to
its own PVC and resumes from its last checkpoint. The specs are pure functions; the class only wires them.
"""

from __future__ import annotations

from typing import Any, NotRequired

import pulumi
import pulumi_kubernetes as k8s

from components import _k8s, secrets
from components.config import AgentsConfig
from components.workload import (
    BrokerConnection,
    RuntimeWorkloadArgs,
    broker_connection,
    broker_egress_rule,
    broker_env,
    runtime_pod,
)

CHECKPOINT_VOLUME = "checkpoints"
GCP_SA_ANNOTATION = "iam.gke.io/gcp-service-account"
COMPONENT = "agent"


def agent_shutdown_grace(agents: AgentsConfig) -> float:
    """Seconds the agent runtime may wait for a checkpoint after SIGTERM: 3/4 of the pod's grace period."""
    return round(agents.termination_grace_seconds * 0.75, 2)


def agent_service_account_name(instance: str) -> str:
    """Name of the agents' Kubernetes ServiceAccount (also the StatefulSet's name)."""
    return f"{instance}-agent"


class AgentPoolArgs(RuntimeWorkloadArgs):
    config: AgentsConfig
    """Validated ``agents`` section; a plain mapping is validated here."""
    coordinator_selector: dict[str, str]
    """Labels of the coordinator pods (egress peer)."""
    coordinator_port: int
    """Coordinator port (egress)."""
    gcp_service_account: NotRequired[pulumi.Input[str]]
    """Email of the GCP service account bound through Workload Identity."""


class AgentPool(pulumi.ComponentResource):
    """StatefulSet + headless Service + PDB + ServiceAccount + NetworkPolicy for the agents.

    With ``autoscaling.enabled`` the StatefulSet is sized by KEDA (see
    :class:`~components.autoscaling.AgentAutoscaler`, which :class:`~components.swarm.AgentSwarm` creates)."""

    statefulset_name: pulumi.Output[str]
    service_account_name: pulumi.Output[str]
    replicas: pulumi.Output[int]

    def __init__(self, name: str, args: AgentPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:AgentPool", name, None, opts)
        cfg = AgentsConfig.model_validate(args["config"])
        ns, instance, conn = args["namespace"], args["instance"], broker_connection(args)
        sts_name = agent_service_account_name(instance)
        sel = _k8s.selector_labels(instance, COMPONENT)
        child = _k8s.child_opts(self)

        gsa = args.get("gcp_service_account")
        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=_k8s.metadata(
                sts_name, ns, instance, COMPONENT, {GCP_SA_ANNOTATION: gsa} if gsa is not None else None
            ),
            automount_service_account_token=False,
            opts=child,
        )
        headless = k8s.core.v1.Service(
            f"{name}-service",
            metadata=_k8s.metadata(sts_name, ns, instance, COMPONENT),
            spec={"clusterIP": "None", "selector": sel, "publishNotReadyAddresses": True},
            opts=child,
        )
        secret_name, provider_class = self._secret_sources(name, cfg, ns, instance, sts_name)
        pod = pod_spec(
            cfg,
            args["image"],
            args.get("image_pull_policy", "IfNotPresent"),
            conn,
            service_account,
            secret_name,
            provider_class,
        )
        pod["containers"][0]["env"] += args.get("runtime_env", [])
        template = _k8s.pod_template(instance, COMPONENT, pod, args.get("pod_annotations"))
        statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=_k8s.metadata(sts_name, ns, instance, COMPONENT),
            spec=statefulset_spec(cfg, instance, sts_name, sel, template),
            # KEDA owns spec.replicas when autoscaling: the next `pulumi up` must not reset it.
            opts=_k8s.child_opts(
                self,
                depends_on=[headless],
                ignore_changes=["spec.replicas"] if cfg.autoscaling.enabled else None,
            ),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=_k8s.metadata(sts_name, ns, instance, COMPONENT),
            spec={"selector": {"matchLabels": sel}, "maxUnavailable": _int_or_str(cfg.max_unavailable)},
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=_k8s.metadata(sts_name, ns, instance, COMPONENT),
            spec=network_policy_spec(cfg, sel, conn, args["coordinator_selector"], args["coordinator_port"]),
            opts=child,
        )
        self.statefulset_name = statefulset.metadata.name
        self.service_account_name = service_account.metadata.name
        self.replicas = pulumi.Output.from_input(
            cfg.autoscaling.min_replicas if cfg.autoscaling.enabled else cfg.replicas
        )
        self.register_outputs(
            {
                "statefulset_name": self.statefulset_name,
                "service_account_name": self.service_account_name,
                "replicas": self.replicas,
            }
        )

    def _secret_sources(
        self, name: str, cfg: AgentsConfig, ns: pulumi.Input[str], instance: str, sts_name: str
    ) -> tuple[pulumi.Output[str] | None, pulumi.Output[str] | None]:
        """The Secret of ``secret_env`` and the SecretProviderClass of ``secret_manager``, when set."""
        secret_name = provider_class = None
        if cfg.secret_env:
            env_secret = _k8s.opaque_secret(
                f"{name}-env-secret",
                f"{sts_name}-env",
                ns,
                instance,
                COMPONENT,
                {k: pulumi.Output.secret(v.get_secret_value()) for k, v in cfg.secret_env.items()},
                _k8s.child_opts(self),
            )
            secret_name = env_secret.metadata.name
        if cfg.secret_manager:
            spc = k8s.apiextensions.CustomResource(
                f"{name}-secret-provider-class",
                api_version=secrets.SECRET_PROVIDER_CLASS_API,
                kind="SecretProviderClass",
                metadata=_k8s.metadata(f"{sts_name}-secrets", ns, instance, COMPONENT),
                spec=secrets.secret_provider_class_spec(cfg),
                opts=_k8s.child_opts(self),
            )
            provider_class = spc.metadata.apply(lambda m: str(m["name"]))  # a CustomResource's is a dict
        return secret_name, provider_class


def pod_spec(
    cfg: AgentsConfig,
    image: pulumi.Input[str],
    pull_policy: str,
    conn: BrokerConnection,
    service_account: k8s.core.v1.ServiceAccount,
    secret_name: pulumi.Input[str] | None = None,
    provider_class: pulumi.Input[str] | None = None,
) -> dict[str, Any]:
    """The agent pod: its identity from the pod name, the checkpoint volume, heartbeat-file probes."""
    env: list[Any] = [
        {
            "name": "AGENTSWARM_AGENT_ID",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        },
        *broker_env(conn),
        {"name": "AGENTSWARM_CHECKPOINT_DIR", "value": cfg.checkpoint_path},
        {"name": "AGENTSWARM_HANDLER", "value": cfg.handler},
        {"name": "AGENTSWARM_CONCURRENCY", "value": str(cfg.concurrency)},
        # The agent waits this long for the handler's next checkpoint after SIGTERM; the rest of the
        # pod's grace period is left for writing that checkpoint and exiting before the SIGKILL.
        {"name": "AGENTSWARM_SHUTDOWN_GRACE_SECONDS", "value": str(agent_shutdown_grace(cfg))},
    ]
    env += secrets.env_vars(cfg)
    secret_volumes, secret_mounts = secrets.volumes(cfg, secret_name, provider_class)
    if cfg.autoscaling.enabled:
        # A scaled-in agent's task is resumed by another agent: its checkpoints must be in the broker.
        env.append({"name": "AGENTSWARM_CHECKPOINT_BACKEND", "value": "broker"})
    probe = {
        "exec": {"command": ["agentswarm", "probe", "--max-age-seconds", str(cfg.probe_max_age_seconds)]}
    }
    probes = {
        "livenessProbe": {
            **probe,
            "initialDelaySeconds": cfg.probe_max_age_seconds,
            "periodSeconds": 15,
            "timeoutSeconds": 10,
            "failureThreshold": 3,
        },
        "startupProbe": {**probe, "periodSeconds": 5, "timeoutSeconds": 10, "failureThreshold": 60},
        # Ready once its claims reach the broker (and not while they cannot): a rolling update moves on
        # to the next agent only when this one really works.
        "readinessProbe": {
            "exec": {"command": [*probe["exec"]["command"], "--ready"]},
            "periodSeconds": 10,
            "timeoutSeconds": 10,
            "failureThreshold": 3,
        },
    }
    pod = runtime_pod(
        COMPONENT,
        image,
        pull_policy,
        conn,
        env,
        cfg.resources,
        cfg.termination_grace_seconds,
        probes,
        mounts=[{"name": CHECKPOINT_VOLUME, "mountPath": cfg.checkpoint_path}, *secret_mounts],
        pod={"serviceAccountName": service_account.metadata.name},
    )
    pod["volumes"] += secret_volumes
    if cfg.dedicated_nodes:
        pool = {_k8s.AGENT_POOL_LABEL: _k8s.AGENT_POOL_VALUE}
        pod["nodeSelector"] = pool
        pod["tolerations"] = [
            {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
            for key, value in pool.items()
        ]
    return pod


def statefulset_spec(
    cfg: AgentsConfig, instance: str, sts_name: str, sel: dict[str, str], template: dict[str, Any]
) -> dict[str, Any]:
    """Parallel pod management, rolling updates, one checkpoint PVC per agent that outlives its pod."""
    return {
        "serviceName": sts_name,
        # With autoscaling this is only the size at creation; KEDA owns it afterwards.
        "replicas": cfg.autoscaling.min_replicas if cfg.autoscaling.enabled else cfg.replicas,
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": sel},
        "updateStrategy": {"type": "RollingUpdate"},
        # Checkpoints outlive pods on purpose: a deleted or scaled-down agent resumes later.
        "persistentVolumeClaimRetentionPolicy": {
            "whenDeleted": cfg.pvc_retention_when_deleted,
            "whenScaled": cfg.pvc_retention_when_scaled,
        },
        "template": template,
        "volumeClaimTemplates": [
            _k8s.volume_claim(CHECKPOINT_VOLUME, instance, COMPONENT, cfg.storage_size, cfg.storage_class)
        ],
    }


def network_policy_spec(
    cfg: AgentsConfig,
    sel: dict[str, str],
    conn: BrokerConnection,
    coordinator_selector: dict[str, str],
    coordinator_port: int,
) -> dict[str, Any]:
    """Egress to the broker, DNS, the coordinator and the model-API allow-list. No "ingress" key with Ingress
    in policyTypes: agent pods accept no connection from anyone, including other agents."""
    egress: list[dict[str, Any]] = [
        broker_egress_rule(conn),
        _k8s.dns_egress_rule(),
        {
            "to": [{"podSelector": {"matchLabels": coordinator_selector}}],
            "ports": [{"protocol": "TCP", "port": coordinator_port}],
        },
    ]
    for rule in cfg.egress_allow:
        block: dict[str, Any] = {"cidr": rule.cidr}
        if rule.except_cidrs:
            block["except"] = list(rule.except_cidrs)
        egress.append(
            {"to": [{"ipBlock": block}], "ports": [{"protocol": "TCP", "port": p} for p in rule.ports]}
        )
    return {"podSelector": {"matchLabels": sel}, "policyTypes": ["Ingress", "Egress"], "egress": egress}


def _int_or_str(value: str) -> int | str:
    """``maxUnavailable`` is an int or a percentage string; Kubernetes refuses "3" as a string."""
    return int(value) if value.isdigit() else value
