"""The workload layer under mocks: graph, GKE load-balancer facts, network isolation, secrets, scale."""

from __future__ import annotations

import json
import os
from typing import Any

import pulumi
import pytest
from mockharness import Recording, is_secret, run_mocked, run_program, stack_config

from components import AgentSwarm, parse_config
from components.agents import AgentPool
from components.coordinator import READY_PATH, Coordinator
from components.namespace import SwarmNamespace
from components.redis import Redis

GKE_TLS = {"hostname": "swarm.example.com", "tls": {"static_ip_name": "swarm-ip"}}
"""A GKE coordinator with its default TLS (managed certificate) on an address reserved elsewhere."""
GKE_GATEWAY_TLS = {
    "hostname": "swarm.example.com",
    "tls": {"mode": "pre-shared", "pre_shared_certificates": ["swarm-cert"], "static_ip_name": "swarm-ip"},
}
"""A Gateway without the gcp section: certificates and address created elsewhere."""
GKE_BASE = {
    "platform": "gke",
    "cluster": {"create": False},
    "agents": {"dedicated_nodes": False, "handler": "my.pkg:run"},
    "coordinator": GKE_TLS,
}


def swarm(config: dict[str, Any], **args: Any) -> Recording:
    cfg = parse_config(config)
    swarm_args: Any = {"config": cfg, **args}
    return run_mocked(lambda: AgentSwarm("swarm", swarm_args))


def cfg_with(**overrides: Any) -> dict[str, Any]:
    """GKE_BASE with sections merged one level deep."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in GKE_BASE.items()}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


def manifest(rec: Recording, kind: str, name: str) -> dict[str, Any]:
    found = [m for m in rec.kinds(kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {[m['metadata']['name'] for m in rec.kinds(kind)]}"
    return found[0]


# ---------------------------------------------------------------- resource graph


def test_swarm_graph_types_names_and_parents() -> None:
    rec = swarm(cfg_with())
    comp = "agentswarm:index:"
    expected_children = {
        "swarm-namespace": (comp + "SwarmNamespace", comp + "AgentSwarm"),
        "swarm-redis": (comp + "Redis", comp + "AgentSwarm"),
        "swarm-coordinator": (comp + "Coordinator", comp + "AgentSwarm"),
        "swarm-agents": (comp + "AgentPool", comp + "AgentSwarm"),
        "swarm-namespace-namespace": ("kubernetes:core/v1:Namespace", comp + "SwarmNamespace"),
        "swarm-namespace-default-deny": (
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            comp + "SwarmNamespace",
        ),
        "swarm-namespace-allow-dns": (
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            comp + "SwarmNamespace",
        ),
        "swarm-redis-password": ("random:index/randomPassword:RandomPassword", comp + "Redis"),
        "swarm-redis-secret": ("kubernetes:core/v1:Secret", comp + "Redis"),
        "swarm-redis-statefulset": ("kubernetes:apps/v1:StatefulSet", comp + "Redis"),
        "swarm-redis-service": ("kubernetes:core/v1:Service", comp + "Redis"),
        "swarm-redis-network-policy": ("kubernetes:networking.k8s.io/v1:NetworkPolicy", comp + "Redis"),
        "swarm-coordinator-deployment": ("kubernetes:apps/v1:Deployment", comp + "Coordinator"),
        "swarm-coordinator-service": ("kubernetes:core/v1:Service", comp + "Coordinator"),
        "swarm-coordinator-api-token": ("random:index/randomPassword:RandomPassword", comp + "Coordinator"),
        "swarm-coordinator-backend-config": (
            "kubernetes:cloud.google.com/v1:BackendConfig",
            comp + "Coordinator",
        ),
        "swarm-coordinator-ingress": ("kubernetes:networking.k8s.io/v1:Ingress", comp + "Coordinator"),
        "swarm-agents-statefulset": ("kubernetes:apps/v1:StatefulSet", comp + "AgentPool"),
        "swarm-agents-service": ("kubernetes:core/v1:Service", comp + "AgentPool"),
        "swarm-agents-pdb": ("kubernetes:policy/v1:PodDisruptionBudget", comp + "AgentPool"),
        "swarm-agents-service-account": ("kubernetes:core/v1:ServiceAccount", comp + "AgentPool"),
        "swarm-agents-network-policy": ("kubernetes:networking.k8s.io/v1:NetworkPolicy", comp + "AgentPool"),
    }
    for name, (typ, parent) in expected_children.items():
        res = rec.by_name(name)
        assert res.type == typ, name
        assert res.parent_type_chain[-2] == parent, (name, res.urn)
    root = rec.by_name("swarm")
    assert root.type == comp + "AgentSwarm"
    assert root.parent_type_chain == ["pulumi:pulumi:Stack", comp + "AgentSwarm"]
    # every resource but the root has a component parent (the URN holds the parent's type)
    for res in rec.resources:
        if res.name != "swarm":
            assert res.parent_type_chain[-2].startswith(comp), res.name
            assert res.name.startswith("swarm-"), res.name


def test_components_usable_alone() -> None:
    cfg = parse_config(cfg_with())

    def body() -> None:
        ns = SwarmNamespace("ns", {"namespace": "team-a", "instance": "a"})
        redis = Redis("r", {"namespace": ns.namespace, "instance": "a", "config": cfg.redis})
        coord = Coordinator(
            "c",
            {
                "namespace": "team-a",
                "instance": "a",
                "config": cfg.coordinator,
                "exposure": "ingress",
                "image": cfg.image.reference,
                "redis": redis.connection,
            },
        )
        AgentPool(
            "p",
            {
                "namespace": "team-a",
                "instance": "a",
                "config": cfg.agents,
                "image": cfg.image.reference,
                "redis": redis.connection,
                "coordinator_selector": coord.selector,
                "coordinator_port": 8080,
            },
        )

    rec = run_mocked(body)
    # the engine sees registrations in the order their inputs resolve, not program order: compare as a set
    assert sorted(r.type for r in rec.resources if r.type.startswith("agentswarm:")) == [
        "agentswarm:index:AgentPool",
        "agentswarm:index:Coordinator",
        "agentswarm:index:Redis",
        "agentswarm:index:SwarmNamespace",
    ]
    assert manifest(rec, "Namespace", "team-a")["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"
    ] == ("restricted")


# ---------------------------------------------------------------- namespace


def test_namespace_restricted_and_default_deny() -> None:
    rec = swarm(cfg_with())
    ns = manifest(rec, "Namespace", "agentswarm")
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    for key in ("name", "instance", "component", "part-of", "managed-by"):
        assert f"app.kubernetes.io/{key}" in labels
    deny = manifest(rec, "NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = manifest(rec, "NetworkPolicy", "allow-dns")["spec"]
    assert dns["policyTypes"] == ["Egress"]
    assert {p["port"] for p in dns["egress"][0]["ports"]} == {53}
    assert dns["egress"][0]["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


# ---------------------------------------------------------------- redis


def test_redis_statefulset_aof_pvc_probes_password() -> None:
    rec = swarm(cfg_with())
    sts = manifest(rec, "StatefulSet", "agentswarm-redis")["spec"]
    container = sts["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/library/redis:7.4.2-bookworm"
    conf = manifest(rec, "ConfigMap", "agentswarm-redis-config")["data"]["redis.conf"]
    assert "appendonly yes" in conf.splitlines()
    assert "appendfsync everysec" in conf.splitlines()
    assert "requirepass" not in conf  # the password is only in a Secret
    assert sts["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert manifest(rec, "Service", sts["serviceName"])["spec"]["clusterIP"] == "None"  # governing service
    client_svc = manifest(rec, "Service", "agentswarm-redis")["spec"]
    assert "clusterIP" not in client_svc and client_svc["selector"] == sts["selector"]["matchLabels"]
    assert {"readinessProbe", "livenessProbe"} <= set(container)
    assert "env" not in container  # the probe reads the password from a mounted file
    pod = sts["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] >= 10000 and pod["securityContext"]["runAsGroup"] >= 10000
    assert container["securityContext"]["runAsUser"] == pod["securityContext"]["runAsUser"]
    probe = container["readinessProbe"]["exec"]["command"][-1]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert f"$(cat {mounts['client-auth']}/password)" in probe
    assert volumes["client-auth"]["secret"]["secretName"] == "agentswarm-redis-auth"
    policy = manifest(rec, "NetworkPolicy", "agentswarm-redis")["spec"]
    peers = [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in policy["ingress"][0]["from"]
    ]
    assert sorted(peers) == ["agent", "coordinator"]
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert len(policy["ingress"]) == 1


def test_redis_aof_can_be_turned_off() -> None:
    rec = swarm(cfg_with(redis={"aof": False}))
    conf = manifest(rec, "ConfigMap", "agentswarm-redis-config")["data"]["redis.conf"]
    assert "appendonly no" in conf.splitlines()


def test_secrets_never_plain() -> None:
    rec = swarm(cfg_with())
    secrets = [r for r in rec.resources if r.type == "kubernetes:core/v1:Secret"]
    assert len(secrets) == 3
    for res in secrets:
        assert is_secret(res.inputs["stringData"]), res.name  # marked secret on the wire
    passwords = {f"mock-secret-{r.name}" for r in rec.of_type("random:index/randomPassword:RandomPassword")}
    assert len(passwords) == 2
    for res in rec.resources:
        if res.type == "kubernetes:core/v1:Secret":
            continue
        text = json.dumps(res.inputs)
        for pw in passwords:
            assert pw not in text, (res.name, pw)
    # and the random passwords are real: long, generated
    for generator in rec.of_type("random:index/randomPassword:RandomPassword"):
        assert generator.inputs["length"] >= 32


# ---------------------------------------------------------------- coordinator


def _coordinator(rec: Recording) -> dict[str, Any]:
    return manifest(rec, "Deployment", "agentswarm-coordinator")


def test_coordinator_container_contract() -> None:
    rec = swarm(cfg_with())
    pod = _coordinator(rec)["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"] == ["coordinator"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    env = {e["name"]: e for e in c["env"]}
    assert env["AGENTSWARM_PORT"]["value"] == "8080"
    assert all("valueFrom" not in e for e in c["env"])  # no secret as an env value
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    token_dir, _, token_key = env["AGENTSWARM_API_TOKEN_FILE"]["value"].rpartition("/")
    assert token_key == "token"
    assert volumes[mounts[token_dir]]["secret"]["secretName"] == "agentswarm-api-token"
    password_dir, _, password_key = env["AGENTSWARM_REDIS_PASSWORD_FILE"]["value"].rpartition("/")
    assert password_key == "password"
    assert volumes[mounts[password_dir]]["secret"]["secretName"] == "agentswarm-redis-auth"
    assert (
        env["AGENTSWARM_REDIS_URL"]["value"] == "redis://agentswarm-redis.agentswarm.svc.cluster.local:6379/0"
    )
    assert env["AGENTSWARM_SHUTDOWN_DRAIN_SECONDS"]["value"] == "60"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert pod["terminationGracePeriodSeconds"] == 90 > 5 + 60
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_ingress_backend_config_on_service() -> None:
    rec = swarm(cfg_with())
    svc = manifest(rec, "Service", "agentswarm-coordinator")
    annotations = svc["metadata"]["annotations"]
    ref = json.loads(annotations["cloud.google.com/backend-config"])
    assert json.loads(annotations["cloud.google.com/neg"]) == {"ingress": True}
    assert set(ref) <= {"default", "ports"}
    bc = manifest(rec, "BackendConfig", ref["default"])  # names an existing BackendConfig ...
    assert bc["metadata"]["namespace"] == svc["metadata"]["namespace"]  # ... in the same namespace
    assert bc["apiVersion"] == "cloud.google.com/v1"
    spec = bc["spec"]
    assert spec["timeoutSec"] == 3600
    assert isinstance(spec["timeoutSec"], int)
    assert spec["connectionDraining"] == {"drainingTimeoutSec": 60}
    hc = spec["healthCheck"]
    assert hc["type"] == "HTTP" and hc["port"] == 8080
    probe = _coordinator(rec)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert hc["requestPath"] == probe["path"] == READY_PATH
    # never on the pod template or the Ingress
    template_meta = _coordinator(rec)["spec"]["template"]["metadata"]
    assert "cloud.google.com/backend-config" not in json.dumps(template_meta)
    ingress = manifest(rec, "Ingress", "agentswarm-coordinator")
    assert "cloud.google.com/backend-config" not in json.dumps(ingress)
    assert ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "gce"
    assert ingress["spec"]["defaultBackend"]["service"] == {
        "name": svc["metadata"]["name"],
        "port": {"number": 8080},
    }
    assert not rec.kinds("Gateway") and not rec.kinds("GCPBackendPolicy")


def test_backend_timeout_from_config() -> None:
    rec = swarm(cfg_with(coordinator={"websocket_backend_timeout_seconds": 7200}))
    assert manifest(rec, "BackendConfig", "agentswarm-coordinator")["spec"]["timeoutSec"] == 7200


def test_gateway_variant() -> None:
    rec = swarm(cfg_with(exposure="gateway", coordinator=GKE_GATEWAY_TLS))
    svc = manifest(rec, "Service", "agentswarm-coordinator")
    assert "annotations" not in svc["metadata"]
    gw = manifest(rec, "Gateway", "agentswarm-gateway")
    assert gw["spec"]["gatewayClassName"] == "gke-l7-global-external-managed"
    route = manifest(rec, "HTTPRoute", "agentswarm-coordinator")
    assert route["spec"]["parentRefs"][0]["name"] == "agentswarm-gateway"
    assert route["spec"]["rules"][0]["backendRefs"][0] == {
        "group": "",
        "kind": "Service",
        "name": "agentswarm-coordinator",
        "port": 8080,
    }
    assert route["spec"]["hostnames"] == ["swarm.example.com"]
    policy = manifest(rec, "GCPBackendPolicy", "agentswarm-coordinator")["spec"]
    assert policy["targetRef"] == {"group": "", "kind": "Service", "name": svc["metadata"]["name"]}
    assert policy["default"]["timeoutSec"] == 3600
    assert policy["default"]["connectionDraining"] == {"drainingTimeoutSec": 60}
    hcp = manifest(rec, "HealthCheckPolicy", "agentswarm-coordinator")["spec"]
    assert hcp["targetRef"] == policy["targetRef"]
    http = hcp["default"]["config"]["httpHealthCheck"]
    probe = _coordinator(rec)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert hcp["default"]["config"]["type"] == "HTTP"
    assert http["requestPath"] == probe["path"] and http["port"] == 8080
    assert not rec.kinds("BackendConfig") and not rec.kinds("Ingress")


def test_kind_nodeport() -> None:
    rec = swarm({"platform": "kind", "cluster": {"create": False}})
    svc = manifest(rec, "Service", "agentswarm-coordinator")["spec"]
    assert svc["type"] == "NodePort"
    assert svc["ports"][0]["nodePort"] == 30080
    for kind in ("BackendConfig", "Ingress", "Gateway", "HTTPRoute", "GCPBackendPolicy", "HealthCheckPolicy"):
        assert not rec.kinds(kind), kind


# ---------------------------------------------------------------- agents


def test_agent_statefulset_contract() -> None:
    rec = swarm(cfg_with(agents={"replicas": 12, "storage_class": "premium-rwo", "handler": "my.mod:run"}))
    sts = manifest(rec, "StatefulSet", "agentswarm-agent")["spec"]
    assert sts["replicas"] == 12
    assert sts["podManagementPolicy"] == "Parallel"
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert sts["serviceName"] == "agentswarm-agent"
    claim = sts["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"] == "premium-rwo"
    pod = sts["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"] == ["agent"]
    env = {e["name"]: e for e in c["env"]}
    assert env["AGENTSWARM_AGENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["AGENTSWARM_CHECKPOINT_DIR"]["value"] == "/var/lib/agentswarm"
    assert env["AGENTSWARM_HANDLER"]["value"] == "my.mod:run"
    assert env["AGENTSWARM_REDIS_PASSWORD_FILE"]["value"].endswith("/password")
    assert all("secretKeyRef" not in str(e) for e in c["env"])
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == env["AGENTSWARM_CHECKPOINT_DIR"]["value"]
    assert mounts["tmp"] == "/tmp"
    assert c["livenessProbe"]["exec"]["command"] == ["agentswarm", "probe", "--max-age-seconds", "60"]
    assert c["readinessProbe"]["exec"]["command"] == [*c["livenessProbe"]["exec"]["command"], "--ready"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["serviceAccountName"] == "agentswarm-agent"
    assert manifest(rec, "Service", "agentswarm-agent")["spec"]["clusterIP"] == "None"
    assert manifest(rec, "PodDisruptionBudget", "agentswarm-agent")["spec"]["maxUnavailable"] == "10%"
    assert "nodeSelector" not in pod  # dedicated_nodes false


def test_agents_on_dedicated_nodes() -> None:
    rec = swarm(cfg_with(agents={"dedicated_nodes": True}))
    pod = manifest(rec, "StatefulSet", "agentswarm-agent")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"agentswarm.io/pool": "agents"}
    assert pod["tolerations"] == [
        {"key": "agentswarm.io/pool", "operator": "Equal", "value": "agents", "effect": "NoSchedule"}
    ]


def _policies_selecting(rec: Recording, component: str) -> list[dict[str, Any]]:
    out = []
    for pol in rec.kinds("NetworkPolicy"):
        sel = pol["spec"]["podSelector"]
        labels = sel.get("matchLabels", {})
        if not labels or labels.get("app.kubernetes.io/component") == component:
            out.append(pol)
    return out


def test_agent_network_policy_no_ingress_exact_egress() -> None:
    rec = swarm(cfg_with(agents={"egress_allow": [{"cidr": "203.0.113.0/24", "ports": [443, 8443]}]}))
    policies = _policies_selecting(rec, "agent")
    # agent pods are selected by policies that isolate ingress and none of them allows any ingress
    assert any("Ingress" in p["spec"]["policyTypes"] for p in policies)
    for pol in policies:
        assert not pol["spec"].get("ingress"), pol["metadata"]["name"]
    agent_pol = manifest(rec, "NetworkPolicy", "agentswarm-agent")["spec"]
    assert agent_pol["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in agent_pol
    peers = []
    # NetworkPolicies are additive: the allowed egress is the union over every policy selecting agent pods
    all_rules = [rule for pol in policies for rule in pol["spec"].get("egress", [])]
    assert len(all_rules) == len(agent_pol["egress"]) + 1  # + the namespace-wide DNS allow
    for rule in all_rules:
        for peer in rule["to"]:
            ports = sorted((p["protocol"], p["port"]) for p in rule["ports"])
            if "ipBlock" in peer:
                peers.append(("ip", peer["ipBlock"]["cidr"], ports))
            elif "namespaceSelector" in peer:
                peers.append(("dns", peer["podSelector"]["matchLabels"]["k8s-app"], ports))
            else:
                peers.append(
                    ("pod", peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"], ports)
                )
    assert sorted(set((kind, name, tuple(ports)) for kind, name, ports in peers)) == sorted(
        (kind, name, tuple(ports))
        for kind, name, ports in [
            ("pod", "redis", [("TCP", 6379)]),
            ("pod", "coordinator", [("TCP", 8080)]),
            ("dns", "kube-dns", [("TCP", 53), ("UDP", 53)]),
            ("ip", "203.0.113.0/24", [("TCP", 443), ("TCP", 8443)]),
        ]
    )
    # no rule lets agents reach other agents
    assert "agent" not in [p[1] for p in peers if p[0] == "pod"]


def test_default_egress_allow_is_public_https_only() -> None:
    rec = swarm(cfg_with())
    rules = manifest(rec, "NetworkPolicy", "agentswarm-agent")["spec"]["egress"]
    blocks = [r for r in rules if "ipBlock" in r["to"][0]]
    assert blocks == [
        {
            "to": [
                {
                    "ipBlock": {
                        "cidr": "0.0.0.0/0",
                        "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": 443}],
        }
    ]


# ---------------------------------------------------------------- scale and stacks


@pytest.mark.parametrize("exposure", ["ingress", "gateway"])
def test_scale_nothing_grows_per_agent(exposure: str) -> None:
    tls = GKE_GATEWAY_TLS if exposure == "gateway" else GKE_TLS
    small = swarm(cfg_with(exposure=exposure, coordinator=tls, agents={"replicas": 50}))
    large = swarm(cfg_with(exposure=exposure, coordinator=tls, agents={"replicas": 5000}))
    assert len(small.resources) == len(large.resources)
    assert sorted((r.type, r.name) for r in small.resources) == sorted(
        (r.type, r.name) for r in large.resources
    )
    assert manifest(large, "StatefulSet", "agentswarm-agent")["spec"]["replicas"] == 5000


def test_program_exports_and_provider_from_context() -> None:
    config = stack_config("render")
    rec = run_program(config, "render")
    provider = rec.one("pulumi:providers:kubernetes")
    # a relative directory is taken from the project root (Pulumi.yaml), not from the program's cwd (infra/)
    assert provider.inputs["renderYamlToDirectory"] == os.path.join(pulumi.get_root_directory(), "render")
    assert "kubeconfig" not in provider.inputs
    for res in rec.resources:
        if res.is_kubernetes:
            assert res.provider is not None and "pulumi:providers:kubernetes" in res.provider, res.name
    ctx = run_program(
        {
            "agentswarm:platform": "gke",
            "agentswarm:cluster": {"create": False},
            "agentswarm:kubernetes": {"context": "my-ctx"},
            "agentswarm:coordinator": {"tls": {"mode": "none"}},
            "agentswarm:agents": {"handler": "my.pkg:run"},
        }
    )
    p2 = ctx.one("pulumi:providers:kubernetes")
    assert p2.inputs["context"] == "my-ctx"
    assert "renderYamlToDirectory" not in p2.inputs
    ambient = run_program(
        {
            "agentswarm:platform": "gke",
            "agentswarm:cluster": {"create": False},
            "agentswarm:coordinator": {"tls": {"mode": "none"}},
            "agentswarm:agents": {"handler": "my.pkg:run"},
        }
    )
    assert "context" not in ambient.one("pulumi:providers:kubernetes").inputs


def test_render_stack_needs_only_kubernetes_and_random(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["render"]
    packages = {r.type.split(":")[0] for r in rec.resources} - {"agentswarm", "pulumi"}
    assert packages == {"kubernetes", "random"}
    assert {r.type for r in rec.resources if r.type.startswith("pulumi:providers:")} == {
        "pulumi:providers:kubernetes"
    }


def test_component_validates_plain_mapping() -> None:
    with pytest.raises(Exception, match=r"invalid stack config coordinator\.port"):
        run_mocked(lambda: AgentSwarm("s", {"config": {"platform": "kind", "coordinator": {"port": 1}}}))
    assert pulumi is not None


@pytest.mark.parametrize(
    ("doc", "heading"),
    [
        ("docs/infra.md", "## Using the components in another Pulumi program"),
        ("README.md", "## Using the components in your own Pulumi program"),
    ],
)
def test_readme_example_runs(doc: str, heading: str) -> None:
    """The 10-line import example of docs/infra.md and the README runs as written."""
    from mockharness import ROOT

    text = (ROOT / doc).read_text()
    block = text.split(heading, 1)[1].split("```python\n", 1)[1]
    code = block.split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 12
    rec = run_mocked(lambda: exec(compile(code, doc, "exec"), {}))
    sts = manifest(rec, "StatefulSet", "agentswarm-agent")
    assert sts["metadata"]["namespace"] == "research"
    assert sts["spec"]["replicas"] == 200
    assert rec.one("pulumi:providers:kubernetes").values["context"] == "my-gke-context"


def test_raw_mock_shapes_camel_case_and_floats() -> None:
    """What the engine receives, before any normalisation: custom resource specs are passed through verbatim
    (so they must already be camelCase), typed resources arrive camelCase too, and numbers are floats."""
    rec = swarm(cfg_with(exposure="gateway", coordinator=GKE_GATEWAY_TLS))
    gw_policy = rec.by_name("swarm-coordinator-backend-policy").inputs["spec"]
    assert gw_policy["default"]["timeoutSec"] == 3600.0
    assert isinstance(gw_policy["default"]["timeoutSec"], float)  # mock numbers are floats
    assert "timeout_sec" not in json.dumps(gw_policy)
    assert gw_policy["targetRef"] == {"group": "", "kind": "Service", "name": "agentswarm-coordinator"}
    hcp = rec.by_name("swarm-coordinator-health-check-policy").inputs["spec"]["default"]
    assert hcp["timeoutSec"] <= hcp["checkIntervalSec"]  # upstream CEL rule: timeoutSec <= checkIntervalSec
    rec = swarm(cfg_with())
    bc = rec.by_name("swarm-coordinator-backend-config").inputs
    assert bc["apiVersion"] == "cloud.google.com/v1" and bc["kind"] == "BackendConfig"
    assert set(bc["spec"]) == {"timeoutSec", "connectionDraining", "healthCheck"}
    assert set(bc["spec"]["healthCheck"]) == {
        "type",
        "requestPath",
        "port",
        "checkIntervalSec",
        "timeoutSec",
        "healthyThreshold",
        "unhealthyThreshold",
    }
    sts = rec.by_name("swarm-agents-statefulset").inputs["spec"]
    assert {"podManagementPolicy", "volumeClaimTemplates", "persistentVolumeClaimRetentionPolicy"} <= set(sts)
    assert sts["replicas"] == 50.0


def test_coordinator_address_output() -> None:
    """The Ingress load balancer's IP (from the Ingress status) is a flat output; other exposures give ''."""
    cfg = parse_config(cfg_with())
    rec = run_mocked(lambda: AgentSwarm("swarm", {"config": cfg}).coordinator_address)
    assert rec.outputs["result"] == "198.51.100.7"
    cfg = parse_config(cfg_with(exposure="gateway", coordinator=GKE_GATEWAY_TLS))
    rec = run_mocked(lambda: AgentSwarm("swarm", {"config": cfg}).coordinator_address)
    assert rec.outputs["result"] == ""
