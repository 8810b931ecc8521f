"""Submit + watch end to end with real agent processes, directly and through connection-cutting proxies.

The proxies are the point: every websocket through a load balancer ends (nginx after
``proxy_read_timeout`` of silence; GKE at its backend timeout however busy the connection is). The
watcher must reconnect, resume after the last event id it saw, and end up with every event exactly
once, which we check against the broker's own event log.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentswarm.broker import open_broker
from agentswarm.client import Backoff, SwarmClient
from agentswarm.handlers.steps import expected_result
from agentswarm.settings import load_settings
from websockets.asyncio.client import connect

from .helpers import TOKEN, Nginx, Swarm, wait_until


async def broker_events(swarm: Swarm, task_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The task's whole event log, read from the broker directly (ground truth)."""
    env = swarm.base_env
    settings = load_settings(
        broker=env["AGENTSWARM_BROKER"],
        redis_url=env["AGENTSWARM_REDIS_URL"],
        namespace=env["AGENTSWARM_NAMESPACE"],
    )
    broker = await open_broker(settings)
    try:
        events = await broker.read_events(task_id, None, limit=10_000)
        return [(e.id, e.data) for e in events]
    finally:
        await broker.close()


def client(url: str) -> SwarmClient:
    return SwarmClient(url, TOKEN, backoff=Backoff(initial=0.05, maximum=0.5), max_retries=50)


async def watch_all(
    swarm: Swarm, url: str, tasks: list[dict[str, Any]]
) -> tuple[SwarmClient, dict[str, Any]]:
    c = client(url)
    ids = await c.submit(tasks)
    seen: dict[str, list[str]] = {tid: [] for tid in ids}
    watches = await c.watch(ids, on_event=lambda f: seen[f.task_id].append(f.event_id))
    for tid in ids:
        truth = await broker_events(swarm, tid)
        # Every event exactly once and in order: the watcher's ids equal the broker's log.
        assert seen[tid] == [eid for eid, _ in truth], tid
        result = watches[tid].result
        assert result is not None and result.status == "done"
    return c, watches


async def test_submit_and_watch_with_real_agents(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    redis_swarm.start_agent(0)
    redis_swarm.start_agent(1)
    tasks = [{"task_id": f"direct-{i}", "payload": {"steps": 3}} for i in range(4)]
    tasks.append({"task_id": "dead-one", "payload": {"poison": True}})
    c = client(redis_swarm.url)
    ids = await c.submit(tasks)
    assert ids == [t["task_id"] for t in tasks]
    # Submitting the same ids again is a no-op (that is what makes client retries safe).
    assert await c.submit(tasks[:1]) == ["direct-0"]
    watches = await c.watch(ids)
    for i in range(4):
        r = watches[f"direct-{i}"].result
        assert r is not None and r.status == "done"
        assert r.result == expected_result(f"direct-{i}", 3)
        assert r.agent_id in ("agent-0", "agent-1")
        steps = [
            json.loads(json.dumps(d))["step"]
            for _, d in await broker_events(redis_swarm, f"direct-{i}")
            if d.get("type") == "progress"
        ]
        assert steps == [1, 2, 3]
    dead = watches["dead-one"].result
    assert dead is not None and dead.status == "dead" and dead.error
    # A later watcher that resumes after the first event gets exactly the rest.
    log = await broker_events(redis_swarm, "direct-0")
    later = await c.watch(["direct-0"], after={"direct-0": log[0][0]})
    assert later["direct-0"].events == len(log) - 1
    # Resuming after the terminal event still ends with the result frame (done and dead alike).
    dead_log = await broker_events(redis_swarm, "dead-one")
    assert dead_log[-1][1]["type"] == "dead_lettered"
    tail = await c.watch(
        ["direct-0", "dead-one"], after={"direct-0": log[-1][0], "dead-one": dead_log[-1][0]}
    )
    assert tail["direct-0"].events == 0 and tail["dead-one"].events == 0
    assert tail["direct-0"].result is not None and tail["direct-0"].result.status == "done"
    assert tail["dead-one"].result is not None and tail["dead-one"].result.status == "dead"
    stats = await c.stats()
    assert stats["done"] == 4 and stats["dead_lettered"] == 1
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{redis_swarm.http}/metrics")).text
    assert 'agentswarm_tasks{state="done"} 4.0' in metrics
    assert 'agentswarm_tasks{state="dead"} 1.0' in metrics
    assert "agentswarm_tasks_submitted_total 6.0" in metrics  # 5 + the idempotent resubmit
    # direct-0 was watched twice; its duration is observed once.
    assert "agentswarm_task_duration_seconds_count 4.0" in metrics


def test_cli_submit_and_watch(redis_swarm: Swarm, tmp_path: Path) -> None:
    redis_swarm.start_coordinator()
    redis_swarm.start_agent(0)
    env = {**redis_swarm.base_env, "AGENTSWARM_URL": redis_swarm.url, "AGENTSWARM_API_TOKEN": TOKEN}
    cli = [sys.executable, "-m", "agentswarm.cli"]
    out = subprocess.run(
        [*cli, "submit", "--payload", '{"steps": 2}', "--id", "cli-1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    frame = json.loads(out.stdout.strip().splitlines()[-1])
    assert frame["type"] == "result" and frame["status"] == "done"
    assert frame["result"] == expected_result("cli-1", 2)
    assert "2 events" in out.stderr or "done" in out.stderr  # the progress line went to stderr
    lines = tmp_path / "tasks.jsonl"
    lines.write_text('{"task_id": "cli-2", "payload": {"steps": 1}}\n\n{"steps": 2}\n')
    out = subprocess.run(
        [*cli, "submit", "--no-watch", "--file", str(lines)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    ids = out.stdout.split()
    assert len(ids) == 2 and ids[0] == "cli-2"
    out = subprocess.run([*cli, "watch", "cli-1", *ids], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for tid in ("cli-1", *ids):  # the summary table
        assert re.search(rf"^{tid}\s+done\s", out.stdout, re.M), out.stdout
    bad = subprocess.run(
        [*cli, "watch", "cli-1", "--token", "wrong"], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1
    assert "rejected the API token" in bad.stderr


def test_cli_watch_prints_events_with_ids_and_resumes_after_one(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    redis_swarm.start_agent(0)
    env = {**redis_swarm.base_env, "AGENTSWARM_URL": redis_swarm.url, "AGENTSWARM_API_TOKEN": TOKEN}
    cli = [sys.executable, "-m", "agentswarm.cli"]

    def run(*args: str) -> list[dict[str, Any]]:
        out = subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    run("submit", "--payload", '{"steps": 3}', "--id", "ev-1", "--quiet", "--json")
    frames = run("watch", "ev-1", "--events", "--json", "--quiet")
    events = [f for f in frames if f["type"] == "event"]
    truth = asyncio.run(broker_events(redis_swarm, "ev-1"))
    assert [f["event_id"] for f in events] == [eid for eid, _ in truth]
    assert [f["type"] for f in frames[-2:]] == ["event", "result"]
    # Resume after the second event: the rest, nothing repeated.
    rest = run("watch", "ev-1", "--events", "--quiet", "--after", events[1]["event_id"])
    assert [f["event_id"] for f in rest] == [eid for eid, _ in truth[2:]]


def test_role_help_lists_their_settings() -> None:
    cli = [sys.executable, "-m", "agentswarm.cli"]
    for role, own, foreign in (
        ("coordinator", "AGENTSWARM_API_TOKEN", "AGENTSWARM_HANDLER"),
        ("agent", "AGENTSWARM_HANDLER", "AGENTSWARM_API_TOKEN"),
    ):
        out = subprocess.run([*cli, role, "--help"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "docs/runtime-contract.md" in out.stdout
        assert own in out.stdout and "AGENTSWARM_MAX_DELIVERIES" in out.stdout
        assert foreign not in out.stdout


async def test_watch_through_nginx_with_short_read_timeout(redis_swarm: Swarm, tmp_path: Path) -> None:
    redis_swarm.start_coordinator()
    redis_swarm.start_agent(0)
    redis_swarm.start_agent(1)
    nginx = Nginx(tmp_path / "nginx", redis_swarm.port, read_timeout_s=1).start()
    try:
        # Steps 1.4 s apart with a 1 s read timeout: nginx cuts the idle websocket between events.
        tasks = [{"payload": {"steps": 4, "delay": 1.4}} for _ in range(2)]
        c, _ = await watch_all(redis_swarm, f"ws://127.0.0.1:{nginx.port}/ws", tasks)
        assert c.reconnects >= 1
        assert c.connections >= 2
    finally:
        nginx.stop()


async def test_watch_through_fixed_lifetime_cuts(redis_swarm: Swarm, lifetime_proxy_factory: Any) -> None:
    redis_swarm.start_coordinator()
    redis_swarm.start_agent(0)
    redis_swarm.start_agent(1)
    # Events every 0.3 s keep the connection busy; it is cut every 1.2 s anyway (GKE's backend timeout).
    proxy = await lifetime_proxy_factory(redis_swarm.port, 1.2)
    tasks = [{"payload": {"steps": 12, "delay": 0.3}} for _ in range(3)]
    c, _ = await watch_all(redis_swarm, f"ws://127.0.0.1:{proxy.port}/ws", tasks)
    assert proxy.cut >= 1
    assert c.reconnects >= 1


async def test_watch_survives_a_coordinator_restart(redis_swarm: Swarm) -> None:
    coord = redis_swarm.start_coordinator()
    redis_swarm.start_agent(0)
    c = client(redis_swarm.url)
    [tid] = await c.submit([{"payload": {"steps": 10, "delay": 0.3}}])
    seen: list[str] = []
    closes: list[str] = []

    three = asyncio.Event()

    def on_event(frame: Any) -> None:
        seen.append(frame.event_id)
        if len(seen) >= 3:
            three.set()

    c.on_reconnect = lambda _n, exc: closes.append(str(exc))
    watching = asyncio.create_task(c.watch([tid], on_event=on_event))
    await asyncio.wait_for(three.wait(), 60)  # mid-task: a rolling update replaces the coordinator
    coord.signal(signal.SIGTERM)
    assert coord.proc is not None
    await asyncio.to_thread(coord.proc.wait, 30)
    await asyncio.to_thread(redis_swarm.start_coordinator)
    watches = await asyncio.wait_for(watching, 120)
    assert any("1012" in reason for reason in closes), closes
    assert seen == [eid for eid, _ in await broker_events(redis_swarm, tid)]
    result = watches[tid].result
    assert result is not None and result.result == expected_result(tid, 10)


def test_cli_cancel_ends_a_running_task_and_its_watch(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    redis_swarm.start_agent(0)
    env = {**redis_swarm.base_env, "AGENTSWARM_URL": redis_swarm.url, "AGENTSWARM_API_TOKEN": TOKEN}
    cli = [sys.executable, "-m", "agentswarm.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=120)

    out = run("submit", "--no-watch", "--payload", '{"steps": 10000, "delay": 0.05}', "--id", "long-1")
    assert out.returncode == 0, out.stderr
    watcher = subprocess.Popen(
        [*cli, "watch", "long-1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(
            lambda: '"step"' in json.dumps(asyncio.run(broker_events(redis_swarm, "long-1"))), 60, "steps"
        )
        out = run("cancel", "long-1", "no-such-task")
        assert out.returncode == 1  # one id is unknown
        assert out.stdout.splitlines() == ["long-1 cancelled", "no-such-task not found"]
        stdout, _ = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 1  # a cancelled task is not a success
    assert re.search(r"^long-1\s+cancelled\s", stdout, re.M), stdout
    again = run("cancel", "long-1")
    assert again.returncode == 0 and again.stdout.strip() == "long-1 already finished (nothing to cancel)"
    events = [data["type"] for _, data in asyncio.run(broker_events(redis_swarm, "long-1"))]
    assert events.count("cancelled") == 1 and "result" not in events


def test_cli_answer_resumes_a_task_that_asked(redis_swarm: Swarm) -> None:
    """``watch`` shows the question and the command that answers it; ``answer`` works once."""
    runtime_tests = Path(__file__).parent.parent / "runtime"
    redis_swarm.start_coordinator()
    redis_swarm.start_agent(
        0,
        AGENTSWARM_HANDLER="bad_handlers:asks",
        PYTHONPATH=f"{runtime_tests}:{redis_swarm.base_env.get('PYTHONPATH', '')}",
    )
    env = {**redis_swarm.base_env, "AGENTSWARM_URL": redis_swarm.url, "AGENTSWARM_API_TOKEN": TOKEN}
    cli = [sys.executable, "-m", "agentswarm.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=120)

    assert run("submit", "--no-watch", "--payload", "{}", "--id", "hitl-1").returncode == 0
    watcher = subprocess.Popen(
        [*cli, "watch", "hitl-1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(
            lambda: "input_required" in json.dumps(asyncio.run(broker_events(redis_swarm, "hitl-1"))),
            60,
            "the question",
        )
        bad = run("answer", "hitl-1", "--json", "{not json")
        assert bad.returncode == 2 and "not valid JSON" in bad.stderr
        out = run("answer", "hitl-1", "--json", '{"ok": 1}')
        assert out.returncode == 0, out.stderr
        assert "hitl-1 answered (question 0)" in out.stdout
        again = run("answer", "hitl-1", "--json", '{"ok": 2}')
        assert again.returncode == 1 and "already_answered" in again.stderr
        stdout, stderr = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, stderr
    assert 'task hitl-1 needs input: {"q": "approve?"}' in stderr
    assert "answer with: agentswarm answer hitl-1 --json" in stderr
    assert re.search(r"^hitl-1\s+done\s", stdout, re.M), stdout
    nobody = run("answer", "no-such-task", "--json", "1")
    assert nobody.returncode == 1 and "not_waiting" in nobody.stderr


async def test_submit_priority_from_the_client_the_cli_and_the_frame(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    c = client(redis_swarm.url)
    ids = await c.submit(
        [{"task_id": "pr-high", "payload": {}}, {"task_id": "pr-low", "payload": {}, "priority": "low"}],
        priority="high",
    )
    assert ids == ["pr-high", "pr-low"]
    with pytest.raises(ValueError, match="unknown priority 'urgent': use one of high, normal, low"):
        await c.submit([{"payload": {}}], priority="urgent")  # type: ignore[arg-type]
    env = {**redis_swarm.base_env, "AGENTSWARM_URL": redis_swarm.url, "AGENTSWARM_API_TOKEN": TOKEN}
    cli = [sys.executable, "-m", "agentswarm.cli", "submit", "--payload", "{}", "--no-watch"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=120)

    out = await asyncio.to_thread(run, "--id", "pr-cli", "--priority", "low")
    assert out.returncode == 0, out.stderr
    bad = await asyncio.to_thread(run, "--priority", "urgent")
    assert bad.returncode == 2 and "--priority" in bad.stderr and "'urgent'" in bad.stderr
    assert "'high', 'normal', 'low'" in bad.stderr  # argparse names the allowed values
    async with connect(redis_swarm.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        await ws.recv()  # welcome
        frames = [
            {"type": "submit", "ref": "a", "priority": "urgent", "tasks": [{"payload": {}}]},
            {"type": "submit", "ref": "b", "tasks": [{"payload": {}, "priority": 1}]},
            {"type": "submit", "ref": "c", "tasks": [{"task_id": "pr-frame", "payload": {}}]},
        ]
        replies = []
        for frame in frames:
            await ws.send(json.dumps(frame))
            replies.append(json.loads(await ws.recv()))
    assert replies[0]["code"] == "invalid_frame" and replies[0]["ref"] == "a"
    assert "unknown priority 'urgent': use one of high, normal, low" in replies[0]["message"]
    assert replies[1]["code"] == "invalid_frame" and "tasks.0.priority" in replies[1]["message"]
    assert replies[2] == {"type": "submitted", "ref": "c", "task_ids": ["pr-frame"]}
    env_b = redis_swarm.base_env
    settings = load_settings(
        broker=env_b["AGENTSWARM_BROKER"],
        redis_url=env_b["AGENTSWARM_REDIS_URL"],
        namespace=env_b["AGENTSWARM_NAMESPACE"],
    )
    broker = await open_broker(settings)
    try:
        stored = {t: await broker.get_task(t) for t in ("pr-high", "pr-low", "pr-cli", "pr-frame")}
    finally:
        await broker.close()
    assert {t: task.priority for t, task in stored.items() if task} == {
        "pr-high": "high",
        "pr-low": "low",
        "pr-cli": "low",
        "pr-frame": "normal",
    }
