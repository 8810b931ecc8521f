"""``agentswarm local`` as a user runs it: a subprocess with the embedded nats-server.

Checked by PID: every process the supervisor ever started (from its ``local.json``) is gone after
SIGINT; an agent SIGKILLed mid-task is restarted under its identity and finishes the task from its
checkpoint (proved by the handler's per-step log); a demo interrupted half-way resumes on the next run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from agentswarm.backoff import Backoff
from agentswarm.client import SwarmClient
from agentswarm.handlers.steps import expected_result
from agentswarm.handlers.tree import expected_pipeline

from .helpers import pid_alive, wait_until


class LocalRun:
    """One ``agentswarm local`` subprocess with its output in a file."""

    def __init__(self, tmp: Path, state: Path, *args: str, name: str = "local") -> None:
        self.state = state
        self.out_path = tmp / f"{name}.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSWARM_")}
        env["PYTHONUNBUFFERED"] = "1"
        # the tests' step-logging handler (tests/runtime/logged_steps.py) is importable by the agents
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [LOGGED_STEPS_DIR, os.environ.get("PYTHONPATH")]))
        argv = [
            sys.executable,
            "-m",
            "agentswarm.cli",
            "local",
            "--state-dir",
            str(state),
            "--port",
            "0",
            *args,
        ]
        with self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        self.seen_pids: set[int] = {self.proc.pid}

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state / "local.json").read_text())
        self.seen_pids.update(pid for pid in data["pids"].values() if pid)
        return data

    def wait_output(self, pattern: str, within: float = 90) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def check() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agentswarm local exited with {self.proc.returncode}:\n{self.output()}")
            m = re.search(pattern, self.output())
            if m:
                found.append(m)
            return bool(m)

        wait_until(check, within, f"output {pattern!r}")
        return found[0]

    def interrupt_and_wait(self) -> int:
        self.manifest()
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=90)
        leftovers = [pid for pid in self.seen_pids if pid_alive(pid)]
        assert leftovers == [], f"processes left behind: {leftovers}\n{self.output()}"
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid in self.seen_pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def step_log(path: Path, task_id: str) -> list[tuple[str, int, str, int]]:
    """(kind, step, agent, attempt) lines the steps handler wrote for ``task_id``."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        kind, tid, step, agent, attempt = line.split()
        if tid == task_id:
            rows.append((kind, int(step), agent, int(attempt)))
    return rows


LONG_STEPS = 16
LOGGED_STEPS_DIR = str(Path(__file__).resolve().parents[1] / "runtime")


async def test_local_swarm_survives_agent_sigkill_and_stops_cleanly(tmp_path: Path) -> None:
    run = LocalRun(tmp_path, tmp_path / "state", "--agents", "3", "--handler", "logged_steps:handle")
    try:
        run.wait_output(r"running; press Ctrl-C")
        manifest = run.manifest()
        assert sorted(manifest["pids"]) == ["agent-0", "agent-1", "agent-2", "coordinator", "nats-server"]
        base = manifest["url"].replace("ws://", "http://").removesuffix("/ws")
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/readyz")).status_code == 200
        client = SwarmClient(manifest["url"], manifest["token"], backoff=Backoff(0.05, 0.5), max_retries=50)
        log = tmp_path / "steps.log"
        tasks: list[dict[str, Any]] = [
            {"task_id": "long", "payload": {"steps": LONG_STEPS, "delay": 0.4, "log": str(log)}}
        ]
        tasks += [{"task_id": f"short-{i}", "payload": {"steps": 3}} for i in range(5)]
        assert await client.submit(tasks) == [t["task_id"] for t in tasks]

        # Kill the agent running "long" once three of its steps are checkpointed.
        wait_until(
            lambda: len([r for r in step_log(log, "long") if r[0] == "ckpt"]) >= 3, 90, "3 checkpoints"
        )
        victim = step_log(log, "long")[0][2]
        victim_pid = manifest["pids"][victim]
        os.kill(victim_pid, signal.SIGKILL)
        checkpointed = max(r[1] for r in step_log(log, "long") if r[0] == "ckpt")

        def restarted() -> bool:
            m = run.manifest()
            return m["restarts"][victim] >= 1 and m["pids"][victim] != victim_pid

        wait_until(restarted, 60, f"{victim} restarted")
        assert not pid_alive(victim_pid)
        watches = await client.watch([t["task_id"] for t in tasks])
        for t in tasks:
            r = watches[t["task_id"]].result
            assert r is not None and r.status == "done", t["task_id"]
            assert r.result == expected_result(t["task_id"], t["payload"]["steps"])

        rows = step_log(log, "long")
        first_attempt = rows[0][3]
        later = [r for r in rows if r[0] == "exec" and r[3] > first_attempt]
        assert later, "the task was not resumed by a later attempt"
        # Same identity, and resumed after the last checkpoint seen before the kill, not from step 0.
        assert {r[2] for r in later} == {victim}
        assert later[0][1] > checkpointed
        executed = [r[1] for r in rows if r[0] == "exec"]
        assert sorted(set(executed)) == list(range(LONG_STEPS))
        assert len(executed) <= LONG_STEPS + 1  # at most the step in flight at the kill ran twice
        assert watches["long"].result is not None and watches["long"].result.agent_id == victim

        assert run.interrupt_and_wait() == 0
        assert "stopped" in run.output()
    finally:
        run.kill()


def test_local_demo_pipeline_resumes_on_second_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    demo = ("--demo", "--agents", "2", "--demo-tasks", "6", "--demo-steps", "4", "--demo-delay", "0.5")
    first = LocalRun(tmp_path, state, *demo, name="first")
    try:
        first.wait_output(r"level 1 .*\b[1-5]/6 done")  # the planner's workers, part-way
        assert first.interrupt_and_wait() == 130
    finally:
        first.kill()
    [root] = json.loads((state / "demo.json").read_text())["task_ids"]

    second = LocalRun(tmp_path, state, *demo, name="second")
    try:
        code = second.proc.wait(timeout=120)
        out = second.output()
        assert code == 0, out
        assert f"resuming the unfinished demo pipeline {root}" in out
        assert "demo finished: 8 done, 0 dead-lettered" in out  # planner, 6 workers, reducer
        for tid in (root, *(f"{root}-0-{i}" for i in range(6)), f"{root}-1-0"):  # the same tree
            assert re.search(rf"^{tid}\s+done\s", out, re.M), tid
        assert re.search(r"^level 0 .* 1/1 done", out, re.M) and re.search(r"^level 1 .* 7/7 done", out, re.M)
        assert expected_pipeline(root, 6, 4)["digest"][:16] in out  # the reducer saw every finding
        assert "submitted" not in out
        second.manifest()
        assert [pid for pid in second.seen_pids if pid_alive(pid)] == []
    finally:
        second.kill()


async def test_local_with_its_own_redis_server_and_a_killed_supervisor(tmp_path: Path) -> None:
    run = LocalRun(tmp_path, tmp_path / "state", "--agents", "1", "--broker", "redis")
    try:
        run.wait_output(r"running; press Ctrl-C")
        manifest = run.manifest()
        assert manifest["broker_env"]["AGENTSWARM_BROKER"] == "redis"
        assert sorted(manifest["pids"]) == ["agent-0", "coordinator", "redis-server"]
        client = SwarmClient(manifest["url"], manifest["token"], backoff=Backoff(0.05, 0.5), max_retries=50)
        [tid] = await client.submit([{"payload": {"steps": 2}}])
        watches = await client.watch([tid])
        result = watches[tid].result
        assert result is not None and result.result == expected_result(tid, 2)
        assert (tmp_path / "state" / "redis" / "appendonlydir").is_dir()  # AOF under the state dir
        # Even a SIGKILLed supervisor leaves nothing behind (PR_SET_PDEATHSIG on every child).
        run.proc.kill()
        run.proc.wait(timeout=10)
        wait_until(lambda: not any(pid_alive(pid) for pid in run.seen_pids), 30, "children gone")
    finally:
        run.kill()
