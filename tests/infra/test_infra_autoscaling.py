"""AgentAutoscaler under mocks: the KEDA objects it creates, validated against the strict KEDA schemas."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import jsonschema
import pytest
from mockharness import Recording, run_mocked

from components.autoscaling import (
    KEDA_CHART_REPO,
    KEDA_CHART_VERSION,
    AgentAutoscaler,
    ScalingRule,
    keda_ingress_rule,
    redis_address,
)

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
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis-streams"
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    # streamLength mode: KEDA uses XLEN only when no consumerGroup is named (see docs/autoscaling.md).
    assert trigger["metadata"] == {
        "address": "agentswarm-redis.swarm.svc.cluster.local:6379",
        "databaseIndex": "0",
        "stream": "agentswarm:tasks",
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
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger == {
        "type": "nats-jetstream",
        "metadata": {
            "natsServerMonitoringEndpoint": "agentswarm-nats.swarm.svc.cluster.local:8222",
            "account": "$G",
            "stream": "PROD_A_TASKS",
            "consumer": "prod-a-agents",
            "lagThreshold": "2",
            "activationLagThreshold": "0",
        },
    }


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
