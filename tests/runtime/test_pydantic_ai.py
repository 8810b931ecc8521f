"""The pydantic-ai handler in process: crash at every checkpoint, resume, and count what was paid for.

The agents are real pydantic-ai agents on ``FunctionModel``/``TestModel`` (tests/runtime/pai_agents.py).
The real-process SIGKILL proof on both brokers is in test_pydantic_ai_swarm.py.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pai_agents
import pytest
from agentswarm.broker.base import Task
from agentswarm.handlers import ShutdownRequested
from agentswarm.handlers import pydantic_ai as handler
from agentswarm.llm import metrics
from agentswarm.llm.errors import AgentRefError, LLMConfigError, PayloadError
from llm_support import Crash, FakeContext
from pydantic_ai import Agent, RunContext
from pydantic_ai.models.test import TestModel


@pytest.fixture
def calls_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PAI_TEST_DIR", str(tmp_path))
    monkeypatch.setenv(handler.AGENT_VARIABLE, "pai_agents:counting")
    monkeypatch.delenv(handler.ALLOWED_VARIABLE, raising=False)
    return tmp_path


def paid(calls_dir: Path) -> tuple[Counter[str], Counter[str]]:
    """(finished model calls by position, finished tool calls by id) from the counting files."""
    models: Counter[str] = Counter()
    tools: Counter[str] = Counter()
    path = calls_dir / "calls.log"
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, what, key, _pid = line.split()
        if what == "done":
            (models if kind == "model" else tools)[key] += 1
    return models, tools


TASK = Task(id="task-1", payload={"prompt": "add them up"})


async def test_uninterrupted_run_result_events_and_usage(calls_dir: Path) -> None:
    ctx = FakeContext()
    result = await handler.handle(TASK, None, ctx)
    assert result["output"] == pai_agents.EXPECTED_OUTPUT
    assert result["agent"] == "pai_agents:counting"
    assert result["model"] == "scripted"
    assert result["usage"]["requests"] == pai_agents.MODEL_CALLS
    assert result["usage"]["tool_calls"] == len(pai_agents.TOOL_CALL_IDS)
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    models, tools = paid(calls_dir)
    assert models == Counter({str(p): 1 for p in range(pai_agents.MODEL_CALLS)})
    assert tools == Counter({c: 1 for c in pai_agents.TOOL_CALL_IDS})
    types = [e["type"] for e in ctx.events]
    assert "".join(e["text"] for e in ctx.events if e["type"] == "token") == pai_agents.EXPECTED_OUTPUT
    assert [e["call_id"] for e in ctx.events if e["type"] == "tool_call"] == pai_agents.TOOL_CALL_IDS
    results = {e["call_id"]: e["content"] for e in ctx.events if e["type"] == "tool_result"}
    assert results == {"c0": 1, "c1": 2, "c2": 3, "c3a": 4, "c3b": 5}
    assert [e["step"] for e in ctx.events if e["type"] == "model_response"] == [1, 2, 3, 4, 5]
    assert types[-1] == "usage"
    usage = ctx.events[-1]
    assert {k: usage[k] for k in result["usage"]} == result["usage"]
    assert usage["model"] == "scripted"
    # Checkpoints after each model response and each tool result: 5 responses, 5 tool calls.
    assert ctx.saves == 5 + 5
    # The checkpoint holds pydantic-ai's own serialisation of the history.
    history = handler.ModelMessagesTypeAdapter.validate_python(ctx.state["messages"])
    assert len(history) == result["messages"]


async def test_crash_after_every_checkpoint_never_pays_twice(calls_dir: Path) -> None:
    """Kill right after checkpoint k (for every k), resume from it: totals equal one uninterrupted run."""
    reference = FakeContext()
    expected = await handler.handle(TASK, None, reference)
    (calls_dir / "calls.log").unlink()
    for k in range(1, reference.saves + 1):
        first = FakeContext(crash_after=k)
        with pytest.raises(Crash):
            await handler.handle(TASK, None, first)
        resumed = FakeContext(first.state)
        result = await handler.handle(TASK, first.state, resumed)
        assert result == expected, f"crash after checkpoint {k}"
        models, tools = paid(calls_dir)
        assert models == Counter({str(p): 1 for p in range(pai_agents.MODEL_CALLS)}), f"k={k}: {models}"
        assert tools == Counter({c: 1 for c in pai_agents.TOOL_CALL_IDS}), f"k={k}: {tools}"
        (calls_dir / "calls.log").unlink()


async def test_resume_from_final_response_does_not_call_the_model(calls_dir: Path) -> None:
    """The agent has instructions, so pydantic-ai alone would ask the model again: the journal replays."""
    reference = FakeContext()
    await handler.handle(TASK, None, reference)
    last = reference.state
    assert last["messages"][-1]["kind"] == "response"
    (calls_dir / "calls.log").unlink()
    ctx = FakeContext(last)
    result = await handler.handle(TASK, last, ctx)
    assert result["output"] == pai_agents.EXPECTED_OUTPUT
    assert paid(calls_dir) == (Counter(), Counter())
    assert result["usage"]["requests"] == pai_agents.MODEL_CALLS


async def test_sigterm_stops_at_a_tool_checkpoint_and_resumes(calls_dir: Path) -> None:
    ctx = FakeContext(stop_after=2)  # the second save is the first tool result (response, tool, ...)
    with pytest.raises(ShutdownRequested):
        await handler.handle(TASK, None, ctx)
    assert ctx.state["tools"] == {"c0": 1}
    assert paid(calls_dir)[1] == {"c0": 1}
    # Events of the paused attempt were sent before it stopped.
    assert [e["call_id"] for e in ctx.events if e["type"] == "tool_result"] == ["c0"]
    result = await handler.handle(TASK, ctx.state, FakeContext(ctx.state))
    assert result["output"] == pai_agents.EXPECTED_OUTPUT
    models, tools = paid(calls_dir)
    assert set(models.values()) == {1} and set(tools.values()) == {1}


async def test_metrics_count_paid_calls_only(calls_dir: Path) -> None:
    def sample(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    before = sample("agentswarm_llm_requests_total", model="scripted")
    tokens_before = sample("agentswarm_llm_tokens_total", model="scripted", kind="output")
    first = FakeContext(crash_after=9)
    with pytest.raises(Crash):
        await handler.handle(TASK, None, first)
    result = await handler.handle(TASK, first.state, FakeContext(first.state))
    assert sample("agentswarm_llm_requests_total", model="scripted") - before == pai_agents.MODEL_CALLS
    tokens = sample("agentswarm_llm_tokens_total", model="scripted", kind="output") - tokens_before
    assert tokens == result["usage"]["output_tokens"]
    assert sample("agentswarm_llm_request_duration_seconds_count", model="scripted") >= pai_agents.MODEL_CALLS
    assert sample("agentswarm_llm_tool_calls_total", tool="slow_add") >= 1


async def test_test_model_agent_named_in_payload(calls_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(handler.ALLOWED_VARIABLE, "pai_agents:quick")
    ctx = FakeContext()
    result = await handler.handle(
        Task(id="t2", payload={"prompt": "hi", "agent": "pai_agents:quick"}), None, ctx
    )
    assert result["agent"] == "pai_agents:quick"
    assert result["usage"]["requests"] == 2 and result["usage"]["tool_calls"] == 1
    assert [e["tool"] for e in ctx.events if e["type"] == "tool_call"] == ["double"]
    # The tool reached the swarm through current_task().
    assert [e for e in ctx.events if e["type"] == "progress"] == [{"type": "progress", "doubled": 0}]


async def test_failed_tool_call_is_checkpointed_with_the_history(
    calls_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool that raised ModelRetry has no journal entry: the history after the tools step is saved."""
    monkeypatch.setenv(handler.AGENT_VARIABLE, "pai_agents:flaky")
    task = Task(id="f", payload={"prompt": "fetch"})
    pai_agents.flaky_calls.clear()
    pai_agents.flaky_tool_runs.clear()
    reference = FakeContext()
    expected = await handler.handle(task, None, reference)
    assert expected["output"] == "fetched after 2 tool runs"  # the failed run and the retried one
    model_calls, tool_runs = len(pai_agents.flaky_calls), len(pai_agents.flaky_tool_runs)
    for k in range(1, reference.saves + 1):
        pai_agents.flaky_calls.clear()
        pai_agents.flaky_tool_runs.clear()
        first = FakeContext(crash_after=k)
        with pytest.raises(Crash):
            await handler.handle(task, None, first)
        result = await handler.handle(task, first.state, FakeContext(first.state))
        assert result == expected, f"crash after checkpoint {k}"
        assert len(pai_agents.flaky_calls) == model_calls, f"k={k}: {pai_agents.flaky_calls}"
        assert len(pai_agents.flaky_tool_runs) == tool_runs, f"k={k}: {pai_agents.flaky_tool_runs}"
    # Killed during the model call after the failed tool call: that call is repeated, the tool is not.
    pai_agents.flaky_calls.clear()
    pai_agents.flaky_tool_runs.clear()
    pai_agents.flaky_crash.append(Crash("killed during model call 2"))
    first = FakeContext()
    with pytest.raises(Crash):
        await handler.handle(task, None, first)
    result = await handler.handle(task, first.state, FakeContext(first.state))
    assert result == expected
    assert pai_agents.flaky_calls == [0, 1, 1, 2]
    assert len(pai_agents.flaky_tool_runs) == tool_runs


# -- the allow-list --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("allowed", "ref", "ok"),
    [
        ("", "pai_agents:counting", True),  # the default is always allowed
        ("", "pai_agents:quick", False),
        ("pai_agents:quick", "pai_agents:quick", True),
        ("pai_agents:*", "pai_agents:quick", True),
        ("pai_agents:*", "os:system", False),
        ("myproject.*", "myproject.agents.deep:a", True),
        ("myproject.*", "myprojectx.agents:a", False),
        ("myproject.*", "myproject:a", False),
    ],
)
def test_policy_permits(allowed: str, ref: str, ok: bool) -> None:
    policy = handler.AgentPolicy.from_env(
        {handler.AGENT_VARIABLE: "pai_agents:counting", handler.ALLOWED_VARIABLE: allowed}
    )
    assert policy.permits(ref) is ok


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("os:system", "not allowed"),
        ("this:s", "not allowed"),
        ("../etc:passwd", "expected 'package.module:attribute'"),
        ("pai_agents", "expected 'package.module:attribute'"),
        (42, "expected 'package.module:attribute'"),
    ],
)
async def test_refused_refs_import_nothing(calls_dir: Path, ref: Any, message: str) -> None:
    assert "this" not in sys.modules
    with pytest.raises(AgentRefError, match=message):
        await handler.handle(Task(id="t3", payload={"prompt": "x", "agent": ref}), None, FakeContext())
    assert "this" not in sys.modules  # refused before importing (importing 'this' prints the Zen)


async def test_allowed_ref_that_is_not_an_agent(calls_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(handler.ALLOWED_VARIABLE, "pai_agents:*")
    with pytest.raises(AgentRefError, match=r"is str, not a pydantic_ai\.Agent"):
        await handler.handle(
            Task(id="t4", payload={"prompt": "x", "agent": "pai_agents:not_an_agent"}), None, FakeContext()
        )


def test_bad_allow_list_entry_is_a_config_error() -> None:
    with pytest.raises(LLMConfigError, match=r"AGENTSWARM_PYDANTIC_AI_ALLOWED: entry 'os\.\*x'"):
        handler.AgentPolicy.from_env({handler.ALLOWED_VARIABLE: "os.*x"})


async def test_bad_payloads(calls_dir: Path) -> None:
    with pytest.raises(PayloadError, match=r"payload\.prompt"):
        await handler.handle(Task(id="t5", payload={"prompt": ""}), None, FakeContext())
    with pytest.raises(PayloadError, match="JSON object"):
        await handler.handle(Task(id="t5", payload=["x"]), None, FakeContext())


async def test_estimated_cost_from_the_price_table(calls_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSWARM_LLM_PRICES", '{"script*": {"input": 2.0, "output": 10.0}}')
    ctx = FakeContext()
    result = await handler.handle(TASK, None, ctx)
    usage = result["usage"]
    expected = (usage["input_tokens"] * 2.0 + usage["output_tokens"] * 10.0) / 1_000_000
    assert usage["cost_usd"] == pytest.approx(expected) and usage["cost_usd"] > 0
    assert usage["unpriced_requests"] == 0
    assert ctx.events[-1]["cost_usd"] == usage["cost_usd"]
    monkeypatch.setenv("AGENTSWARM_LLM_PRICES", '{"gpt-4o": {"input": 2.5, "output": 10}}')
    result = await handler.handle(TASK, None, FakeContext())
    assert result["usage"]["cost_usd"] == 0 and result["usage"]["unpriced_requests"] == pai_agents.MODEL_CALLS
    monkeypatch.delenv("AGENTSWARM_LLM_PRICES")
    result = await handler.handle(TASK, None, FakeContext())
    assert "cost_usd" not in result["usage"]


async def test_own_handler_runs_an_agent_with_deps(calls_dir: Path) -> None:
    agent = Agent(TestModel(), deps_type=int)

    @agent.tool
    def offset(ctx: RunContext[int], x: int) -> int:
        """Add the deps to x."""
        return ctx.deps + x

    ctx = FakeContext()
    journal = handler.Journal(ctx, "tests:offset", None)
    output, messages = await handler.run_agent(agent, "go", journal, ctx.emit, deps=7)
    assert json.loads(output) == {"offset": 7}
    assert ctx.state["agent"] == "tests:offset" and len(messages) == 4
