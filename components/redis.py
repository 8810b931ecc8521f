"""Redis, the queue and state store (Redis Streams): the in-cluster StatefulSet, or a managed instance's
Secrets, and the :class:`RedisConnection` that tells the runtime pods how to reach either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from components import _k8s
from components.config import RedisConfig

REDIS_PORT = 6379
MANAGED_REDIS_PORT = 6378
"""Memorystore serves TLS (SERVER_AUTHENTICATION) on 6378."""
PASSWORD_KEY = "password"
MANAGED_PASSWORD_KEY = "auth-string"
MANAGED_CA_KEY = "ca.crt"
REDIS_UID = 10999
"""UID/GID redis-server runs as: no user of the image (its ``redis`` user is 999) and above 10000, so it can
never be a user of the node either. The image's files are world-readable and the data volume is the pod's
through ``fsGroup``, so redis-server needs no user entry."""
COMPONENT = "redis"
CONF_DIR = "/usr/local/etc/redis"
AUTH_DIR = "/run/secrets/redis"
CLIENT_AUTH_DIR = "/run/secrets/redis-client"
"""The client password (the probe's ``redis-cli``), a file like every secret of the runtime."""


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


class RedisArgs(TypedDict):
    namespace: pulumi.Input[str]
    """Namespace to deploy into."""
    instance: NotRequired[str]
    """Swarm instance name (labels); default ``agentswarm``."""
    config: NotRequired[RedisConfig]
    """Validated ``redis`` section; a plain mapping is validated here. Default: every default."""
    client_selectors: NotRequired[list[dict[str, str]]]
    """Pod label sets allowed to connect (coordinator and agents)."""
    extra_ingress: NotRequired[list[dict[str, Any]]]
    """More NetworkPolicy ingress rules (KEDA's operator reading the backlog when autoscaling)."""
    password: NotRequired[pulumi.Input[str]]
    """The server password; unset: a generated ``RandomPassword``. Kept secret either way."""


class Redis(pulumi.ComponentResource):
    """A single-replica Redis StatefulSet with a PVC, AOF (appendfsync everysec) and a password.

    The password (given, or a generated ``RandomPassword``) is stored only in Secrets; the server reads it
    from a file mounted from one, clients from ``secretKeyRef``. A NetworkPolicy admits only the clients.
    """

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    secret_name: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:Redis", name, None, opts)
        cfg = RedisConfig.model_validate(args.get("config", {}))
        ns, instance = args["namespace"], args.get("instance", "agentswarm")
        svc_name = f"{instance}-redis"
        sel = _k8s.selector_labels(instance, COMPONENT)
        child = _k8s.child_opts(self)

        password = _k8s.given_or_random(self, f"{name}-password", args.get("password"), 32)
        secret = _k8s.opaque_secret(
            f"{name}-secret",
            f"{instance}-redis-auth",
            ns,
            instance,
            COMPONENT,
            {PASSWORD_KEY: password},
            child,
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=_k8s.metadata(svc_name, ns, instance, COMPONENT),
            spec=service_spec(sel, headless=False),
            opts=child,
        )
        # The StatefulSet's governing Service must be headless; clients use the ClusterIP Service above, whose
        # address survives pod restarts.
        headless = k8s.core.v1.Service(
            f"{name}-headless-service",
            metadata=_k8s.metadata(f"{svc_name}-headless", ns, instance, COMPONENT),
            spec=service_spec(sel, headless=True),
            opts=child,
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=_k8s.metadata(f"{instance}-redis-config", ns, instance, COMPONENT),
            data={"redis.conf": redis_conf(cfg.aof)},
            opts=child,
        )
        # The password reaches the server through an included file mounted from a Secret: it is neither in
        # the manifest nor on the command line.
        auth_conf = password.apply(lambda p: f"requirepass {p}\n")  # secret, like password
        auth_secret = _k8s.opaque_secret(
            f"{name}-server-auth",
            f"{instance}-redis-server-auth",
            ns,
            instance,
            COMPONENT,
            {"auth.conf": auth_conf},
            child,
        )
        pod = pod_spec(cfg, secret, config_map, auth_secret)
        k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=_k8s.metadata(svc_name, ns, instance, COMPONENT),
            spec=statefulset_spec(cfg, instance, svc_name, sel, _k8s.pod_template(instance, COMPONENT, pod)),
            opts=_k8s.child_opts(self, depends_on=[service, headless]),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=_k8s.metadata(svc_name, ns, instance, COMPONENT),
            spec=network_policy_spec(sel, args.get("client_selectors", []), args.get("extra_ingress", [])),
            opts=child,
        )
        self.host = pulumi.Output.concat(
            service.metadata.name, ".", pulumi.Output.from_input(ns), ".svc.cluster.local"
        )
        self.port = pulumi.Output.from_input(REDIS_PORT)
        self.secret_name = secret.metadata.name
        self.url = pulumi.Output.concat("redis://", self.host, f":{REDIS_PORT}/0")
        self.connection = RedisConnection(
            url=self.url, password_secret=self.secret_name, password_key=PASSWORD_KEY, pod_selector=sel
        )
        self.register_outputs(
            {"host": self.host, "port": self.port, "secret_name": self.secret_name, "url": self.url}
        )


def redis_conf(aof: bool) -> str:
    """redis.conf: data in the volume, AOF fsynced every second, the password from the mounted auth file."""
    lines = [
        f"port {REDIS_PORT}",
        "dir /data",
        f"appendonly {'yes' if aof else 'no'}",
        "appendfsync everysec",
        f"include {AUTH_DIR}/auth.conf",
    ]
    return "\n".join(lines) + "\n"


def service_spec(sel: dict[str, str], headless: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": sel,
        "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
    }
    return {"clusterIP": "None", **spec} if headless else spec


def pod_spec(
    cfg: RedisConfig, secret: k8s.core.v1.Secret, config_map: k8s.core.v1.ConfigMap, auth: k8s.core.v1.Secret
) -> dict[str, Any]:
    """The redis pod as the image's ``redis`` user, read-only root, config and password from mounted files."""
    # redis-cli reads REDISCLI_AUTH: set for the probe's process only, from the mounted file
    probe_cmd = [
        "sh",
        "-c",
        f'REDISCLI_AUTH="$(cat {CLIENT_AUTH_DIR}/{PASSWORD_KEY})" redis-cli ping | grep -q PONG',
    ]
    container = {
        "name": COMPONENT,
        "image": cfg.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["redis-server"],
        "args": [f"{CONF_DIR}/redis.conf"],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "resources": cfg.resources.to_k8s(),
        "securityContext": _k8s.container_security_context(REDIS_UID),
        "readinessProbe": {"exec": {"command": probe_cmd}, "periodSeconds": 5, "timeoutSeconds": 3},
        "livenessProbe": {
            "exec": {"command": probe_cmd},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 6,
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "config", "mountPath": CONF_DIR, "readOnly": True},
            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
            {"name": "client-auth", "mountPath": CLIENT_AUTH_DIR, "readOnly": True},
            _k8s.tmp_mount(),
        ],
    }
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            **_k8s.pod_security_context(),
            "runAsUser": REDIS_UID,
            "runAsGroup": REDIS_UID,
            "fsGroup": REDIS_UID,
        },
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map.metadata.name}},
            {"name": "auth", "secret": {"secretName": auth.metadata.name, "defaultMode": 0o440}},
            {"name": "client-auth", "secret": {"secretName": secret.metadata.name, "defaultMode": 0o440}},
            _k8s.tmp_volume(),
        ],
    }


def statefulset_spec(
    cfg: RedisConfig, instance: str, svc_name: str, sel: dict[str, str], template: dict[str, Any]
) -> dict[str, Any]:
    """One replica with its data PVC, kept when the StatefulSet is deleted or scaled."""
    return {
        "serviceName": f"{svc_name}-headless",
        "replicas": 1,
        "selector": {"matchLabels": sel},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "template": template,
        "volumeClaimTemplates": [
            _k8s.volume_claim("data", instance, COMPONENT, cfg.storage_size, cfg.storage_class)
        ],
    }


def network_policy_spec(
    sel: dict[str, str], clients: list[dict[str, str]], extra: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Only the client pods (and the ``extra`` rules' peers) reach the Redis port."""
    return {
        "podSelector": {"matchLabels": sel},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"podSelector": {"matchLabels": c}} for c in clients],
                "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
            },
            *(extra or []),
        ],
    }


class ManagedRedis(TypedDict):
    """A Redis that is not in the cluster (Memorystore): TLS, AUTH and a private IP."""

    host: pulumi.Input[str]
    port: pulumi.Input[int]
    auth_string: pulumi.Input[str]
    ca_certificate: pulumi.Input[str]


def managed_redis_connection(
    name: str, instance: str, ns: pulumi.Input[str], managed: ManagedRedis, opts: pulumi.ResourceOptions
) -> RedisConnection:
    """Secrets for a managed instance's AUTH string and CA; clients use ``rediss://`` (TLS)."""
    auth_string = pulumi.Output.secret(managed["auth_string"])
    auth = _k8s.opaque_secret(
        f"{name}-managed-redis-auth",
        f"{instance}-redis-auth",
        ns,
        instance,
        COMPONENT,
        {MANAGED_PASSWORD_KEY: auth_string},
        opts,
    )
    ca = _k8s.opaque_secret(
        f"{name}-managed-redis-ca",
        f"{instance}-redis-ca",
        ns,
        instance,
        COMPONENT,
        {MANAGED_CA_KEY: managed["ca_certificate"]},
        opts,
    )
    host = pulumi.Output.from_input(managed["host"])
    port = pulumi.Output.from_input(managed["port"])
    return RedisConnection(
        url=pulumi.Output.concat("rediss://", host, ":", port.apply(lambda p: str(int(p))), "/0"),
        password_secret=auth.metadata.name,
        password_key=MANAGED_PASSWORD_KEY,
        ca_secret=ca.metadata.name,
        ca_key=MANAGED_CA_KEY,
        ip_block=host.apply(lambda h: f"{h}/32"),
        port=MANAGED_REDIS_PORT,
    )
