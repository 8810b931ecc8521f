"""Every Kubernetes object of every stack passes strict schema validation for Kubernetes 1.36.

Built-in kinds go through kubernetes-validate (strict: unknown fields fail). BackendConfig, GCPBackendPolicy,
HealthCheckPolicy, Gateway, HTTPRoute, ManagedCertificate and FrontendConfig are not in it: they go through
the JSON Schemas shipped in components/schemas, written from the upstream Go types and CRDs.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from mockharness import STACK_NAMES, Recording

K8S_VERSION = "1.36.0"
CRD_SCHEMAS = {
    ("cloud.google.com/v1", "BackendConfig"): "backendconfig.cloud.google.com_v1.json",
    ("networking.gke.io/v1", "GCPBackendPolicy"): "gcpbackendpolicy.networking.gke.io_v1.json",
    ("networking.gke.io/v1", "HealthCheckPolicy"): "healthcheckpolicy.networking.gke.io_v1.json",
    ("gateway.networking.k8s.io/v1", "Gateway"): "gateway.gateway.networking.k8s.io_v1.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute.gateway.networking.k8s.io_v1.json",
    ("monitoring.googleapis.com/v1", "PodMonitoring"): "podmonitoring.monitoring.googleapis.com_v1.json",
    ("networking.gke.io/v1", "ManagedCertificate"): "managedcertificate.networking.gke.io_v1.json",
    ("networking.gke.io/v1beta1", "FrontendConfig"): "frontendconfig.networking.gke.io_v1beta1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.keda.sh_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.keda.sh_v1alpha1.json",
    (
        "secrets-store.csi.x-k8s.io/v1",
        "SecretProviderClass",
    ): "secretproviderclass.secrets-store.csi.x-k8s.io_v1.json",
}


def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    text = resources.files("components").joinpath("schemas", CRD_SCHEMAS[(api_version, kind)]).read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate(manifest: dict[str, Any]) -> None:
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CRD_SCHEMAS:
        jsonschema.Draft202012Validator(crd_schema(*key)).validate(manifest)
    else:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_every_object_validates(stack: str, stack_recordings: dict[str, Recording]) -> None:
    manifests = stack_recordings[stack].manifests()
    assert len(manifests) >= 15
    for manifest in manifests:
        try:
            validate(manifest)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{stack}: {manifest['kind']} {manifest['metadata']['name']}: {exc}")


def test_strict_validation_can_fail(stack_recordings: dict[str, Recording]) -> None:
    sts = copy.deepcopy(stack_recordings["render"].kinds("StatefulSet")[0])
    sts["spec"]["podManagmentPolicy"] = "Parallel"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(sts)


def _backend_config() -> dict[str, Any]:
    return {
        "apiVersion": "cloud.google.com/v1",
        "kind": "BackendConfig",
        "metadata": {"name": "x", "namespace": "y"},
        "spec": {
            "timeoutSec": 3600,
            "connectionDraining": {"drainingTimeoutSec": 60},
            "healthCheck": {"type": "HTTP", "requestPath": "/readyz", "port": 8080},
        },
    }


def _target() -> dict[str, str]:
    return {"group": "", "kind": "Service", "name": "svc"}


def _pod_monitoring() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.googleapis.com/v1",
        "kind": "PodMonitoring",
        "metadata": {"name": "x", "namespace": "y"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "timeout": "30s"}],
            "filterRunning": True,
        },
    }


MISSPELLED = [
    (_pod_monitoring(), ("spec",), "endpoint"),
    (_pod_monitoring(), ("spec", "selector"), "matchLabel"),
    (_pod_monitoring(), ("spec", "endpoints", 0), "scrapeInterval"),
    (_backend_config(), ("spec",), "timeoutSecs"),
    (_backend_config(), ("spec", "healthCheck"), "requestpath"),
    (_backend_config(), ("spec", "connectionDraining"), "drainingTimeout"),
    (
        {
            "apiVersion": "networking.gke.io/v1",
            "kind": "GCPBackendPolicy",
            "metadata": {"name": "x"},
            "spec": {"targetRef": _target(), "default": {"timeoutSec": 3600}},
        },
        ("spec", "default"),
        "timeoutSecs",
    ),
    (
        {
            "apiVersion": "networking.gke.io/v1",
            "kind": "GCPBackendPolicy",
            "metadata": {"name": "x"},
            "spec": {"targetRef": _target(), "default": {"timeoutSec": 3600}},
        },
        ("spec",),
        "targetRefs",
    ),
    (
        {
            "apiVersion": "networking.gke.io/v1",
            "kind": "HealthCheckPolicy",
            "metadata": {"name": "x"},
            "spec": {
                "targetRef": _target(),
                "default": {
                    "config": {"type": "HTTP", "httpHealthCheck": {"requestPath": "/readyz", "port": 8080}}
                },
            },
        },
        ("spec", "default", "config", "httpHealthCheck"),
        "requestPth",
    ),
    (
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "x"},
            "spec": {
                "gatewayClassName": "gke-l7-global-external-managed",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
        ("spec",),
        "gatewayClass",
    ),
    (
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "x"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [{"backendRefs": [{"name": "svc", "port": 8080}]}],
            },
        },
        ("spec",),
        "parentRef",
    ),
    (
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "x"},
            "spec": {
                "parentRefs": [{"name": "gw", "sectionName": "http"}],
                "rules": [
                    {
                        "filters": [
                            {
                                "type": "RequestRedirect",
                                "requestRedirect": {"scheme": "https", "statusCode": 301},
                            }
                        ]
                    }
                ],
            },
        },
        ("spec", "rules", 0, "filters", 0, "requestRedirect"),
        "status",
    ),
    (
        {
            "apiVersion": "networking.gke.io/v1",
            "kind": "ManagedCertificate",
            "metadata": {"name": "x", "namespace": "y"},
            "spec": {"domains": ["swarm.example.com"]},
        },
        ("spec",),
        "domain",
    ),
    (
        {
            "apiVersion": "networking.gke.io/v1beta1",
            "kind": "FrontendConfig",
            "metadata": {"name": "x", "namespace": "y"},
            "spec": {"redirectToHttps": {"enabled": True, "responseCodeName": "MOVED_PERMANENTLY_DEFAULT"}},
        },
        ("spec",),
        "redirectToHTTPS",
    ),
    (
        {
            "apiVersion": "networking.gke.io/v1beta1",
            "kind": "FrontendConfig",
            "metadata": {"name": "x", "namespace": "y"},
            "spec": {"redirectToHttps": {"enabled": True}},
        },
        ("spec", "redirectToHttps"),
        "responseCode",
    ),
    (
        {
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {"name": "agent-secrets", "namespace": "agentswarm"},
            "spec": {"provider": "gke", "parameters": {"secrets": "[]"}},
        },
        ("spec",),
        "parameter",
    ),
]


@pytest.mark.parametrize(("manifest", "path", "bad_key"), MISSPELLED, ids=[m[2] for m in MISSPELLED])
def test_crd_schema_rejects_misspelled_field(
    manifest: dict[str, Any], path: tuple[str, ...], bad_key: str
) -> None:
    validate(manifest)  # the correct object passes
    broken = copy.deepcopy(manifest)
    node: Any = broken
    for part in path:
        node = node[part]
    node[bad_key] = 1
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        validate(broken)


def test_pod_monitoring_schema_enforces_upstream_rules() -> None:
    for broken in ("30", "half a minute", "1.5m"):  # Prometheus durations only
        bad = _pod_monitoring()
        bad["spec"]["endpoints"][0]["interval"] = broken
        with pytest.raises(jsonschema.ValidationError):
            validate(bad)
    bad = _pod_monitoring()
    del bad["spec"]["endpoints"][0]["interval"]  # required upstream
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = _pod_monitoring()
    bad["spec"]["endpoints"][0]["port"] = 70000
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("ManagedCertificate", {"domains": ["*.example.com"]}),  # no wildcards upstream
        ("ManagedCertificate", {"domains": [("a" * 60) + ".example.com"]}),  # 63 characters at most
        ("ManagedCertificate", {"domains": []}),
        ("FrontendConfig", {"redirectToHttps": {"enabled": True, "responseCodeName": "MOVED"}}),
        ("FrontendConfig", {"redirectToHttps": {"responseCodeName": "FOUND"}}),  # enabled is required
    ],
)
def test_tls_crd_schemas_enforce_upstream_values(kind: str, spec: dict[str, Any]) -> None:
    api = "networking.gke.io/v1" if kind == "ManagedCertificate" else "networking.gke.io/v1beta1"
    with pytest.raises(jsonschema.ValidationError):
        validate({"apiVersion": api, "kind": kind, "metadata": {"name": "x"}, "spec": spec})


def test_crd_schemas_enforce_upstream_bounds() -> None:
    bad = _backend_config()
    bad["spec"]["connectionDraining"]["drainingTimeoutSec"] = 3601
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    policy = {
        "apiVersion": "networking.gke.io/v1",
        "kind": "GCPBackendPolicy",
        "metadata": {"name": "x"},
        "spec": {"targetRef": _target(), "default": {"timeoutSec": 0}},
    }
    with pytest.raises(jsonschema.ValidationError):
        validate(policy)


RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_every_pod_meets_pod_security_restricted(stack: str, stack_recordings: dict[str, Recording]) -> None:
    """The namespace enforces PSS `restricted`: a pod template that violates it would never start."""
    templates = [
        m["spec"]["template"]
        for m in stack_recordings[stack].manifests()
        if m["kind"] in ("Deployment", "StatefulSet")
    ]
    assert templates
    for template in templates:
        pod = template["spec"]
        psc = pod.get("securityContext", {})
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        for volume in pod.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES, volume
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False
            assert sc.get("capabilities", {}).get("drop") == ["ALL"]
            assert not set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}
            assert (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")) is True
            assert sc.get("runAsUser", psc.get("runAsUser")) != 0
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost")
            assert (
                sc.get("readOnlyRootFilesystem") is True
            )  # stricter than restricted: docs/runtime-contract.md
            assert "privileged" not in sc or sc["privileged"] is False


_FREE_FORM_MAPS = {"labels", "annotations", "data", "stringData", "matchLabels", "nodeSelector", "metadata"}


def _snake_keys(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if "_" in key and not key.startswith("__"):
                found.append(f"{path}/{key}")
            if key not in _FREE_FORM_MAPS or key == "metadata":
                found.extend(_snake_keys(inner, f"{path}/{key}"))
    elif isinstance(value, list):
        for item in value:
            found.extend(_snake_keys(item, path))
    return found


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_every_input_key_reaches_the_engine_in_provider_spelling(
    stack: str, stack_recordings: dict[str, Recording]
) -> None:
    """The SDKs translate the Python names they know into the provider's camelCase and pass unknown keys
    through verbatim: a snake_case key on the wire is a misspelled or unknown field."""
    for res in stack_recordings[stack].resources:
        assert _snake_keys(res.values) == [], (res.type, res.name)


def test_snake_key_detector_can_fail() -> None:
    assert _snake_keys({"spec": {"timeout_sec": 1, "labels": {"a_b": "x"}}}) == ["/spec/timeout_sec"]
