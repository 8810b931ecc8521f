"""The ``gke`` and ``local`` stacks' workload layer, applied by the real Pulumi engine to a real API server.

What only a server shows, each checked on the server's own objects:

* ``pulumi up`` succeeds: every object is admitted (validation, defaulting, Pod Security ``restricted``
  enforced on the namespace, CRD schemas of the GKE kinds), and the provider's await logic is satisfied (the
  StatefulSets' and the Deployment's pods scheduled, Running and Ready through kwok; claims bound).
* a second ``pulumi up`` changes nothing (no perpetual diff against what the server defaulted);
* ``agents.replicas`` updates the StatefulSet in place: same object (uid), claim templates untouched;
* a change of a field Kubernetes will not update (the claim template's storage size) never fails half-way:
  the preview stops before anything changed, and ``up`` replaces the StatefulSet, whose new pods get Ready;
* ``pulumi destroy`` leaves nothing in the namespace, and the namespace itself is gone;
* an object the server refuses (requests above limits, a test-only config) fails ``pulumi up`` with the
  server's own message.

The stacks' config is used as committed, except what points at a cluster that does not exist here: the
cluster creation is off (``KUBECONFIG`` names the local API server), the GCP section and the image build are
removed, and the secrets are set as the docs say.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .controlplane import ApiError, ControlPlane
from .pulumi_stack import REPO, PulumiStack, steps_by_type

IMAGE = {
    "repository": "europe-west1-docker.pkg.dev/agentswarm-dev/agentswarm/agentswarm",
    "tag": "0.1.0",
    "pull_policy": "IfNotPresent",
}
STS = "kubernetes:apps/v1:StatefulSet"
FORBIDDEN_STS_UPDATE = "Forbidden: updates to statefulset spec for fields other than"


def stack_config(stack: str, **overrides: Any) -> dict[str, Any]:
    """The committed ``stacks/Pulumi.<stack>.yaml`` config (keys without ``agentswarm:``), made to deploy its
    workload layer into an existing cluster."""
    doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    cfg = {k.split(":", 1)[1]: copy.deepcopy(v) for k, v in doc["config"].items()}
    cfg["cluster"] = {"create": False}
    cfg.pop("gcp", None)
    cfg["image"] = {**IMAGE, "tag": cfg.get("image", {}).get("tag", IMAGE["tag"])}
    tls = cfg.get("coordinator", {}).get("tls")
    if cfg.get("platform") == "gke" and (tls is None or tls.get("mode", "managed") != "none"):
        # Without the gcp section no address is reserved; TLS then names an existing one (no cloud here).
        cfg["coordinator"].setdefault("tls", {}).setdefault("static_ip_name", "agentswarm-test-address")
    for key, value in overrides.items():
        section, _, leaf = key.partition(".")
        if leaf:
            cfg.setdefault(section, {})[leaf] = value
        else:
            cfg[section] = value
    return cfg


def new_stack(stack_dir: Path, cp: ControlPlane, name: str, cfg: dict[str, Any]) -> PulumiStack:
    st = PulumiStack(stack_dir, name, cp.kubeconfig)
    st.write_config(cfg)
    st.set_secret("api_token", secrets.token_urlsafe(24))
    st.set_secret("redis_password", secrets.token_urlsafe(24))
    return st


def ok(result: Any, cp: ControlPlane) -> Any:
    assert result.returncode == 0, (
        f"{' '.join(result.argv[1:3])} failed:\n{result.output[-6000:]}\n{cp.logs()}"
    )
    return result


def sts_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"


def assert_applied(cp: ControlPlane, st: PulumiStack, namespace: str, agents: int) -> None:
    """Every Kubernetes object of the state is on the server, Ready where it runs pods."""
    kube = cp.client
    objects = st.kubernetes_objects()
    assert objects, "the state holds no Kubernetes object"
    for res in objects:
        out = res.get("outputs") or {}
        meta = out.get("metadata") or {}
        path = kube.resource_path(out["apiVersion"], out["kind"], meta["name"], meta.get("namespace"))
        got = kube.get(path)
        assert got["metadata"]["uid"] == meta.get("uid"), f"{path}: the server's object is not the state's"

    ns = kube.get(f"/api/v1/namespaces/{namespace}")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # The label is enforced, not decorative: the server refuses a root pod in this namespace.
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pss-probe"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"runAsUser": 0}}]},
    }
    with pytest.raises(ApiError) as denied:
        kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", probe, dryRun="All")
    assert denied.value.status == 403 and "PodSecurity" in str(denied.value), denied.value

    policies = kube.items(f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies")
    assert {"default-deny", "allow-dns"} <= {p["metadata"]["name"] for p in policies}

    pods = kube.items(f"/api/v1/namespaces/{namespace}/pods")
    not_ready = [
        p["metadata"]["name"]
        for p in pods
        if p["status"].get("phase") != "Running"
        or not any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]
    assert not not_ready, f"pods not Running/Ready: {not_ready}"
    agent_pods = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component") == "agent"]
    assert len(agent_pods) == agents
    claims = kube.items(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims")
    assert claims and all(c["status"].get("phase") == "Bound" for c in claims), [
        (c["metadata"]["name"], c["status"].get("phase")) for c in claims
    ]


def wait_namespace_gone(cp: ControlPlane, namespace: str) -> None:
    cp.wait_for(
        f"namespace {namespace} to be finalized",
        lambda: not cp.client.exists(f"/api/v1/namespaces/{namespace}"),
        timeout=180,
    )


CASES = {
    # stack: (agents before, after the scale step, storage class of the claims, size of each volume)
    "gke": (50, 7, "standard-rwo", "10Gi"),
    "local": (5, 2, "standard", "2Gi"),
}


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("stack", sorted(CASES))
def test_stack_lifecycle_on_api_server(
    stack: str,
    control_plane: ControlPlane,
    volumes: Callable[[int, str, str], list[str]],
    stack_dir: Path,
) -> None:
    cp, kube = control_plane, control_plane.client
    before, after, storage_class, size = CASES[stack]
    cfg = stack_config(stack)
    assert cfg["agents"]["replicas"] == before, "the committed stack changed; update CASES"
    namespace = cfg.get("namespace", "agentswarm")
    name = cfg.get("name", "agentswarm")
    volumes(before + 4, size, storage_class)  # the agents' claims, Redis's, and spares
    st = new_stack(stack_dir, cp, f"{stack}-test", cfg)

    # 1. up: every object admitted, pods Ready, claims bound
    ok(st.up(), cp)
    assert_applied(cp, st, namespace, before)
    sts = kube.get(sts_path(namespace, f"{name}-agent"))
    if stack == "gke":
        assert kube.get(f"/apis/cloud.google.com/v1/namespaces/{namespace}/backendconfigs")["items"]
        ingresses = kube.items(f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses")
        assert ingresses and ingresses[0]["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "gce"

    # 2. a second up changes nothing
    ok(st.up("--expect-no-changes"), cp)

    # 3. replicas: an in-place update of the same StatefulSet, claim templates untouched
    cfg["agents"]["replicas"] = after
    st.write_config(cfg)
    plan = steps_by_type(ok(st.preview(), cp).json())
    assert plan == {STS: ["update"]}, plan
    ok(st.up(), cp)
    scaled = kube.get(sts_path(namespace, f"{name}-agent"))
    assert scaled["metadata"]["uid"] == sts["metadata"]["uid"], "the StatefulSet was replaced"
    assert scaled["spec"]["replicas"] == after and scaled["status"].get("readyReplicas") == after
    assert scaled["spec"]["volumeClaimTemplates"] == sts["spec"]["volumeClaimTemplates"]

    # 4. an immutable field (the claim template's size). The provider plans a delete-before-replace of the
    # StatefulSet (same name); its preview of the new object is a server-side dry-run apply onto the old one,
    # which the server refuses for this kind. So the preview fails, and must fail before anything changed;
    # `up` then replaces the StatefulSet in one run, and the new one gets Ready on the retained claims.
    new_size = "512Mi" if stack == "local" else "2Gi"
    assert cfg["agents"].get("storage_size", "1Gi") != new_size
    cfg["agents"]["storage_size"] = new_size
    st.write_config(cfg)
    preview = st.preview()
    assert preview.returncode != 0 and FORBIDDEN_STS_UPDATE in preview.output, (
        "the preview of a claim-template change no longer fails: the provider now previews StatefulSet "
        f"replacements, so assert its plan (one replacement of {STS}) here instead:\n{preview.output[-3000:]}"
    )
    untouched = kube.get(sts_path(namespace, f"{name}-agent"))
    assert untouched["metadata"]["uid"] == sts["metadata"]["uid"]
    assert untouched["spec"]["volumeClaimTemplates"] == sts["spec"]["volumeClaimTemplates"]
    up = ok(st.up(), cp)
    assert "replaced" in up.output, up.output[-3000:]
    replaced = kube.get(sts_path(namespace, f"{name}-agent"))
    assert replaced["metadata"]["uid"] != sts["metadata"]["uid"]
    template = replaced["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert template == new_size
    assert_applied(cp, st, namespace, after)
    ok(st.up("--expect-no-changes"), cp)

    # 5. destroy: nothing left, the namespace finalized
    ok(st.destroy(), cp)
    assert st.resources() == [] or all(r["type"].startswith("pulumi:") for r in st.resources())
    wait_namespace_gone(cp, namespace)
    assert kube.objects_in_namespace(namespace) == []


@pytest.mark.timeout(900)
def test_api_server_rejects_an_invalid_object_with_its_message(
    control_plane: ControlPlane, volumes: Callable[[int, str, str], list[str]], stack_dir: Path
) -> None:
    """Requests above limits pass the config model but not the API server: ``pulumi up`` must fail and show
    the server's reason, and the rest of the stack is still destroyable."""
    cp, kube = control_plane, control_plane.client
    cfg = stack_config("local")
    cfg["agents"]["replicas"] = 1
    cfg["agents"]["resources"] = {
        "requests": {"cpu": "50m", "memory": "512Mi"},
        "limits": {"memory": "256Mi"},
    }
    volumes(4, "2Gi", "standard")
    namespace = cfg.get("namespace", "agentswarm")
    st = new_stack(stack_dir, cp, "invalid-test", cfg)
    result = st.up()
    assert result.returncode != 0, result.output
    assert "StatefulSet" in result.output and "must be less than or equal to memory limit" in result.output, (
        result.output[-4000:]
    )
    assert not kube.exists(sts_path(namespace, "agentswarm-agent"))
    ok(st.destroy(), cp)
    wait_namespace_gone(cp, namespace)
