"""GKE load-balancing facts, each written once: the specs of the Ingress and Gateway objects that expose the
coordinator, and the annotations and policies that make a GKE load balancer carry websockets.

- The LB backend timeout is the maximum lifetime of a websocket (default 30 s), so the coordinator's backend
  gets ``timeoutSec`` from config (3600 by default).
- The GKE Ingress controller reads the BackendConfig reference ONLY from the Service's
  ``cloud.google.com/backend-config`` annotation; on the pod template or the Ingress it does nothing. The
  BackendConfig must live in the Service's namespace.
- Container-native load balancing needs ``cloud.google.com/neg: {"ingress": true}`` on the Service.
- Health checks must hit a plain HTTP path that returns 200 without a websocket upgrade.
- With the Gateway API the same settings live in ``GCPBackendPolicy`` and ``HealthCheckPolicy``
  (``networking.gke.io/v1``) whose ``targetRef`` names the Service.

TLS (the API token travels in every handshake, so it never crosses the internet in clear text):

- Ingress (class ``gce``): the Ingress names a reserved *global* address by name
  (``kubernetes.io/ingress.global-static-ip-name``), so the hostname's DNS record outlives the Ingress.
  The certificate is a ``ManagedCertificate`` (``networking.gke.io/v1``, ``spec.domains``; upstream
  GoogleCloudPlatform/gke-managed-certs) named in ``networking.gke.io/managed-certificates``, or Compute
  Engine SSL certificates named in ``ingress.gcp.kubernetes.io/pre-shared-cert``. HTTP is redirected to
  HTTPS by a ``FrontendConfig`` (``networking.gke.io/v1beta1``, ``spec.redirectToHttps``; upstream
  kubernetes/ingress-gce pkg/apis/frontendconfig/v1beta1) named in
  ``networking.gke.io/v1beta1.FrontendConfig``.
- Gateway: an ``HTTPS`` listener on 443. Global classes take Certificate Manager certificates through a
  certificate map named by the Gateway annotation ``networking.gke.io/certmap`` (never together with
  ``tls.certificateRefs``, which GKE treats as an error), so that listener has no ``tls`` block. Regional
  classes have no certificate maps: the listener names regional Certificate Manager certificates in
  ``tls.options["networking.gke.io/cert-manager-certs"]``. Pre-shared Compute Engine certificates go in
  ``tls.options["networking.gke.io/pre-shared-certs"]``. The ``HTTP`` listener on 80 carries one HTTPRoute
  whose only rule is a ``RequestRedirect`` filter to ``https`` (301), so nothing is served in clear text.
- Cloud Armor: ``BackendConfig.spec.securityPolicy.name`` (Ingress) or
  ``GCPBackendPolicy.spec.default.securityPolicy`` (Gateway) names a security policy by name.

Custom resource specs are passed to Pulumi verbatim, so every key here is already camelCase.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

BACKEND_CONFIG_API = "cloud.google.com/v1"
BACKEND_CONFIG_ANNOTATION = "cloud.google.com/backend-config"
NEG_ANNOTATION = "cloud.google.com/neg"
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
GKE_INGRESS_CLASS = "gce"
GKE_POLICY_API = "networking.gke.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
MANAGED_CERTIFICATE_API = "networking.gke.io/v1"
FRONTEND_CONFIG_API = "networking.gke.io/v1beta1"
STATIC_IP_ANNOTATION = "kubernetes.io/ingress.global-static-ip-name"
MANAGED_CERTIFICATES_ANNOTATION = "networking.gke.io/managed-certificates"
PRE_SHARED_CERT_ANNOTATION = "ingress.gcp.kubernetes.io/pre-shared-cert"
FRONTEND_CONFIG_ANNOTATION = "networking.gke.io/v1beta1.FrontendConfig"
CERTMAP_ANNOTATION = "networking.gke.io/certmap"
CERT_MANAGER_CERTS_OPTION = "networking.gke.io/cert-manager-certs"
PRE_SHARED_CERTS_OPTION = "networking.gke.io/pre-shared-certs"
HTTP_LISTENER = "http"
HTTPS_LISTENER = "https"
REDIRECT_RESPONSE_CODE = "MOVED_PERMANENTLY_DEFAULT"
"""FrontendConfig ``responseCodeName``: 301, what clients cache as the permanent new location."""


@dataclass(frozen=True)
class EdgeTls:
    """How the load balancer terminates TLS; every name refers to an object that exists by then."""

    managed_certificate: str | None = None
    """Ingress: the ManagedCertificate's name."""
    pre_shared: tuple[str, ...] = ()
    """Compute Engine SSL certificates (Ingress or Gateway)."""
    certificate_map: Any = None
    """Global Gateway: the Certificate Manager map's name (an Output)."""
    cert_manager_certs: Any = None
    """Regional Gateway: comma-separated regional Certificate Manager certificate names (an Output)."""
    static_ip_name: Any = None
    """Name of the reserved global address (Ingress, global Gateway)."""
    frontend_config: str | None = None
    """Ingress: the FrontendConfig redirecting HTTP to HTTPS."""

    @property
    def enabled(self) -> bool:
        return bool(
            self.managed_certificate or self.pre_shared or self.certificate_map or self.cert_manager_certs
        )


def service_annotations(backend_config_name: str) -> dict[str, str]:
    """Annotations for the coordinator SERVICE: NEG on, BackendConfig referenced for every port."""
    return {
        NEG_ANNOTATION: json.dumps({"ingress": True}),
        BACKEND_CONFIG_ANNOTATION: json.dumps({"default": backend_config_name}),
    }


def backend_config_spec(
    timeout_sec: int, draining_sec: int, health_path: str, port: int, security_policy: Any = None
) -> dict[str, Any]:
    """``BackendConfig.spec`` (kubernetes/ingress-gce pkg/apis/backendconfig/v1)."""
    spec: dict[str, Any] = {
        "timeoutSec": timeout_sec,
        "connectionDraining": {"drainingTimeoutSec": draining_sec},
        "healthCheck": {
            "type": "HTTP",
            "requestPath": health_path,
            "port": port,
            "checkIntervalSec": 10,
            "timeoutSec": 5,
            "healthyThreshold": 1,
            "unhealthyThreshold": 3,
        },
    }
    if security_policy is not None:
        spec["securityPolicy"] = {"name": security_policy}
    return spec


def service_target_ref(service_name: str) -> dict[str, str]:
    """Policy ``targetRef`` naming a core Service (group is the empty string)."""
    return {"group": "", "kind": "Service", "name": service_name}


def gcp_backend_policy_spec(
    service_name: str, timeout_sec: int, draining_sec: int, security_policy: Any = None
) -> dict[str, Any]:
    """``GCPBackendPolicy.spec`` (GoogleCloudPlatform/gke-gateway-api apis/networking/v1)."""
    default: dict[str, Any] = {
        "timeoutSec": timeout_sec,
        "connectionDraining": {"drainingTimeoutSec": draining_sec},
    }
    if security_policy is not None:
        default["securityPolicy"] = security_policy
    return {"targetRef": service_target_ref(service_name), "default": default}


def health_check_policy_spec(service_name: str, health_path: str, port: int) -> dict[str, Any]:
    """``HealthCheckPolicy.spec``: plain HTTP on the serving port, the readiness path."""
    return {
        "targetRef": service_target_ref(service_name),
        "default": {
            "checkIntervalSec": 10,
            "timeoutSec": 5,
            "healthyThreshold": 1,
            "unhealthyThreshold": 3,
            "config": {
                "type": "HTTP",
                "httpHealthCheck": {
                    "portSpecification": "USE_FIXED_PORT",
                    "port": port,
                    "requestPath": health_path,
                },
            },
        },
    }


def ingress_spec(service_name: str, port: int, hostname: str | None) -> dict[str, Any]:
    """``Ingress.spec`` sending every path (and the default backend) to the coordinator Service."""
    backend = {"service": {"name": service_name, "port": {"number": port}}}
    rule: dict[str, Any] = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
    if hostname:
        rule["host"] = hostname
    return {"defaultBackend": backend, "rules": [rule]}


def ingress_annotations(tls: EdgeTls) -> dict[str, Any]:
    """The Ingress's annotations: class ``gce``, and with TLS the address, certificates and redirect."""
    annotations: dict[str, Any] = {INGRESS_CLASS_ANNOTATION: GKE_INGRESS_CLASS}
    if tls.static_ip_name is not None:
        annotations[STATIC_IP_ANNOTATION] = tls.static_ip_name
    if tls.managed_certificate:
        annotations[MANAGED_CERTIFICATES_ANNOTATION] = tls.managed_certificate
    if tls.pre_shared:
        annotations[PRE_SHARED_CERT_ANNOTATION] = ",".join(tls.pre_shared)
    if tls.frontend_config:
        annotations[FRONTEND_CONFIG_ANNOTATION] = tls.frontend_config
    return annotations


def managed_certificate_spec(hostname: str) -> dict[str, Any]:
    """``ManagedCertificate.spec``: one domain, the coordinator's hostname (no wildcards upstream)."""
    return {"domains": [hostname]}


def frontend_config_spec() -> dict[str, Any]:
    """``FrontendConfig.spec``: HTTP answered with a permanent redirect to HTTPS, never served."""
    return {"redirectToHttps": {"enabled": True, "responseCodeName": REDIRECT_RESPONSE_CODE}}


def gateway_annotations(tls: EdgeTls) -> dict[str, Any]:
    """The Gateway's annotations: the certificate map of a global class."""
    return {CERTMAP_ANNOTATION: tls.certificate_map} if tls.certificate_map is not None else {}


def gateway_spec(gateway_class: str, hostname: str | None, tls: EdgeTls | None = None) -> dict[str, Any]:
    """``Gateway.spec``: an HTTP listener on 80 and, with TLS, an HTTPS listener on 443, both admitting
    routes of the Gateway's namespace; the reserved address when there is one."""
    tls = tls or EdgeTls()

    def listener(name: str, protocol: str, port: int) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": name,
            "protocol": protocol,
            "port": port,
            "allowedRoutes": {"namespaces": {"from": "Same"}},
        }
        if hostname:
            entry["hostname"] = hostname
        return entry

    listeners = [listener(HTTP_LISTENER, "HTTP", 80)]
    if tls.enabled:
        https = listener(HTTPS_LISTENER, "HTTPS", 443)
        options: dict[str, Any] = {}
        if tls.cert_manager_certs is not None:
            options[CERT_MANAGER_CERTS_OPTION] = tls.cert_manager_certs
        if tls.pre_shared:
            options[PRE_SHARED_CERTS_OPTION] = ",".join(tls.pre_shared)
        if options:  # a certificate map (annotation) needs no tls block on the listener
            https["tls"] = {"mode": "Terminate", "options": options}
        listeners.append(https)
    spec: dict[str, Any] = {"gatewayClassName": gateway_class, "listeners": listeners}
    if tls.static_ip_name is not None:
        spec["addresses"] = [{"type": "NamedAddress", "value": tls.static_ip_name}]
    return spec


def _parent(gateway_name: str, listener: str) -> dict[str, str]:
    return {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": gateway_name,
        "sectionName": listener,
    }


def http_route_spec(
    gateway_name: str, service_name: str, port: int, hostname: str | None, listener: str = HTTP_LISTENER
) -> dict[str, Any]:
    """``HTTPRoute.spec`` attaching every path to the coordinator Service through one Gateway listener."""
    spec: dict[str, Any] = {
        "parentRefs": [_parent(gateway_name, listener)],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"group": "", "kind": "Service", "name": service_name, "port": port}],
            }
        ],
    }
    if hostname:
        spec["hostnames"] = [hostname]
    return spec


def https_redirect_route_spec(gateway_name: str, hostname: str | None) -> dict[str, Any]:
    """``HTTPRoute.spec`` on the HTTP listener: every request answered with a 301 to ``https``, no backend."""
    spec: dict[str, Any] = {
        "parentRefs": [_parent(gateway_name, HTTP_LISTENER)],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "filters": [
                    {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
                ],
            }
        ],
    }
    if hostname:
        spec["hostnames"] = [hostname]
    return spec


def ingress_address(status: Any) -> str:
    """The load balancer's IP (or hostname) from an Ingress status; empty until GKE has provisioned it."""
    try:
        entries = status.load_balancer.ingress or []
    except AttributeError:
        return ""
    for entry in entries:
        if getattr(entry, "ip", None) or getattr(entry, "hostname", None):
            return str(entry.ip or entry.hostname)
    return ""
