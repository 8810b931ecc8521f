"""The OpenAI-compatible handler in a real agent process, SIGKILLed during a model call, on both brokers.

The model server (llm_support.FakeOpenAI, in the test process) holds the second model call; the test
SIGKILLs the agent while it waits, restarts it under the same identity and lets the server answer. The
first response and both tool calls were checkpointed: they are not paid for again.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from agentswarm.broker import NewTask
from llm_support import FakeOpenAI, Fault
from rt_support import AgentProcess, make_test_broker, wait_until
from test_openai_chat import EXPECTED, QUESTION, script

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).parent


@pytest.fixture
def agent_cleanup() -> Any:
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.kill()


async def test_sigkilled_during_a_model_call_resumes_without_paying_twice(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path, agent_cleanup: list[AgentProcess]
) -> None:
    tools_log = tmp_path / "tools.log"
    async with FakeOpenAI(script) as model_server:
        model_server.faults = [Fault(), Fault(hang=8.0)]  # the second call hangs until the kill
        env = {
            "AGENTSWARM_BROKER": backend,
            "AGENTSWARM_REDIS_URL" if backend == "redis" else "AGENTSWARM_NATS_URL": server_url,
            "AGENTSWARM_NAMESPACE": unique_namespace,
            "AGENTSWARM_HANDLER": "agentswarm.handlers.openai_chat:handle",
            "AGENTSWARM_LLM_BASE_URL": model_server.base_url,
            "AGENTSWARM_LLM_MODEL": "fake-gpt",
            "AGENTSWARM_LLM_TOOLS": "llm_tools:tools",
            "AGENTSWARM_CLAIM_IDLE_MS": "30000",
            "AGENTSWARM_CLAIM_BLOCK_MS": "300",
            "LLM_TOOLS_LOG": str(tools_log),
            "PYTHONPATH": os.pathsep.join(p for p in [str(HERE), os.environ.get("PYTHONPATH", "")] if p),
        }
        agent = AgentProcess("agent-0", env, tmp_path)
        agent_cleanup.append(agent)
        broker = make_test_broker(backend, server_url, unique_namespace)
        await broker.connect()
        try:
            await broker.enqueue_many([NewTask({"prompts": [QUESTION, "Thanks!"]}, "chat-1")])
            agent.start()

            async def second_call_in_flight() -> bool:
                assert agent.alive, agent.log_text()
                return len(model_server.requests) >= 2

            await wait_until(second_call_in_flight, within=60, what="the second model call")
            agent.kill()
            agent.start()

            async def finished() -> bool:
                return await broker.get_result("chat-1") is not None

            await wait_until(finished, within=60, what="the result")
            result = await broker.get_result("chat-1")
            assert result is not None and result.value["answers"] == EXPECTED
            # Calls: 1 (tool calls), 2 (killed in flight), 2 again, 3: three paid, as without a kill.
            assert len(model_server.requests) == 4
            assert model_server.requests[1]["messages"] == model_server.requests[2]["messages"]
            assert result.value["usage"]["requests"] == 3
            # Each tool ran once, in the first process.
            runs = [line.split() for line in tools_log.read_text().splitlines()]
            assert Counter(name for name, _pid in runs) == {"add": 1, "lookup": 1}
            assert {int(pid) for _name, pid in runs} == {agent.pids[0]}
            agent.stop()
        finally:
            await broker.close()
