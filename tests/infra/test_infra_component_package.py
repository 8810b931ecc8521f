"""The component package's public args: generated from the config models, converted back into them.

The engine side (schema over gRPC, TypeScript SDK, tsc) is tests/engine/test_component_package.py.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
from mockharness import Recording, run_mocked
from pulumi.provider.experimental.analyzer import Analyzer

from components import AgentSwarm as PythonAgentSwarm
from components import ConfigError, parse_config, public_args, public_args_gen
from components.config import AgentsConfig, SwarmConfig
from components.provider import (
    COMPONENTS,
    PACKAGE,
    AgentAutoscaler,
    AgentPool,
    AgentSwarm,
    Coordinator,
    Nats,
    NatsConnection,
    Redis,
    SwarmMonitoring,
    SwarmNamespace,
    swarm_config,
)

PUBLIC = {
    "platform": public_args.SwarmPlatform.GKE,
    "broker": public_args.SwarmBroker.NATS,
    "coordinator": {"hostname": "swarm.example.com", "tls": {"static_ip_name": "swarm-ip"}},
    "agents": {
        "handler": "my.pkg:run",
        "replicas": 7,
        "dedicated_nodes": False,
        "pvc_retention_when_scaled": public_args.AgentsPvcRetentionWhenScaled.DELETE,
        "egress_allow": [{"cidr": "203.0.113.0/24", "ports": [443, 8443]}],
    },
    "image": {"repository": "registry.example/agentswarm", "pull_policy": public_args.ImagePullPolicy.ALWAYS},
}
PLAIN = {
    "platform": "gke",
    "cluster": {"create": False},
    "broker": "nats",
    "coordinator": {"hostname": "swarm.example.com", "tls": {"static_ip_name": "swarm-ip"}},
    "agents": {
        "handler": "my.pkg:run",
        "replicas": 7,
        "dedicated_nodes": False,
        "pvc_retention_when_scaled": "Delete",
        "egress_allow": [{"cidr": "203.0.113.0/24", "ports": [443, 8443]}],
    },
    "image": {"repository": "registry.example/agentswarm", "pull_policy": "Always"},
}


def test_committed_public_args_are_generated_from_the_models() -> None:
    committed = Path(public_args.__file__).read_text(encoding="utf-8")
    assert committed == public_args_gen.render(), "regenerate with `python -m components.public_args_gen`"


def test_generation_follows_a_model_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drift check can fail: a new config key changes the generated module."""
    fields = dict(AgentsConfig.model_fields)
    extra = AgentsConfig.model_fields["handler"]
    monkeypatch.setattr(AgentsConfig, "model_fields", {**fields, "new_key": extra})
    assert "    new_key: NotRequired[str]" in public_args_gen.render()


def test_public_shape_mirrors_every_workload_key() -> None:
    def keys(td: Any) -> set[str]:
        return set(typing.get_type_hints(td))

    assert keys(public_args.SwarmConfig) == set(SwarmConfig.model_fields) - {"kubernetes", "cluster", "gcp"}
    assert keys(public_args.AgentsConfig) == set(AgentsConfig.model_fields)
    assert public_args.SwarmConfig.__required_keys__ == {"platform"}
    assert [m.value for m in public_args.RedisMode] == ["in-cluster", "memorystore"]


def test_public_args_validate_like_a_stack_config() -> None:
    assert swarm_config(PUBLIC) == parse_config(PLAIN)
    with pytest.raises(ConfigError, match=r"agents\.replicas"):
        swarm_config({**PUBLIC, "agents": {"replicas": -1}})


def test_schema_analyzer_accepts_the_package() -> None:
    result = Analyzer(PACKAGE).analyze(COMPONENTS)
    assert set(result["component_definitions"]) == {
        "AgentSwarm",
        "SwarmNamespace",
        "Redis",
        "Nats",
        "Coordinator",
        "AgentPool",
        "AgentAutoscaler",
        "SwarmMonitoring",
    }
    swarm = result["component_definitions"]["AgentSwarm"]
    assert not swarm.inputs["config"].optional and swarm.inputs["image"].optional
    assert result["type_definitions"]["SwarmPlatform"].enum is not None


def _types(rec: Recording) -> list[tuple[str, str]]:
    return sorted((r.type, r.name) for r in rec.resources)


def test_provider_component_builds_what_the_python_component_builds() -> None:
    through_package = run_mocked(lambda: AgentSwarm("swarm", {"config": PUBLIC, "image": "img:1"}))  # type: ignore[typeddict-item]
    direct = run_mocked(lambda: PythonAgentSwarm("swarm", {"config": parse_config(PLAIN), "image": "img:1"}))
    assert _types(through_package) == _types(direct)
    sts = through_package.one("kubernetes:apps/v1:StatefulSet", "swarm-agents-statefulset").values
    assert sts["spec"]["replicas"] == 7
    ns = run_mocked(lambda: SwarmNamespace("ns", {"namespace": "team-a"}))
    assert ns.one("kubernetes:core/v1:Namespace").values["metadata"]["name"] == "team-a"


def test_schema_analyzer_describes_every_building_block() -> None:
    result = Analyzer(PACKAGE).analyze(COMPONENTS)
    blocks = {"Redis", "Nats", "Coordinator", "AgentPool", "AgentAutoscaler", "SwarmMonitoring"}
    assert blocks <= set(result["component_definitions"])
    for name in blocks:
        component = result["component_definitions"][name]
        assert component.description, name
        for key, prop in [*component.inputs.items(), *component.outputs.items()]:
            assert prop.description, f"{name}.{key} has no description"
    coordinator = result["component_definitions"]["Coordinator"]
    required = {k for k, v in coordinator.inputs.items() if not v.optional}
    assert required == {"namespace", "image", "exposure"}
    assert coordinator.inputs["redis"].ref == "#/types/agentswarm:index:RedisConnection"
    assert set(result["component_definitions"]["Redis"].outputs) == {"host", "port", "secretName", "url"}
    assert "coordinatorPort" in result["component_definitions"]["AgentPool"].inputs


def _resources(rec: Recording) -> list[tuple[str, str, str]]:
    """Every resource below the components: type, name and inputs (components differ only by their parent)."""
    return sorted(
        (r.type, r.name, repr(r.values)) for r in rec.resources if not r.type.startswith(f"{PACKAGE}:index:")
    )


SWARM = {
    "platform": "kind",
    "name": "team",
    "namespace": "team-a",
    "agents": {"handler": "my.pkg:run", "replicas": 3, "env": {"MODEL": "m"}},
    "coordinator": {"replicas": 2, "port": 9090},
    "token_budget": {"tokens_per_day": 1000},
    "api_token": "a-token-of-24-characters",
}


@pytest.mark.parametrize("autoscale", [False, True])
@pytest.mark.parametrize("broker", ["redis", "nats"])
def test_a_swarm_assembled_from_the_blocks_is_the_agent_swarm(broker: str, autoscale: bool) -> None:
    """Namespace + broker + Coordinator + AgentPool (+ AgentAutoscaler) from the package make exactly
    AgentSwarm's resources."""
    scaling: public_args.AutoscalingConfig = {"enabled": True, "max_replicas": 40, "install_keda": True}
    agents_cfg: public_args.AgentsConfig = {"handler": "my.pkg:run", "replicas": 3, "env": {"MODEL": "m"}}
    if autoscale:
        agents_cfg["autoscaling"] = scaling
    cfg = parse_config({**SWARM, "broker": broker, "agents": agents_cfg})

    def parts() -> None:
        ns = SwarmNamespace("swarm-namespace", {"namespace": "team-a", "instance": "team"})
        common: Any = {"namespace": ns.namespace, "instance": "team", "image": "img:1"}
        budget: public_args.TokenBudgetConfig = {"tokens_per_day": 1000}
        conn: Any
        if broker == "nats":
            nats = Nats(
                "swarm-nats", {"namespace": ns.namespace, "instance": "team", "allow_keda": autoscale}
            )
            conn = {"nats": {"host": nats.host, "password_secret": nats.secret_name}}
        else:
            redis = Redis(
                "swarm-redis", {"namespace": ns.namespace, "instance": "team", "allow_keda": autoscale}
            )
            conn = {"redis": {"url": redis.url, "password_secret": redis.secret_name}}
        coordinator = Coordinator(
            "swarm-coordinator",
            {
                **common,
                **conn,
                "exposure": public_args.SwarmExposure.NODEPORT,
                "config": {"replicas": 2, "port": 9090},
                "api_token": "a-token-of-24-characters",
                "token_budget": budget,
            },  # type: ignore[typeddict-item]
        )
        pool = AgentPool(
            "swarm-agents",
            {
                **common,
                **conn,
                "config": agents_cfg,
                "coordinator_port": coordinator.port,
                "token_budget": budget,
            },  # type: ignore[typeddict-item]
        )
        if autoscale:
            AgentAutoscaler(
                "swarm-autoscaler",
                {
                    "namespace": ns.namespace,
                    "instance": "team",
                    "statefulset_name": pool.statefulset_name,
                    "config": scaling,
                    **conn,
                },
            )

    assembled = run_mocked(parts)
    whole = run_mocked(lambda: PythonAgentSwarm("swarm", {"config": cfg, "image": "img:1"}))
    assert _resources(assembled) == _resources(whole)
    assert {r.type for r in assembled.resources} >= {f"{PACKAGE}:index:{broker.capitalize()}"}
    assert any(r.type == "kubernetes:keda.sh/v1alpha1:ScaledObject" for r in assembled.resources) == autoscale


def _same(package: Any, python: Any) -> None:
    through_package, direct = run_mocked(package), run_mocked(python)
    assert _resources(through_package) == _resources(direct)
    assert [r.type for r in through_package.resources if r.type.startswith(PACKAGE)] == [
        r.type for r in direct.resources if r.type.startswith(PACKAGE)
    ]


def test_each_block_builds_what_its_python_class_builds() -> None:
    from components import agents, coordinator, monitoring, nats, redis
    from components._k8s import selector_labels
    from components.autoscaling import keda_ingress_rule
    from components.config import CoordinatorConfig, MonitoringConfig, NatsConfig, RedisConfig

    clients = [selector_labels("i", "coordinator"), selector_labels("i", "agent")]
    _same(
        lambda: Redis(
            "r",
            {
                "namespace": "n",
                "instance": "i",
                "config": {"aof": False},
                "allow_keda": True,
                "password": "a-password-of-24-chars!",
            },
        ),
        lambda: redis.Redis(
            "r",
            {
                "namespace": "n",
                "instance": "i",
                "config": RedisConfig(aof=False),
                "client_selectors": clients,
                "extra_ingress": [keda_ingress_rule(redis.REDIS_PORT)],
                "password": "a-password-of-24-chars!",
            },
        ),
    )
    _same(
        lambda: Nats("q", {"namespace": "n", "instance": "i", "config": {"storage_size": "2Gi"}}),
        lambda: nats.Nats(
            "q",
            {
                "namespace": "n",
                "instance": "i",
                "config": NatsConfig(storage_size="2Gi"),
                "client_selectors": clients,
            },
        ),
    )
    conn = redis.RedisConnection(
        url="rediss://10.0.0.5:6378/0",
        password_secret="auth",
        password_key="auth-string",
        ca_secret="ca",
        ca_key="ca.crt",
        ip_block="10.0.0.5/32",
        port=6378,
    )
    managed = {
        "url": "rediss://10.0.0.5:6378/0",
        "password_secret": "auth",
        "password_key": "auth-string",
        "ca_secret": "ca",
        "ip_block": "10.0.0.5/32",
        "port": 6378,
    }
    _same(
        lambda: Coordinator(
            "c",
            {
                "namespace": "n",
                "instance": "i",
                "image": "img",
                "exposure": public_args.SwarmExposure.GATEWAY,
                "redis": managed,  # type: ignore[typeddict-item]
                "config": {"hostname": "swarm.example.com"},
                "image_pull_policy": public_args.ImagePullPolicy.ALWAYS,
                "image_digest": "sha256:1",
                "retention_seconds": 3600,
            },
        ),
        lambda: coordinator.Coordinator(
            "c",
            {
                "namespace": "n",
                "instance": "i",
                "image": "img",
                "exposure": "gateway",
                "redis": conn,
                "config": CoordinatorConfig(hostname="swarm.example.com"),
                "image_pull_policy": "Always",
                "tls_mode": "none",
                "pod_annotations": {"agentswarm.io/image-digest": "sha256:1"},
                "runtime_env": [{"name": "AGENTSWARM_RETENTION_SECONDS", "value": "3600"}],
            },
        ),
    )
    _same(
        lambda: AgentPool(
            "a",
            {
                "namespace": "n",
                "instance": "i",
                "image": "img",
                "redis": managed,  # type: ignore[typeddict-item]
                "config": {"replicas": 4, "handler": "my.pkg:run"},
                "gcp_service_account": "sa@p.iam.gserviceaccount.com",
            },
        ),
        lambda: agents.AgentPool(
            "a",
            {
                "namespace": "n",
                "instance": "i",
                "image": "img",
                "image_pull_policy": "IfNotPresent",
                "redis": conn,
                "runtime_env": [{"name": "AGENTSWARM_RETENTION_SECONDS", "value": "604800"}],
                "config": parse_config(
                    {"platform": "kind", "agents": {"replicas": 4, "handler": "my.pkg:run"}}
                ).agents,
                "coordinator_selector": selector_labels("i", "coordinator"),
                "coordinator_port": CoordinatorConfig().port,
                "gcp_service_account": "sa@p.iam.gserviceaccount.com",
            },
        ),
    )
    target: monitoring.ScrapeTarget = {
        "component": "coordinator",
        "selector": selector_labels("i", "coordinator"),
        "port": "http",
    }
    _same(
        lambda: SwarmMonitoring(
            "m", {"namespace": "n", "instance": "i", "config": {"scrape_interval": "1m"}}
        ),
        lambda: monitoring.SwarmMonitoring(
            "m",
            {
                "namespace": "n",
                "instance": "i",
                "config": MonitoringConfig(scrape_interval="1m"),
                "targets": [target],
            },
        ),
    )


NODEPORT = public_args.SwarmExposure.NODEPORT
QUEUE: NatsConnection = {"host": "h", "password_secret": "s"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Redis("r", {"namespace": "n", "config": {"storage_size": "lots"}}), r"redis\.storage_size"),
        (
            lambda: Redis("r", {"namespace": "n", "config": {"mode": public_args.RedisMode.MEMORYSTORE}}),
            r"redis\.mode",
        ),
        (lambda: Nats("q", {"namespace": "n", "config": {"imag": "x"}}), r"nats\.imag"),  # type: ignore[typeddict-unknown-key]
        (
            lambda: Coordinator(
                "c",
                {
                    "namespace": "n",
                    "image": "i",
                    "exposure": NODEPORT,
                    "nats": QUEUE,
                    "config": {"replicas": 0},
                },
            ),
            r"coordinator\.replicas",
        ),
        (lambda: Coordinator("c", {"namespace": "n", "image": "i", "exposure": NODEPORT}), r"broker"),
        (
            lambda: Coordinator(
                "c",
                {
                    "namespace": "n",
                    "image": "i",
                    "exposure": NODEPORT,
                    "redis": {"url": "u", "password_secret": "s"},
                    "nats": QUEUE,
                },
            ),
            r"broker",
        ),
        (
            lambda: AgentPool(
                "a", {"namespace": "n", "image": "i", "nats": QUEUE, "config": {"replicas": -1}}
            ),
            r"agents\.replicas",
        ),
        (
            lambda: AgentAutoscaler(
                "s",
                {"namespace": "n", "statefulset_name": "a", "nats": QUEUE, "config": {"max_replicas": 5}},
            ),
            r"agents\.autoscaling\.enabled: got False",
        ),
        (
            lambda: AgentAutoscaler(
                "s",
                {
                    "namespace": "n",
                    "statefulset_name": "a",
                    "nats": QUEUE,
                    "config": {"enabled": True, "min_replicas": -1},
                },
            ),
            r"agents\.autoscaling\.min_replicas",
        ),
        (
            lambda: AgentPool(
                "a",
                {"namespace": "n", "image": "i", "nats": QUEUE, "token_budget": {"tokens_per_day": -5}},
            ),
            r"token_budget\.tokens_per_day",
        ),
        (lambda: Redis("r", {"namespace": "n", "password": "short"}), r"password: got '<secret>'"),
        (
            lambda: Coordinator(
                "c",
                {
                    "namespace": "n",
                    "image": "i",
                    "exposure": NODEPORT,
                    "nats": QUEUE,
                    "api_token_next": "short",
                },
            ),
            r"api_token_next: got '<secret>'; must be at least 16",
        ),
    ],
)
def test_blocks_reject_bad_input_with_one_line(build: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build()
    assert "\n" not in str(info.value)
