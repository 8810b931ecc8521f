"""``AGENTSWARM_CONCURRENCY`` on both backends: one agent process, one identity, N tasks at once.

Each of the N tasks has its own checkpoints and events; SIGTERM pauses all N at their next checkpoint and
exits cleanly; after a SIGKILL the agent (same identity) re-takes all N first and resumes each from its own
checkpoint. The step log (``exec``/``ckpt`` lines of :mod:`agentswarm.handlers.steps`) proves no step whose
checkpoint was stored ran twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from agentswarm.broker import Broker, NewTask
from agentswarm.checkpoint import FileCheckpointStore
from agentswarm.handlers.steps import expected_result
from rt_support import AgentProcess, StepLog, wait_until
from test_swarm import agent_env

pytestmark = pytest.mark.timeout(240)

N = 4
STEPS = 40


@pytest.fixture
def agent(backend: str, server_url: str, unique_namespace: str, tmp_path: Path) -> Any:
    env = agent_env(
        backend, server_url, unique_namespace, concurrency=N, shutdown_grace_seconds=20, claim_idle_ms=60_000
    )
    a = AgentProcess("agent-0", env, tmp_path)
    yield a
    a.stop()


async def enqueue(broker: Broker, log: Path) -> list[str]:
    ids = [f"c{i}" for i in range(N)]
    await broker.enqueue_many(
        [NewTask({"steps": STEPS, "delay": 0.1, "log": str(log)}, task_id) for task_id in ids]
    )
    return ids


async def all_running(log: Path, ids: list[str]) -> bool:
    steps = StepLog.read(log)
    return all(len(steps.executed_steps(t)) >= 3 for t in ids)


async def finish_and_check(broker: Broker, ids: list[str], log: Path) -> None:
    async def done() -> bool:
        return all([await broker.get_result(t) is not None for t in ids])

    await wait_until(done, within=120, what="every task to finish")
    for t in ids:
        result = await broker.get_result(t)
        assert result is not None and result.value == expected_result(t, STEPS)
    steps = StepLog.read(log)
    assert steps.violations() == []
    assert set(steps.resumed()) == set(ids)  # every one resumed from its own checkpoint
    stats = await broker.stats()
    assert (stats.done, stats.queued, stats.pending, stats.dead_lettered) == (N, 0, 0, 0)


async def test_n_tasks_at_once_survive_a_sigkill(broker: Broker, agent: AgentProcess, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    ids = await enqueue(broker, log)
    agent.start()
    await wait_until(lambda: all_running(log, ids), within=60, what=f"{N} tasks running at once")
    assert not [t for t in ids if await broker.get_result(t) is not None], "a task finished: proved nothing"
    assert (await broker.stats()).pending == N  # one consumer identity holds all N
    agent.kill()
    agent.start()  # same identity: re-takes its own N deliveries first
    await finish_and_check(broker, ids, log)
    for t in ids:
        events = await broker.read_events(t, None, limit=1000)
        started = [e.data for e in events if e.data["type"] == "started"]
        assert [s["agent"] for s in started] == ["agent-0", "agent-0"]
        assert started[-1]["resumed_from_version"] is not None


async def test_sigterm_pauses_all_n_at_their_checkpoints(
    broker: Broker, agent: AgentProcess, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    ids = await enqueue(broker, log)
    agent.start()
    await wait_until(lambda: all_running(log, ids), within=60, what=f"{N} tasks running at once")
    rc = await asyncio.to_thread(agent.terminate, 40)
    assert rc == 0, agent.log_text()[-3000:]
    assert agent.log_text().count("left unacknowledged") == N  # each paused at its own checkpoint
    steps = StepLog.read(log)
    for t in ids:
        executed = steps.executed_steps(t)
        assert len(executed) < STEPS, f"{t} finished before SIGTERM: the test proved nothing"
        # Stopped exactly at a checkpoint: each task's stored state covers every step it executed.
        ckpt = await FileCheckpointStore(agent.checkpoint_dir).load(t)
        assert ckpt is not None and ckpt.state["next_step"] == max(executed) + 1
    assert (await broker.stats()).pending == N
    agent.start()
    await finish_and_check(broker, ids, log)
