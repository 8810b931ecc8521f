"""A pydantic-ai agent in a real agent process, SIGKILLed mid-run, on both brokers: nothing is paid twice.

The agent (tests/runtime/pai_agents.py ``counting``) makes five ``FunctionModel`` calls and five tool
calls, counting each in a file so the counts survive the kill. The agent process is SIGKILLed

* ``model``: during its 4th model call (after 3 finished model calls and their tools), or
* ``tool``: during the 2nd of two tool calls of the 4th response (after the 1st one finished),

then restarted under the same identity. The restarted process must resume with the call that was in
flight: every finished model call and tool call appears exactly once in the counts.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pai_agents
import pytest
from agentswarm.broker import NewTask
from agentswarm.servers import free_port
from prometheus_client.parser import text_string_to_metric_families
from rt_support import AgentProcess, make_test_broker, wait_until

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).parent


def read_calls(path: Path) -> list[tuple[str, str, str, int]]:
    """``(kind, what, key, pid)`` rows of the counting file."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        kind, what, key, pid = line.split()
        rows.append((kind, what, key, int(pid)))
    return rows


@pytest.fixture
def agent_cleanup() -> Any:
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.kill()


@pytest.mark.parametrize("kill_in", ["model", "tool"])
async def test_sigkilled_agent_resumes_without_paying_twice(
    backend: str,
    server_url: str,
    unique_namespace: str,
    tmp_path: Path,
    kill_in: str,
    agent_cleanup: list[AgentProcess],
) -> None:
    calls = tmp_path / "calls.log"
    env = {
        "AGENTSWARM_BROKER": backend,
        "AGENTSWARM_REDIS_URL" if backend == "redis" else "AGENTSWARM_NATS_URL": server_url,
        "AGENTSWARM_NAMESPACE": unique_namespace,
        "AGENTSWARM_HANDLER": "agentswarm.handlers.pydantic_ai:handle",
        "AGENTSWARM_PYDANTIC_AI_AGENT": "pai_agents:counting",
        "AGENTSWARM_CLAIM_IDLE_MS": "30000",
        "AGENTSWARM_CLAIM_BLOCK_MS": "300",
        "AGENTSWARM_RETRY_BACKOFF_MS": "50",
        "PAI_TEST_DIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(p for p in [str(HERE), os.environ.get("PYTHONPATH", "")] if p),
    }
    hold = tmp_path / ("hold-model-3" if kill_in == "model" else "hold-tool-c3b")
    hold.touch()
    agent = AgentProcess("agent-0", env, tmp_path)
    agent_cleanup.append(agent)
    broker = make_test_broker(backend, server_url, unique_namespace)
    await broker.connect()
    try:
        await broker.enqueue_many([NewTask({"prompt": "add them up"}, "pai-1")])
        agent.start()

        async def at_kill_point() -> bool:
            assert agent.alive, agent.log_text()
            if kill_in == "model":
                return ("model", "start", "3") in {r[:3] for r in read_calls(calls)}
            events = await broker.read_events("pai-1", None, limit=1000)
            return any(e.data.get("type") == "tool_result" and e.data.get("call_id") == "c3a" for e in events)

        await wait_until(at_kill_point, within=60, what=f"the agent to reach the {kill_in} kill point")
        first_pid = agent.pids[-1]
        agent.kill()
        hold.unlink()
        metrics_port = free_port()
        agent.env["AGENTSWARM_LLM_METRICS_PORT"] = str(metrics_port)
        agent.start()

        async def finished() -> bool:
            return await broker.get_result("pai-1") is not None

        await wait_until(finished, within=60, what="the result")
        result = await broker.get_result("pai-1")
        assert result is not None
        value = result.value
        assert value["output"] == pai_agents.EXPECTED_OUTPUT
        assert value["usage"]["requests"] == pai_agents.MODEL_CALLS
        assert value["usage"]["tool_calls"] == len(pai_agents.TOOL_CALL_IDS)

        rows = read_calls(calls)
        model_done = Counter(key for kind, what, key, _ in rows if kind == "model" and what == "done")
        model_start = Counter(key for kind, what, key, _ in rows if kind == "model" and what == "start")
        tools_done = Counter(key for kind, what, key, _ in rows if kind == "tool")
        # Every finished call was paid for exactly once.
        assert model_done == Counter({str(p): 1 for p in range(pai_agents.MODEL_CALLS)}), rows
        assert tools_done == Counter({c: 1 for c in pai_agents.TOOL_CALL_IDS}), rows
        # Only the call in flight at the kill was made again; the new process resumed right there.
        second = [(kind, key) for kind, what, key, pid in rows if pid != first_pid and what != "done"]
        if kill_in == "model":
            assert model_start == Counter({"0": 1, "1": 1, "2": 1, "3": 2, "4": 1}), rows
            assert second[0] == ("model", "3"), rows
        else:
            assert model_start == Counter({str(p): 1 for p in range(pai_agents.MODEL_CALLS)}), rows
            assert second[0] == ("model", "4"), rows  # c3b finished first, then the 5th call
            assert ("tool", "c3b") in {(kind, key) for kind, _what, key, pid in rows if pid != first_pid}
            assert ("tool", "c3a") not in {(kind, key) for kind, _what, key, pid in rows if pid != first_pid}

        events = [e.data for e in await broker.read_events("pai-1", None, limit=1000)]
        started = [e for e in events if e["type"] == "started"]
        assert len(started) == 2 and started[1]["resumed_from_version"] is not None
        usage = [e for e in events if e["type"] == "usage"]
        assert len(usage) == 1 and usage[0]["requests"] == pai_agents.MODEL_CALLS
        tokens = "".join(e["text"] for e in events if e["type"] == "token")
        assert tokens == pai_agents.EXPECTED_OUTPUT
        # The restarted process's Prometheus counters show what it paid for: the calls after the kill.
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        paid_after_kill = 2 if kill_in == "model" else 1  # calls 4 and 5, or call 5
        assert samples[("agentswarm_llm_requests_total", (("model", "scripted"),))] == paid_after_kill
        tools_after_kill = {"model": {"add": 1, "slow_add": 1}, "tool": {"slow_add": 1}}[kill_in]
        for tool, count in tools_after_kill.items():
            assert samples[("agentswarm_llm_tool_calls_total", (("tool", tool),))] == count
        agent.stop()
    finally:
        await broker.close()
