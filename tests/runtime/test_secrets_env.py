"""Secrets mounted as files reach the handler as plain environment variables, and never leak in errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agentswarm.secrets_env import LIST_VARIABLE, SecretEnvError, resolve_secret_env_files
from rt_support import AgentProcess, make_test_broker, wait_until

SECRET = "sk-test-0123456789abcdef"

HANDLER = """
import hashlib, os
KEY_AT_IMPORT = os.environ.get("OPENAI_API_KEY")

async def handle(task, state, ctx):
    return {
        "at_import": hashlib.sha256((KEY_AT_IMPORT or "").encode()).hexdigest(),
        "now": hashlib.sha256(os.environ.get("OPENAI_API_KEY", "").encode()).hexdigest(),
        "model": os.environ.get("AGENTSWARM_LLM_MODEL"),
    }
"""


def _secret_file(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / "env" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(value)
    return path


def test_listed_names_are_read_from_their_files(tmp_path: Path) -> None:
    env = {
        LIST_VARIABLE: "OPENAI_API_KEY, OTHER",
        "OPENAI_API_KEY_FILE": str(_secret_file(tmp_path, "OPENAI_API_KEY", SECRET + "\n")),
        "OTHER_FILE": str(_secret_file(tmp_path, "OTHER", "two\nlines")),
        "UNLISTED_FILE": str(_secret_file(tmp_path, "UNLISTED", "never read")),
    }
    assert resolve_secret_env_files(env) == ["OPENAI_API_KEY", "OTHER"]
    assert env["OPENAI_API_KEY"] == SECRET
    assert env["OTHER"] == "two\nlines"
    assert "UNLISTED" not in env


def test_nothing_listed_changes_nothing() -> None:
    env = {"SOME_FILE": "/etc/passwd"}
    assert resolve_secret_env_files(env) == []
    assert env == {"SOME_FILE": "/etc/passwd"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "OPENAI_API_KEY: listed in AGENTSWARM_SECRET_ENV_FILES but OPENAI_API_KEY_FILE is not set"),
        ({"OPENAI_API_KEY_FILE": "/nonexistent/key"}, "OPENAI_API_KEY_FILE=/nonexistent/key: cannot read"),
        (
            {"OPENAI_API_KEY_FILE": "/nonexistent/key", "OPENAI_API_KEY": SECRET},
            "OPENAI_API_KEY: set both directly and through OPENAI_API_KEY_FILE",
        ),
    ],
)
def test_unresolvable_names_fail_without_showing_values(extra: dict[str, str], expected: str) -> None:
    env = {LIST_VARIABLE: "OPENAI_API_KEY", **extra}
    before = dict(env)
    with pytest.raises(SecretEnvError) as info:
        resolve_secret_env_files(env)
    assert expected in str(info.value)
    assert SECRET not in str(info.value)
    assert env == before  # all or nothing


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(SecretEnvError, match="'BAD-NAME' is not a variable name"):
        resolve_secret_env_files({LIST_VARIABLE: "BAD-NAME", "BAD-NAME_FILE": "/x"})


async def test_agent_process_hands_file_secrets_to_its_handler(
    tmp_path: Path, redis_server: object, unique_namespace: str
) -> None:
    url = str(redis_server.url)  # type: ignore[attr-defined]
    (tmp_path / "keyed_handler.py").write_text(HANDLER)
    agent = AgentProcess(
        "agent-secret",
        {
            "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
            "AGENTSWARM_REDIS_URL": url,
            "AGENTSWARM_NAMESPACE": unique_namespace,
            "AGENTSWARM_HANDLER": "keyed_handler:handle",
            LIST_VARIABLE: "OPENAI_API_KEY",
            "OPENAI_API_KEY_FILE": str(_secret_file(tmp_path, "OPENAI_API_KEY", SECRET + "\n")),
            "AGENTSWARM_LLM_MODEL": "plain-value",
        },
        tmp_path,
    )
    os.environ.pop("OPENAI_API_KEY", None)
    broker = make_test_broker("redis", url, unique_namespace)
    await broker.connect()
    try:
        agent.start()
        task_id = await broker.enqueue({"q": 1})

        async def done() -> bool:
            return await broker.get_result(task_id) is not None

        try:
            await wait_until(done, within=60, what="the task's result")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; agent log:\n{agent.log_text()}") from None
        result = await broker.get_result(task_id)
        assert result is not None
        digest = hashlib.sha256(SECRET.encode()).hexdigest()
        assert result.value == {"at_import": digest, "now": digest, "model": "plain-value"}
    finally:
        agent.stop()
        await broker.close()
    assert SECRET not in agent.log_text()


def test_agent_process_refuses_to_start_with_an_unreadable_secret(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(sys.path),
        "AGENTSWARM_CHECKPOINT_DIR": str(tmp_path),
        LIST_VARIABLE: "OPENAI_API_KEY",
        "OPENAI_API_KEY_FILE": str(tmp_path / "missing"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "agentswarm.agent"], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 2
    assert b"OPENAI_API_KEY_FILE=" in proc.stderr and b"cannot read" in proc.stderr
