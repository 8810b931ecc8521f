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

Custom resource specs are passed to Pulumi verbatim, so every key here is already camelCase.
"""

from __future__ import annotations

import json
from typing import Any

BACKEND_CONFIG_API = "cloud.google.com/v1"
BACKEND_CONFIG_ANNOTATION = "cloud.google.com/backend-config"
NEG_ANNOTATION = "cloud.google.com/neg"
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
GKE_INGRESS_CLASS = "gce"
GKE_POLICY_API = "networking.gke.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"


def service_annotations(backend_config_name: str) -> dict[str, str]:
    """Annotations for the coordinator SERVICE: NEG on, BackendConfig referenced for every port."""
    return {
        NEG_ANNOTATION: json.dumps({"ingress": True}),
        BACKEND_CONFIG_ANNOTATION: json.dumps({"default": backend_config_name}),
    }


def backend_config_spec(timeout_sec: int, draining_sec: int, health_path: str, port: int) -> dict[str, Any]:
    """``BackendConfig.spec`` (kubernetes/ingress-gce pkg/apis/backendconfig/v1)."""
    return {
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


def service_target_ref(service_name: str) -> dict[str, str]:
    """Policy ``targetRef`` naming a core Service (group is the empty string)."""
    return {"group": "", "kind": "Service", "name": service_name}


def gcp_backend_policy_spec(service_name: str, timeout_sec: int, draining_sec: int) -> dict[str, Any]:
    """``GCPBackendPolicy.spec`` (GoogleCloudPlatform/gke-gateway-api apis/networking/v1)."""
    return {
        "targetRef": service_target_ref(service_name),
        "default": {"timeoutSec": timeout_sec, "connectionDraining": {"drainingTimeoutSec": draining_sec}},
    }


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


def gateway_spec(gateway_class: str, hostname: str | None) -> dict[str, Any]:
    """``Gateway.spec``: one HTTP listener on port 80 admitting routes of its own namespace."""
    listener: dict[str, Any] = {
        "name": "http",
        "protocol": "HTTP",
        "port": 80,
        "allowedRoutes": {"namespaces": {"from": "Same"}},
    }
    if hostname:
        listener["hostname"] = hostname
    return {"gatewayClassName": gateway_class, "listeners": [listener]}


def http_route_spec(gateway_name: str, service_name: str, port: int, hostname: str | None) -> dict[str, Any]:
    """``HTTPRoute.spec`` attaching every path to the coordinator Service through the Gateway's listener."""
    spec: dict[str, Any] = {
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
                "backendRefs": [{"group": "", "kind": "Service", "name": service_name, "port": port}],
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
