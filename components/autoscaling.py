"""AgentAutoscaler: a KEDA ScaledObject that sizes the agent StatefulSet by the queue's backlog, down to zero.

The trigger reads the number of tasks not finished yet (queued + handed out and not acknowledged), which is
0 exactly when the swarm has nothing to do (docs/autoscaling.md has the measurements behind that choice):

* Redis: the ``redis-streams`` scaler in ``streamLength`` mode (``XLEN`` of a task stream; the trigger
  names no ``consumerGroup``, because the consumer group's lag reads 0 for tasks waiting for a retry and NULL
  after out-of-order acknowledgements, and its pending count cannot leave zero). The Redis password (and the
  CA of a TLS instance such as Memorystore) come from the existing Secrets through a TriggerAuthentication.
* NATS: the ``nats-jetstream`` scaler (``num_pending + num_ack_pending`` of an agents' consumer, read from
  the server's ``/jsz`` monitoring endpoint on port 8222).

The runtime keeps one task stream (Redis) or consumer (NATS) per priority class, and a KEDA trigger watches
one of them, so the ScaledObject has one trigger per class, named after it, and a scaling modifier whose
formula sums them (``high + normal + low``) against the target per agent: KEDA scales on the whole backlog,
not on the largest class (its default for several triggers).

KEDA scales the StatefulSet between 0 and 1 itself (after ``cooldownPeriod`` without activity) and lets an
HPA handle 1..max, whose scale-down stabilisation is ``advanced.horizontalPodAutoscalerConfig.behavior``.
The StatefulSet removes the highest ordinals first; each stops on SIGTERM at its next checkpoint, and with the
broker checkpoint backend another agent resumes its task. KEDA itself is either installed already (the
default) or installed here from the kedacore Helm chart at a pinned version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s

from components import _k8s
from components.config import AutoscalingConfig

KEDA_API_VERSION = "keda.sh/v1alpha1"
#: The kedacore/keda Helm chart version installed by ``install_keda`` (chart and app versions are equal).
KEDA_CHART_VERSION = "2.20.2"
KEDA_CHART_REPO = "https://kedacore.github.io/charts"
#: Namespace KEDA runs in, and the labels of its operator pods (which query the broker).
KEDA_NAMESPACE = "keda"
KEDA_OPERATOR_SELECTOR: dict[str, str] = {"app.kubernetes.io/name": "keda-operator"}
#: NATS HTTP monitoring port, where KEDA's nats-jetstream scaler reads ``/jsz``.
NATS_MONITORING_PORT = 8222
COMPONENT = "agent-autoscaler"
#: The runtime's priority classes (``agentswarm.broker.PRIORITIES``; a contract test keeps them equal).
PRIORITY_CLASSES: tuple[str, ...] = ("high", "normal", "low")


def class_stream(namespace: str, cls: str) -> str:
    """The runtime's Redis task stream of a priority class (``normal``: ``<ns>:tasks``)."""
    return f"{namespace}:tasks" if cls == "normal" else f"{namespace}:tasks:{cls}"


def class_consumer(namespace: str, cls: str) -> str:
    """The runtime's NATS durable consumer of a priority class (``normal``: ``<ns>-agents``)."""
    return f"{namespace}-agents" if cls == "normal" else f"{namespace}-agents-{cls}"


@dataclass(frozen=True)
class ScalingRule:
    """The rule of docs/autoscaling.md in the units KEDA takes (seconds, counts)."""

    min_replicas: int
    max_replicas: int
    target_per_agent: int
    activation: int
    polling_interval_seconds: int
    cooldown_seconds: int
    scale_down_stabilization_seconds: int


def scaling_rule(cfg: AutoscalingConfig) -> ScalingRule:
    """The ``agents.autoscaling`` section as a :class:`ScalingRule`."""
    return ScalingRule(
        min_replicas=cfg.min_replicas,
        max_replicas=cfg.max_replicas,
        target_per_agent=cfg.target_tasks_per_agent,
        activation=cfg.activation_tasks,
        polling_interval_seconds=cfg.polling_interval_seconds,
        cooldown_seconds=cfg.cooldown_seconds,
        scale_down_stabilization_seconds=cfg.scale_down_stabilization_seconds,
    )


def redis_address(url: str) -> tuple[str, int, bool]:
    """``("host:port", database index, TLS?)`` of a Redis URL (KEDA takes the address without the scheme)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"not a redis:// or rediss:// URL: {url!r}")
    port = parts.port or 6379
    path = parts.path.strip("/")
    return f"{parts.hostname}:{port}", int(path) if path.isdigit() else 0, parts.scheme == "rediss"


def redis_triggers(url: str, namespace: str, rule: ScalingRule, auth_name: str) -> list[dict[str, Any]]:
    """One ``redis-streams`` trigger in ``streamLength`` mode per priority class's task stream."""
    address, db, tls = redis_address(url)
    return [
        {
            "type": "redis-streams",
            "name": cls,
            "metadata": {
                "address": address,
                "databaseIndex": str(db),
                "stream": class_stream(namespace, cls),
                "streamLength": str(rule.target_per_agent),
                "activationLagCount": str(rule.activation),
                "enableTLS": "true" if tls else "false",
            },
            "authenticationRef": {"name": auth_name},
        }
        for cls in PRIORITY_CLASSES
    ]


def nats_triggers(monitoring_endpoint: str, namespace: str, rule: ScalingRule) -> list[dict[str, Any]]:
    """One ``nats-jetstream`` trigger per priority class's durable consumer (the runtime's stream layout)."""
    return [
        {
            "type": "nats-jetstream",
            "name": cls,
            "metadata": {
                "natsServerMonitoringEndpoint": monitoring_endpoint,
                "account": "$G",  # the server's global account: the in-cluster NATS uses no accounts
                "stream": f"{namespace.upper().replace('-', '_')}_TASKS",
                "consumer": class_consumer(namespace, cls),
                "lagThreshold": str(rule.target_per_agent),
                "activationLagThreshold": str(rule.activation),
            },
        }
        for cls in PRIORITY_CLASSES
    ]


def scaled_object_spec(
    rule: ScalingRule, statefulset_name: str, triggers: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """ScaledObject spec: the agent StatefulSet between min and max replicas, scaled on the sum of the
    triggers (one per priority class) against the target per agent."""
    behavior = {"scaleDown": {"stabilizationWindowSeconds": rule.scale_down_stabilization_seconds}}
    total = {
        "formula": " + ".join(str(t["name"]) for t in triggers),
        "target": str(rule.target_per_agent),
        "activationTarget": str(rule.activation),
        "metricType": "AverageValue",
    }
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": statefulset_name},
        "minReplicaCount": rule.min_replicas,
        "maxReplicaCount": rule.max_replicas,
        "pollingInterval": rule.polling_interval_seconds,
        "cooldownPeriod": rule.cooldown_seconds,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}, "scalingModifiers": total},
        "triggers": [dict(t) for t in triggers],
    }


def trigger_authentication_spec(
    password_secret: pulumi.Input[str],
    password_key: str,
    ca_secret: pulumi.Input[str] | None = None,
    ca_key: str | None = None,
) -> dict[str, Any]:
    """TriggerAuthentication: the Redis password (and CA certificate) from the Secrets the agents use."""
    refs: list[dict[str, Any]] = [{"parameter": "password", "name": password_secret, "key": password_key}]
    if ca_secret is not None and ca_key is not None:
        refs.append({"parameter": "ca", "name": ca_secret, "key": ca_key})
    return {"secretTargetRef": refs}


def keda_ingress_rule(port: int) -> dict[str, Any]:
    """NetworkPolicy ingress rule: KEDA's operator (namespace ``keda``) may reach the broker on ``port``."""
    return {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": KEDA_NAMESPACE}},
                "podSelector": {"matchLabels": dict(KEDA_OPERATOR_SELECTOR)},
            }
        ],
        "ports": [{"protocol": "TCP", "port": port}],
    }


class RedisTarget(TypedDict):
    """Where the Redis broker is, as the agents see it."""

    url: pulumi.Input[str]
    """``redis://`` or ``rediss://`` URL without password."""
    password_secret: pulumi.Input[str]
    """Secret holding the password."""
    password_key: str
    """Key of the password in that Secret."""
    ca_secret: NotRequired[pulumi.Input[str] | None]
    """Secret holding the CA certificate of a TLS instance."""
    ca_key: NotRequired[str | None]
    """Key of the CA certificate in that Secret."""


class AgentAutoscalerArgs(TypedDict):
    namespace: pulumi.Input[str]
    """Namespace of the agent StatefulSet."""
    instance: str
    """Swarm instance name (labels, object names)."""
    statefulset_name: pulumi.Input[str]
    """The agent StatefulSet to scale."""
    rule: ScalingRule
    """Replica bounds, target, activation and timings."""
    queue_namespace: str
    """The runtime's ``AGENTSWARM_NAMESPACE`` (names the stream and consumer)."""
    redis: NotRequired[RedisTarget]
    """The Redis broker (exactly one of ``redis`` and ``nats_monitoring_endpoint``)."""
    nats_monitoring_endpoint: NotRequired[pulumi.Input[str]]
    """``host:8222`` of the in-cluster NATS monitoring endpoint."""
    install_keda: NotRequired[bool]
    """Install KEDA from the kedacore Helm chart (pinned); default False (KEDA already on the cluster)."""


class AgentAutoscaler(pulumi.ComponentResource):
    """ScaledObject (+ TriggerAuthentication for Redis, + the KEDA chart when asked) for the agents."""

    scaled_object_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: AgentAutoscalerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agentswarm:index:AgentAutoscaler", name, None, opts)
        ns, instance, rule = args["namespace"], args["instance"], args["rule"]
        object_name = f"{instance}-agent"
        depends: list[pulumi.Resource] = []
        if args.get("install_keda", False):
            keda_ns = k8s.core.v1.Namespace(
                f"{name}-keda-namespace",
                metadata={"name": KEDA_NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "pulumi"}},
                opts=_k8s.child_opts(self),
            )
            depends.append(
                k8s.helm.v4.Chart(
                    f"{name}-keda",
                    chart="keda",
                    version=KEDA_CHART_VERSION,
                    namespace=KEDA_NAMESPACE,
                    repository_opts=k8s.helm.v4.RepositoryOptsArgs(repo=KEDA_CHART_REPO),
                    opts=_k8s.child_opts(self, depends_on=[keda_ns]),
                )
            )
        redis = args.get("redis")
        nats_endpoint = args.get("nats_monitoring_endpoint")
        if (redis is None) == (nats_endpoint is None):
            raise ValueError("AgentAutoscaler needs exactly one of 'redis' and 'nats_monitoring_endpoint'")
        triggers: pulumi.Input[list[dict[str, Any]]]
        if redis is not None:
            auth = k8s.apiextensions.CustomResource(
                f"{name}-trigger-auth",
                api_version=KEDA_API_VERSION,
                kind="TriggerAuthentication",
                metadata=_k8s.metadata(object_name, ns, instance, COMPONENT),
                spec=trigger_authentication_spec(
                    redis["password_secret"],
                    redis["password_key"],
                    redis.get("ca_secret"),
                    redis.get("ca_key"),
                ),
                opts=_k8s.child_opts(self, depends_on=depends),
            )
            depends.append(auth)
            queue_ns = args["queue_namespace"]
            triggers = pulumi.Output.from_input(redis["url"]).apply(
                lambda url: redis_triggers(url, queue_ns, rule, object_name)
            )
        else:
            queue_ns = args["queue_namespace"]
            triggers = pulumi.Output.from_input(nats_endpoint).apply(
                lambda endpoint: nats_triggers(str(endpoint), queue_ns, rule)
            )
        scaled = k8s.apiextensions.CustomResource(
            f"{name}-scaled-object",
            api_version=KEDA_API_VERSION,
            kind="ScaledObject",
            metadata=_k8s.metadata(object_name, ns, instance, COMPONENT),
            spec=pulumi.Output.all(args["statefulset_name"], triggers).apply(
                lambda values: scaled_object_spec(rule, str(values[0]), values[1])
            ),
            opts=_k8s.child_opts(self, depends_on=depends),
        )
        self.scaled_object_name = scaled.metadata.apply(lambda m: str(m["name"]))
        self.register_outputs({"scaled_object_name": self.scaled_object_name})
