"""Nats: an in-cluster NATS server with JetStream on a PVC, for ``broker: nats``.

One replica (like the in-cluster Redis), JetStream's file store on the PVC, password authentication with a
generated password kept in a Secret, the HTTP monitoring endpoint on 8222 (health probes, and KEDA's
nats-jetstream scaler reads ``/jsz`` there). The server reads the password from its environment (the config
file names ``$NATS_PASSWORD``), so it appears neither in the ConfigMap nor on the command line. Clients get
``AGENTSWARM_NATS_URL=nats://agentswarm:$(NATS_PASSWORD)@host:4222``, which Kubernetes expands from the
Secret when it starts the container. A NetworkPolicy admits the clients to 4222 and, when asked, KEDA's
operator to 8222.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import _k8s
from components.config import NatsConfig

NATS_PORT = 4222
NATS_MONITORING_PORT = 8222
NATS_USER = "agentswarm"
PASSWORD_KEY = "password"
#: The password variable: the server's config references it, clients' URL expands it.
PASSWORD_ENV = "NATS_PASSWORD"
NATS_UID = 10998
"""UID/GID nats-server runs as: above 10000 like every pod of the swarm, so it is never a user of the node."""
COMPONENT = "nats"
CONF_DIR = "/etc/nats"
DATA_DIR = "/data"


@dataclass(frozen=True)
class NatsConnection:
    """How coordinator and agents reach NATS: a URL whose password Kubernetes fills in from a Secret."""

    host: pulumi.Input[str]
    password_secret: pulumi.Input[str]
    password_key: str
    pod_selector: dict[str, str]
    port: int = NATS_PORT

    @property
    def monitoring_endpoint(self) -> pulumi.Output[str]:
        """``host:8222``: where KEDA's nats-jetstream scaler reads ``/jsz``."""
        return pulumi.Output.concat(self.host, f":{NATS_MONITORING_PORT}")


def nats_env(conn: NatsConnection) -> list[dict[str, Any]]:
    """The runtime's NATS broker env: the password from the Secret, expanded into the URL."""
    return [
        {"name": "AGENTSWARM_BROKER", "value": "nats"},
        _k8s.secret_env(PASSWORD_ENV, conn.password_secret, conn.password_key),
        {
            "name": "AGENTSWARM_NATS_URL",
            "value": pulumi.Output.concat(
                f"nats://{NATS_USER}:$({PASSWORD_ENV})@", conn.host, f":{conn.port}"
            ),
        },
    ]


def nats_egress_rule(conn: NatsConnection) -> dict[str, Any]:
    """NetworkPolicy egress rule reaching the NATS client port."""
    return {
        "to": [{"podSelector": {"matchLabels": conn.pod_selector}}],
        "ports": [{"protocol": "TCP", "port": conn.port}],
    }


def nats_conf(
    data_dir: str = DATA_DIR, port: int = NATS_PORT, monitoring_port: int = NATS_MONITORING_PORT
) -> str:
    """nats.conf: JetStream on the volume, monitoring on 8222, one user whose password comes from the env."""
    return (
        f"port: {port}\n"
        f"http_port: {monitoring_port}\n"
        "server_name: $POD_NAME\n"
        f'jetstream {{\n  store_dir: "{data_dir}"\n}}\n'
        f"authorization {{\n  user: {NATS_USER}\n  password: ${PASSWORD_ENV}\n}}\n"
        # On SIGTERM stop accepting clients and let them move over before the server exits.
        "lame_duck_grace_period: 10s\nlame_duck_duration: 30s\n"
    )


def pod_spec(
    image: str, resources: dict[str, Any], secret_name: pulumi.Input[str], config_map: pulumi.Input[str]
) -> dict[str, Any]:
    """The NATS pod: non-root, read-only root filesystem, config from a ConfigMap, password from a Secret."""
    health = {"httpGet": {"path": "/healthz?js-enabled-only=true", "port": "monitoring"}}
    container = {
        "name": COMPONENT,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["nats-server"],
        "args": ["--config", f"{CONF_DIR}/nats.conf"],
        "ports": [
            {"name": "client", "containerPort": NATS_PORT, "protocol": "TCP"},
            {"name": "monitoring", "containerPort": NATS_MONITORING_PORT, "protocol": "TCP"},
        ],
        "env": [
            _k8s.secret_env(PASSWORD_ENV, secret_name, PASSWORD_KEY),
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            },
        ],
        "resources": resources,
        "securityContext": _k8s.container_security_context(NATS_UID),
        "startupProbe": {**health, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 60},
        "readinessProbe": {**health, "periodSeconds": 5, "timeoutSeconds": 3},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "monitoring"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 6,
        },
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "config", "mountPath": CONF_DIR, "readOnly": True},
            _k8s.tmp_mount(),
        ],
    }
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            **_k8s.pod_security_context(),
            "runAsUser": NATS_UID,
            "runAsGroup": NATS_UID,
            "fsGroup": NATS_UID,
        },
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": config_map}}, _k8s.tmp_volume()],
    }


def network_policy_spec(
    sel: dict[str, str], clients: list[dict[str, str]], monitoring_from: list[dict[str, Any]]
) -> dict[str, Any]:
    """Clients reach 4222; the monitoring port only from ``monitoring_from`` rules (KEDA's operator)."""
    ingress: list[dict[str, Any]] = [
        {
            "from": [{"podSelector": {"matchLabels": c}} for c in clients],
            "ports": [{"protocol": "TCP", "port": NATS_PORT}],
        },
        *monitoring_from,
    ]
    return {"podSelector": {"matchLabels": sel}, "policyTypes": ["Ingress"], "ingress": ingress}


class NatsArgs(TypedDict):
    namespace: pulumi.Input[str]
    """Namespace to deploy into."""
    instance: NotRequired[str]
    """Swarm instance name (labels); default ``agentswarm``."""
    config: NotRequired[NatsConfig]
    """Validated ``nats`` section; a plain mapping is validated here. Default: every default."""
    client_selectors: NotRequired[list[dict[str, str]]]
    """Pod label sets allowed to connect (coordinator and agents)."""
    monitoring_ingress: NotRequired[list[dict[str, Any]]]
    """Extra ingress rules to the monitoring port (KEDA's operator when autoscaling)."""
    password: NotRequired[pulumi.Input[str]]
    """The client password; unset: a generated ``RandomPassword``. Kept secret either way."""


class Nats(pulumi.ComponentResource):
    """A single-replica NATS StatefulSet with JetStream on a PVC, a password and monitoring on 8222."""

    host: pulumi.Output[str]
    secret_name: pulumi.Output[str]

    def __init__(self, name: str, args: NatsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:Nats", name, None, opts)
        cfg = NatsConfig.model_validate(args.get("config", {}))
        ns, instance = args["namespace"], args.get("instance", "agentswarm")
        svc_name = f"{instance}-nats"
        sel = _k8s.selector_labels(instance, COMPONENT)
        child = _k8s.child_opts(self)
        given = args.get("password")
        password = (
            pulumi.Output.secret(given)
            if given is not None
            # URL-safe: the password is expanded into the clients' nats:// URL.
            else random.RandomPassword(f"{name}-password", length=32, special=False, opts=child).result
        )
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=_k8s.metadata(f"{instance}-nats-auth", ns, instance, COMPONENT),
            type="Opaque",
            string_data={PASSWORD_KEY: password},
            opts=child,
        )
        ports = [
            {"name": "client", "port": NATS_PORT, "targetPort": "client", "protocol": "TCP"},
            {
                "name": "monitoring",
                "port": NATS_MONITORING_PORT,
                "targetPort": "monitoring",
                "protocol": "TCP",
            },
        ]
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=_k8s.metadata(svc_name, ns, instance, COMPONENT),
            spec={"selector": sel, "ports": ports},
            opts=child,
        )
        headless = k8s.core.v1.Service(
            f"{name}-headless-service",
            metadata=_k8s.metadata(f"{svc_name}-headless", ns, instance, COMPONENT),
            spec={"clusterIP": "None", "selector": sel, "ports": ports},
            opts=child,
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=_k8s.metadata(f"{instance}-nats-config", ns, instance, COMPONENT),
            data={"nats.conf": nats_conf()},
            opts=child,
        )
        pod = pod_spec(cfg.image, cfg.resources.to_k8s(), secret.metadata.name, config_map.metadata.name)
        k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=_k8s.metadata(svc_name, ns, instance, COMPONENT),
            spec={
                "serviceName": f"{svc_name}-headless",
                "replicas": 1,
                "selector": {"matchLabels": sel},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "template": {"metadata": {"labels": _k8s.labels(instance, COMPONENT)}, "spec": pod},
                "volumeClaimTemplates": [
                    _k8s.volume_claim("data", instance, COMPONENT, cfg.storage_size, cfg.storage_class)
                ],
            },
            opts=_k8s.child_opts(self, depends_on=[service, headless]),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=_k8s.metadata(svc_name, ns, instance, COMPONENT),
            spec=network_policy_spec(
                sel, args.get("client_selectors", []), args.get("monitoring_ingress", [])
            ),
            opts=child,
        )
        self.host = pulumi.Output.concat(
            service.metadata.name, ".", pulumi.Output.from_input(ns), ".svc.cluster.local"
        )
        self.secret_name = secret.metadata.name
        self.connection = NatsConnection(
            host=self.host, password_secret=self.secret_name, password_key=PASSWORD_KEY, pod_selector=sel
        )
        self.register_outputs({"host": self.host, "secret_name": self.secret_name})
