"""Coordinator: the Deployment that hands out tasks, its Service and how clients reach it.

The exposure objects are the only part that differs between platforms: ``ingress`` (GKE Ingress +
BackendConfig), ``gateway`` (Gateway + HTTPRoute + GCPBackendPolicy + HealthCheckPolicy) and ``nodeport``
(kind: a fixed NodePort the cluster maps to the host). The specs are pure functions the class wires up.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from components import _k8s, gke_lb
from components.config import GLOBAL_GATEWAY_CLASSES, CoordinatorConfig
from components.workload import (
    BrokerConnection,
    RuntimeWorkloadArgs,
    broker_connection,
    broker_egress_rule,
    broker_env,
    runtime_pod,
)

HEALTH_PATH = "/healthz"
"""Liveness: 200 while the process serves HTTP (docs/runtime-contract.md)."""
READY_PATH = "/readyz"
"""Readiness and load-balancer health check: 200 when the broker answers, plain GET, no upgrade."""
API_TOKEN_KEY = "token"
"""The token Secret's key: the valid tokens, one per line (the current one; and the next in a rotation)."""
API_TOKEN_DIR = "/etc/agentswarm/api-token"
"""Where the token Secret is mounted; the coordinator re-reads the file when the kubelet updates it."""
COMPONENT = "coordinator"

Exposure = Literal["ingress", "gateway", "nodeport"]
TlsMode = Literal["managed", "pre-shared", "none"]


class EdgeRefs(TypedDict, total=False):
    """Names of GCP objects in front of the load balancer (:class:`components.gke_edge.CoordinatorEdge`)."""

    static_ip_name: pulumi.Input[str]
    """Reserved global address (overrides ``tls.static_ip_name``)."""
    certificate_map: pulumi.Input[str]
    """Certificate Manager map of a global Gateway."""
    regional_certificates: pulumi.Input[str]
    """Comma-separated regional Certificate Manager certificates of a regional Gateway."""
    security_policy: pulumi.Input[str]
    """Cloud Armor policy attached to the coordinator's backend."""


class CoordinatorArgs(RuntimeWorkloadArgs):
    config: CoordinatorConfig
    """Validated ``coordinator`` section; a plain mapping is validated here."""
    exposure: Exposure
    """How clients reach the coordinator (the swarm config's ``exposure``)."""
    api_token: NotRequired[pulumi.Input[str]]
    """The API token clients present; unset: a generated ``RandomPassword``. Kept secret either way."""
    api_token_next: NotRequired[pulumi.Input[str]]
    """A second valid token during a rotation (clients move to it, then it becomes ``api_token``)."""
    tls_mode: NotRequired[TlsMode]
    """The effective ``coordinator.tls.mode`` (the swarm config resolves the platform default); default
    ``none``."""
    edge: NotRequired[EdgeRefs]
    """GCP objects the exposure objects name (address, certificates, security policy)."""


class Coordinator(pulumi.ComponentResource):
    """Deployment + Service + API token Secret + NetworkPolicy + PDB + the platform's exposure objects."""

    service_name: pulumi.Output[str]
    port: pulumi.Output[int]
    api_token_secret_name: pulumi.Output[str]
    health_path: pulumi.Output[str]
    address: pulumi.Output[str]
    """Public IP of the GKE Ingress load balancer (empty for other exposures and until provisioned)."""

    def __init__(self, name: str, args: CoordinatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:Coordinator", name, None, opts)
        cfg = CoordinatorConfig.model_validate(args["config"])
        ns, instance, exposure, conn = (
            args["namespace"],
            args["instance"],
            args["exposure"],
            broker_connection(args),
        )
        svc_name = f"{instance}-coordinator"
        sel = _k8s.selector_labels(instance, COMPONENT)
        child = _k8s.child_opts(self)

        token = _k8s.given_or_random(self, f"{name}-api-token", args.get("api_token"), 48)
        if "api_token_next" in args:  # both valid at once: the rotation needs no restart (file re-read)
            token = pulumi.Output.secret(pulumi.Output.concat(token, "\n", args["api_token_next"]))
        token_secret = _k8s.opaque_secret(
            f"{name}-api-token-secret",
            f"{instance}-api-token",
            ns,
            instance,
            COMPONENT,
            {API_TOKEN_KEY: token},
            child,
        )
        pod = pod_spec(cfg, args["image"], args.get("image_pull_policy", "IfNotPresent"), conn, token_secret)
        pod["containers"][0]["env"] += args.get("runtime_env", [])
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=_k8s.metadata(svc_name, ns, instance, COMPONENT),
            spec=deployment_spec(
                cfg, sel, _k8s.pod_template(instance, COMPONENT, pod, args.get("pod_annotations"))
            ),
            opts=child,
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=_k8s.metadata(
                svc_name, ns, instance, COMPONENT, service_annotations(svc_name, exposure)
            ),
            spec=service_spec(cfg, sel, exposure),
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=_k8s.metadata(svc_name, ns, instance, COMPONENT),
            spec=network_policy_spec(cfg, sel, conn),
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=_k8s.metadata(svc_name, ns, instance, COMPONENT),
            spec={"selector": {"matchLabels": sel}, "maxUnavailable": 1},
            opts=child,
        )
        self.address = self._expose(
            name,
            cfg,
            exposure,
            _k8s.metadata(svc_name, ns, instance, COMPONENT),
            service,
            args.get("tls_mode", "none"),
            args.get("edge", {}),
        )

        self.service_name = service.metadata.name
        self.port = pulumi.Output.from_input(cfg.port)
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

    def _expose(
        self,
        name: str,
        cfg: CoordinatorConfig,
        exposure: Exposure,
        meta: dict[str, Any],
        service: Any,
        tls_mode: TlsMode,
        edge: EdgeRefs,
    ) -> pulumi.Output[str]:
        """The load-balancer objects of ``ingress`` or ``gateway`` (nothing for ``nodeport``); returns the
        Ingress load balancer's address, empty until GKE has provisioned it and for the other exposures."""
        svc_name = meta["name"]
        after_service = _k8s.child_opts(self, depends_on=[service])
        policy = edge.get("security_policy")
        tls = edge_tls(cfg, tls_mode, exposure, edge, svc_name)
        if exposure == "ingress":
            tls_objects: list[pulumi.Resource] = []
            if tls.managed_certificate and cfg.hostname:
                tls_objects.append(
                    k8s.apiextensions.CustomResource(
                        f"{name}-managed-certificate",
                        api_version=gke_lb.MANAGED_CERTIFICATE_API,
                        kind="ManagedCertificate",
                        metadata=meta,
                        spec=gke_lb.managed_certificate_spec(cfg.hostname),
                        opts=_k8s.child_opts(self),
                    )
                )
            if tls.frontend_config:
                tls_objects.append(
                    k8s.apiextensions.CustomResource(
                        f"{name}-frontend-config",
                        api_version=gke_lb.FRONTEND_CONFIG_API,
                        kind="FrontendConfig",
                        metadata=meta,
                        spec=gke_lb.frontend_config_spec(),
                        opts=_k8s.child_opts(self),
                    )
                )
            backend_config = k8s.apiextensions.CustomResource(
                f"{name}-backend-config",
                api_version=gke_lb.BACKEND_CONFIG_API,
                kind="BackendConfig",
                metadata=meta,
                spec=gke_lb.backend_config_spec(
                    cfg.websocket_backend_timeout_seconds,
                    cfg.connection_draining_seconds,
                    READY_PATH,
                    cfg.port,
                    policy,
                ),
                opts=_k8s.child_opts(self),
            )
            ingress = k8s.networking.v1.Ingress(
                f"{name}-ingress",
                metadata={**meta, "annotations": gke_lb.ingress_annotations(tls)},
                spec=gke_lb.ingress_spec(svc_name, cfg.port, cfg.hostname),
                opts=_k8s.child_opts(self, depends_on=[service, backend_config, *tls_objects]),
            )
            return ingress.status.apply(gke_lb.ingress_address)
        if exposure == "gateway":
            gateway_name = f"{meta['labels']['app.kubernetes.io/instance']}-gateway"
            gateway = k8s.apiextensions.CustomResource(
                f"{name}-gateway",
                api_version=gke_lb.GATEWAY_API,
                kind="Gateway",
                metadata=_with_annotations({**meta, "name": gateway_name}, gke_lb.gateway_annotations(tls)),
                spec=gke_lb.gateway_spec(cfg.gateway_class, cfg.hostname, tls),
                opts=_k8s.child_opts(self, depends_on=[service]),
            )
            timeouts = (cfg.websocket_backend_timeout_seconds, cfg.connection_draining_seconds)
            after_gateway = _k8s.child_opts(self, depends_on=[gateway, service])
            listener = gke_lb.HTTPS_LISTENER if tls.enabled else gke_lb.HTTP_LISTENER
            routes = [
                (
                    "http-route",
                    gke_lb.GATEWAY_API,
                    "HTTPRoute",
                    gke_lb.http_route_spec(gateway_name, svc_name, cfg.port, cfg.hostname, listener),
                    after_gateway,
                    meta,
                )
            ]
            if tls.enabled:
                routes.append(
                    (
                        "https-redirect-route",
                        gke_lb.GATEWAY_API,
                        "HTTPRoute",
                        gke_lb.https_redirect_route_spec(gateway_name, cfg.hostname),
                        after_gateway,
                        {**meta, "name": f"{svc_name}-https-redirect"},
                    )
                )
            for suffix, api, kind, spec, opts, route_meta in (
                *routes,
                (
                    "backend-policy",
                    gke_lb.GKE_POLICY_API,
                    "GCPBackendPolicy",
                    gke_lb.gcp_backend_policy_spec(svc_name, *timeouts, policy),
                    after_service,
                    meta,
                ),
                (
                    "health-check-policy",
                    gke_lb.GKE_POLICY_API,
                    "HealthCheckPolicy",
                    gke_lb.health_check_policy_spec(svc_name, READY_PATH, cfg.port),
                    after_service,
                    meta,
                ),
            ):
                k8s.apiextensions.CustomResource(
                    f"{name}-{suffix}", api_version=api, kind=kind, metadata=route_meta, spec=spec, opts=opts
                )
        return pulumi.Output.from_input("")


def edge_tls(
    cfg: CoordinatorConfig, tls_mode: TlsMode, exposure: Exposure, edge: EdgeRefs, svc_name: str
) -> gke_lb.EdgeTls:
    """How this exposure terminates TLS, from the mode and the names of the GCP objects (none: no TLS)."""
    if tls_mode == "none" or exposure == "nodeport":
        return gke_lb.EdgeTls()
    static_ip = edge.get("static_ip_name", cfg.tls.static_ip_name)
    # Never fall back to plain HTTP silently: a TLS mode without the objects it needs is an error.
    if static_ip is None and (exposure == "ingress" or cfg.gateway_class in GLOBAL_GATEWAY_CLASSES):
        raise ValueError(
            "Coordinator: TLS on a global load balancer needs a reserved address: set "
            "coordinator.tls.static_ip_name or pass edge['static_ip_name'] (CoordinatorEdge)"
        )
    if (
        exposure == "gateway"
        and tls_mode == "managed"
        and not (edge.get("certificate_map") or edge.get("regional_certificates"))
    ):
        raise ValueError(
            "Coordinator: managed TLS on a Gateway needs Certificate Manager certificates: pass "
            "edge['certificate_map'] or edge['regional_certificates'] (CoordinatorEdge)"
        )
    pre_shared = tuple(cfg.tls.pre_shared_certificates) if tls_mode == "pre-shared" else ()
    if exposure == "ingress":
        return gke_lb.EdgeTls(
            managed_certificate=svc_name if tls_mode == "managed" else None,
            pre_shared=pre_shared,
            static_ip_name=static_ip,
            frontend_config=svc_name,
        )
    return gke_lb.EdgeTls(
        pre_shared=pre_shared,
        certificate_map=edge.get("certificate_map") if tls_mode == "managed" else None,
        cert_manager_certs=edge.get("regional_certificates") if tls_mode == "managed" else None,
        static_ip_name=static_ip,
    )


def _with_annotations(meta: dict[str, Any], annotations: dict[str, Any]) -> dict[str, Any]:
    return {**meta, "annotations": annotations} if annotations else meta


def pod_spec(
    cfg: CoordinatorConfig,
    image: pulumi.Input[str],
    pull_policy: str,
    conn: BrokerConnection,
    token_secret: k8s.core.v1.Secret,
) -> dict[str, Any]:
    """The coordinator pod: the runtime env of docs/runtime-contract.md, probes, and a preStop pause."""
    env = [
        *broker_env(conn),
        {"name": "AGENTSWARM_PORT", "value": str(cfg.port)},
        {"name": "AGENTSWARM_API_TOKEN_FILE", "value": f"{API_TOKEN_DIR}/{API_TOKEN_KEY}"},
        {"name": "AGENTSWARM_SHUTDOWN_DRAIN_SECONDS", "value": str(cfg.connection_draining_seconds)},
    ]
    container = {
        "ports": [{"name": "http", "containerPort": cfg.port, "protocol": "TCP"}],
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
        "lifecycle": {"preStop": {"sleep": {"seconds": cfg.prestop_delay_seconds}}},
    }
    return runtime_pod(
        COMPONENT,
        image,
        pull_policy,
        conn,
        env,
        cfg.resources,
        cfg.termination_grace_seconds,
        container,
        mounts=[{"name": "api-token", "mountPath": API_TOKEN_DIR, "readOnly": True}],
        volumes=[
            {"name": "api-token", "secret": {"secretName": token_secret.metadata.name, "defaultMode": 0o440}}
        ],
    )


def deployment_spec(cfg: CoordinatorConfig, sel: dict[str, str], template: dict[str, Any]) -> dict[str, Any]:
    """Rolling updates that never lower the serving capacity (surge one, none unavailable)."""
    return {
        "replicas": cfg.replicas,
        "selector": {"matchLabels": sel},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": template,
    }


def service_annotations(svc_name: str, exposure: Exposure) -> dict[str, str] | None:
    """GKE Ingress reads NEG and BackendConfig from the Service (the BackendConfig shares its name)."""
    return gke_lb.service_annotations(svc_name) if exposure == "ingress" else None


def service_spec(cfg: CoordinatorConfig, sel: dict[str, str], exposure: Exposure) -> dict[str, Any]:
    """ClusterIP behind a load balancer; on kind a NodePort at the fixed port the cluster maps to the host."""
    port: dict[str, Any] = {"name": "http", "port": cfg.port, "targetPort": "http", "protocol": "TCP"}
    if exposure == "nodeport":
        port["nodePort"] = cfg.node_port
    return {"type": "NodePort" if exposure == "nodeport" else "ClusterIP", "selector": sel, "ports": [port]}


def network_policy_spec(
    cfg: CoordinatorConfig, sel: dict[str, str], conn: BrokerConnection
) -> dict[str, Any]:
    """Clients arrive through the load balancer / NodePort from outside the cluster, and agents from inside:
    the port is open, nothing else is. Egress: the broker and DNS."""
    return {
        "podSelector": {"matchLabels": sel},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"ports": [{"protocol": "TCP", "port": cfg.port}]}],
        "egress": [broker_egress_rule(conn), _k8s.dns_egress_rule()],
    }
