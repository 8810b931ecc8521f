"""CoordinatorEdge: the GCP resources in front of the coordinator's GKE load balancer.

A reserved global address (the hostname's DNS record must outlive any Ingress or Gateway), the Certificate
Manager certificates of a Gateway (a certificate map for global classes, regional certificates with a DNS
authorization for regional ones: regional Google-managed certificates cannot use load-balancer
authorization), and an optional Cloud Armor policy with a per-IP rate limit. The Kubernetes objects that use
them (:mod:`components.gke_lb`) refer to them by name only.
"""

from __future__ import annotations

from typing import Any, TypedDict

import pulumi
import pulumi_gcp as gcp

from components import _k8s
from components.config import SwarmConfig

DEFAULT_RULE_PRIORITY = 2147483647
"""Cloud Armor's default rule: the lowest priority, matches every source."""
RATE_LIMIT_PRIORITY = 1000


class CoordinatorEdgeArgs(TypedDict):
    config: SwarmConfig
    """The validated swarm config (platform gke with a gcp section)."""


class CoordinatorEdge(pulumi.ComponentResource):
    """Reserved address + Certificate Manager certificates + Cloud Armor policy, as the config asks."""

    static_ip_name: pulumi.Output[str] | None
    static_ip: pulumi.Output[str]
    certificate_map: pulumi.Output[str] | None
    regional_certificates: pulumi.Output[str] | None
    """Comma-separated regional certificate names (regional Gateway classes)."""
    dns_authorization_record: pulumi.Output[Any]
    """The CNAME to create for a regional managed certificate ({name, type, data}); empty otherwise."""
    security_policy: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: CoordinatorEdgeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agentswarm:index:CoordinatorEdge", name, None, opts)
        cfg = args["config"]
        assert cfg.gcp is not None  # enforced by the config rules before this is built
        project, region = cfg.gcp.project, cfg.gcp.region
        coordinator, tls = cfg.coordinator, cfg.coordinator.tls
        child = _k8s.child_opts(self)
        prefix = f"{cfg.name}-coordinator"

        self.static_ip_name = None
        self.static_ip = pulumi.Output.from_input("")
        if cfg.tls_mode != "none" and cfg.global_load_balancer and tls.static_ip_name is None:
            address = gcp.compute.GlobalAddress(
                f"{name}-address",
                name=prefix,
                project=project,
                description="agentswarm coordinator: the hostname's DNS A record points here",
                opts=child,
            )
            self.static_ip_name = address.name
            self.static_ip = address.address

        self.certificate_map = None
        self.regional_certificates = None
        self.dns_authorization_record = pulumi.Output.from_input({})
        if cfg.exposure == "gateway" and cfg.tls_mode == "managed":
            assert coordinator.hostname is not None  # enforced by the config rules
            domains = [coordinator.hostname]
            if cfg.global_load_balancer:
                cert = gcp.certificatemanager.Certificate(
                    f"{name}-certificate",
                    name=prefix,
                    project=project,
                    managed={"domains": domains},  # load-balancer authorization: the A record suffices
                    opts=child,
                )
                cert_map = gcp.certificatemanager.CertificateMap(
                    f"{name}-certificate-map", name=prefix, project=project, opts=child
                )
                entry = gcp.certificatemanager.CertificateMapEntry(
                    f"{name}-certificate-map-entry",
                    name=prefix,
                    project=project,
                    map=cert_map.name,
                    hostname=coordinator.hostname,
                    certificates=[cert.id],
                    opts=child,
                )
                self.certificate_map = pulumi.Output.all(cert_map.name, entry.id).apply(lambda v: str(v[0]))
            else:
                auth = gcp.certificatemanager.DnsAuthorization(
                    f"{name}-dns-authorization",
                    name=prefix,
                    project=project,
                    location=region,
                    domain=coordinator.hostname,
                    type="PER_PROJECT_RECORD",
                    opts=child,
                )
                cert = gcp.certificatemanager.Certificate(
                    f"{name}-certificate",
                    name=prefix,
                    project=project,
                    location=region,
                    managed={"domains": domains, "dns_authorizations": [auth.id]},
                    opts=child,
                )
                self.regional_certificates = cert.name
                self.dns_authorization_record = auth.dns_resource_records.apply(
                    lambda records: dict(records[0]) if records else {}
                )

        self.security_policy = None
        if coordinator.cloud_armor.enabled:
            policy = gcp.compute.SecurityPolicy(
                f"{name}-security-policy",
                name=prefix,
                project=project,
                description="agentswarm coordinator: per-client-IP rate limit",
                rules=security_policy_rules(cfg),
                opts=child,
            )
            self.security_policy = policy.name

        self.register_outputs(
            {
                "static_ip": self.static_ip,
                "certificate_map": self.certificate_map,
                "regional_certificates": self.regional_certificates,
                "dns_authorization_record": self.dns_authorization_record,
                "security_policy": self.security_policy,
            }
        )


def security_policy_rules(cfg: SwarmConfig) -> list[dict[str, Any]]:
    """A per-IP rate limit (``throttle`` or ``rate_based_ban``) above the default allow rule."""
    limit = cfg.coordinator.cloud_armor.rate_limit
    options: dict[str, Any] = {
        "conform_action": "allow",
        "exceed_action": "deny(429)",
        "enforce_on_key": "IP",
        "rate_limit_threshold": {"count": limit.requests, "interval_sec": limit.interval_seconds},
    }
    if limit.action == "rate_based_ban":
        options["ban_duration_sec"] = limit.ban_seconds
    every_source = {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": ["*"]}}
    return [
        {
            "action": limit.action,
            "priority": RATE_LIMIT_PRIORITY,
            "description": "per-client-IP rate limit",
            "match": every_source,
            "rate_limit_options": options,
        },
        {
            "action": "allow",
            "priority": DEFAULT_RULE_PRIORITY,
            "description": "default rule",
            "match": every_source,
        },
    ]
