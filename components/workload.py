"""What the coordinator and the agent pods share: the args naming the runtime image, the broker and the pod
annotations, the pod skeleton, and the broker env, CA volume and egress rule built from a
:class:`RedisConnection`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi

from components import _k8s
from components.config import Resources
from components.nats import NatsConnection, nats_egress_rule, nats_env
from components.redis import RedisConnection

BrokerConnection = RedisConnection | NatsConnection
"""Where the coordinator and the agents find the queue."""

CA_MOUNT_DIR = "/etc/agentswarm/redis-ca"
PASSWORD_MOUNT_DIR = "/etc/agentswarm/redis-password"
"""Where the broker password's Secret is mounted: secrets reach the runtime as files (``*_FILE``)."""


class RuntimeWorkloadArgs(TypedDict):
    """The keys :class:`~components.coordinator.CoordinatorArgs` and
    :class:`~components.agents.AgentPoolArgs` share."""

    namespace: pulumi.Input[str]
    """Namespace to deploy into."""
    instance: str
    """Swarm instance name (labels and object names)."""
    image: pulumi.Input[str]
    """Image reference of the agentswarm runtime."""
    redis: NotRequired[RedisConnection]
    """Where the Redis broker is (give exactly one of ``redis`` and ``nats``)."""
    nats: NotRequired[NatsConnection]
    """Where the NATS broker is."""
    image_pull_policy: NotRequired[str]
    """Kubernetes imagePullPolicy; default ``IfNotPresent``."""
    pod_annotations: NotRequired[Mapping[str, pulumi.Input[str]]]
    """Pod-template annotations; a changed value rolls the pods (the kind build digest)."""
    runtime_env: NotRequired[list[dict[str, str]]]
    """More plain ``AGENTSWARM_*`` variables for the container (retention, the swarm's token budget)."""


def broker_connection(args: RuntimeWorkloadArgs) -> BrokerConnection:
    """The one broker connection in ``args`` (``redis`` or ``nats``); ValueError for none or both."""
    redis, nats = args.get("redis"), args.get("nats")
    if (redis is None) == (nats is None):
        raise ValueError("give exactly one of 'redis' and 'nats' (the broker the runtime pods use)")
    return redis if redis is not None else nats  # type: ignore[return-value]


def broker_env(conn: BrokerConnection) -> list[dict[str, object]]:
    """The broker env of docs/runtime-contract.md for either backend."""
    return list(nats_env(conn)) if isinstance(conn, NatsConnection) else redis_env(conn)


def broker_egress_rule(conn: BrokerConnection) -> dict[str, object]:
    """NetworkPolicy egress rule reaching the broker."""
    return nats_egress_rule(conn) if isinstance(conn, NatsConnection) else redis_egress_rule(conn)


def runtime_pod(
    role: str,
    image: pulumi.Input[str],
    pull_policy: str,
    conn: BrokerConnection,
    env: Sequence[Any],
    resources: Resources,
    grace_seconds: int,
    container: Mapping[str, Any],
    mounts: Sequence[Mapping[str, Any]] = (),
    pod: Mapping[str, Any] | None = None,
    volumes: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A pod running ``agentswarm <role>`` from the runtime image: the restricted security profile, a
    read-only root with /tmp, the broker's password (and CA when it has one) as files. ``container`` adds
    ports and probes, ``pod`` pod fields, ``mounts``/``volumes`` the role's own."""
    ca_volumes, ca_mounts = redis_secret_volumes(conn) if isinstance(conn, RedisConnection) else ([], [])
    return {
        **(pod or {}),
        "automountServiceAccountToken": False,
        "securityContext": _k8s.pod_security_context(),
        "terminationGracePeriodSeconds": grace_seconds,
        "containers": [
            {
                "name": role,
                "image": image,
                "imagePullPolicy": pull_policy,
                "args": [role],
                "env": list(env),
                "resources": resources.to_k8s(),
                "securityContext": _k8s.container_security_context(),
                **container,
                "volumeMounts": [*mounts, _k8s.tmp_mount(), *ca_mounts],
            }
        ],
        "volumes": [*volumes, _k8s.tmp_volume(), *ca_volumes],
    }


def redis_env(conn: RedisConnection) -> list[dict[str, object]]:
    """The broker env of docs/runtime-contract.md: URL without password, password and CA as mounted files."""
    env: list[dict[str, object]] = [
        {"name": "AGENTSWARM_BROKER", "value": "redis"},
        {"name": "AGENTSWARM_REDIS_URL", "value": conn.url},
        {"name": "AGENTSWARM_REDIS_PASSWORD_FILE", "value": f"{PASSWORD_MOUNT_DIR}/{conn.password_key}"},
    ]
    if conn.ca_secret is not None and conn.ca_key is not None:
        env.append({"name": "AGENTSWARM_REDIS_CA_FILE", "value": f"{CA_MOUNT_DIR}/{conn.ca_key}"})
    return env


def redis_secret_volumes(
    conn: RedisConnection,
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(volumes, mounts): the password's Secret, and the managed instance's CA certificate when it has one.
    Whole-Secret mounts (no ``subPath``), so an updated Secret reaches the files."""
    volumes: list[dict[str, object]] = [
        {"name": "redis-password", "secret": {"secretName": conn.password_secret, "defaultMode": 0o440}}
    ]
    mounts: list[dict[str, object]] = [
        {"name": "redis-password", "mountPath": PASSWORD_MOUNT_DIR, "readOnly": True}
    ]
    if conn.ca_secret is not None:
        volumes.append({"name": "redis-ca", "secret": {"secretName": conn.ca_secret}})
        mounts.append({"name": "redis-ca", "mountPath": CA_MOUNT_DIR, "readOnly": True})
    return volumes, mounts


def redis_egress_rule(conn: RedisConnection) -> dict[str, object]:
    """NetworkPolicy egress rule reaching Redis: its pods in-cluster, or the managed instance's address."""
    if conn.pod_selector is not None:
        peer: dict[str, object] = {"podSelector": {"matchLabels": conn.pod_selector}}
    else:
        peer = {"ipBlock": {"cidr": conn.ip_block}}
    return {"to": [peer], "ports": [{"protocol": "TCP", "port": conn.port}]}
