"""Settings from AGENTSWARM_* variables: defaults per docs/runtime-contract.md, one clear line per error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from agentswarm.settings import SettingsError, load_settings, to_env, unknown_variables
from pydantic import SecretStr


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


def test_overrides_render_to_env_that_reads_back_unchanged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    overrides = {
        "broker": "nats",
        "nats_url": "nats://127.0.0.1:4333",
        "port": 9090,
        "checkpoint_dir": tmp_path / "agent-1",
        "api_token": SecretStr("tok"),
        "shutdown_drain_seconds": 0,
        "redis_ca_file": None,  # unset: not rendered at all
    }
    env = to_env(overrides)
    assert env == {
        "AGENTSWARM_BROKER": "nats",
        "AGENTSWARM_NATS_URL": "nats://127.0.0.1:4333",
        "AGENTSWARM_PORT": "9090",
        "AGENTSWARM_CHECKPOINT_DIR": str(tmp_path / "agent-1"),
        "AGENTSWARM_API_TOKEN": "tok",
        "AGENTSWARM_SHUTDOWN_DRAIN_SECONDS": "0",
    }
    for var in [v for v in os.environ if v.startswith("AGENTSWARM_")]:
        monkeypatch.delenv(var)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert (s.broker, s.nats_url, s.port, s.checkpoint_dir) == (
        "nats",
        "nats://127.0.0.1:4333",
        9090,
        tmp_path / "agent-1",
    )
    assert s.api_token is not None and s.api_token.get_secret_value() == "tok"
    assert s.shutdown_drain_seconds == 0


def test_overrides_of_unknown_settings_are_refused() -> None:
    with pytest.raises(KeyError, match="brokr"):
        to_env({"brokr": "nats"})


def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("AGENTSWARM_")]:
        monkeypatch.delenv(var)


def test_secrets_are_read_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Pods get secrets as mounted files (``*_FILE``); the trailing newline of `echo` is not part of it."""
    _clean(monkeypatch)
    (tmp_path / "password").write_text("from-a-mounted-secret\n")
    (tmp_path / "tokens").write_text(
        "# current, then next\ncurrent-token-0123456789\n\nnext-token-0123456789\n"
    )
    monkeypatch.setenv("AGENTSWARM_REDIS_PASSWORD_FILE", str(tmp_path / "password"))
    monkeypatch.setenv("AGENTSWARM_API_TOKEN_FILE", str(tmp_path / "tokens"))
    s = load_settings()
    assert s.redis_password is not None and s.redis_password.get_secret_value() == "from-a-mounted-secret"
    assert s.api_token is None and s.api_token_file == tmp_path / "tokens"
    assert unknown_variables() == []
    from agentswarm.coordinator import options_from_settings

    options = options_from_settings(s)
    assert options.api_token_file == tmp_path / "tokens" and options.api_token == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AGENTSWARM_REDIS_PASSWORD_FILE": "missing"}, "AGENTSWARM_REDIS_PASSWORD_FILE cannot be read"),
        ({"AGENTSWARM_REDIS_PASSWORD_FILE": "empty"}, "AGENTSWARM_REDIS_PASSWORD_FILE is empty"),
        (
            {"AGENTSWARM_REDIS_PASSWORD_FILE": "secret", "AGENTSWARM_REDIS_PASSWORD": "x"},
            "AGENTSWARM_REDIS_PASSWORD_FILE or AGENTSWARM_REDIS_PASSWORD, not both",
        ),
        ({"AGENTSWARM_API_TOKEN_FILE": "missing"}, "AGENTSWARM_API_TOKEN_FILE cannot be read"),
        ({"AGENTSWARM_API_TOKEN_FILE": "comments"}, "AGENTSWARM_API_TOKEN_FILE holds no token"),
        (
            {"AGENTSWARM_API_TOKEN_FILE": "secret", "AGENTSWARM_API_TOKEN": "x"},
            "AGENTSWARM_API_TOKEN_FILE or AGENTSWARM_API_TOKEN, not both",
        ),
    ],
)
def test_secret_file_errors_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    _clean(monkeypatch)
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "comments").write_text("# nothing yet\n\n")
    (tmp_path / "secret").write_text("not-shown-anywhere\n")
    for key, value in env.items():
        monkeypatch.setenv(key, str(tmp_path / value) if key.endswith("_FILE") else value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert message in str(info.value)
    assert "not-shown-anywhere" not in str(info.value)
