"""Settings from AGENTSWARM_* variables: defaults per docs/runtime-contract.md, one clear line per error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from agentswarm.settings import SettingsError, load_settings, unknown_variables


def test_contract_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("AGENTSWARM_")]:
        monkeypatch.delenv(var)
    s = load_settings()
    assert s.broker == "redis" and s.port == 8080
    assert s.checkpoint_dir == Path("/var/lib/agentswarm")
    assert s.heartbeat_file == Path("/var/lib/agentswarm/.heartbeat")
    assert s.keepalive_seconds == s.claim_idle_ms / 4000


def test_env_values_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSWARM_BROKER", "nats")
    monkeypatch.setenv("AGENTSWARM_NATS_URL", "nats://nats:4222")
    monkeypatch.setenv("AGENTSWARM_REDIS_PASSWORD", "s3cret")
    monkeypatch.setenv("AGENTSWARM_AGENT_ID", "swarm-agents-17")
    monkeypatch.setenv("AGENTSWARM_SHUTDOWN_DRAIN_SECONDS", "12.5")
    s = load_settings()
    assert (s.broker, s.agent_id, s.shutdown_drain_seconds) == ("nats", "swarm-agents-17", 12.5)
    assert s.redis_password is not None and s.redis_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AGENTSWARM_BROKER": "kafka"}, "AGENTSWARM_BROKER='kafka'"),
        ({"AGENTSWARM_REDIS_URL": "http://x"}, "must start with redis://"),
        ({"AGENTSWARM_REDIS_URL": "redis://:pw@host:6379/0"}, "AGENTSWARM_REDIS_PASSWORD instead"),
        ({"AGENTSWARM_PORT": "eighty"}, "AGENTSWARM_PORT='eighty'"),
        ({"AGENTSWARM_HANDLER": "not a handler"}, "package.module:function"),
        ({"AGENTSWARM_AGENT_ID": "a/b"}, "AGENTSWARM_AGENT_ID='a/b'"),
        ({"AGENTSWARM_MAX_DELIVERIES": "0"}, "AGENTSWARM_MAX_DELIVERIES='0'"),
        (
            {"AGENTSWARM_CLAIM_IDLE_MS": "1000", "AGENTSWARM_KEEPALIVE_INTERVAL_MS": "2000"},
            "must be below AGENTSWARM_CLAIM_IDLE_MS",
        ),
        ({"AGENTSWARM_REDIS_CA_FILE": "/ca.pem"}, "is not rediss://"),
    ],
)
def test_bad_env_names_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert expected in str(info.value)


def test_secret_values_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(api_token=12345)
    assert "12345" not in str(info.value) and "AGENTSWARM_API_TOKEN=<secret>" in str(info.value)


def test_agent_refuses_unloadable_handler(tmp_path: Path) -> None:
    env = {
        "AGENTSWARM_HANDLER": "agentswarm.handlers.steps:nope",
        "AGENTSWARM_CHECKPOINT_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "agentswarm.agent"], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 2
    assert b"has no 'nope'" in proc.stderr


def test_unknown_variables_are_reported() -> None:
    env = {
        "AGENTSWARM_BROKR": "nats",
        "AGENTSWARM_BROKER": "nats",
        "AGENTSWARM_LOG_LEVEL": "DEBUG",
        "HOME": "/",
    }
    assert unknown_variables(env) == ["AGENTSWARM_BROKR"]


def test_runtime_contract_documents_every_setting() -> None:
    """docs/runtime-contract.md lists each variable Settings reads, and only variables the runtime knows."""
    from agentswarm.settings import ENV_PREFIX, OTHER_KNOWN_VARIABLES, Settings

    doc = (Path(__file__).parents[2] / "docs" / "runtime-contract.md").read_text()
    table = set(re.findall(r"^\| `(AGENTSWARM_[A-Z0-9_]+)` \|", doc, flags=re.MULTILINE))
    read = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert sorted(read - table) == [], "read by Settings but not documented"
    assert sorted(table - read - OTHER_KNOWN_VARIABLES) == [], "documented but read by nothing"
