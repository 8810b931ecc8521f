"""``agentswarm local --autoscale``: the scaling rule on a clock, and whole swarms of real agent processes.

The rule (:class:`ScalePolicy`) is checked step by step on a virtual clock. The swarm tests run
:class:`LocalSwarm` with its embedded broker on both backends: a burst scales 0 -> MAX -> 0 with every task
done once and correct, and scaling 4 busy agents in to 1 hands every interrupted task to the survivor, which
resumes it from the broker checkpoint (the step log shows no stored step executed again).
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import logged_steps
import pytest
from agentswarm.broker import Broker, NewTask, open_broker
from agentswarm.handlers.steps import expected_result
from agentswarm.local import LocalError, LocalOptions, LocalSwarm
from agentswarm.local.autoscale import ScalePolicy, parse_range
from agentswarm.settings import load_settings
from rt_support import StepLog, wait_until

pytestmark = pytest.mark.timeout(300)


# -- the rule -----------------------------------------------------------------------------------------------
def test_range_parsing_and_errors() -> None:
    assert parse_range("0..8") == (0, 8)
    assert parse_range(" 2 .. 2 ") == (2, 2)
    for bad in ("8", "0..0", "5..2", "-1..3", "a..b", ""):
        with pytest.raises(ValueError, match="MIN"):
            parse_range(bad)
    with pytest.raises(LocalError, match="--autoscale-target must be at least 1, got 0"):
        LocalOptions(autoscale="0..4", autoscale_target=0).check()
    with pytest.raises(LocalError, match=r"--autoscale '4\.\.1'"):
        LocalOptions(autoscale="4..1").check()


def test_policy_scales_up_at_once_down_after_the_window_and_to_zero_after_the_cooldown() -> None:
    p = ScalePolicy(0, 8, target=2, cooldown=30, stabilization=10)
    assert p.decide(0, 0, 0) == 0  # idle stays at zero
    assert p.decide(1, 1, 0) == 1  # any task wakes it (activation 0)
    assert p.decide(2, 100, 1) == 8  # ceil(100 / 2) capped at MAX, at once
    assert p.decide(3, 9, 8) == 8  # wants 5, but 8 was wanted within the stabilisation window
    assert p.decide(14, 9, 8) == 5  # the window has passed: down to ceil(9 / 2)
    assert p.decide(15, 0, 5) == 5  # idle now, window still remembers 5
    assert p.decide(26, 0, 5) == 1  # past the window: one agent until the cooldown ends
    assert p.decide(43, 0, 1) == 1  # last active at 14: 29 s idle < cooldown 30
    assert p.decide(44, 0, 1) == 0  # cooldown over: the last step to zero
    assert p.decide(45, 0, 0) == 0


def test_policy_respects_min_and_activation() -> None:
    p = ScalePolicy(0, 4, activation=5, cooldown=60, stabilization=0)
    assert p.decide(0, 0, 0) == 0
    assert p.decide(1, 5, 0) == 0  # backlog 5 is not above the activation threshold: stays at zero
    assert p.decide(2, 6, 0) == 4  # active: ceil(6 / 1) capped at 4
    assert p.decide(3, 3, 4) == 3  # once running, the count follows the metric below the threshold too
    assert p.decide(4, 0, 3) == 1  # inactive within the cooldown: one agent
    assert p.decide(62, 0, 1) == 0  # 60 s after the last activity
    q = ScalePolicy(2, 4, cooldown=0, stabilization=0)
    assert q.decide(0, 0, 0) == 2  # MIN agents even when idle
    assert q.decide(1, 3, 2) == 3
    assert q.decide(2, 0, 3) == 2


# -- whole swarms -----------------------------------------------------------------------------------------
@pytest.fixture(params=["nats", "redis"])
async def autoscaled(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    """``await autoscaled("0..8", **options)`` -> (a started LocalSwarm, a broker connected to it)."""
    for name in [k for k in os.environ if k.startswith("AGENTSWARM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AGENTSWARM_CLAIM_IDLE_MS", "1500")  # a scaled-in agent's task is taken over soon
    # The agents import the tests' step-logging handler (the payload's "log" is a test fixture only).
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [logged_steps.DIRECTORY, os.environ.get("PYTHONPATH")]))
    )
    made: list[tuple[LocalSwarm, asyncio.Task[None], Broker]] = []

    async def make(
        scale: str, handler: str = logged_steps.HANDLER, **options: Any
    ) -> tuple[LocalSwarm, Broker]:
        opts = LocalOptions(
            broker=request.param,
            state_dir=tmp_path / "state",
            port=0,
            autoscale=scale,
            autoscale_interval=0.3,
            out=io.StringIO(),
            **options,
        )
        swarm = LocalSwarm(opts, load_settings(handler=handler))
        await swarm.start()
        supervising = asyncio.create_task(swarm.supervise())
        assert swarm.broker is not None
        broker = await open_broker(swarm.broker.settings(swarm.settings))
        made.append((swarm, supervising, broker))
        return swarm, broker

    yield make
    for swarm, supervising, broker in made:
        await broker.close()
        supervising.cancel()
        await asyncio.gather(supervising, return_exceptions=True)
        await swarm.stop()


def running_agents(swarm: LocalSwarm) -> int:
    return sum(1 for a in swarm.agents if a.running)


def redone_steps(log: StepLog) -> int:
    """Step executions beyond the first, over all tasks."""
    count = 0
    for rows in log.by_task().values():
        execs = [step for kind, step, _agent, _attempt in rows if kind == "exec"]
        count += len(execs) - len(set(execs))
    return count


async def test_burst_scales_from_zero_to_max_and_back_to_zero(autoscaled: Any, tmp_path: Path) -> None:
    swarm, broker = await autoscaled("0..8", autoscale_cooldown=2.0, autoscale_stabilization=1.0)
    scaler = swarm.autoscaler
    assert scaler is not None
    await asyncio.sleep(1.0)
    assert running_agents(swarm) == 0 and scaler.agents == 0  # nothing to do: no agent runs
    log_path = tmp_path / "steps.log"
    ids = await broker.enqueue_many(
        [NewTask({"steps": 3, "delay": 0.05, "log": str(log_path)}, f"burst-{i:03d}") for i in range(200)]
    )

    async def max_reached() -> bool:
        return running_agents(swarm) == 8

    await wait_until(max_reached, within=60, what="8 agents running")

    async def all_done() -> bool:
        return (await broker.stats()).done == 200

    await wait_until(all_done, within=240, what="200 results")

    async def back_to_zero() -> bool:
        return scaler.agents == 0 and running_agents(swarm) == 0

    await wait_until(back_to_zero, within=60, what="scale back to zero after the cooldown")
    for task_id in ids:
        result = await broker.get_result(task_id)
        assert result is not None and result.value == expected_result(task_id, 3), task_id
    assert await broker.dead_letters() == []
    assert await broker.backlog() == 0
    assert max(s.agents for s in scaler.samples) == 8
    log = StepLog.read(log_path)
    assert log.violations() == []  # no step whose checkpoint was stored ran again
    assert redone_steps(log) <= scaler.scale_ins  # at most the step in flight per scale-in
    assert scaler.scale_ins >= 8


async def test_scale_in_from_4_to_1_hands_every_task_to_the_survivor(autoscaled: Any, tmp_path: Path) -> None:
    swarm, broker = await autoscaled("1..4", autoscale_cooldown=600, autoscale_stabilization=600)
    scaler = swarm.autoscaler
    assert scaler is not None
    log_path = tmp_path / "steps.log"
    # Long enough (10 s each) that agent-0 cannot finish one task and take a second before the autoscaler's
    # agents 1-3 have started, even on a loaded machine.
    steps = 40
    ids = await broker.enqueue_many(
        [NewTask({"steps": steps, "delay": 0.25, "log": str(log_path)}, f"long-{i}") for i in range(4)]
    )

    async def four_running_tasks() -> bool:
        by_task = StepLog.read(log_path).by_task()
        agents = {rows[0][2] for rows in by_task.values() if len(rows) >= 4}
        return len(agents) == 4

    await wait_until(four_running_tasks, within=90, what="4 tasks running on 4 agents")
    before = StepLog.read(log_path).by_task()
    owner = {task: rows[0][2] for task, rows in before.items()}
    scaler.policy.max_agents = 1  # the operator lowers MAX: agent-3, agent-2 and agent-1 get SIGTERM
    scaler.scale_to(1)

    async def all_done() -> bool:
        return (await broker.stats()).done == 4

    await wait_until(all_done, within=180, what="the 4 tasks to finish on the remaining agent")
    log = StepLog.read(log_path)
    assert log.violations() == []
    for task_id in ids:
        result = await broker.get_result(task_id)
        assert result is not None and result.value == expected_result(task_id, steps)
        rows = log.by_task()[task_id]
        if owner[task_id] != "agent-0":
            # Resumed elsewhere, from the checkpoint the scaled-in agent stored on SIGTERM.
            assert result.agent_id == "agent-0"
            # On SIGTERM the step in flight stores its checkpoint, so agent-0 starts right after it.
            handover = next(r for r in rows if r[2] == "agent-0")
            last = max(step for kind, step, agent, _ in rows if kind == "exec" and agent == owner[task_id])
            assert last <= handover[1] <= last + 1, rows
            assert handover[1] > 0
        execs = [step for kind, step, _agent, _attempt in rows if kind == "exec"]
        assert len(execs) - len(set(execs)) <= 1  # at most the step in flight
        assert sorted(set(execs)) == list(range(steps))
    assert {owner[t] for t in ids} == {"agent-0", "agent-1", "agent-2", "agent-3"}
    assert scaler.scale_ins == 3 and running_agents(swarm) == 1
    assert await broker.get_checkpoints(ids[0]) == []


async def test_closing_a_nats_broker_logs_no_outage(
    nats_server: Any, unique_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The autoscaler's broker is closed at every stop: a deliberate close is not a lost connection."""
    from agentswarm.broker.nats_jetstream import NatsJetStreamBroker

    broker = NatsJetStreamBroker(nats_server.url, namespace=unique_namespace)
    await broker.connect()
    assert await broker.backlog() == 0
    with caplog.at_level("WARNING", logger="agentswarm.broker"):
        await broker.close()
        await asyncio.sleep(0.2)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []


async def test_parked_parents_never_strand_a_swarm_at_zero(autoscaled: Any) -> None:
    """Task trees: a parent parks (acknowledged, out of the stream) while its children run. The backlog still
    counts the children, so agents stay up until the last parent finished, then go to zero."""
    from agentswarm.handlers.tree import PLAN, expected_pipeline

    swarm, broker = await autoscaled(
        "0..2", handler=PLAN, autoscale_cooldown=1.0, autoscale_stabilization=0.5
    )
    scaler = swarm.autoscaler
    assert scaler is not None
    parents = [f"plan-{i}" for i in range(4)]
    await broker.enqueue_many([NewTask({"workers": 3, "steps": 2}, p) for p in parents])

    async def finished() -> bool:
        return all([await broker.get_result(p) is not None for p in parents])

    await wait_until(finished, within=180, interval=0.3, what="4 pipelines")

    async def back_to_zero() -> bool:
        return scaler.agents == 0 and running_agents(swarm) == 0

    await wait_until(back_to_zero, within=60, what="scale back to zero")
    for p in parents:
        result = await broker.get_result(p)
        assert result is not None and result.value == expected_pipeline(p, 3, 2), p
        events = await broker.read_events(p, limit=1000)
        assert "parked" in [e.data.get("type") for e in events]
    assert await broker.backlog() == 0 and await broker.dead_letters() == []
