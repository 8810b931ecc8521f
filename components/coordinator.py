"""Coordinator: the Deployment that hands out tasks, its Service and how clients reach it.

The exposure objects are the only part that differs between platforms:
``ingress`` (GKE Ingress + BackendConfig), ``gateway`` (Gateway + HTTPRoute + GCPBackendPolicy +
HealthCheckPolicy) and ``nodeport`` (kind: a fixed NodePort the cluster maps to the host).
"""

from __future__ import annotations

from typing import Any, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import _k8s, gke
from components.config import SwarmConfig
from components.redis import RedisConnection, redis_ca_volume, redis_egress_rule, redis_env

HEALTH_PATH = "/healthz"
"""Liveness: 200 while the process serves HTTP (docs/runtime-contract.md)."""
READY_PATH = "/readyz"
"""Readiness and load-balancer health check: 200 when the broker answers, plain GET, no upgrade."""
API_TOKEN_KEY = "token"


class CoordinatorArgs(TypedDict, total=False):
    namespace: pulumi.Input[str]
    """Namespace to deploy into."""
    config: SwarmConfig
    """The whole validated swarm config (coordinator, image and exposure sections are read)."""
    redis: RedisConnection
    """Where the broker is."""
    image: pulumi.Input[str]
    """Image reference; defaults to ``config.image.reference`` (overridden when the image is built)."""


class Coordinator(pulumi.ComponentResource):
    """Deployment + Service + API token Secret + NetworkPolicy + the exposure objects for the platform."""

    service_name: pulumi.Output[str]
    port: pulumi.Output[int]
    api_token_secret_name: pulumi.Output[str]
    health_path: pulumi.Output[str]

    def __init__(self, name: str, args: CoordinatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:Coordinator", name, None, opts)
        cfg = SwarmConfig.model_validate(args["config"])
        conn = args["redis"]
        ns = args["namespace"]
        image = args.get("image", cfg.image.reference)
        c = cfg.coordinator
        instance = cfg.name
        component = "coordinator"
        sel = _k8s.selector_labels(instance, component)
        svc_name = f"{instance}-coordinator"
        backend_config_name = f"{instance}-coordinator"

        token_value: pulumi.Input[str]
        if cfg.api_token is not None:
            token_value = pulumi.Output.secret(cfg.api_token.get_secret_value())
        else:
            token_value = random.RandomPassword(
                f"{name}-api-token", length=48, special=False, opts=_k8s.child_opts(self)
            ).result
        token_secret = k8s.core.v1.Secret(
            f"{name}-api-token-secret",
            metadata=_k8s.metadata(f"{instance}-api-token", ns, instance, component),
            type="Opaque",
            string_data={API_TOKEN_KEY: token_value},
            opts=_k8s.child_opts(self),
        )
        ca_volumes, ca_mounts = redis_ca_volume(conn)
        env: list[Any] = [
            *redis_env(conn),
            {"name": "AGENTSWARM_PORT", "value": str(c.port)},
            _k8s.secret_env("AGENTSWARM_API_TOKEN", token_secret.metadata.name, API_TOKEN_KEY),
            {"name": "AGENTSWARM_SHUTDOWN_DRAIN_SECONDS", "value": str(c.connection_draining_seconds)},
        ]
        container = {
            "name": "coordinator",
            "image": image,
            "imagePullPolicy": cfg.image.pull_policy,
            "args": ["coordinator"],
            "ports": [{"name": "http", "containerPort": c.port, "protocol": "TCP"}],
            "env": env,
            "resources": c.resources.to_k8s(),
            "securityContext": _k8s.container_security_context(),
            "readinessProbe": {
                "httpGet": {"path": READY_PATH, "port": "http", "scheme": "HTTP"},
                "periodSeconds": 5,
                "timeoutSeconds": 3,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "httpGet": {"path": HEALTH_PATH, "port": "http", "scheme": "HTTP"},
                "initialDelaySeconds": 5,
                "periodSeconds": 10,
                "timeoutSeconds": 3,
                "failureThreshold": 3,
            },
            # Let endpoint removal reach the load balancer before the process starts draining.
            "lifecycle": {"preStop": {"sleep": {"seconds": c.prestop_delay_seconds}}},
            "volumeMounts": [_k8s.tmp_mount(), *ca_mounts],
        }
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=_k8s.metadata(svc_name, ns, instance, component),
            spec=_k8s.spec(
                {
                    "replicas": c.replicas,
                    "selector": {"matchLabels": sel},
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                    },
                    "template": {
                        "metadata": {"labels": _k8s.labels(instance, component)},
                        "spec": {
                            "automountServiceAccountToken": False,
                            "securityContext": _k8s.pod_security_context(),
                            "terminationGracePeriodSeconds": c.termination_grace_seconds,
                            "containers": [container],
                            "volumes": [_k8s.tmp_volume(), *ca_volumes],
                        },
                    },
                }
            ),
            opts=_k8s.child_opts(self),
        )

        annotations = gke.service_annotations(backend_config_name) if cfg.exposure == "ingress" else None
        port_spec: dict[str, Any] = {"name": "http", "port": c.port, "targetPort": "http", "protocol": "TCP"}
        if cfg.exposure == "nodeport":
            port_spec["nodePort"] = c.node_port
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=_k8s.metadata(svc_name, ns, instance, component, annotations),
            spec=_k8s.spec(
                {
                    "type": "NodePort" if cfg.exposure == "nodeport" else "ClusterIP",
                    "selector": sel,
                    "ports": [port_spec],
                }
            ),
            opts=_k8s.child_opts(self),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=_k8s.metadata(svc_name, ns, instance, component),
            spec=_k8s.spec(
                {
                    "podSelector": {"matchLabels": sel},
                    "policyTypes": ["Ingress", "Egress"],
                    # Clients arrive through the load balancer / NodePort from outside the cluster, and agents
                    # from inside: the port is open, nothing else is.
                    "ingress": [{"ports": [{"protocol": "TCP", "port": c.port}]}],
                    "egress": [redis_egress_rule(conn), _k8s.dns_egress_rule()],
                }
            ),
            opts=_k8s.child_opts(self),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=_k8s.metadata(svc_name, ns, instance, component),
            spec=_k8s.spec({"selector": {"matchLabels": sel}, "maxUnavailable": 1}),
            opts=_k8s.child_opts(self),
        )

        self.address: pulumi.Output[str] = pulumi.Output.from_input("")
        if cfg.exposure == "ingress":
            self._ingress(name, cfg, ns, svc_name, backend_config_name, service)
        elif cfg.exposure == "gateway":
            self._gateway(name, cfg, ns, svc_name, service)

        self.service_name = service.metadata.name
        self.port = pulumi.Output.from_input(c.port)
        self.api_token_secret_name = token_secret.metadata.name
        self.health_path = pulumi.Output.from_input(READY_PATH)
        self.selector = sel
        self.deployment = deployment
        self.register_outputs(
            {
                "service_name": self.service_name,
                "port": self.port,
                "api_token_secret_name": self.api_token_secret_name,
                "health_path": self.health_path,
                "address": self.address,
            }
        )

    def _ingress(
        self,
        name: str,
        cfg: SwarmConfig,
        ns: pulumi.Input[str],
        svc_name: str,
        backend_config_name: str,
        service: k8s.core.v1.Service,
    ) -> None:
        c = cfg.coordinator
        instance = cfg.name
        backend_config = k8s.apiextensions.CustomResource(
            f"{name}-backend-config",
            api_version=gke.BACKEND_CONFIG_API,
            kind="BackendConfig",
            metadata=_k8s.metadata(backend_config_name, ns, instance, "coordinator"),
            spec=gke.backend_config_spec(
                c.websocket_backend_timeout_seconds, c.connection_draining_seconds, READY_PATH, c.port
            ),
            opts=_k8s.child_opts(self),
        )
        backend = {"service": {"name": svc_name, "port": {"number": c.port}}}
        rule: dict[str, Any] = {
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
        }
        if c.hostname:
            rule["host"] = c.hostname
        ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata=_k8s.metadata(
                svc_name, ns, instance, "coordinator", {gke.INGRESS_CLASS_ANNOTATION: gke.GKE_INGRESS_CLASS}
            ),
            spec=_k8s.spec({"defaultBackend": backend, "rules": [rule]}),
            opts=_k8s.child_opts(self, depends_on=[service, backend_config]),
        )
        # the load balancer's IP once GKE has provisioned it (empty until then, and under render-to-YAML)
        self.address = ingress.status.apply(_ingress_ip)

    def _gateway(
        self, name: str, cfg: SwarmConfig, ns: pulumi.Input[str], svc_name: str, service: k8s.core.v1.Service
    ) -> None:
        c = cfg.coordinator
        instance = cfg.name
        gateway_name = f"{instance}-gateway"
        listener: dict[str, Any] = {
            "name": "http",
            "protocol": "HTTP",
            "port": 80,
            "allowedRoutes": {"namespaces": {"from": "Same"}},
        }
        if c.hostname:
            listener["hostname"] = c.hostname
        gateway = k8s.apiextensions.CustomResource(
            f"{name}-gateway",
            api_version=gke.GATEWAY_API,
            kind="Gateway",
            metadata=_k8s.metadata(gateway_name, ns, instance, "coordinator"),
            spec={"gatewayClassName": c.gateway_class, "listeners": [listener]},
            opts=_k8s.child_opts(self),
        )
        route_spec: dict[str, Any] = {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": gateway_name,
                    "sectionName": "http",
                }
            ],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"group": "", "kind": "Service", "name": svc_name, "port": c.port}],
                }
            ],
        }
        if c.hostname:
            route_spec["hostnames"] = [c.hostname]
        k8s.apiextensions.CustomResource(
            f"{name}-http-route",
            api_version=gke.GATEWAY_API,
            kind="HTTPRoute",
            metadata=_k8s.metadata(svc_name, ns, instance, "coordinator"),
            spec=route_spec,
            opts=_k8s.child_opts(self, depends_on=[gateway, service]),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-backend-policy",
            api_version=gke.GKE_POLICY_API,
            kind="GCPBackendPolicy",
            metadata=_k8s.metadata(svc_name, ns, instance, "coordinator"),
            spec=gke.gcp_backend_policy_spec(
                svc_name, c.websocket_backend_timeout_seconds, c.connection_draining_seconds
            ),
            opts=_k8s.child_opts(self, depends_on=[service]),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-health-check-policy",
            api_version=gke.GKE_POLICY_API,
            kind="HealthCheckPolicy",
            metadata=_k8s.metadata(svc_name, ns, instance, "coordinator"),
            spec=gke.health_check_policy_spec(svc_name, READY_PATH, c.port),
            opts=_k8s.child_opts(self, depends_on=[service]),
        )


def _ingress_ip(status: Any) -> str:
    try:
        entries = status.load_balancer.ingress or []
    except AttributeError:
        return ""
    for entry in entries:
        if getattr(entry, "ip", None) or getattr(entry, "hostname", None):
            return str(entry.ip or entry.hostname)
    return ""
