"""Typed stack config: defaults, one-line errors before any registration, schema and docs in sync."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from mockharness import ROOT, Recording, is_secret, run_program, stack_config

from components.config import ConfigError, SwarmConfig, parse_config
from components.config_rules import RULES
from components.docs import config_json_schema, config_keys, config_markdown
from components.stack_config import load_stack_config

GKE_TLS = {"hostname": "swarm.example.com", "tls": {"static_ip_name": "swarm-ip"}}


def test_defaults_are_sane() -> None:
    cfg = parse_config(
        {
            "platform": "gke",
            "cluster": {"create": False},
            "coordinator": GKE_TLS,
            "agents": {"handler": "a:b"},
        }
    )
    assert cfg.tls_mode == "managed"  # TLS by default on GKE
    assert parse_config({"platform": "kind"}).tls_mode == "none"
    assert cfg.exposure == "ingress"
    assert cfg.namespace == "agentswarm"
    assert cfg.coordinator.port == 8080
    assert cfg.coordinator.websocket_backend_timeout_seconds == 3600
    assert cfg.agents.replicas == 50
    assert cfg.agents.checkpoint_path == "/var/lib/agentswarm"
    assert cfg.redis.mode == "in-cluster"
    assert cfg.redis.aof is True
    assert cfg.image.reference == "agentswarm:dev"
    assert parse_config({"platform": "kind", "cluster": {"create": False}}).exposure == "nodeport"


def test_digest_wins_over_tag() -> None:
    digest = "sha256:" + "b" * 64
    cfg = parse_config({"platform": "kind", "image": {"repository": "r/x", "digest": digest}})
    assert cfg.image.reference == f"r/x@{digest}"


def test_load_stack_config_decodes_structured_values() -> None:
    cfg = load_stack_config({"agentswarm:platform": "kind", "agentswarm:agents": json.dumps({"replicas": 7})})
    assert cfg.agents.replicas == 7
    # top-level scalars stay strings even when they look like numbers
    assert (
        load_stack_config({"agentswarm:platform": "kind", "agentswarm:namespace": "123"}).namespace == "123"
    )
    # other namespaces are not ours
    assert load_stack_config({"agentswarm:platform": "kind", "gcp:project": "x"}).platform == "kind"


BAD_CONFIGS: list[tuple[dict[str, Any], str, str, str]] = [
    # (agentswarm config, key in message, bad value in message, allowed text in message)
    (
        {"platform": "kind", "monitoring": {"managed_prometheus": True}},
        "monitoring.managed_prometheus",
        "True",
        "platform kind has no Managed Prometheus",
    ),
    ({}, "platform", "None", "required key is missing"),
    (
        {"platform": "kind", "agents": {"autoscaling": {"min_replicas": 5, "max_replicas": 2}}},
        "agents.autoscaling.max_replicas",
        "2",
        "must be >= min_replicas (5)",
    ),
    ({"platform": "aws"}, "platform", "'aws'", "'kind' or 'gke'"),
    (
        {"platform": "kind", "exposure": "ingress"},
        "exposure",
        "'ingress'",
        "platform kind allows only 'nodeport'",
    ),
    (
        {"platform": "gke", "exposure": "nodeport"},
        "exposure",
        "'nodeport'",
        "platform gke allows 'ingress' or 'gateway'",
    ),
    (
        {"platform": "kind", "redis": {"mode": "memorystore"}},
        "redis.mode",
        "'memorystore'",
        "platform kind allows only 'in-cluster'",
    ),
    (
        {"platform": "kind", "coordinator": {"port": 80}},
        "coordinator.port",
        "80",
        "greater than or equal to 1024",
    ),
    ({"platform": "kind", "coordinatr": {"port": 8080}}, "coordinatr", "{'port': 8080}", "unknown key"),
    (
        {"platform": "kind", "coordinator": {"connection_draining_seconds": 120}},
        "coordinator.termination_grace_seconds",
        "90",
        "greater than coordinator.prestop_delay_seconds + coordinator.connection_draining_seconds = 125",
    ),
    (
        {
            "platform": "gke",
            "cluster": {"create": False},
            "coordinator": {"websocket_backend_timeout_seconds": 0},
        },
        "coordinator.websocket_backend_timeout_seconds",
        "0",
        "greater than or equal to 1",
    ),
    (
        {"platform": "kind", "agents": {"egress_allow": [{"cidr": "10.0.0.0/33"}]}},
        "agents.egress_allow[0].cidr",
        "'10.0.0.0/33'",
        "not a CIDR block",
    ),
    ({"platform": "kind", "agents": {"replicas": "many"}}, "agents.replicas", "'many'", "valid integer"),
    ({"platform": "kind", "agents": {"handler": "no-colon"}}, "agents.handler", "'no-colon'", "must match"),
    ({"platform": "kind", "agents": {"storage_size": "lots"}}, "agents.storage_size", "'lots'", "must match"),
    ({"platform": "kind", "namespace": "Agent_Swarm"}, "namespace", "'Agent_Swarm'", "must match"),
    ({"platform": "gke"}, "cluster.create", "True", "needs the gcp section"),
    (
        {"platform": "gke", "cluster": {"create": True}, "kubernetes": {"render_yaml_to_directory": "out"}},
        "cluster.create",
        "True",
        "must be false when kubernetes.render_yaml_to_directory is set",
    ),
    (
        {"platform": "kind", "image": {"pull_policy": "Sometimes"}},
        "image.pull_policy",
        "'Sometimes'",
        "'Always'",
    ),
    (
        {"platform": "kind", "image": {"tag": None}},
        "image.tag",
        "None",
        "set image.tag or image.digest",
    ),
    (
        {
            "platform": "gke",
            "gcp": {"project": "my-project"},
            "cluster": {"gke": {"agent_pool": {"min_nodes": 11}}},
        },
        "cluster.gke.agent_pool.max_nodes",
        "10",
        "must be >= min_nodes (11)",
    ),
    (
        {"platform": "kind", "gcp": {"project": "my-project"}},
        "gcp",
        "'my-project'",
        "creates no GCP resource",
    ),
    (
        {"platform": "gke", "gcp": {"project": "my-project"}},
        "cluster.gke.master_authorized_networks",
        "[]",
        "list at least the CIDR of the machine running `pulumi up`",
    ),
    (
        {"platform": "kind", "image": {"build": {"enabled": True}, "digest": "sha256:" + "c" * 64}},
        "image.digest",
        "'sha256:" + "c" * 64 + "'",
        "must be unset with image.build.enabled",
    ),
    (
        {"platform": "kind", "image": {"build": {"enabled": True}, "pull_policy": "Always"}},
        "image.pull_policy",
        "'Always'",
        "use IfNotPresent or Never",
    ),
    (
        {"platform": "kind", "kubernetes": {"context": "kind-x"}},
        "kubernetes.context",
        "'kind-x'",
        "must be unset when cluster.create is true",
    ),
    (
        {"platform": "gke", "cluster": {"create": False}, "redis": {"mode": "memorystore"}},
        "redis.mode",
        "'memorystore'",
        "needs the gcp section",
    ),
    (
        {
            "platform": "gke",
            "gcp": {"project": "my-project"},
            "cluster": {"create": False},
            "redis": {"mode": "memorystore"},
        },
        "redis.memorystore.network",
        "None",
        "with memorystore when cluster.create is false",
    ),
]


@pytest.mark.parametrize(("config", "key", "value", "allowed"), BAD_CONFIGS, ids=[b[1] for b in BAD_CONFIGS])
def test_bad_config_one_clear_message_and_no_resource(
    config: dict[str, Any], key: str, value: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    message = str(info.value)
    assert message == f"invalid stack config {key}: got {value}; {info.value.allowed}"
    assert allowed in message
    assert "\n" not in message

    # The real program: the same message as a pulumi.RunError (printed without traceback), nothing registered.
    recording = Recording()
    with pytest.raises(pulumi.RunError) as run_info:
        run_program({f"agentswarm:{k}": v for k, v in config.items()}, recording=recording)
    assert str(run_info.value) == message
    assert recording.resources == []
    assert recording.calls == []


RENDER_ONLY = {
    "platform": "kind",
    "cluster": {"create": False},
    "kubernetes": {"render_yaml_to_directory": "o"},
}
GKE_MEMORYSTORE = {
    "platform": "gke",
    "gcp": {"project": "my-project"},
    "cluster": {"create": False},
    "redis": {"mode": "memorystore", "memorystore": {"network": "vpc"}},
    "coordinator": {"hostname": "swarm.example.com"},
    "agents": {"handler": "my.pkg:run"},
}
MORE_BAD_CONFIGS: list[dict[str, Any]] = [
    {**GKE_MEMORYSTORE, "broker": "nats"},
    {"platform": "kind", "api_token": "short"},
    {"platform": "kind", "api_token_next": "short"},
    {"platform": "kind", "coordinator": {"cloud_armor": {"rate_limit": {"interval_seconds": 45}}}},
    {"platform": "gke", "cluster": {"create": False}, "coordinator": {"tls": {"mode": "none"}}},
    {"platform": "kind", "redis_password": "short"},
    {**GKE_MEMORYSTORE, "redis_password": "r" * 32},
    {**GKE_MEMORYSTORE, "kubernetes": {"render_yaml_to_directory": "o"}},
    {**RENDER_ONLY, "image": {"build": {"enabled": True}}},
    {"platform": "gke", "cluster": {"create": False}, "image": {"build": {"enabled": True}}},
    {"platform": "kind", "coordinator": {"tls": {"mode": "managed"}}},
    {"platform": "gke", "cluster": {"create": False}},
    {**GKE_MEMORYSTORE, "coordinator": {"tls": {"mode": "pre-shared"}}},
    {
        **GKE_MEMORYSTORE,
        "coordinator": {"hostname": "a.example.com", "tls": {"pre_shared_certificates": ["c"]}},
    },
    {
        **GKE_MEMORYSTORE,
        "exposure": "gateway",
        "coordinator": {
            "hostname": "a.example.com",
            "gateway_class": "gke-l7-rilb",
            "tls": {"static_ip_name": "ip"},
        },
    },
    {"platform": "gke", "cluster": {"create": False}, "coordinator": {"hostname": "a.example.com"}},
    {
        "platform": "gke",
        "cluster": {"create": False},
        "exposure": "gateway",
        "coordinator": GKE_TLS,
    },
    {
        "platform": "gke",
        "cluster": {"create": False},
        "coordinator": {**GKE_TLS, "cloud_armor": {"enabled": True}},
    },
    {
        **GKE_MEMORYSTORE,
        "exposure": "gateway",
        "coordinator": {
            "hostname": "a.example.com",
            "gateway_class": "gke-l7-rilb",
            "cloud_armor": {"enabled": True},
        },
    },
    {
        "platform": "gke",
        "cluster": {"create": False},
        "coordinator": {"tls": {"mode": "none"}},
        "agents": {"secret_manager": {"KEY": "projects/my-project/secrets/key/versions/latest"}},
    },
]


def test_every_rule_of_the_table_can_fire() -> None:
    """No rule is dead: each one is the error of some config, with its own key and text."""
    fired: set[tuple[str, str]] = set()
    for config in [bad[0] for bad in BAD_CONFIGS] + MORE_BAD_CONFIGS:
        with pytest.raises(ConfigError) as info:
            parse_config(config)
        fired.add((info.value.key.rpartition(".")[2], info.value.allowed))
    for rule in RULES:
        assert any(
            key == rule.key.rpartition(".")[2] and text.startswith(rule.allowed) for key, text in fired
        ), (
            rule.key,
            rule.allowed,
        )
    assert parse_config(GKE_MEMORYSTORE).redis.mode == "memorystore"  # the base of the extra cases is valid


def test_valid_program_run_registers_resources() -> None:
    """The 'nothing registered' check above can fail: a valid config does register resources."""
    recording = Recording()
    run_program(GKE_EXISTING, recording=recording)
    assert len(recording.resources) > 20


def test_committed_json_schema_is_generated_one() -> None:
    committed = json.loads((ROOT / "docs" / "config.schema.json").read_text())
    assert committed == json.loads(json.dumps(config_json_schema()))


def test_json_schema_accepts_every_stack() -> None:
    import jsonschema

    schema = config_json_schema()
    for path in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        data = {k.split(":", 1)[1]: v for k, v in stack_config(stack).items() if k.startswith("agentswarm:")}
        jsonschema.validate(data, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"platform": "kind", "agents": {"replicaz": 3}}, schema)


def test_config_doc_is_generated_and_covers_every_key() -> None:
    doc = (ROOT / "docs" / "config.md").read_text()
    assert doc == config_markdown()
    keys = config_keys()
    assert len(keys) > 80
    for key in keys:
        assert f"| `{key}` |" in doc, key
    # every leaf field of the models is reachable as a documented key
    assert "coordinator.websocket_backend_timeout_seconds" in keys
    assert "agents.egress_allow[].cidr" in keys
    assert "kubernetes.render_yaml_to_directory" in keys
    assert set(SwarmConfig.model_fields) <= {k.split(".")[0] for k in keys}


# ---------------------------------------------------------------- secrets from stack config

TOKEN = "t0ken-from-the-stack-config-xyz"
REDIS_PW = "redis-pw-from-the-stack-config"
GKE_EXISTING = {
    "agentswarm:platform": "gke",
    "agentswarm:cluster": {"create": False},
    "agentswarm:coordinator": GKE_TLS,
    "agentswarm:agents": {"handler": "my.pkg:run"},
}
SECRET_KEYS = ["agentswarm:api_token", "agentswarm:redis_password"]


def test_secrets_from_config_replace_random_and_stay_secret() -> None:
    rec = run_program(
        {**GKE_EXISTING, "agentswarm:api_token": TOKEN, "agentswarm:redis_password": REDIS_PW},
        secret_keys=SECRET_KEYS,
    )
    assert rec.of_type("random:index/randomPassword:RandomPassword") == []
    secrets = {r.name: r for r in rec.of_type("kubernetes:core/v1:Secret")}
    for name in (
        "agentswarm-coordinator-api-token-secret",
        "agentswarm-redis-secret",
        "agentswarm-redis-server-auth",
    ):
        assert is_secret(secrets[name].inputs["stringData"]), name
    assert secrets["agentswarm-coordinator-api-token-secret"].values["stringData"] == {"token": TOKEN}
    assert secrets["agentswarm-redis-secret"].values["stringData"] == {"password": REDIS_PW}


def test_next_api_token_is_valid_beside_the_current_one() -> None:
    """A rotation: both tokens in the one Secret file the coordinator re-reads, still a secret on the wire."""
    nxt = "the-next-token-of-the-rotation"
    rec = run_program(
        {**GKE_EXISTING, "agentswarm:api_token": TOKEN, "agentswarm:api_token_next": nxt},
        secret_keys=[*SECRET_KEYS, "agentswarm:api_token_next"],
    )
    secret = rec.by_name("agentswarm-coordinator-api-token-secret")
    assert is_secret(secret.inputs["stringData"])
    assert secret.values["stringData"] == {"token": f"{TOKEN}\n{nxt}"}
    with pytest.raises(pulumi.RunError, match="api_token_next: got '<plain text>'"):
        run_program({**GKE_EXISTING, "agentswarm:api_token_next": nxt}, secret_keys=SECRET_KEYS)


def test_secrets_unset_are_generated() -> None:
    rec = run_program(GKE_EXISTING)
    assert len(rec.of_type("random:index/randomPassword:RandomPassword")) == 2


@pytest.mark.parametrize("key", ["api_token", "redis_password"])
def test_a_secret_in_plain_config_is_refused(key: str) -> None:
    recording = Recording()
    with pytest.raises(pulumi.RunError) as info:
        run_program({**GKE_EXISTING, f"agentswarm:{key}": "x" * 32}, recording=recording)
    assert str(info.value) == (
        f"invalid stack config {key}: got '<plain text>'; "
        f"store it encrypted: `pulumi config set --secret agentswarm:{key} <value>`"
    )
    assert "x" * 32 not in str(info.value)
    assert recording.resources == []


def test_a_short_secret_is_refused_without_echoing_it() -> None:
    recording = Recording()
    with pytest.raises(pulumi.RunError) as info:
        run_program(
            {**GKE_EXISTING, "agentswarm:api_token": "short"}, recording=recording, secret_keys=SECRET_KEYS
        )
    assert str(info.value) == "invalid stack config api_token: got '<secret>'; must be at least 16 characters"
    assert recording.resources == []
