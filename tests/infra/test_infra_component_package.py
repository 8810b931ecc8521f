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
from components.provider import COMPONENTS, PACKAGE, AgentSwarm, SwarmNamespace, swarm_config

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
    assert set(result["component_definitions"]) == {"AgentSwarm", "SwarmNamespace"}
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
