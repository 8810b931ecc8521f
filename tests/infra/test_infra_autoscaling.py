"""AgentAutoscaler under mocks: the KEDA objects it creates, validated against the strict KEDA schemas."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate
import pulumi
import pytest
from mockharness import Recording, is_secret, run_mocked

from components.autoscaling import (
    KEDA_CHART_REPO,
    KEDA_CHART_VERSION,
    AgentAutoscaler,
    ScalingRule,
    keda_ingress_rule,
    redis_address,
)
from components.nats import NATS_MONITORING_PORT, Nats, NatsConnection, nats_conf, nats_env

RULE = ScalingRule(
    min_replicas=0,
    max_replicas=40,
    target_per_agent=2,
    activation=0,
    polling_interval_seconds=15,
    cooldown_seconds=300,
    scale_down_stabilization_seconds=300,
)
SCHEMAS = {
    "ScaledObject": "scaledobject.keda.sh_v1alpha1.json",
    "TriggerAuthentication": "triggerauthentication.keda.sh_v1alpha1.json",
}


def keda_schema(kind: str) -> dict[str, Any]:
    text = resources.files("components").joinpath("schemas", SCHEMAS[kind]).read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate(manifest: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(keda_schema(manifest["kind"])).validate(manifest)


def autoscaler(**args: Any) -> Recording:
    base: Any = {
        "namespace": "swarm",
        "instance": "agentswarm",
        "statefulset_name": "agentswarm-agent",
        "rule": RULE,
        "queue_namespace": "agentswarm",
        **args,
    }
    return run_mocked(lambda: AgentAutoscaler("autoscaler", base))


REDIS = {"url": "redis://agentswarm-redis.swarm.svc.cluster.local:6379/0", "password_secret": "redis-auth"}


def test_redis_trigger_reads_the_stream_length_with_the_password_from_the_secret() -> None:
    rec = autoscaler(redis={**REDIS, "password_key": "password"})
    (scaled,) = rec.kinds("ScaledObject")
    (auth,) = rec.kinds("TriggerAuthentication")
    validate(scaled)
    validate(auth)
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "agentswarm-agent",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 40)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (15, 300)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 300}}
    # One trigger per priority class's stream; KEDA scales on their sum, not on the largest one.
    assert spec["advanced"]["scalingModifiers"] == {
        "formula": "high + normal + low",
        "target": "2",
        "activationTarget": "0",
        "metricType": "AverageValue",
    }
    triggers = spec["triggers"]
    assert [t["name"] for t in triggers] == ["high", "normal", "low"]
    assert [t["metadata"]["stream"] for t in triggers] == [
        "agentswarm:tasks:high",
        "agentswarm:tasks",
        "agentswarm:tasks:low",
    ]
    for trigger in triggers:
        assert trigger["type"] == "redis-streams"
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        # streamLength mode: KEDA uses XLEN only when no consumerGroup is named (see docs/autoscaling.md).
        assert trigger["metadata"] == {
            "address": "agentswarm-redis.swarm.svc.cluster.local:6379",
            "databaseIndex": "0",
            "stream": trigger["metadata"]["stream"],
            "streamLength": "2",
            "activationLagCount": "0",
            "enableTLS": "false",
        }
        assert "consumerGroup" not in trigger["metadata"] and "lagCount" not in trigger["metadata"]
    assert auth["spec"] == {
        "secretTargetRef": [{"parameter": "password", "name": "redis-auth", "key": "password"}]
    }
    assert not rec.of_type("kubernetes:helm.sh/v4:Chart")  # KEDA is expected on the cluster by default


def test_memorystore_tls_and_ca_from_the_secret() -> None:
    rec = autoscaler(
        redis={
            "url": "rediss://10.30.0.3:6378/0",
            "password_secret": "memorystore",
            "password_key": "auth",
            "ca_secret": "memorystore-ca",
            "ca_key": "ca.crt",
        }
    )
    (scaled,) = rec.kinds("ScaledObject")
    (auth,) = rec.kinds("TriggerAuthentication")
    metadata = scaled["spec"]["triggers"][0]["metadata"]
    assert (metadata["address"], metadata["enableTLS"]) == ("10.30.0.3:6378", "true")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "memorystore", "key": "auth"},
        {"parameter": "ca", "name": "memorystore-ca", "key": "ca.crt"},
    ]


def test_nats_trigger_reads_the_agents_consumer_from_the_monitoring_endpoint() -> None:
    rec = autoscaler(
        nats_monitoring_endpoint="agentswarm-nats.swarm.svc.cluster.local:8222", queue_namespace="prod-a"
    )
    (scaled,) = rec.kinds("ScaledObject")
    validate(scaled)
    assert rec.kinds("TriggerAuthentication") == []
    assert scaled["spec"]["advanced"]["scalingModifiers"]["formula"] == "high + normal + low"
    assert scaled["spec"]["triggers"] == [
        {
            "type": "nats-jetstream",
            "name": cls,
            "metadata": {
                "natsServerMonitoringEndpoint": "agentswarm-nats.swarm.svc.cluster.local:8222",
                "account": "$G",
                "stream": "PROD_A_TASKS",
                "consumer": consumer,
                "lagThreshold": "2",
                "activationLagThreshold": "0",
            },
        }
        for cls, consumer in (
            ("high", "prod-a-agents-high"),
            ("normal", "prod-a-agents"),
            ("low", "prod-a-agents-low"),
        )
    ]


def test_install_keda_pins_the_chart() -> None:
    rec = autoscaler(redis={**REDIS, "password_key": "password"}, install_keda=True)
    (chart,) = rec.of_type("kubernetes:helm.sh/v4:Chart")
    assert chart.inputs["chart"] == "keda"
    assert chart.inputs["version"] == KEDA_CHART_VERSION
    assert chart.inputs["repositoryOpts"]["repo"] == KEDA_CHART_REPO
    assert chart.inputs["namespace"] == "keda"
    (namespace,) = rec.kinds("Namespace")
    assert namespace["metadata"]["name"] == "keda"


def test_exactly_one_broker() -> None:
    with pytest.raises(Exception, match="exactly one of"):
        autoscaler()


def test_schemas_are_strict() -> None:
    rec = autoscaler(redis={**REDIS, "password_key": "password"})
    scaled = rec.kinds("ScaledObject")[0]
    for path, bad_key in ((("spec",), "minReplicas"), (("spec", "advanced"), "horizontalPodAutoscaler")):
        broken = copy.deepcopy(scaled)
        node = broken
        for part in path:
            node = node[part]
        node[bad_key] = 1
        with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
            validate(broken)
    negative = copy.deepcopy(scaled)
    negative["spec"]["triggers"] = []
    with pytest.raises(jsonschema.ValidationError):
        validate(negative)  # KEDA requires at least one trigger


def test_keda_ingress_rule_and_redis_address() -> None:
    rule = keda_ingress_rule(8222)
    assert rule["ports"] == [{"protocol": "TCP", "port": 8222}]
    peer = rule["from"][0]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}
    assert peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}}
    assert redis_address("redis://h:1234/3") == ("h:1234", 3, False)
    assert redis_address("rediss://h") == ("h:6379", 0, True)
    with pytest.raises(ValueError, match="not a redis"):
        redis_address("nats://h:4222")


# -- NATS in the cluster ------------------------------------------------------------------------------------
def nats(**args: Any) -> Recording:
    base: Any = {"namespace": "swarm", "client_selectors": [{"app": "agent"}], **args}
    return run_mocked(lambda: Nats("nats", base))


def test_nats_statefulset_jetstream_pvc_auth_and_restricted_security() -> None:
    rec = nats(monitoring_ingress=[keda_ingress_rule(NATS_MONITORING_PORT)])
    for manifest in rec.manifests():
        kubernetes_validate.validate(manifest, "1.33.0", strict=True)
    (sts,) = rec.kinds("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert container["image"] == "docker.io/library/nats:2.10.14-alpine3.19"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"]["port"] == "monitoring"
    # The password reaches the server from the Secret, never as a literal anywhere.
    (password_env,) = [e for e in container["env"] if e["name"] == "NATS_PASSWORD"]
    assert password_env["valueFrom"]["secretKeyRef"]["key"] == "password"
    (config,) = rec.kinds("ConfigMap")
    conf = config["data"]["nats.conf"]
    assert "password: $NATS_PASSWORD" in conf and "mock-secret" not in conf
    assert "http_port: 8222" in conf and 'store_dir: "/data"' in conf
    (secret,) = rec.of_type("kubernetes:core/v1:Secret")
    assert is_secret(secret.inputs["stringData"])  # marked secret on the wire
    (generated,) = rec.of_type("random:index/randomPassword:RandomPassword")
    assert generated.inputs["special"] is False  # URL-safe: it is expanded into the clients' nats:// URL
    for res in rec.resources:
        if res.type != "kubernetes:core/v1:Secret":
            assert f"mock-secret-{generated.name}" not in json.dumps(res.inputs), res.name
    (policy,) = rec.kinds("NetworkPolicy")
    client_rule, keda_rule = policy["spec"]["ingress"]
    assert client_rule["ports"] == [{"protocol": "TCP", "port": 4222}]
    assert client_rule["from"] == [{"podSelector": {"matchLabels": {"app": "agent"}}}]
    assert keda_rule == keda_ingress_rule(8222)


def test_nats_client_env_expands_the_password_into_the_url() -> None:
    conn = NatsConnection(
        host="agentswarm-nats.swarm.svc.cluster.local",
        password_secret="auth",
        password_key="password",
        pod_selector={},
    )

    def body() -> Any:
        env = nats_env(conn)
        return pulumi.Output.all(
            [e["name"] for e in env], *[pulumi.Output.from_input(e["value"]) for e in env if "value" in e]
        )

    names, broker, url = run_mocked(body).outputs["result"]
    assert broker == "nats"
    assert url == "nats://agentswarm:$(NATS_PASSWORD)@agentswarm-nats.swarm.svc.cluster.local:4222"
    assert names.index("NATS_PASSWORD") < names.index("AGENTSWARM_NATS_URL")  # defined before it is used


async def test_nats_conf_runs_a_real_server_that_demands_the_password(tmp_path: Any) -> None:
    """The generated nats.conf on a real nats-server: JetStream works for the right password only."""
    from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
    from agentswarm.servers import NatsServer, free_port, nats_server_binary

    port, monitoring = free_port(), free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(nats_conf(str(tmp_path / "js"), port, monitoring))

    class ConfiguredNats(NatsServer):
        def command(self) -> list[str]:
            return [nats_server_binary(), "--config", str(conf)]

    os.environ["NATS_PASSWORD"] = "generatedPassword123"
    os.environ["POD_NAME"] = "agentswarm-nats-0"
    try:
        with ConfiguredNats(tmp_path / "srv", port) as server:
            assert server.port == port
            broker = NatsJetStreamBroker(f"nats://agentswarm:generatedPassword123@127.0.0.1:{port}")
            await broker.connect()
            await broker.enqueue({"hello": 1}, "t1")
            assert await broker.backlog() == 1
            await broker.close()
            intruder = NatsJetStreamBroker(f"nats://agentswarm:wrong@127.0.0.1:{port}")
            with pytest.raises(Exception):  # noqa: B017 - nats-py raises its own error types, then times out
                await asyncio.wait_for(intruder.connect(), timeout=3)
            await intruder.close()
    finally:
        os.environ.pop("NATS_PASSWORD", None)
        os.environ.pop("POD_NAME", None)


# -- wired into the swarm -----------------------------------------------------------------------------------
GKE: dict[str, Any] = {
    "platform": "gke",
    "cluster": {"create": False},
    "agents": {"dedicated_nodes": False, "handler": "my.pkg:run"},
    "coordinator": {"tls": {"mode": "none"}},
}


def swarm_with(agents: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[Recording, list[Any]]:
    """Run AgentSwarm; also return the ResourceOptions of every StatefulSet (mocks do not record them)."""
    import pulumi_kubernetes as k8s

    from components import AgentSwarm, parse_config

    seen: list[Any] = []
    original = k8s.apps.v1.StatefulSet.__init__

    def spy(self: Any, resource_name: str, *args: Any, **kwargs: Any) -> None:
        seen.append((resource_name, kwargs.get("opts")))
        original(self, resource_name, *args, **kwargs)

    monkeypatch.setattr(k8s.apps.v1.StatefulSet, "__init__", spy)
    cfg = parse_config({**GKE, "agents": {**GKE["agents"], **agents}})
    rec = run_mocked(lambda: AgentSwarm("swarm", {"config": cfg}))
    return rec, seen


def test_swarm_autoscaling_hands_replicas_to_keda(monkeypatch: pytest.MonkeyPatch) -> None:
    auto = {"enabled": True, "min_replicas": 0, "max_replicas": 30, "target_tasks_per_agent": 3}
    rec, opts = swarm_with({"replicas": 50, "autoscaling": auto}, monkeypatch)
    agents = next(m for m in rec.kinds("StatefulSet") if m["metadata"]["name"] == "agentswarm-agent")
    assert agents["spec"]["replicas"] == 0  # KEDA starts agents when work arrives
    (agent_opts,) = [o for n, o in opts if n == "swarm-agents-statefulset"]
    assert agent_opts.ignore_changes == ["spec.replicas"]  # the next `pulumi up` does not fight KEDA
    env = {e["name"]: e.get("value") for e in agents["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AGENTSWARM_CHECKPOINT_BACKEND"] == "broker"  # scaled-in tasks resume on other agents
    (scaled,) = rec.kinds("ScaledObject")
    validate(scaled)
    assert scaled["metadata"]["namespace"] == "agentswarm"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "agentswarm-agent"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 30)
    metadata = scaled["spec"]["triggers"][1]["metadata"]
    assert metadata["address"] == "agentswarm-redis.agentswarm.svc.cluster.local:6379"
    assert (metadata["stream"], metadata["streamLength"]) == ("agentswarm:tasks", "3")
    assert scaled["spec"]["advanced"]["scalingModifiers"]["target"] == "3"
    (auth,) = rec.kinds("TriggerAuthentication")
    (redis_secret,) = [m for m in rec.kinds("Secret") if m["metadata"]["name"] == "agentswarm-redis-auth"]
    assert auth["spec"]["secretTargetRef"][0]["name"] == redis_secret["metadata"]["name"]
    redis_policy = next(m for m in rec.kinds("NetworkPolicy") if m["metadata"]["name"] == "agentswarm-redis")
    assert keda_ingress_rule(6379) in redis_policy["spec"]["ingress"]


def test_swarm_without_autoscaling_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    rec, opts = swarm_with({"replicas": 7}, monkeypatch)
    agents = next(m for m in rec.kinds("StatefulSet") if m["metadata"]["name"] == "agentswarm-agent")
    assert agents["spec"]["replicas"] == 7
    (agent_opts,) = [o for n, o in opts if n == "swarm-agents-statefulset"]
    assert not agent_opts.ignore_changes
    env = {e["name"] for e in agents["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "AGENTSWARM_CHECKPOINT_BACKEND" not in env
    assert rec.kinds("ScaledObject") == [] and rec.kinds("TriggerAuthentication") == []
    redis_policy = next(m for m in rec.kinds("NetworkPolicy") if m["metadata"]["name"] == "agentswarm-redis")
    assert keda_ingress_rule(6379) not in redis_policy["spec"]["ingress"]


def test_prod_stack_scales_on_memorystore_with_tls(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke-prod"]
    (scaled,) = rec.kinds("ScaledObject")
    (auth,) = rec.kinds("TriggerAuthentication")
    metadata = scaled["spec"]["triggers"][0]["metadata"]
    assert metadata["enableTLS"] == "true" and metadata["address"].endswith(":6378")
    assert [r["parameter"] for r in auth["spec"]["secretTargetRef"]] == ["password", "ca"]
    assert scaled["spec"]["minReplicaCount"] == 0
    assert not rec.of_type("kubernetes:helm.sh/v4:Chart")


def test_render_nats_stack_wires_nats_to_both_roles_and_keda(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["render-nats"]
    names = {m["metadata"]["name"] for m in rec.kinds("StatefulSet")}
    assert names == {"agentswarm-nats", "agentswarm-agent"}  # no Redis at all
    (secret,) = [m for m in rec.kinds("Secret") if m["metadata"]["name"] == "agentswarm-nats-auth"]
    for kind, name in (("Deployment", "agentswarm-coordinator"), ("StatefulSet", "agentswarm-agent")):
        workload = next(m for m in rec.kinds(kind) if m["metadata"]["name"] == name)
        env = {e["name"]: e for e in workload["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["AGENTSWARM_BROKER"]["value"] == "nats"
        assert env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
        assert env["AGENTSWARM_NATS_URL"]["value"] == (
            "nats://agentswarm:$(NATS_PASSWORD)@agentswarm-nats.agentswarm.svc.cluster.local:4222"
        )
        assert "AGENTSWARM_REDIS_URL" not in env
        policy = next(m for m in rec.kinds("NetworkPolicy") if m["metadata"]["name"] == name)
        nats_rules = [
            r for r in policy["spec"]["egress"] if r["ports"] == [{"protocol": "TCP", "port": 4222}]
        ]
        assert (
            nats_rules
            and nats_rules[0]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "nats"
        )
    (scaled,) = rec.kinds("ScaledObject")
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["name"] == "normal"]
    assert trigger["type"] == "nats-jetstream"
    assert (
        trigger["metadata"]["natsServerMonitoringEndpoint"]
        == "agentswarm-nats.agentswarm.svc.cluster.local:8222"
    )
    assert (trigger["metadata"]["stream"], trigger["metadata"]["consumer"]) == (
        "AGENTSWARM_TASKS",
        "agentswarm-agents",
    )
    assert rec.kinds("TriggerAuthentication") == []
    nats_policy = next(m for m in rec.kinds("NetworkPolicy") if m["metadata"]["name"] == "agentswarm-nats")
    assert keda_ingress_rule(8222) in nats_policy["spec"]["ingress"]
