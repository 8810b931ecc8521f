"""SwarmNamespace: the namespace, its Pod Security level and the default-deny network baseline."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from components import _k8s


class SwarmNamespaceArgs(TypedDict):
    namespace: str
    """Namespace name (a DNS label)."""
    instance: NotRequired[str]
    """Swarm instance name, used in the ``app.kubernetes.io/instance`` label; default ``agentswarm``."""


class SwarmNamespace(pulumi.ComponentResource):
    """A namespace enforcing Pod Security ``restricted`` with default-deny ingress/egress plus DNS.

    Every other policy in the swarm is an allow on top of this baseline, so a pod nobody thought of
    can reach nothing.
    """

    namespace: pulumi.Output[str]

    def __init__(
        self, name: str, args: SwarmNamespaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agentswarm:index:SwarmNamespace", name, None, opts)
        ns_name = args["namespace"]
        instance = args.get("instance", "agentswarm")
        pss = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
        pss["pod-security.kubernetes.io/enforce-version"] = "latest"
        meta: dict[str, Any] = {"name": ns_name, "labels": {**_k8s.labels(instance, "namespace"), **pss}}
        ns = k8s.core.v1.Namespace(f"{name}-namespace", metadata=meta, opts=_k8s.child_opts(self))
        self.namespace = ns.metadata.name
        policy_opts = _k8s.child_opts(self, depends_on=[ns])
        k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata=_k8s.metadata("default-deny", ns_name, instance, "network-policy"),
            spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            opts=policy_opts,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-allow-dns",
            metadata=_k8s.metadata("allow-dns", ns_name, instance, "network-policy"),
            spec={"podSelector": {}, "policyTypes": ["Egress"], "egress": [_k8s.dns_egress_rule()]},
            opts=policy_opts,
        )
        self.register_outputs({"namespace": self.namespace})
