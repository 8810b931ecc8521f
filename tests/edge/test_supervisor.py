"""The parts of local mode below the whole swarm: one child process, the restart policy, the broker wait.

Real processes throughout: a child that ignores SIGTERM is SIGKILLed after its grace, a crashing child
comes back with growing delays, and the broker wait uses the broker contract's ``ping`` against a real
server (and gives up clearly when nothing answers or the server dies).
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from agentswarm.local.broker import LocalBroker
from agentswarm.local.options import LocalError
from agentswarm.local.supervisor import Supervisor
from agentswarm.process import ChildProcess, describe_exit
from agentswarm.servers import RedisServer, free_port
from agentswarm.settings import load_settings

from .helpers import pid_alive, wait_until

STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(sys.argv[1], 'w').close()\n"
    "time.sleep(120)\n"
)


async def test_a_child_ignoring_sigterm_is_killed_with_its_group_after_the_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child = ChildProcess(
        "stubborn", [sys.executable, "-c", STUBBORN, str(ready)], log_path=tmp_path / "logs" / "stubborn.log"
    )
    child.spawn()
    wait_until(ready.exists, 30, "child ready")
    pid = child.pid
    assert pid is not None and child.running
    await child.stop_async(grace=0.5)
    assert not child.running and not pid_alive(pid)
    assert describe_exit(child.returncode) == "killed by SIGKILL"
    assert "starting stubborn" in (tmp_path / "logs" / "stubborn.log").read_text()


def test_restart_counts_and_reuses_the_same_command(tmp_path: Path) -> None:
    child = ChildProcess("sleeper", ["sleep", "60"], log_path=tmp_path / "sleeper.log")
    child.start()
    first = child.pid
    child.restart()
    assert child.running and child.pid != first and child.restarts == 1
    assert first is not None and not pid_alive(first)
    child.stop()
    assert not child.running and describe_exit(child.returncode) == f"killed by {signal.SIGTERM.name}"


async def test_a_crash_looping_child_is_restarted_with_growing_delays(tmp_path: Path) -> None:
    child = ChildProcess(
        "crasher", [sys.executable, "-c", "raise SystemExit(3)"], log_path=tmp_path / "crasher.log"
    )
    said: list[str] = []
    rounds: list[int] = []
    supervisor = Supervisor([child], said.append, on_restart=lambda: rounds.append(child.restarts))
    child.spawn()
    task = asyncio.create_task(supervisor.run())
    try:
        for _ in range(600):
            if child.restarts >= 3 and len(said) >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        supervisor.stopping = True
        await asyncio.wait_for(task, timeout=10)
        child.kill()
    assert child.restarts >= 3 and rounds[:3] == [1, 2, 3]
    delays = [float(m.group(1)) for m in (re.search(r"restarting in ([\d.]+)s", s) for s in said) if m]
    assert all("crasher exited (exit code 3)" in s for s in said)
    assert delays[0] <= 0.5 and delays[2] >= 1.0  # 0.5 s doubling (with jitter), not a spin


async def test_broker_wait_returns_once_a_real_server_answers_ping(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", name="redis-server", log_path=tmp_path / "redis.log")
    server.spawn()  # no waiting here: wait_ready must cover the time until the port is open
    try:
        broker = LocalBroker({"broker": "redis", "redis_url": server.url}, server)
        await broker.wait_ready(load_settings(namespace="waittest"), within=60)
        assert server.running
    finally:
        server.stop()


@pytest.mark.parametrize("case", ["silent", "dies"])
async def test_broker_wait_gives_up_with_a_clear_error(tmp_path: Path, case: str) -> None:
    server: Any = None
    if case == "dies":
        server = ChildProcess("redis-server", [sys.executable, "-c", "pass"], log_path=tmp_path / "r.log")
        server.spawn()
        wait_until(lambda: not server.running, 30, "child exited")
    broker = LocalBroker({"broker": "redis", "redis_url": f"redis://127.0.0.1:{free_port()}/0"}, server)
    with pytest.raises(LocalError) as info:
        await broker.wait_ready(load_settings(), within=1)
    if case == "dies":
        assert "redis-server exited during start-up; see" in str(info.value)
    else:
        assert "the redis broker at redis://127.0.0.1:" in str(info.value)
        assert "did not answer within 1s" in str(info.value)


def test_children_get_typed_overrides_and_the_users_other_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentswarm.local import LocalOptions, LocalSwarm

    monkeypatch.setenv("AGENTSWARM_HANDLER", "agentswarm.handlers.openai_chat:handle")
    monkeypatch.setenv("AGENTSWARM_MAX_DELIVERIES", "7")  # not the supervisor's: passes through
    monkeypatch.setenv("AGENTSWARM_AGENT_ID", "from-the-shell")  # the supervisor's: replaced
    monkeypatch.setenv("AGENTSWARM_BROKER", "redis")
    swarm = LocalSwarm(LocalOptions(state_dir=tmp_path / "state"), load_settings())
    swarm.broker = LocalBroker({"broker": "nats", "nats_url": "nats://127.0.0.1:4999"}, None)
    agent = swarm._agent(1)
    assert agent.name == "agent-1" and agent.env is not None
    assert agent.env["AGENTSWARM_AGENT_ID"] == "agent-1"
    assert agent.env["AGENTSWARM_CHECKPOINT_DIR"] == str(tmp_path / "state" / "agents" / "agent-1")
    # The handler the supervisor validated is the one the agents run.
    assert agent.env["AGENTSWARM_HANDLER"] == "agentswarm.handlers.openai_chat:handle"
    assert (agent.env["AGENTSWARM_BROKER"], agent.env["AGENTSWARM_NATS_URL"]) == (
        "nats",
        "nats://127.0.0.1:4999",
    )
    assert agent.env["AGENTSWARM_MAX_DELIVERIES"] == "7"
    assert "AGENTSWARM_PORT" not in agent.env and "AGENTSWARM_API_TOKEN" not in agent.env
