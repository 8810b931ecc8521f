"""Platform layer under mocks: GKE hardening, kind via the CLI, Memorystore, Workload Identity, image."""

from __future__ import annotations

import json
import os
from typing import Any

import pulumi
import pytest
import yaml
from mockharness import (
    FAKE_CA,
    Recording,
    agentswarm_config,
    is_secret,
    only_tools_on_path,
    run_program,
    run_stack,
    stack_config,
)

from components.kind_cluster import PreflightError, preflight

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"


def _run(config: dict[str, Any], stack: str = "test") -> Recording:
    with only_tools_on_path("kind", "docker"):
        return run_program({f"agentswarm:{k}": v for k, v in config.items()}, stack)


def _manifest(rec: Recording, kind: str, name: str) -> dict[str, Any]:
    found = [m for m in rec.kinds(kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container["env"]}


# ---------------------------------------------------------------- GKE cluster


def test_gke_cluster_hardening(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke"]
    c = rec.one(CLUSTER).values
    assert c["removeDefaultNodePool"] is True
    assert c["initialNodeCount"] == 1
    assert c["releaseChannel"] == {"channel": "REGULAR"}
    assert c["workloadIdentityConfig"] == {"workloadPool": "agentswarm-dev.svc.id.goog"}
    assert c["privateClusterConfig"]["enablePrivateNodes"] is True
    assert c["privateClusterConfig"]["masterIpv4CidrBlock"] == "172.16.0.0/28"
    assert c["masterAuthorizedNetworksConfig"] == {
        "cidrBlocks": [{"cidrBlock": "203.0.113.0/24", "displayName": "office"}]
    }
    assert c["datapathProvider"] == "ADVANCED_DATAPATH"
    assert c["enableShieldedNodes"] is True
    assert c["networkingMode"] == "VPC_NATIVE"
    assert c["ipAllocationPolicy"] == {
        "clusterSecondaryRangeName": "pods",
        "servicesSecondaryRangeName": "services",
    }
    assert set(c["maintenancePolicy"]["recurringWindow"]) == {"startTime", "endTime", "recurrence"}
    assert c["deletionProtection"] is False  # the dev stack says so
    assert c["location"] == "europe-west1-b"  # zonal
    assert "gatewayApiConfig" not in c  # exposure ingress
    assert "enableAutopilot" not in c
    assert c["nodeConfig"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}


def test_gke_network_nat(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke"]
    net = rec.one("gcp:compute/network:Network").values
    assert net["autoCreateSubnetworks"] is False
    subnet = rec.one("gcp:compute/subnetwork:Subnetwork").values
    assert {r["rangeName"] for r in subnet["secondaryIpRanges"]} == {"pods", "services"}
    assert subnet["privateIpGoogleAccess"] is True
    assert subnet["network"] == net["name"] + "-id" or subnet["network"].endswith("-id")
    nat = rec.one("gcp:compute/routerNat:RouterNat").values
    assert nat["sourceSubnetworkIpRangesToNat"] == "ALL_SUBNETWORKS_ALL_IP_RANGES"
    assert nat["router"] == rec.one("gcp:compute/router:Router").values["name"]


def test_gke_node_pools(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke"]
    pools = {r.values["name"]: r.values for r in rec.of_type(NODE_POOL)}
    assert set(pools) == {"agentswarm-dev-system", "agentswarm-dev-agents"}
    system, agents = pools["agentswarm-dev-system"], pools["agentswarm-dev-agents"]
    assert system["autoscaling"]["minNodeCount"] == 1 and system["autoscaling"]["maxNodeCount"] == 2
    assert agents["autoscaling"]["minNodeCount"] == 0 and agents["autoscaling"]["maxNodeCount"] == 5
    assert agents["nodeConfig"]["spot"] is True and system["nodeConfig"]["spot"] is False
    for pool in (system, agents):
        assert pool["cluster"] == "agentswarm-dev"
        assert pool["nodeConfig"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
        assert pool["nodeConfig"]["shieldedInstanceConfig"]["enableSecureBoot"] is True
    assert "taints" not in system["nodeConfig"]
    taint = agents["nodeConfig"]["taints"][0]
    label = agents["nodeConfig"]["labels"]
    # the AgentPool tolerates exactly this taint and selects exactly this label
    pod = _manifest(rec, "StatefulSet", "agentswarm-agent")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == label
    effect = {"NO_SCHEDULE": "NoSchedule"}[taint["effect"]]
    assert pod["tolerations"] == [
        {"key": taint["key"], "operator": "Equal", "value": taint["value"], "effect": effect}
    ]
    # coordinator and redis stay off the tainted pool
    for kind, name in (("Deployment", "agentswarm-coordinator"), ("StatefulSet", "agentswarm-redis")):
        assert "tolerations" not in _manifest(rec, kind, name)["spec"]["template"]["spec"]


def test_gke_prod_regional_protected_gateway(stack_recordings: dict[str, Recording]) -> None:
    c = stack_recordings["gke-prod"].one(CLUSTER).values
    assert c["location"] == "europe-west1"
    assert c["deletionProtection"] is True
    assert c["gatewayApiConfig"] == {"channel": "CHANNEL_STANDARD"}
    assert c["releaseChannel"] == {"channel": "STABLE"}
    # monitoring.managed_prometheus turns managed collection on for the PodMonitoring objects
    assert c["monitoringConfig"] == {"managedPrometheus": {"enabled": True}}


def test_deletion_protection_on_by_default() -> None:
    cfg = agentswarm_config(stack_config("gke"))
    networks = [{"cidr": "198.51.100.0/24"}]
    cfg["cluster"] = {
        "create": True,
        "gke": {"location": "europe-west1-b", "master_authorized_networks": networks},
    }
    assert _run(cfg).one(CLUSTER).values["deletionProtection"] is True


def test_autopilot_mode() -> None:
    cfg = agentswarm_config(stack_config("gke"))
    cfg["cluster"] = {"create": True, "gke": {"autopilot": True, "private_endpoint": True}}
    rec = _run(cfg)
    c = rec.one(CLUSTER).values
    assert c["enableAutopilot"] is True
    assert "removeDefaultNodePool" not in c and "nodeConfig" not in c
    assert rec.of_type(NODE_POOL) == []
    assert c["workloadIdentityConfig"] == {"workloadPool": "agentswarm-dev.svc.id.goog"}


def test_workload_provider_comes_from_cluster_kubeconfig(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke"]
    provider = rec.one("pulumi:providers:kubernetes")
    assert provider.name == "agentswarm-gke-provider"
    assert is_secret(provider.inputs["kubeconfig"])
    assert provider.parent_type_chain[-2] == "agentswarm:index:GkeCluster"
    kubeconfig = yaml.safe_load(provider.values["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://203.0.113.10"  # the cluster's endpoint
    assert kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"] == "Y2EtZGF0YQ=="
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"
    assert "token" not in json.dumps(kubeconfig["users"])
    k8s_resources = [r for r in rec.resources if r.is_kubernetes]
    assert len(k8s_resources) > 15
    for res in k8s_resources:
        assert res.provider is not None and "::agentswarm-gke-provider::" in res.provider, res.name


# ---------------------------------------------------------------- Workload Identity


def test_workload_identity_for_agents(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke"]
    gsa = rec.one("gcp:serviceaccount/account:Account").values
    binding = rec.one("gcp:serviceaccount/iAMMember:IAMMember").values
    assert binding["role"] == "roles/iam.workloadIdentityUser"
    assert binding["member"] == "serviceAccount:agentswarm-dev.svc.id.goog[agentswarm/agentswarm-agent]"
    email = f"{gsa['accountId']}@mock-project.iam.gserviceaccount.com"
    ksa = _manifest(rec, "ServiceAccount", "agentswarm-agent")
    assert ksa["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": email}
    sts = _manifest(rec, "StatefulSet", "agentswarm-agent")
    assert sts["spec"]["template"]["spec"]["serviceAccountName"] == ksa["metadata"]["name"]
    assert ksa["metadata"]["namespace"] == "agentswarm"


# ---------------------------------------------------------------- Memorystore


def test_memorystore_instance(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke-prod"]
    inst = rec.one("gcp:redis/instance:Instance").values
    assert inst["tier"] == "STANDARD_HA"
    assert inst["authEnabled"] is True
    assert inst["transitEncryptionMode"] == "SERVER_AUTHENTICATION"
    assert inst["connectMode"] == "PRIVATE_SERVICE_ACCESS"
    assert inst["memorySizeGb"] == 5
    # Never evict: tree records carry TTLs, and Memorystore's default policy (volatile-lru) would drop them.
    assert inst["redisConfigs"] == {"maxmemory-policy": "noeviction"}
    addr = rec.by_name("agentswarm-memorystore-peering-range").values
    assert addr["purpose"] == "VPC_PEERING" and addr["addressType"] == "INTERNAL"
    conn = rec.one("gcp:servicenetworking/connection:Connection").values
    assert conn["service"] == "servicenetworking.googleapis.com"
    assert conn["reservedPeeringRanges"] == [addr["name"]]
    assert inst["authorizedNetwork"] == conn["network"] == addr["network"]
    # no in-cluster Redis at all
    assert not [r for r in rec.resources if r.type == "agentswarm:index:Redis"]
    assert [m["metadata"]["name"] for m in rec.kinds("StatefulSet")] == ["agentswarm-agent"]


def test_memorystore_tls_and_auth_wired_into_pods(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke-prod"]
    auth = _manifest(rec, "Secret", "agentswarm-redis-auth")
    ca = _manifest(rec, "Secret", "agentswarm-redis-ca")
    assert auth["stringData"] == {"auth-string": "mock-auth-string"}
    assert ca["stringData"] == {"ca.crt": FAKE_CA}
    auth_res = rec.by_name("agentswarm-managed-redis-auth")
    assert is_secret(auth_res.inputs["stringData"])
    pods = {
        "coordinator": _manifest(rec, "Deployment", "agentswarm-coordinator")["spec"]["template"]["spec"],
        "agent": _manifest(rec, "StatefulSet", "agentswarm-agent")["spec"]["template"]["spec"],
    }
    for role, pod in pods.items():
        container = pod["containers"][0]
        env = _env(container)
        assert env["AGENTSWARM_REDIS_URL"]["value"] == "rediss://10.30.0.3:6378/0", role
        password_file = env["AGENTSWARM_REDIS_PASSWORD_FILE"]["value"]
        assert password_file.endswith("/auth-string")
        mount = next(m for m in container["volumeMounts"] if password_file.startswith(m["mountPath"] + "/"))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "agentswarm-redis-auth"
        ca_file = env["AGENTSWARM_REDIS_CA_FILE"]["value"]
        mount = next(m for m in container["volumeMounts"] if ca_file.startswith(m["mountPath"] + "/"))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "agentswarm-redis-ca"
        assert ca_file.endswith("/ca.crt")
    for name in ("agentswarm-agent", "agentswarm-coordinator"):
        egress = _manifest(rec, "NetworkPolicy", name)["spec"]["egress"]
        assert {
            "to": [{"ipBlock": {"cidr": "10.30.0.3/32"}}],
            "ports": [{"protocol": "TCP", "port": 6378}],
        } in egress
        assert "redis" not in json.dumps(egress)  # no pod selector for a redis that does not exist


# ---------------------------------------------------------------- image


def test_gke_builds_image_into_artifact_registry(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke"]
    repo = rec.one("gcp:artifactregistry/repository:Repository").values
    assert repo["format"] == "DOCKER" and repo["location"] == "europe-west1"
    image = rec.one("docker-build:index:Image").values
    tag = "europe-west1-docker.pkg.dev/agentswarm-dev/agentswarm/agentswarm:0.1.0"
    assert image["tags"] == [tag]
    assert image["push"] is True
    # relative to the project root (the mocks' root is a placeholder name), not to the program's infra/
    assert image["context"] == {"location": os.path.join(pulumi.get_root_directory(), "agent_image")}
    assert image["registries"][0]["address"] == "europe-west1-docker.pkg.dev"
    assert image["registries"][0]["username"] == "oauth2accesstoken"
    for kind, name in (("Deployment", "agentswarm-coordinator"), ("StatefulSet", "agentswarm-agent")):
        container = _manifest(rec, kind, name)["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"{tag}@sha256:{'a' * 64}"  # digest-pinned build output


def test_prebuilt_image_by_digest(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke-prod"]
    assert rec.of_type("docker-build:index:Image") == []
    assert rec.of_type("gcp:artifactregistry/repository:Repository") == []
    expected = "europe-west1-docker.pkg.dev/agentswarm-prod/agentswarm/agentswarm@sha256:" + "0" * 64
    container = _manifest(rec, "StatefulSet", "agentswarm-agent")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == expected


# ---------------------------------------------------------------- kind


def test_kind_stack_has_no_gcp_resource(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["local"]
    assert [r.type for r in rec.resources if r.type.startswith("gcp:")] == []
    assert rec.calls == []


def test_kind_cluster_command(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["local"]
    cmd = rec.by_name("agentswarm-kind-cluster")
    assert cmd.type == "command:local:Command"
    assert cmd.values["create"] == (
        "kind create cluster --name agentswarm --config=- --wait 180s 1>&2"
        " && kind get kubeconfig --name agentswarm"
    )
    assert cmd.values["delete"] == "kind delete cluster --name agentswarm"
    kind_cfg = yaml.safe_load(cmd.values["stdin"])
    assert kind_cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4" and kind_cfg["kind"] == "Cluster"
    node = kind_cfg["nodes"][0]
    assert node["image"].startswith("kindest/node:v1.33.1@sha256:")
    assert node["extraPortMappings"] == [
        {"containerPort": 30080, "hostPort": 8080, "listenAddress": "127.0.0.1", "protocol": "TCP"}
    ]
    svc = _manifest(rec, "Service", "agentswarm-coordinator")["spec"]
    assert (
        svc["type"] == "NodePort"
        and svc["ports"][0]["nodePort"] == node["extraPortMappings"][0]["containerPort"]
    )
    pod = _manifest(rec, "StatefulSet", "agentswarm-agent")["spec"]["template"]["spec"]
    assert pod["nodeSelector"].items() <= node["labels"].items()  # agents schedule on the kind node
    provider = rec.one("pulumi:providers:kubernetes")
    assert provider.name == "agentswarm-kind-provider"
    assert is_secret(provider.inputs["kubeconfig"])
    assert provider.values["kubeconfig"].startswith("apiVersion: v1")  # the command's stdout
    for res in rec.resources:
        if res.is_kubernetes:
            assert "::agentswarm-kind-provider::" in (res.provider or ""), res.name


def test_kind_builds_and_loads_image(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["local"]
    image = rec.one("docker-build:index:Image").values
    assert image["tags"] == ["agentswarm:dev"] and image["push"] is False and image["load"] is True
    load = rec.by_name("agentswarm-kind-load").values
    assert load["create"] == "kind load docker-image agentswarm:dev --name agentswarm"
    assert load["triggers"] == ["sha256:" + "a" * 64]
    container = _manifest(rec, "StatefulSet", "agentswarm-agent")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "agentswarm:dev"


def _pod_templates(image_digest: str) -> dict[str, Any]:
    """The coordinator's and the agents' pod templates of the local stack when its build has this digest."""
    with only_tools_on_path("kind", "docker"):
        rec = run_stack("local", image_digest=image_digest)
    return {
        "coordinator": _manifest(rec, "Deployment", "agentswarm-coordinator")["spec"]["template"],
        "agents": _manifest(rec, "StatefulSet", "agentswarm-agent")["spec"]["template"],
    }


def test_kind_rebuilt_image_rolls_both_workloads() -> None:
    """A kind-loaded build keeps its name (agentswarm:dev): the pod templates must change with its digest,
    or Kubernetes rolls nothing and the pods keep running the old code; an unchanged build rolls nothing."""
    first = _pod_templates("sha256:" + "1" * 64)
    assert _pod_templates("sha256:" + "1" * 64) == first
    rebuilt = _pod_templates("sha256:" + "2" * 64)
    for workload in ("coordinator", "agents"):
        assert rebuilt[workload] != first[workload], workload
        assert rebuilt[workload]["spec"]["containers"][0]["image"] == "agentswarm:dev"


@pytest.mark.parametrize(
    ("present", "missing"), [(("docker",), "kind"), (("kind",), "docker"), ((), "kind and docker")]
)
def test_kind_preflight_one_clear_error(present: tuple[str, ...], missing: str) -> None:
    recording = Recording()
    with only_tools_on_path(*present), pytest.raises(pulumi.RunError) as info:
        run_program(stack_config("local"), "local", recording)
    message = str(info.value)
    assert message.startswith(f"the kind platform needs {missing} on PATH, not found: ")
    assert "\n" not in message
    for tool in missing.split(" and "):
        assert f"install {tool}" in message or (tool == "docker" and "install Docker" in message)
    assert recording.resources == []


def test_preflight_function_without_tools() -> None:
    with pytest.raises(PreflightError, match="needs kind on PATH"):
        preflight(which=lambda tool: None if tool == "kind" else f"/usr/bin/{tool}")
    preflight(which=lambda tool: f"/usr/bin/{tool}")


# ---------------------------------------------------------------- same workload on every platform


def _workload(rec: Recording) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in rec.manifests()}


def test_workload_identical_between_platforms_apart_from_exposure() -> None:
    gke_cfg = agentswarm_config(stack_config("gke"))
    workload = {k: gke_cfg[k] for k in ("coordinator", "agents", "redis")}
    image = {"repository": "registry.example.com/agentswarm", "tag": "0.1.0"}
    gke = _run(
        {
            **workload,
            "platform": "gke",
            "exposure": "ingress",
            "image": image,
            "gcp": {**gke_cfg["gcp"], "workload_identity": False},
            "cluster": gke_cfg["cluster"],
        }
    )
    kind = _run(
        {**workload, "platform": "kind", "exposure": "nodeport", "image": image, "cluster": {"create": True}}
    )
    a, b = _workload(gke), _workload(kind)
    only_gke = set(a) - set(b)
    only_kind = set(b) - set(a)
    changed = {key for key in set(a) & set(b) if a[key] != b[key]}
    assert only_gke == {
        ("BackendConfig", "agentswarm-coordinator"),
        ("Ingress", "agentswarm-coordinator"),
        ("ManagedCertificate", "agentswarm-coordinator"),
        ("FrontendConfig", "agentswarm-coordinator"),
    }
    assert only_kind == set()
    assert changed == {("Service", "agentswarm-coordinator")}
    svc_gke, svc_kind = a[("Service", "agentswarm-coordinator")], b[("Service", "agentswarm-coordinator")]
    assert set(svc_gke["metadata"]["annotations"]) == {
        "cloud.google.com/neg",
        "cloud.google.com/backend-config",
    }
    assert svc_gke["spec"]["type"] == "ClusterIP" and svc_kind["spec"]["type"] == "NodePort"
    assert len(a) - 4 == len(b) >= 19


def test_workload_identity_only_adds_the_annotation() -> None:
    cfg = agentswarm_config(stack_config("gke"))
    cfg["image"] = {"tag": "0.1.0"}
    with_wi = _workload(_run(cfg))
    cfg["gcp"] = {**cfg["gcp"], "workload_identity": False}
    without = _workload(_run(cfg))
    changed = {k for k in with_wi if with_wi[k] != without.get(k)}
    assert changed == {("ServiceAccount", "agentswarm-agent")}
    assert set(with_wi) == set(without)


# ---------------------------------------------------------------- per-stack resource graphs

_C = "agentswarm:index:"
STACK_COMPONENTS = {
    "local": {
        "KindCluster",
        "AgentImage",
        "AgentSwarm",
        "SwarmNamespace",
        "Redis",
        "Coordinator",
        "AgentPool",
    },
    "gke": {
        "GkeCluster",
        "AgentImage",
        "AgentIdentity",
        "CoordinatorEdge",
        "AgentSwarm",
        "SwarmNamespace",
        "Redis",
        "Coordinator",
        "AgentPool",
    },
    "gke-prod": {
        "GkeCluster",
        "AgentIdentity",
        "Memorystore",
        "CoordinatorEdge",
        "AgentSwarm",
        "SwarmNamespace",
        "Coordinator",
        "AgentPool",
        "SwarmMonitoring",
        "AgentAutoscaler",
    },
    "render": {"AgentSwarm", "SwarmNamespace", "Redis", "Coordinator", "AgentPool"},
    "render-nats": {"AgentSwarm", "SwarmNamespace", "Nats", "Coordinator", "AgentPool", "AgentAutoscaler"},
}
PARENTS = {
    # resource type -> component type that must be its parent (whenever the type occurs)
    "gcp:compute/network:Network": "GkeCluster",
    "gcp:compute/subnetwork:Subnetwork": "GkeCluster",
    "gcp:compute/routerNat:RouterNat": "GkeCluster",
    CLUSTER: "GkeCluster",
    NODE_POOL: "GkeCluster",
    "gcp:redis/instance:Instance": "Memorystore",
    "gcp:compute/globalAddress:GlobalAddress": "Memorystore|CoordinatorEdge",
    "gcp:certificatemanager/certificate:Certificate": "CoordinatorEdge",
    "gcp:certificatemanager/certificateMap:CertificateMap": "CoordinatorEdge",
    "gcp:certificatemanager/certificateMapEntry:CertificateMapEntry": "CoordinatorEdge",
    "gcp:compute/securityPolicy:SecurityPolicy": "CoordinatorEdge",
    "gcp:serviceaccount/account:Account": "AgentIdentity",
    "gcp:serviceaccount/iAMMember:IAMMember": "AgentIdentity",
    "gcp:artifactregistry/repository:Repository": "AgentImage",
    "docker-build:index:Image": "AgentImage",
    "command:local:Command": "KindCluster",
    "kubernetes:apps/v1:StatefulSet": "AgentPool|Redis|Nats",
    "kubernetes:apps/v1:Deployment": "Coordinator",
    "kubernetes:core/v1:Namespace": "SwarmNamespace",
}
TOP_LEVEL = {
    "AgentSwarm",
    "KindCluster",
    "GkeCluster",
    "AgentImage",
    "AgentIdentity",
    "Memorystore",
    "CoordinatorEdge",
}


@pytest.mark.parametrize("stack", sorted(STACK_COMPONENTS))
def test_stack_resource_graph(stack: str, stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings[stack]
    components = {r.type.removeprefix(_C) for r in rec.resources if r.type.startswith(_C)}
    assert components == STACK_COMPONENTS[stack]
    for res in rec.resources:
        parent = res.parent_type_chain[-2] if len(res.parent_type_chain) > 1 else ""
        if res.type.startswith(_C):
            kind = res.type.removeprefix(_C)
            expected = "pulumi:pulumi:Stack" if kind in TOP_LEVEL else _C + "AgentSwarm"
            assert parent == expected, res.name
        elif res.type in PARENTS:
            assert parent.removeprefix(_C) in PARENTS[res.type].split("|"), (res.name, parent)
        elif res.type != "pulumi:providers:kubernetes":
            assert parent.startswith(_C), (res.name, parent)
    # names: every child is named after its parent component
    names = {r.name for r in rec.resources if r.type.startswith(_C)}
    for res in rec.resources:
        if res.type.startswith(_C) and res.type.removeprefix(_C) in TOP_LEVEL:
            continue
        assert any(res.name.startswith(n + "-") for n in names), res.name
