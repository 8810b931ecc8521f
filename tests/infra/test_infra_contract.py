"""The runtime contract, checked from both sides: every AGENTSWARM_* variable the components give a pod is
one the runtime reads, and the values the components compute parse under the runtime's own settings model.

docs/runtime-contract.md is the prose version; this test is what keeps the two packages honest when either
renames a variable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydantic
import pytest
from agentswarm import defaults as runtime_defaults
from agentswarm.settings import Settings, unknown_variables
from mockharness import STACK_NAMES, only_tools_on_path, run_stack

from components.config import (
    CHECKPOINT_DIR,
    COORDINATOR_PORT,
    DEFAULT_HANDLER,
    HANDLER_PATTERN,
    RETENTION_SECONDS,
    AgentsConfig,
    CoordinatorConfig,
    KindClusterConfig,
    SwarmConfig,
)

PLACEHOLDER = {
    "AGENTSWARM_AGENT_ID": "agent-0",
    "NATS_PASSWORD": "from-a-secret",  # expanded by Kubernetes into AGENTSWARM_NATS_URL
}
SECRET_FILES = {"AGENTSWARM_REDIS_PASSWORD_FILE", "AGENTSWARM_API_TOKEN_FILE", "AGENTSWARM_REDIS_CA_FILE"}
"""The runtime's Redis password and API token arrive as files of mounted Secrets."""


def runtime_containers(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The coordinator and agent containers of every Deployment/StatefulSet, keyed by their role."""
    found: dict[str, dict[str, Any]] = {}
    for m in manifests:
        if m["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in m["spec"]["template"]["spec"]["containers"]:
            if c.get("args") in (["coordinator"], ["agent"]):
                found[c["args"][0]] = {"container": c, "pod": m["spec"]["template"]["spec"]}
    return found


def env_of(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            assert e["name"] in PLACEHOLDER, f"{e['name']} comes from {e['valueFrom']}: no placeholder"
            env[e["name"]] = PLACEHOLDER[e["name"]]
    return env


def secret_file_mounts(found: dict[str, Any], env: dict[str, str], tmp: Path) -> dict[str, str]:
    """Each ``*_FILE`` path lies in a read-only, whole-Secret mount; returns the env with each path replaced
    by a placeholder file, so that the runtime can read it."""
    volumes = {v["name"]: v for v in found["pod"]["volumes"]}
    mounts = {m["mountPath"]: m for m in found["container"]["volumeMounts"]}
    out = dict(env)
    for key in [k for k in env if k.endswith("_FILE")]:
        assert key in SECRET_FILES, key
        directory = env[key].rpartition("/")[0]
        mount = mounts[directory]
        assert mount.get("readOnly") is True and "subPath" not in mount  # updates reach the file
        assert "secret" in volumes[mount["name"]], (key, volumes[mount["name"]])
        placeholder = tmp / key
        placeholder.write_text("from-a-secret-0123456789\n")
        out[key] = str(placeholder)
    return out


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_every_variable_is_read_by_the_runtime(
    stack: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with only_tools_on_path("kind", "docker"):  # the local stack's preflight; mocks never run them
        roles = runtime_containers(run_stack(stack).manifests())
    assert set(roles) == {"coordinator", "agent"}
    for role, found in roles.items():
        env = env_of(found["container"])
        assert unknown_variables(env) == [], (stack, role)
        if env["AGENTSWARM_BROKER"] == "redis":
            assert "AGENTSWARM_REDIS_PASSWORD_FILE" in env
        assert ("AGENTSWARM_API_TOKEN_FILE" in env) == (role == "coordinator")
        # both roles: the coordinator trims by it, the agents create the server objects with it
        assert "AGENTSWARM_RETENTION_SECONDS" in env
        env = secret_file_mounts(found, env, tmp_path)
        for key in list(env):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        if role == "agent":
            assert str(settings.checkpoint_dir) == env["AGENTSWARM_CHECKPOINT_DIR"]
            # the agent must give up waiting for a checkpoint before the kubelet's SIGKILL
            assert settings.shutdown_grace_seconds < found["pod"]["terminationGracePeriodSeconds"]
        else:
            assert settings.port == found["container"]["ports"][0]["containerPort"]
            assert settings.shutdown_drain_seconds < found["pod"]["terminationGracePeriodSeconds"]
        for key in env:
            monkeypatch.delenv(key)


def test_components_defaults_are_the_runtimes() -> None:
    """Each setting both packages know has one default on each side of the boundary, and they are equal."""
    runtime = Settings.model_fields
    assert (
        runtime["port"].default
        == runtime_defaults.DEFAULT_PORT
        == COORDINATOR_PORT
        == CoordinatorConfig().port
    )
    assert runtime["handler"].default == runtime_defaults.DEFAULT_HANDLER == DEFAULT_HANDLER
    assert DEFAULT_HANDLER == AgentsConfig().handler
    assert (
        str(runtime["checkpoint_dir"].default)
        == str(runtime_defaults.DEFAULT_CHECKPOINT_DIR)
        == CHECKPOINT_DIR
    )
    assert CHECKPOINT_DIR == AgentsConfig().checkpoint_path
    assert (
        runtime["retention_seconds"].default
        == runtime_defaults.DEFAULT_RETENTION_SECONDS
        == RETENTION_SECONDS
        == SwarmConfig(platform="kind").retention_seconds
    )
    # a kind swarm answers where the CLI and the client look when given no URL
    assert urlsplit(runtime_defaults.DEFAULT_URL).port == KindClusterConfig().host_port == COORDINATOR_PORT


HANDLERS = [
    "agentswarm.handlers.steps:handle",
    "pkg.mod:fn",
    "mod:fn",
    "_p.m2:_f",
    "no-colon",
    "pkg.mod:",
    ":fn",
    "pkg..mod:fn",
    "pkg.mod:fn.attr",
    "pkg/mod:fn",
    "1pkg:fn",
    "pkg.mod:fn:x",
]


@pytest.mark.parametrize("handler", [h for h in HANDLERS if re.match(HANDLER_PATTERN, h)])
def test_a_handler_the_stack_config_accepts_the_runtime_accepts(handler: str) -> None:
    """The config refuses at `pulumi preview` what the agents would refuse at start-up (never the reverse)."""
    assert Settings(handler=handler).handler == handler


def test_the_handler_pattern_refuses_some() -> None:
    """The check above can fail: the config's pattern does refuse handlers."""
    refused = [h for h in HANDLERS if not re.match(HANDLER_PATTERN, h)]
    assert len(refused) >= 5
    for handler in refused:
        with pytest.raises(pydantic.ValidationError):
            AgentsConfig(handler=handler)


def test_the_autoscalers_streams_and_consumers_are_the_runtimes() -> None:
    from agentswarm.broker import PRIORITIES
    from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
    from agentswarm.broker.redis_streams import RedisStreamsBroker

    from components.autoscaling import PRIORITY_CLASSES, class_consumer, class_stream

    assert PRIORITY_CLASSES == PRIORITIES
    redis = RedisStreamsBroker("redis://x:6379/0", namespace="prod-a")  # not connected: names only
    nats = NatsJetStreamBroker("nats://x:4222", namespace="prod-a")
    for cls in PRIORITIES:
        assert class_stream("prod-a", cls) == redis.streams[cls]
        assert class_consumer("prod-a", cls) == nats.durables[cls]
