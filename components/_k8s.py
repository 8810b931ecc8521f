"""Small builders shared by the Kubernetes components: labels, metadata, pod templates, security contexts.

One place for the conventions every object follows (recommended ``app.kubernetes.io/*`` labels, the restricted
Pod Security profile), so no component copies a manifest fragment from another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

PART_OF = "agentswarm"
RUNTIME_UID = 10001
"""UID/GID the agentswarm image runs as (docs/runtime-contract.md)."""

AGENT_POOL_LABEL = "agentswarm.io/pool"
AGENT_POOL_VALUE = "agents"
"""Agent nodes carry the label ``agentswarm.io/pool=agents``; GKE agent pools also a ``NoSchedule`` taint with
the same key and value (the pair GKE Autopilot's workload separation expects). The kind node: label only."""

TMP_VOLUME = "tmp"


def selector_labels(instance: str, component: str) -> dict[str, str]:
    """Labels that identify one component's pods; stable, used by selectors and NetworkPolicies."""
    return {
        "app.kubernetes.io/name": PART_OF,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
    }


def labels(instance: str, component: str) -> dict[str, str]:
    """Recommended labels for every object of a component."""
    return {
        **selector_labels(instance, component),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def metadata(
    name: str,
    namespace: pulumi.Input[str] | None,
    instance: str,
    component: str,
    annotations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(instance, component)}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = annotations
    return meta


def pod_security_context() -> dict[str, Any]:
    """Pod-level settings of the Pod Security Standard ``restricted``."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "fsGroup": RUNTIME_UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(uid: int = RUNTIME_UID) -> dict[str, Any]:
    """Container-level settings of ``restricted`` plus a read-only root filesystem."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def tmp_volume() -> dict[str, Any]:
    """The only scratch space of a read-only container: an emptyDir at /tmp."""
    return {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}}


def tmp_mount() -> dict[str, Any]:
    return {"name": TMP_VOLUME, "mountPath": "/tmp"}


def secret_env(name: str, secret: pulumi.Input[str], key: str) -> dict[str, Any]:
    """An env var read from a Secret key: secrets never appear as literal values."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def dns_egress_rule() -> dict[str, Any]:
    """Egress to the cluster DNS (kube-dns pods in kube-system, same label on GKE and kind)."""
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def child_opts(parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kwargs)


def given_or_random(
    parent: pulumi.Resource, name: str, given: pulumi.Input[str] | None, length: int
) -> pulumi.Output[str]:
    """A secret: the ``given`` value marked secret, or a generated ``RandomPassword`` (kept in the state)."""
    if given is not None:
        return pulumi.Output.secret(given)
    return random.RandomPassword(name, length=length, special=False, opts=child_opts(parent)).result


def opaque_secret(
    name: str,
    secret_name: str,
    namespace: pulumi.Input[str],
    instance: str,
    component: str,
    data: Mapping[str, pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret:
    """A Secret holding ``data``; pods read it as files or ``secretKeyRef``, never as literal values."""
    return k8s.core.v1.Secret(
        name,
        metadata=metadata(secret_name, namespace, instance, component),
        type="Opaque",
        string_data=dict(data),
        opts=opts,
    )


def volume_claim(
    name: str, instance: str, component: str, size: str, storage_class: str | None
) -> dict[str, Any]:
    """A ``volumeClaimTemplates`` entry: one ReadWriteOnce PVC per pod; no class = the cluster default."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name, "labels": labels(instance, component)}, "spec": spec}


def pod_template(
    instance: str,
    component: str,
    pod_spec: dict[str, Any],
    annotations: Mapping[str, pulumi.Input[str]] | None = None,
) -> dict[str, Any]:
    """A workload's pod template. A change of ``annotations`` (e.g. the digest of a rebuilt image whose name
    stays the same) changes the template, so Kubernetes rolls the pods; no annotations, no key."""
    meta: dict[str, Any] = {"labels": labels(instance, component)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"metadata": meta, "spec": pod_spec}
