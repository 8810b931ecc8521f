"""TLS at the GKE edge: what the gke (Ingress) and gke-prod (Gateway) stacks and their variants render.

The field names and annotations are checked against :mod:`components.gke_lb` (upstream facts written once)
and, through test_infra_validation, against the strict CRD schemas.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from mockharness import Recording, agentswarm_config, run_mocked, run_program, stack_config

from components import gke_lb
from components.config import parse_config
from components.platform import PLAIN_HTTP_WARNING, deploy

COORD = "agentswarm-coordinator"


def _one(rec: Recording, kind: str, name: str = COORD) -> dict[str, Any]:
    found = [m for m in rec.kinds(kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [m["metadata"]["name"] for m in rec.kinds(kind)])
    return found[0]


def _edge(rec: Recording, typ: str) -> dict[str, Any]:
    found = [r for r in rec.of_type(typ) if r.name.startswith("agentswarm-edge-")]
    assert len(found) == 1, (typ, [r.name for r in found])
    return found[0].values


def _run(stack: str, **coordinator: Any) -> Recording:
    """The stack with its coordinator section updated (one level deep)."""
    config = stack_config(stack)
    section = dict(config["agentswarm:coordinator"])
    section.update(coordinator)
    config["agentswarm:coordinator"] = section
    return run_program(config, stack)


def test_gke_ingress_has_managed_certificate_static_ip_and_redirect(
    stack_recordings: dict[str, Recording],
) -> None:
    rec = stack_recordings["gke"]
    hostname = agentswarm_config(stack_config("gke"))["coordinator"]["hostname"]
    address = _edge(rec, "gcp:compute/globalAddress:GlobalAddress")
    assert "purpose" not in address  # an external address for the load balancer, not a peering range
    cert = _one(rec, "ManagedCertificate")
    assert cert["apiVersion"] == "networking.gke.io/v1" and cert["spec"] == {"domains": [hostname]}
    frontend = _one(rec, "FrontendConfig")
    assert frontend["apiVersion"] == "networking.gke.io/v1beta1"
    assert frontend["spec"]["redirectToHttps"] == {
        "enabled": True,
        "responseCodeName": "MOVED_PERMANENTLY_DEFAULT",
    }
    annotations = _one(rec, "Ingress")["metadata"]["annotations"]
    assert annotations == {
        "kubernetes.io/ingress.class": "gce",
        "kubernetes.io/ingress.global-static-ip-name": address["name"],
        "networking.gke.io/managed-certificates": cert["metadata"]["name"],
        "networking.gke.io/v1beta1.FrontendConfig": frontend["metadata"]["name"],
    }
    # same namespace as the Ingress: the annotations name objects, not namespaced references
    assert cert["metadata"]["namespace"] == frontend["metadata"]["namespace"]
    assert not rec.of_type("gcp:compute/securityPolicy:SecurityPolicy")


def test_gke_outputs_name_the_https_url_and_the_address() -> None:
    cfg = parse_config(agentswarm_config(stack_config("gke")))
    outputs: dict[str, Any] = {}

    def body() -> Any:
        outputs.update(deploy(cfg).outputs)
        return outputs["coordinator_static_ip"]

    run_mocked(body)
    assert outputs["coordinator_url"] == "https://swarm-dev.example.com"


def test_gke_prod_gateway_https_listener_certmap_and_redirect_route(
    stack_recordings: dict[str, Recording],
) -> None:
    rec = stack_recordings["gke-prod"]
    hostname = agentswarm_config(stack_config("gke-prod"))["coordinator"]["hostname"]
    cert = _edge(rec, "gcp:certificatemanager/certificate:Certificate")
    assert cert["managed"]["domains"] == [hostname] and "location" not in cert
    cert_map = _edge(rec, "gcp:certificatemanager/certificateMap:CertificateMap")
    entry = _edge(rec, "gcp:certificatemanager/certificateMapEntry:CertificateMapEntry")
    assert entry["hostname"] == hostname and entry["map"] == cert_map["name"]
    address = _edge(rec, "gcp:compute/globalAddress:GlobalAddress")

    gateway = _one(rec, "Gateway", "agentswarm-gateway")
    assert gateway["metadata"]["annotations"] == {"networking.gke.io/certmap": cert_map["name"]}
    assert gateway["spec"]["addresses"] == [{"type": "NamedAddress", "value": address["name"]}]
    listeners = {entry["name"]: entry for entry in gateway["spec"]["listeners"]}
    assert (listeners["https"]["protocol"], listeners["https"]["port"]) == ("HTTPS", 443)
    assert "tls" not in listeners["https"]  # the certificate map replaces certificateRefs
    assert (listeners["http"]["protocol"], listeners["http"]["port"]) == ("HTTP", 80)

    route = _one(rec, "HTTPRoute")
    assert [p["sectionName"] for p in route["spec"]["parentRefs"]] == ["https"]
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == COORD
    redirect = _one(rec, "HTTPRoute", f"{COORD}-https-redirect")
    assert [p["sectionName"] for p in redirect["spec"]["parentRefs"]] == ["http"]
    (rule,) = redirect["spec"]["rules"]
    assert "backendRefs" not in rule  # the HTTP listener serves nothing
    assert rule["filters"] == [
        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
    ]


def test_gke_prod_cloud_armor_rate_limit_attached_to_backend(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke-prod"]
    policy = _edge(rec, "gcp:compute/securityPolicy:SecurityPolicy")
    limit, default = sorted(policy["rules"], key=lambda r: r["priority"])
    assert limit["action"] == "rate_based_ban"
    options = limit["rateLimitOptions"]
    assert options["enforceOnKey"] == "IP"
    assert options["rateLimitThreshold"] == {"count": 600, "intervalSec": 60}
    assert options["banDurationSec"] == 600
    assert options["exceedAction"] == "deny(429)" and options["conformAction"] == "allow"
    assert limit["match"] == {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}
    assert default["priority"] == 2147483647 and default["action"] == "allow"
    backend = _one(rec, "GCPBackendPolicy")
    assert backend["spec"]["default"]["securityPolicy"] == policy["name"]


def test_cloud_armor_on_ingress_goes_into_the_backend_config() -> None:
    rec = _run("gke", cloud_armor={"enabled": True, "rate_limit": {"requests": 100, "interval_seconds": 10}})
    policy = _edge(rec, "gcp:compute/securityPolicy:SecurityPolicy")
    limit = min(policy["rules"], key=lambda r: r["priority"])
    assert limit["action"] == "throttle" and "banDurationSec" not in limit["rateLimitOptions"]
    assert limit["rateLimitOptions"]["rateLimitThreshold"] == {"count": 100, "intervalSec": 10}
    assert _one(rec, "BackendConfig")["spec"]["securityPolicy"] == {"name": policy["name"]}


def test_regional_gateway_uses_regional_certificates_in_listener_options() -> None:
    rec = _run("gke-prod", gateway_class="gke-l7-regional-external-managed", cloud_armor={"enabled": False})
    auth = _edge(rec, "gcp:certificatemanager/dnsAuthorization:DnsAuthorization")
    cert = _edge(rec, "gcp:certificatemanager/certificate:Certificate")
    assert auth["location"] == cert["location"] == "europe-west1"
    assert auth["domain"] == "swarm.example.com"
    assert cert["managed"]["dnsAuthorizations"] == ["agentswarm-edge-dns-authorization-id"]
    assert not rec.of_type("gcp:certificatemanager/certificateMap:CertificateMap")
    assert not [r for r in rec.of_type("gcp:compute/globalAddress:GlobalAddress") if "edge" in r.name]
    gateway = _one(rec, "Gateway", "agentswarm-gateway")
    assert "annotations" not in gateway["metadata"] and "addresses" not in gateway["spec"]
    https = next(entry for entry in gateway["spec"]["listeners"] if entry["name"] == "https")
    assert https["tls"] == {"mode": "Terminate", "options": {gke_lb.CERT_MANAGER_CERTS_OPTION: cert["name"]}}


def test_pre_shared_certificates_on_ingress_and_gateway() -> None:
    tls = {"mode": "pre-shared", "pre_shared_certificates": ["swarm-2026", "swarm-2027"]}
    rec = _run("gke", tls=tls)
    annotations = _one(rec, "Ingress")["metadata"]["annotations"]
    assert annotations["ingress.gcp.kubernetes.io/pre-shared-cert"] == "swarm-2026,swarm-2027"
    assert "networking.gke.io/managed-certificates" not in annotations
    assert not rec.kinds("ManagedCertificate") and rec.kinds("FrontendConfig")
    rec = _run("gke-prod", tls=tls)
    gateway = _one(rec, "Gateway", "agentswarm-gateway")
    https = next(entry for entry in gateway["spec"]["listeners"] if entry["name"] == "https")
    assert https["tls"]["options"] == {"networking.gke.io/pre-shared-certs": "swarm-2026,swarm-2027"}
    assert "annotations" not in gateway["metadata"]
    assert not rec.of_type("gcp:certificatemanager/certificate:Certificate")


def test_tls_none_on_gke_is_explicit_and_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: warnings.append(msg))
    rec = _run("gke", tls={"mode": "none"})
    assert warnings == [PLAIN_HTTP_WARNING]
    assert not rec.kinds("ManagedCertificate") and not rec.kinds("FrontendConfig")
    assert _one(rec, "Ingress")["metadata"]["annotations"] == {"kubernetes.io/ingress.class": "gce"}
    assert not [r for r in rec.of_type("gcp:compute/globalAddress:GlobalAddress") if "edge" in r.name]
    warnings.clear()
    _run("gke")  # the default is TLS: no warning
    assert warnings == []


def test_tls_none_gateway_has_only_the_http_listener() -> None:
    rec = _run("gke-prod", tls={"mode": "none"}, cloud_armor={"enabled": False})
    gateway = _one(rec, "Gateway", "agentswarm-gateway")
    assert [entry["name"] for entry in gateway["spec"]["listeners"]] == ["http"]
    assert [r["metadata"]["name"] for r in rec.kinds("HTTPRoute")] == [COORD]
