"""Redis: the in-cluster queue and state store (Redis Streams), durable with AOF."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import _k8s
from components.config import RedisConfig

REDIS_PORT = 6379
PASSWORD_KEY = "password"
REDIS_UID = 999
"""UID/GID of the ``redis`` user in the official image."""


@dataclass(frozen=True)
class RedisConnection:
    """How coordinator and agents reach Redis: URL without password, password (and CA) from Secrets."""

    url: pulumi.Input[str]
    password_secret: pulumi.Input[str]
    password_key: str
    ca_secret: pulumi.Input[str] | None = None
    ca_key: str | None = None
    pod_selector: dict[str, str] | None = None
    """Labels of in-cluster Redis pods (NetworkPolicy peer); None for a managed instance."""
    ip_block: pulumi.Input[str] | None = None
    """CIDR of a managed instance (NetworkPolicy peer); None for in-cluster Redis."""
    port: int = REDIS_PORT


class RedisArgs(TypedDict, total=False):
    namespace: pulumi.Input[str]
    """Namespace to deploy into."""
    instance: str
    """Swarm instance name (labels)."""
    config: RedisConfig
    """Validated ``redis`` section; a plain mapping is validated here."""
    client_selectors: list[dict[str, str]]
    """Pod label sets allowed to connect (coordinator and agents)."""
    password: pulumi.Input[str]
    """The server password; unset: a generated ``RandomPassword``. Kept secret either way."""


class Redis(pulumi.ComponentResource):
    """A single-replica Redis StatefulSet with a PVC, AOF (appendfsync everysec) and a password.

    The password (given, or a generated ``RandomPassword``) is stored only in a Secret; the server reads it
    from a file mounted from that Secret, clients from ``secretKeyRef``. A NetworkPolicy admits only
    coordinator and agent pods.
    """

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    secret_name: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:Redis", name, None, opts)
        cfg = RedisConfig.model_validate(args.get("config", {}))
        ns = args["namespace"]
        instance = args.get("instance", "agentswarm")
        component = "redis"
        sel = _k8s.selector_labels(instance, component)
        svc_name = f"{instance}-redis"
        secret_name = f"{instance}-redis-auth"

        password: pulumi.Output[str]
        if args.get("password") is not None:
            password = pulumi.Output.secret(args["password"])
        else:
            password = random.RandomPassword(
                f"{name}-password", length=32, special=False, opts=_k8s.child_opts(self)
            ).result
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=_k8s.metadata(secret_name, ns, instance, component),
            type="Opaque",
            string_data={PASSWORD_KEY: password},
            opts=_k8s.child_opts(self),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=_k8s.metadata(svc_name, ns, instance, component),
            spec=_k8s.spec(
                {
                    "selector": sel,
                    "ports": [
                        {"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}
                    ],
                }
            ),
            opts=_k8s.child_opts(self),
        )
        # The StatefulSet's governing Service must be headless; clients use the ClusterIP Service above, whose
        # address survives pod restarts.
        headless = k8s.core.v1.Service(
            f"{name}-headless-service",
            metadata=_k8s.metadata(f"{svc_name}-headless", ns, instance, component),
            spec=_k8s.spec(
                {
                    "clusterIP": "None",
                    "selector": sel,
                    "ports": [
                        {"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}
                    ],
                }
            ),
            opts=_k8s.child_opts(self),
        )
        # The password reaches the server through an included file mounted from a Secret: it is neither in
        # the manifest nor on the command line.
        server_args = ["/usr/local/etc/redis/redis.conf"]
        conf_lines = [
            "port 6379",
            "dir /data",
            f"appendonly {'yes' if cfg.aof else 'no'}",
            "appendfsync everysec",
            "include /run/secrets/redis/auth.conf",
        ]
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=_k8s.metadata(f"{instance}-redis-config", ns, instance, component),
            data={"redis.conf": "\n".join(conf_lines) + "\n"},
            opts=_k8s.child_opts(self),
        )
        probe_cmd = ["sh", "-c", "redis-cli ping | grep -q PONG"]  # redis-cli reads REDISCLI_AUTH
        volume_claim = {
            "metadata": {"name": "data", "labels": _k8s.labels(instance, component)},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": cfg.storage_size}},
                **({"storageClassName": cfg.storage_class} if cfg.storage_class else {}),
            },
        }
        auth_conf = password.apply(lambda p: f"requirepass {p}\n")  # password is secret, so is this
        auth_secret = k8s.core.v1.Secret(
            f"{name}-server-auth",
            metadata=_k8s.metadata(f"{instance}-redis-server-auth", ns, instance, component),
            type="Opaque",
            string_data={"auth.conf": auth_conf},  # result is secret, so is this
            opts=_k8s.child_opts(self),
        )
        k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=_k8s.metadata(svc_name, ns, instance, component),
            spec=_k8s.spec(
                {
                    "serviceName": f"{svc_name}-headless",
                    "replicas": 1,
                    "selector": {"matchLabels": sel},
                    "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                    "template": {
                        "metadata": {"labels": _k8s.labels(instance, component)},
                        "spec": {
                            "automountServiceAccountToken": False,
                            "securityContext": {
                                **_k8s.pod_security_context(),
                                "runAsUser": REDIS_UID,
                                "runAsGroup": REDIS_UID,
                                "fsGroup": REDIS_UID,
                            },
                            "terminationGracePeriodSeconds": 30,
                            "containers": [
                                {
                                    "name": "redis",
                                    "image": cfg.image,
                                    "imagePullPolicy": "IfNotPresent",
                                    "command": ["redis-server"],
                                    "args": server_args,
                                    "ports": [
                                        {"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}
                                    ],
                                    "env": [
                                        _k8s.secret_env("REDISCLI_AUTH", secret.metadata.name, PASSWORD_KEY)
                                    ],
                                    "resources": cfg.resources.to_k8s(),
                                    "securityContext": _k8s.container_security_context(REDIS_UID),
                                    "readinessProbe": {
                                        "exec": {"command": probe_cmd},
                                        "periodSeconds": 5,
                                        "timeoutSeconds": 3,
                                    },
                                    "livenessProbe": {
                                        "exec": {"command": probe_cmd},
                                        "initialDelaySeconds": 10,
                                        "periodSeconds": 10,
                                        "timeoutSeconds": 3,
                                        "failureThreshold": 6,
                                    },
                                    "volumeMounts": [
                                        {"name": "data", "mountPath": "/data"},
                                        {
                                            "name": "config",
                                            "mountPath": "/usr/local/etc/redis",
                                            "readOnly": True,
                                        },
                                        {"name": "auth", "mountPath": "/run/secrets/redis", "readOnly": True},
                                        _k8s.tmp_mount(),
                                    ],
                                }
                            ],
                            "volumes": [
                                {"name": "config", "configMap": {"name": config_map.metadata.name}},
                                {"name": "auth", "secret": {"secretName": auth_secret.metadata.name}},
                                _k8s.tmp_volume(),
                            ],
                        },
                    },
                    "volumeClaimTemplates": [volume_claim],
                }
            ),
            opts=_k8s.child_opts(self, depends_on=[service, headless]),
        )
        clients = args.get("client_selectors", [])
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=_k8s.metadata(f"{instance}-redis", ns, instance, component),
            spec=_k8s.spec(
                {
                    "podSelector": {"matchLabels": sel},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": c}} for c in clients],
                            "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                        }
                    ],
                }
            ),
            opts=_k8s.child_opts(self),
        )
        self.host = pulumi.Output.concat(
            service.metadata.name, ".", pulumi.Output.from_input(ns), ".svc.cluster.local"
        )
        self.port = pulumi.Output.from_input(REDIS_PORT)
        self.secret_name = secret.metadata.name
        self.url = pulumi.Output.concat("redis://", self.host, f":{REDIS_PORT}/0")
        self.connection = RedisConnection(
            url=self.url,
            password_secret=self.secret_name,
            password_key=PASSWORD_KEY,
            pod_selector=sel,
        )
        self.register_outputs(
            {"host": self.host, "port": self.port, "secret_name": self.secret_name, "url": self.url}
        )


CA_MOUNT_DIR = "/etc/agentswarm/redis-ca"


def redis_env(conn: RedisConnection) -> list[dict[str, object]]:
    """The broker env of docs/runtime-contract.md: URL without password, password and CA from Secrets."""
    env: list[dict[str, object]] = [
        {"name": "AGENTSWARM_BROKER", "value": "redis"},
        {"name": "AGENTSWARM_REDIS_URL", "value": conn.url},
        _k8s.secret_env("AGENTSWARM_REDIS_PASSWORD", conn.password_secret, conn.password_key),
    ]
    if conn.ca_secret is not None and conn.ca_key is not None:
        env.append({"name": "AGENTSWARM_REDIS_CA_FILE", "value": f"{CA_MOUNT_DIR}/{conn.ca_key}"})
    return env


def redis_ca_volume(conn: RedisConnection) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(volumes, mounts) carrying the managed instance's CA certificate, empty for in-cluster Redis."""
    if conn.ca_secret is None:
        return [], []
    return (
        [{"name": "redis-ca", "secret": {"secretName": conn.ca_secret}}],
        [{"name": "redis-ca", "mountPath": CA_MOUNT_DIR, "readOnly": True}],
    )


def redis_egress_rule(conn: RedisConnection) -> dict[str, object]:
    """NetworkPolicy egress rule reaching Redis: its pods in-cluster, or the managed instance's address."""
    if conn.pod_selector is not None:
        peer: dict[str, object] = {"podSelector": {"matchLabels": conn.pod_selector}}
    else:
        peer = {"ipBlock": {"cidr": conn.ip_block}}
    return {"to": [peer], "ports": [{"protocol": "TCP", "port": conn.port}]}
