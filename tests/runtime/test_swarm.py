"""Real agent processes against real servers: random SIGKILLs, a broker restart, poison, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import logged_steps
import pytest
from agentswarm.agent import probe
from agentswarm.broker import Broker, NewTask
from agentswarm.checkpoint import FileCheckpointStore
from agentswarm.handlers.steps import expected_result
from agentswarm.settings import Settings
from rt_support import AgentProcess, StepLog, make_test_broker, wait_until

pytestmark = pytest.mark.timeout(240)


def agent_env(backend: str, url: str, namespace: str, **extra: Any) -> dict[str, str]:
    env = {
        "AGENTSWARM_BROKER": backend,
        "AGENTSWARM_REDIS_URL" if backend == "redis" else "AGENTSWARM_NATS_URL": url,
        "AGENTSWARM_NAMESPACE": namespace,
        "AGENTSWARM_HANDLER": logged_steps.HANDLER,  # the steps handler plus the step log of the payload
        "PYTHONPATH": os.pathsep.join(filter(None, [logged_steps.DIRECTORY, os.environ.get("PYTHONPATH")])),
        # Killed agents come back under the same identity well within this, so tasks resume on their
        # owner's volume; the conformance suite covers take-over by another consumer.
        "AGENTSWARM_CLAIM_IDLE_MS": "30000",
        "AGENTSWARM_MAX_DELIVERIES": "50",
        "AGENTSWARM_CLAIM_BLOCK_MS": "300",
        "AGENTSWARM_RETRY_BACKOFF_MS": "50",
        "AGENTSWARM_LOG_LEVEL": "INFO",
    }
    env.update({f"AGENTSWARM_{k.upper()}": str(v) for k, v in extra.items()})
    return env


async def assert_all_done_once(broker: Broker, ids: list[str], steps: int) -> None:
    stats = await broker.stats()
    assert (stats.done, stats.dead_lettered, stats.queued, stats.pending) == (len(ids), 0, 0, 0), stats
    for task_id in ids:
        result = await broker.get_result(task_id)
        assert result is not None, f"task {task_id} lost"
        assert result.value == expected_result(task_id, steps)
        events = await broker.read_events(task_id, None, limit=10_000)
        assert [e.data["type"] for e in events].count("result") == 1, f"task {task_id}: result events"


def mid_task_agents(log: StepLog, steps: int, started_at_line: dict[str, int]) -> set[str]:
    """Agents whose latest step since their last (re)start is not the last step of its task."""
    latest: dict[str, int] = {}
    for index, (_kind, _task, step, agent, _attempt) in enumerate(log.lines):
        if index >= started_at_line.get(agent, 0):
            latest[agent] = step
    return {agent for agent, step in latest.items() if step < steps - 1}


def stop_all(agents: list[AgentProcess]) -> None:
    for a in agents:
        a.stop()


@pytest.fixture
def agents_cleanup() -> Any:
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.kill()


async def test_200_tasks_4_agents_random_sigkills(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents_cleanup: list[AgentProcess]
) -> None:
    n, steps = 200, 6
    log_path = tmp_path / "steps.log"
    env = agent_env(backend, server_url, unique_namespace)
    agents = [AgentProcess(f"agent-{i}", env, tmp_path) for i in range(4)]
    agents_cleanup += agents
    broker = make_test_broker(backend, server_url, unique_namespace)
    await broker.connect()
    try:
        ids = [f"task-{i:03d}" for i in range(n)]
        await broker.enqueue_many(
            [NewTask({"steps": steps, "delay": 0.03, "log": str(log_path)}, task_id) for task_id in ids]
        )
        for a in agents:
            a.start()
        rng = random.Random(20261128)
        started_at_line: dict[str, int] = {}
        kills = 0

        async def finished() -> bool:
            nonlocal kills
            done = (await broker.stats()).done
            # Kill agents that are between two steps of a task, so that kills land mid-task.
            await asyncio.sleep(rng.uniform(0.1, 0.4))
            log_now = StepLog.read(log_path)
            mid_task = mid_task_agents(log_now, steps, started_at_line)
            warm = [a for a in agents if a.agent_id in mid_task and time.monotonic() - a.started_at > 1.0]
            if done < n * 0.85 and kills < 16 and warm:
                victim = rng.choice(warm)
                victim.kill()
                kills += 1
                started_at_line[victim.agent_id] = len(log_now.lines)
                victim.start()  # same identity, same volume
            return done == n

        await wait_until(finished, within=180, interval=0.05, what=f"{n} results")
        stop_all(agents)
        await assert_all_done_once(broker, ids, steps)
        log = StepLog.read(log_path)
        assert log.violations() == []
        for task_id in ids:
            assert log.executed_steps(task_id) == set(range(steps)), task_id
        interrupted, resumed = log.interrupted(), log.resumed()
        print(f"{backend}: {kills} SIGKILLs, {len(interrupted)} tasks interrupted, {len(resumed)} resumed")
        assert kills >= 8
        # The kills really interrupted tasks mid-way, and those resumed from their checkpoints.
        assert len(interrupted) >= 6, "too few tasks were interrupted mid-way: the test proved little"
        assert len(resumed) >= 4, "interrupted tasks did not resume past step 0"
    finally:
        await broker.close()


async def test_broker_killed_and_restarted_mid_run_loses_nothing(
    backend: str,
    request: pytest.FixtureRequest,
    unique_namespace: str,
    tmp_path: Path,
    agents_cleanup: list[AgentProcess],
) -> None:
    """SIGKILL the server twice mid-run (Redis: AOF fsync always; NATS: JetStream file store)."""
    server = request.getfixturevalue(f"{backend}_factory")()
    n, steps = 60, 4
    log_path = tmp_path / "steps.log"
    # A short claim idle (JetStream AckWait): an ack that the killed server never stored is redelivered soon,
    # found finished and acknowledged, so the queue converges to empty within the test.
    env = agent_env(backend, server.url, unique_namespace, claim_idle_ms=8000)
    agents = [AgentProcess(f"agent-{i}", env, tmp_path) for i in range(3)]
    agents_cleanup += agents
    ids = [f"r{i:02d}" for i in range(n)]
    broker = make_test_broker(backend, server.url, unique_namespace)
    await broker.connect()
    await broker.enqueue_many(
        [NewTask({"steps": steps, "delay": 0.04, "log": str(log_path)}, i) for i in ids]
    )
    await broker.close()
    for a in agents:
        a.start()
    for threshold in (10, 30):
        probe_broker = make_test_broker(backend, server.url, unique_namespace)
        await probe_broker.connect()

        async def reached(b: Broker = probe_broker, t: int = threshold) -> bool:
            return (await b.stats()).done >= t

        await wait_until(reached, within=90, what=f"{threshold} results before the server kill")
        await probe_broker.close()
        server.kill()  # SIGKILL: only what the server persisted survives
        await asyncio.sleep(1.0)
        server.start()
    broker = make_test_broker(backend, server.url, unique_namespace)
    await broker.connect()
    try:

        async def all_done_and_drained() -> bool:
            stats = await broker.stats()
            return (stats.done, stats.queued, stats.pending) == (n, 0, 0)

        # Every task recorded, and no delivery left behind: an ack lost with the killed server means one
        # redelivery of a finished task, which the agents acknowledge without running it again.
        await wait_until(all_done_and_drained, within=120, what="all results, empty queue after the restarts")
        stop_all(agents)
        assert all(a.starts == 1 for a in agents)  # the agents rode out the outage without restarting
        await assert_all_done_once(broker, ids, steps)
        assert StepLog.read(log_path).violations() == []
        # Enqueue stays idempotent across the restart (the task index survived it).
        await broker.enqueue_many([NewTask({}, i) for i in ids])
        assert (await broker.stats()).enqueued_total == n
        if backend == "redis":  # the outage was visible to the agents (nats-py mostly buffers through it)
            assert "broker unavailable" in "".join(a.log_text() for a in agents)
    finally:
        await broker.close()


async def test_poison_task_dead_lettered_while_others_finish(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents_cleanup: list[AgentProcess]
) -> None:
    env = agent_env(backend, server_url, unique_namespace, max_deliveries=3)
    agents = [AgentProcess(f"agent-{i}", env, tmp_path) for i in range(2)]
    agents_cleanup += agents
    broker = make_test_broker(backend, server_url, unique_namespace, max_deliveries=3)
    await broker.connect()
    try:
        ids = [f"ok{i:02d}" for i in range(20)]
        specs = [NewTask({"steps": 2, "delay": 0.01}, i) for i in ids[:10]]
        specs += [NewTask({"poison": True}, "poison"), NewTask({"steps": 2, "fail_times": 1}, "flaky")]
        specs += [NewTask({"steps": 2, "delay": 0.01}, i) for i in ids[10:]]
        await broker.enqueue_many(specs)
        for a in agents:
            a.start()

        async def settled() -> bool:
            s = await broker.stats()
            return s.done == 21 and s.dead_lettered == 1

        await wait_until(settled, within=90, what="20 results + flaky + 1 dead letter")
        stop_all(agents)
        (dead,) = await broker.dead_letters()
        assert dead.task.id == "poison" and dead.deliveries == 3
        assert dead.error == "PoisonTask: task poison is poison (payload says so)"
        types = [e.data["type"] for e in await broker.read_events("poison", None, limit=1000)]
        assert types.count("error") == 3 and types[-1] == "dead_lettered" and "result" not in types
        assert await broker.get_result("poison") is None
        flaky = await broker.get_result("flaky")
        assert flaky is not None and flaky.attempt == 2 and flaky.value == expected_result("flaky", 2)
        for i in ids:
            r = await broker.get_result(i)
            assert r is not None and r.value == expected_result(i, 2)
    finally:
        await broker.close()


async def test_sigterm_pauses_at_checkpoint_and_resumes(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents_cleanup: list[AgentProcess]
) -> None:
    steps = 30
    log_path = tmp_path / "steps.log"
    env = agent_env(backend, server_url, unique_namespace, shutdown_grace_seconds=20)
    agent = AgentProcess("agent-0", env, tmp_path)
    agents_cleanup.append(agent)
    broker = make_test_broker(backend, server_url, unique_namespace)
    await broker.connect()
    try:
        await broker.enqueue({"steps": steps, "delay": 0.1, "log": str(log_path)}, "long")
        agent.start()

        async def some_steps() -> bool:
            return len(StepLog.read(log_path).executed_steps("long")) >= 3

        await wait_until(some_steps, within=60, what="first steps")
        settings = Settings(checkpoint_dir=agent.checkpoint_dir)
        assert probe(60, settings) == 0
        rc = await asyncio.to_thread(agent.terminate, 30)
        assert rc == 0, agent.log_text()[-3000:]
        executed = StepLog.read(log_path).executed_steps("long")
        assert len(executed) < steps, "task finished before SIGTERM: the test proved nothing"
        # Stopped exactly at a checkpoint: the stored state covers every executed step.
        ckpt = await FileCheckpointStore(agent.checkpoint_dir).load("long")
        assert ckpt is not None and ckpt.state["next_step"] == max(executed) + 1
        assert await broker.get_result("long") is None
        stats = await broker.stats()
        assert (stats.pending, stats.queued) == (1, 0)  # left unacknowledged, not lost
        assert probe(0.0, settings) == 1  # no heartbeat since the exit
        agent.start()

        async def done() -> bool:
            return await broker.get_result("long") is not None

        await wait_until(done, within=60, what="resumed task to finish")
        agent.stop()
        result = await broker.get_result("long")
        assert result is not None and result.value == expected_result("long", steps)
        rows = StepLog.read(log_path).by_task()["long"]
        exec_steps = [step for kind, step, _a, _t in rows if kind == "exec"]
        assert sorted(exec_steps) == list(range(steps))  # every step ran exactly once
        started = [
            e.data for e in await broker.read_events("long", None, limit=1000) if e.data["type"] == "started"
        ]
        assert started[0]["resumed_from_version"] is None
        assert started[-1]["resumed_from_version"] == max(executed) + 1
    finally:
        await broker.close()


async def test_restarts_of_a_progressing_task_never_dead_letter_it(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents_cleanup: list[AgentProcess]
) -> None:
    """Ten restarts (SIGKILL and SIGTERM alternately, like a rolling update or spot preemptions) of an
    agent mid-task, each after new checkpoint progress, with AGENTSWARM_MAX_DELIVERIES=2: the task is
    done, never dead-lettered, and no step ran again after its checkpoint was stored."""
    steps = 60
    log_path = tmp_path / "steps.log"
    env = agent_env(backend, server_url, unique_namespace, max_deliveries=2, shutdown_grace_seconds=20)
    agent = AgentProcess("agent-0", env, tmp_path)
    agents_cleanup.append(agent)
    broker = make_test_broker(backend, server_url, unique_namespace, max_deliveries=2)
    await broker.connect()
    try:
        await broker.enqueue({"steps": steps, "delay": 0.05, "log": str(log_path)}, "long")
        agent.start()
        for restart in range(10):
            seen = len([r for r in StepLog.read(log_path).lines if r[0] == "ckpt"])

            async def progressed(seen: int = seen, restart: int = restart) -> bool:
                assert await broker.dead_letters() == [], f"dead-lettered after {restart} restarts"
                return len([r for r in StepLog.read(log_path).lines if r[0] == "ckpt"]) >= seen + 2

            await wait_until(progressed, within=60, what=f"new checkpoints before restart {restart}")
            if restart % 2:
                assert await asyncio.to_thread(agent.terminate, 30) == 0
            else:
                agent.kill()
            agent.start()
        assert await broker.get_result("long") is None, "finished before the tenth restart: proved little"

        async def done() -> bool:
            return await broker.get_result("long") is not None or bool(await broker.dead_letters())

        await wait_until(done, within=90, what="the task to finish")
        agent.stop()
        assert await broker.dead_letters() == []
        result = await broker.get_result("long")
        assert result is not None and result.value == expected_result("long", steps)
        assert result.attempt == 11
        log = StepLog.read(log_path)
        assert log.violations() == []
        assert log.executed_steps("long") == set(range(steps))
    finally:
        await broker.close()


async def test_a_task_that_kills_its_agent_at_the_same_step_is_dead_lettered(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents_cleanup: list[AgentProcess]
) -> None:
    """A crash loop: the first delivery makes progress up to step 3, then every delivery dies at step 3
    without progress. After AGENTSWARM_MAX_DELIVERIES such deaths the task is dead-lettered."""
    env = agent_env(
        backend, server_url, unique_namespace, max_deliveries=3, handler="bad_handlers:dies_at_step"
    )
    env["PYTHONPATH"] = f"{Path(__file__).parent}:{os.environ.get('PYTHONPATH', '')}"
    agent = AgentProcess("agent-0", env, tmp_path)
    agents_cleanup.append(agent)
    broker = make_test_broker(backend, server_url, unique_namespace, max_deliveries=3)
    await broker.connect()
    try:
        await broker.enqueue_many([NewTask({"die_at": 3}, "crasher"), NewTask({"steps": 1}, "after")])
        agent.start()

        async def dead_lettered() -> bool:
            if not agent.alive:
                agent.start()  # the StatefulSet brings the pod back under the same identity
            return bool(await broker.dead_letters())

        await wait_until(dead_lettered, within=120, interval=0.2, what="the crash loop to be dead-lettered")
        (dead,) = await broker.dead_letters()
        assert dead.task.id == "crasher" and "without a result or checkpoint progress" in dead.error
        # One productive delivery (steps 0-2), three deaths at step 3 without progress, and the fifth
        # agent start dead-letters the task instead of running it.
        assert dead.deliveries == 4 and agent.starts == 5

        async def next_one_done() -> bool:
            return await broker.get_result("after") is not None

        await wait_until(next_one_done, within=60, what="the next task to run")
        agent.stop()
    finally:
        await broker.close()


async def test_sigterm_exits_within_grace_when_handler_never_checkpoints(
    redis_server: Any, unique_namespace: str, tmp_path: Path, agents_cleanup: list[AgentProcess]
) -> None:
    env = agent_env("redis", redis_server.url, unique_namespace, shutdown_grace_seconds=1)
    agent = AgentProcess("agent-0", env, tmp_path)
    agents_cleanup.append(agent)
    broker = make_test_broker("redis", redis_server.url, unique_namespace)
    await broker.connect()
    try:
        await broker.enqueue({"steps": 1, "delay": 3600}, "stuck")
        agent.start()

        async def started() -> bool:
            return any(e.data["type"] == "started" for e in await broker.read_events("stuck"))

        await wait_until(started, within=60, what="task start")
        rc = await asyncio.to_thread(agent.terminate, 30)
        assert rc == 0
        assert "checkpoint within the grace period" in agent.log_text()
        assert (await broker.stats()).pending == 1
    finally:
        await broker.close()


def test_probe_without_heartbeat_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert probe(30, Settings(checkpoint_dir=tmp_path / "nothing-here")) == 1
    assert "no heartbeat file" in capsys.readouterr().err


async def test_sigterm_while_redis_is_down_still_exits(
    redis_factory: Callable[[], Any],
    unique_namespace: str,
    tmp_path: Path,
    agents_cleanup: list[AgentProcess],
) -> None:
    redis = redis_factory()
    env = agent_env("redis", redis.url, unique_namespace, shutdown_grace_seconds=2)
    agent = AgentProcess("agent-0", env, tmp_path)
    agents_cleanup.append(agent)
    broker = make_test_broker("redis", redis.url, unique_namespace)
    await broker.connect()
    await broker.enqueue({"steps": 1000, "delay": 0.05}, "busy")

    async def started() -> bool:
        return any(e.data["type"] == "progress" for e in await broker.read_events("busy"))

    agent.start()
    await wait_until(started, within=60, what="task start")
    await broker.close()
    redis.kill()
    rc = await asyncio.to_thread(agent.terminate, 60)
    assert rc == 0, agent.log_text()[-2000:]
    text = agent.log_text()
    assert "grace period" in text or "broker unavailable during shutdown" in text
    redis.start()
    broker = make_test_broker("redis", redis.url, unique_namespace)
    await broker.connect()
    try:
        stats = await broker.stats()
        assert (stats.pending, stats.done) == (1, 0)  # still there, unacknowledged, for the next agent
    finally:
        await broker.close()


async def test_broker_checkpoints_let_another_agent_resume(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agents_cleanup: list[AgentProcess]
) -> None:
    """With AGENTSWARM_CHECKPOINT_BACKEND=broker a task abandoned by a dead agent resumes elsewhere."""
    steps = 12
    log_path = tmp_path / "steps.log"
    env = agent_env(backend, server_url, unique_namespace, checkpoint_backend="broker", claim_idle_ms=1500)
    first = AgentProcess("agent-a", env, tmp_path)
    second = AgentProcess("agent-b", env, tmp_path)
    agents_cleanup += [first, second]
    broker = make_test_broker(backend, server_url, unique_namespace)
    await broker.connect()
    try:
        await broker.enqueue({"steps": steps, "delay": 0.1, "log": str(log_path)}, "handover")
        first.start()

        async def some_steps() -> bool:
            # Stored checkpoints, not just executed steps: a kill between a step and its checkpoint
            # legitimately makes agent-b redo that step.
            rows = StepLog.read(log_path).by_task().get("handover", [])
            return len([r for r in rows if r[0] == "ckpt"]) >= 3

        await wait_until(some_steps, within=60, what="first steps on agent-a")
        first.kill()  # and it never comes back
        second.start()

        async def done() -> bool:
            return await broker.get_result("handover") is not None

        await wait_until(done, within=90, what="agent-b to finish the task")
        second.stop()
        result = await broker.get_result("handover")
        assert result is not None and result.agent_id == "agent-b"
        assert result.value == expected_result("handover", steps)
        log = StepLog.read(log_path)
        assert log.violations() == []
        b_rows = [r for r in log.by_task()["handover"] if r[2] == "agent-b"]
        assert b_rows and b_rows[0][1] >= 3  # agent-b started where agent-a's checkpoint left off
        assert await broker.get_checkpoints("handover") == []  # cleaned up after the result
    finally:
        await broker.close()


async def test_file_checkpoints_of_task_finished_elsewhere_are_swept(
    redis_server: Any, unique_namespace: str, tmp_path: Path, agents_cleanup: list[AgentProcess]
) -> None:
    """File checkpoints stay on the dead agent's volume; another agent restarts the task from step 0, and
    the first agent, once back, removes its now useless checkpoints."""
    log_path = tmp_path / "steps.log"
    env = agent_env("redis", redis_server.url, unique_namespace, claim_idle_ms=1500)
    first = AgentProcess("agent-a", env, tmp_path)
    second = AgentProcess("agent-b", env, tmp_path)
    agents_cleanup += [first, second]
    broker = make_test_broker("redis", redis_server.url, unique_namespace)
    await broker.connect()
    try:
        await broker.enqueue({"steps": 8, "delay": 0.1, "log": str(log_path)}, "moved")
        first.start()

        async def some_steps() -> bool:
            return len(StepLog.read(log_path).executed_steps("moved")) >= 2

        await wait_until(some_steps, within=60, what="first steps on agent-a")
        first.kill()
        ckpt_dir = first.checkpoint_dir / "tasks" / "moved"
        assert ckpt_dir.is_dir()
        second.start()

        async def done() -> bool:
            return await broker.get_result("moved") is not None

        await wait_until(done, within=60, what="agent-b to finish the task")
        b_rows = [r for r in StepLog.read(log_path).by_task()["moved"] if r[2] == "agent-b"]
        assert b_rows[0][1] == 0  # agent-b could not see agent-a's volume
        first.start()

        async def swept() -> bool:
            return not ckpt_dir.exists()

        await wait_until(swept, within=60, what="agent-a to sweep its stale checkpoints")
        assert "finished elsewhere" in first.log_text()
        stop_all([first, second])
    finally:
        await broker.close()


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        ("bad_handlers:returns_set", "TypeError: handler returned a value that is not JSON"),
        ("bad_handlers:emits_non_json", "TypeError: Object of type bytes is not JSON serializable"),
    ],
)
async def test_non_json_output_is_a_clear_task_error(
    redis_server: Any,
    unique_namespace: str,
    tmp_path: Path,
    agents_cleanup: list[AgentProcess],
    handler: str,
    error: str,
) -> None:
    env = agent_env("redis", redis_server.url, unique_namespace, max_deliveries=2, handler=handler)
    env["PYTHONPATH"] = str(Path(__file__).parent)
    agent = AgentProcess("agent-0", env, tmp_path)
    agents_cleanup.append(agent)
    broker = make_test_broker("redis", redis_server.url, unique_namespace)
    await broker.connect()
    try:
        await broker.enqueue_many([NewTask({}, "bad"), NewTask({}, "bad2")])
        agent.start()

        async def dead() -> bool:
            return (await broker.stats()).dead_lettered == 2

        await wait_until(dead, within=60, what="both tasks dead-lettered")
        agent.stop()
        assert agent.starts == 1  # the agent itself never crashed
        for d in await broker.dead_letters():
            assert d.error.startswith(error) and d.deliveries == 2
    finally:
        await broker.close()
