"""The OpenAI-compatible handler against a real HTTP server speaking the official wire format.

The server (llm_support.FakeOpenAI) builds every response and streamed chunk from the ``openai`` package's
types and validates every request with them; the official ``openai`` client is checked against it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import llm_tools
import openai
import pytest
from agentswarm.broker.base import Task
from agentswarm.handlers import ShutdownRequested, openai_chat
from agentswarm.llm import metrics
from agentswarm.llm.errors import LLMConfigError, ModelCallError, PayloadError
from agentswarm.llm.prices import Price, PriceTable
from agentswarm.llm.retry import RetryPolicy, parse_retry_after
from llm_support import Crash, FakeContext, FakeOpenAI, Fault, Reply

pytestmark = pytest.mark.timeout(60)

QUESTION = "Compute 2+3 and find the capital of France."
EXPECTED = ["The sum is 5 and the capital is Paris.", "You are welcome."]


def script(messages: list[dict[str, Any]]) -> Reply:
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    tail = messages[last_user + 1 :]
    if messages[last_user]["content"] != QUESTION:
        return Reply(text="You are welcome.")
    results = [json.loads(m["content"]) for m in tail if m["role"] == "tool"]
    if not results:
        return Reply(
            tool_calls=[
                ("call_a", "add", {"a": 2, "b": 3}),
                ("call_b", "lookup", {"key": "capital-of-france"}),
            ]
        )
    return Reply(text=f"The sum is {results[0]} and the capital is {results[1]['value']}.")


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(script) as srv:
        monkeypatch.setenv("AGENTSWARM_LLM_BASE_URL", srv.base_url)
        monkeypatch.setenv("AGENTSWARM_LLM_MODEL", "fake-gpt")
        monkeypatch.setenv("AGENTSWARM_LLM_API_KEY", "sk-test")
        monkeypatch.setenv("AGENTSWARM_LLM_TOOLS", "llm_tools:tools")
        monkeypatch.setenv("AGENTSWARM_LLM_TIMEOUT_SECONDS", "5")
        monkeypatch.delenv("AGENTSWARM_LLM_MAX_RETRIES", raising=False)
        llm_tools.executed.clear()
        yield srv


def task(**payload: Any) -> Task:
    return Task(id="chat-1", payload={"prompts": [QUESTION, "Thanks!"], **payload})


@pytest.mark.parametrize("stream", [True, False])
async def test_conversation_with_parallel_tool_calls(server: FakeOpenAI, stream: bool) -> None:
    ctx = FakeContext()
    result = await openai_chat.handle(task(stream=stream, system="Be exact.", temperature=0.1), None, ctx)
    assert result["answers"] == EXPECTED
    assert result["model"] == "fake-gpt"
    assert len(server.requests) == 3 and server.served == 3
    assert set(server.auth) == {"Bearer sk-test"}
    first = server.requests[0]
    assert first["messages"][0] == {"role": "system", "content": "Be exact."}
    assert first["temperature"] == 0.1
    assert [t["function"]["name"] for t in first["tools"]] == ["add", "explode", "lookup"]
    add_schema = first["tools"][0]["function"]["parameters"]
    assert add_schema["required"] == ["a", "b"] and add_schema["properties"]["a"]["type"] == "integer"
    assert first["tools"][0]["function"]["description"] == "Add two integers."
    if stream:
        assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    else:
        assert "stream" not in first
    # The tool results went back under the ids the model gave, in order.
    second = server.requests[1]["messages"]
    assert [m["role"] for m in second[-3:]] == ["assistant", "tool", "tool"]
    assert second[-3]["tool_calls"][1]["function"] == {
        "name": "lookup",
        "arguments": '{"key": "capital-of-france"}',
    }
    assert [(m["tool_call_id"], json.loads(m["content"])) for m in second[-2:]] == [
        ("call_a", 5),
        ("call_b", {"key": "capital-of-france", "value": "Paris"}),
    ]
    assert llm_tools.executed == {"add": 1, "lookup": 1}
    # Events: streamed text reassembles the answers, tool events name the calls, usage matches the server.
    if stream:
        by_step: dict[int, str] = {}
        for e in ctx.of_type("token"):
            by_step[e["step"]] = by_step.get(e["step"], "") + e["text"]
        assert by_step == {2: EXPECTED[0], 3: EXPECTED[1]}
    else:
        assert ctx.of_type("token") == []
    assert [e["call_id"] for e in ctx.of_type("tool_call")] == ["call_a", "call_b"]
    assert [e["content"] for e in ctx.of_type("tool_result")] == [
        "5",
        '{"key": "capital-of-france", "value": "Paris"}',
    ]
    assert [e["finish_reason"] for e in ctx.of_type("model_response")] == ["tool_calls", "stop", "stop"]
    usage = result["usage"]
    assert usage["requests"] == 3 and usage["tool_calls"] == 2
    reported = [e for e in ctx.of_type("model_response")]
    assert usage["input_tokens"] == sum(e["input_tokens"] for e in reported) > 0
    assert usage["output_tokens"] == sum(e["output_tokens"] for e in reported) > 0
    assert ctx.events[-1]["type"] == "usage" and ctx.events[-1]["requests"] == 3


async def test_official_client_reads_the_test_server(server: FakeOpenAI) -> None:
    """The server speaks the real wire format: the official client parses its streams and tool calls."""
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    stream = await client.chat.completions.create(
        model="fake-gpt",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, str]] = {}
    usage = None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": "", "args": ""})
                slot["id"] += tc.id or ""
                slot["args"] += tc.function.arguments or "" if tc.function else ""
    assert calls == {
        0: {"id": "call_a", "args": '{"a": 2, "b": 3}'},
        1: {"id": "call_b", "args": '{"key": "capital-of-france"}'},
    }
    assert usage is not None and usage.total_tokens > 0
    plain = await client.chat.completions.create(
        model="fake-gpt", messages=[{"role": "user", "content": "Thanks!"}]
    )
    assert plain.choices[0].message.content == "You are welcome."
    await client.close()


async def test_crash_after_every_checkpoint_never_pays_twice(server: FakeOpenAI) -> None:
    reference = FakeContext()
    expected = await openai_chat.handle(task(), None, reference)
    calls_per_run = len(server.requests)
    for k in range(1, reference.saves + 1):
        server.requests.clear()
        llm_tools.executed.clear()
        first = FakeContext(crash_after=k)
        with pytest.raises(Crash):
            await openai_chat.handle(task(), None, first)
        result = await openai_chat.handle(task(), first.state, FakeContext(first.state))
        assert result == expected, f"crash after checkpoint {k}"
        assert len(server.requests) == calls_per_run, f"k={k}: a model call was made twice"
        assert llm_tools.executed == {"add": 1, "lookup": 1}, f"k={k}: {llm_tools.executed}"


async def test_sigterm_between_two_tool_results(server: FakeOpenAI) -> None:
    ctx = FakeContext(stop_after=2)  # response with two tool calls, then the first tool result
    with pytest.raises(ShutdownRequested):
        await openai_chat.handle(task(), None, ctx)
    assert llm_tools.executed == {"add": 1}
    result = await openai_chat.handle(task(), ctx.state, FakeContext(ctx.state))
    assert result["answers"] == EXPECTED
    assert llm_tools.executed == {"add": 1, "lookup": 1}


async def test_retries_honour_retry_after_and_recover(server: FakeOpenAI) -> None:
    def sample(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    limited = sample("agentswarm_llm_errors_total", model="fake-gpt", kind="rate_limited")
    server.faults = [
        Fault(drop_after=3),  # the connection drops mid-stream: jittered backoff, at most 0.5 s
        Fault(status=500),  # no hint: jittered backoff, at most 1 s
        Fault(status=429, headers={"Retry-After": "0.2"}),
        Fault(status=503, headers={"retry-after-ms": "50"}),
    ]
    ctx = FakeContext()
    result = await openai_chat.handle(task(), None, ctx)
    assert result["answers"] == EXPECTED
    retries = ctx.of_type("retry")
    assert [r["retry"] for r in retries] == [1, 2, 3, 4]
    assert "ended before the response was complete" in retries[0]["reason"]
    assert 0 <= retries[0]["wait"] <= RetryPolicy().base_delay
    assert "HTTP 500" in retries[1]["reason"] and 0 <= retries[1]["wait"] <= 2 * RetryPolicy().base_delay
    assert "HTTP 429" in retries[2]["reason"]
    assert [r["wait"] for r in retries[2:]] == [0.2, 0.05]  # what the server asked for
    assert len(server.requests) == 3 + 4
    assert result["usage"]["requests"] == 3  # failed attempts are not usage
    assert sample("agentswarm_llm_errors_total", model="fake-gpt", kind="rate_limited") == limited + 1


async def test_gives_up_after_max_retries(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSWARM_LLM_MAX_RETRIES", "1")
    server.faults = [
        Fault(status=503, headers={"Retry-After": "0"}),
        Fault(status=503, headers={"Retry-After": "0"}),
    ]
    with pytest.raises(ModelCallError, match=r"after 1 retries: HTTP 503"):
        await openai_chat.handle(task(), None, FakeContext())
    assert len(server.requests) == 2


async def test_retry_after_too_long_fails_the_attempt_at_once(server: FakeOpenAI) -> None:
    server.faults = [Fault(status=429, headers={"Retry-After": "3600"})]
    with pytest.raises(ModelCallError, match="HTTP 429"):
        await openai_chat.handle(task(), None, FakeContext())
    assert len(server.requests) == 1


async def test_client_errors_are_not_retried(server: FakeOpenAI) -> None:
    server.faults = [Fault(status=400)]
    with pytest.raises(ModelCallError, match="HTTP 400") as info:
        await openai_chat.handle(task(), None, FakeContext())
    assert info.value.status == 400
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "fault", [Fault(hang=2.0), Fault(stall_after=2)], ids=["no-response", "stalled-stream"]
)
async def test_timeouts_are_retried(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, fault: Fault
) -> None:
    monkeypatch.setenv("AGENTSWARM_LLM_TIMEOUT_SECONDS", "0.3")
    server.faults = [fault]
    ctx = FakeContext()
    result = await openai_chat.handle(task(), None, ctx)
    assert result["answers"] == EXPECTED
    assert "timed out after 0.3s" in ctx.of_type("retry")[0]["reason"]


async def test_tool_errors_go_back_to_the_model(server: FakeOpenAI) -> None:
    replies = iter(
        [
            Reply(tool_calls=[("c1", "explode", {}), ("c2", "add", {"a": "x"}), ("c3", "rm_rf", {})]),
            Reply(text="I could not."),
        ]
    )
    server.script = lambda messages: next(replies)
    result = await openai_chat.handle(Task(id="t", payload={"prompts": ["go"]}), None, FakeContext())
    assert result["answers"] == ["I could not."]
    tool_messages = [m for m in server.requests[1]["messages"] if m["role"] == "tool"]
    errors = [json.loads(m["content"])["error"] for m in tool_messages]
    assert errors[0] == "RuntimeError: boom"
    assert errors[1].startswith("invalid arguments for add")
    assert errors[2].startswith("no tool named 'rm_rf'")


async def test_payload_tool_subset_and_round_limit(server: FakeOpenAI) -> None:
    server.script = lambda messages: Reply(tool_calls=[(f"c{len(messages)}", "add", {"a": 1, "b": 1})])
    result = await openai_chat.handle(
        Task(id="t", payload={"prompts": ["loop"], "tools": ["add"], "max_tool_rounds": 2}),
        None,
        FakeContext(),
    )
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == ["add"]
    # After two rounds of tool calls the model is told to answer (tool_choice none).
    assert [r.get("tool_choice") for r in server.requests] == [None, None, "none"]
    assert result["usage"]["requests"] == 3 and result["answers"] == ["No more tools."]
    with pytest.raises(PayloadError, match="'rm' is not a registered tool"):
        await openai_chat.handle(
            Task(id="t", payload={"prompts": ["x"], "tools": ["rm"]}), None, FakeContext()
        )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"prompts": []}, "payload.prompts"),
        ({"prompts": ["x"], "stream": "yes"}, "payload.stream"),
        ({"prompts": ["x"], "temperature": "hot"}, "payload.temperature"),
        ({"prompts": ["x"], "max_tool_rounds": 1000}, "payload.max_tool_rounds"),
        (["x"], "JSON object"),
    ],
)
async def test_bad_payloads(server: FakeOpenAI, payload: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        await openai_chat.handle(Task(id="t", payload=payload), None, FakeContext())
    assert server.requests == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AGENTSWARM_LLM_BASE_URL": "ftp://x"}, "AGENTSWARM_LLM_BASE_URL='ftp://x'"),
        ({"AGENTSWARM_LLM_MODEL": ""}, "AGENTSWARM_LLM_MODEL is not set"),
        ({"AGENTSWARM_LLM_TIMEOUT_SECONDS": "0"}, "AGENTSWARM_LLM_TIMEOUT_SECONDS='0'"),
        ({"AGENTSWARM_LLM_MAX_RETRIES": "-1"}, "AGENTSWARM_LLM_MAX_RETRIES='-1'"),
        ({"AGENTSWARM_LLM_TOOLS": "llm_tools:not_a_registry"}, "int is not an agentswarm ToolRegistry"),
        ({"AGENTSWARM_LLM_TOOLS": "../x"}, "expected 'package.module:attribute'"),
    ],
)
async def test_bad_config(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(LLMConfigError, match=message):
        await openai_chat.handle(task(), None, FakeContext())


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    policy = RetryPolicy(max_retries=3, base_delay=1.0, max_delay=3.0, max_retry_after=60)
    backoff = policy.backoff()
    assert policy.delay(1, 5.0, backoff) == 5.0
    assert 0 <= policy.delay(2, None, backoff) <= 2.0  # type: ignore[operator]
    assert 0 <= policy.delay(3, None, backoff) <= 3.0  # type: ignore[operator]
    assert policy.delay(1, 61.0, policy.backoff()) is None
    assert policy.delay(4, None, backoff) is None


def test_metrics_exporter_port_is_validated(tmp_path: Path) -> None:
    with pytest.raises(LLMConfigError, match="AGENTSWARM_LLM_METRICS_PORT='http'"):
        metrics.start_exporter({"AGENTSWARM_LLM_METRICS_PORT": "http"})
    assert metrics.start_exporter({}) is None


async def test_usage_with_estimated_cost(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AGENTSWARM_LLM_PRICES",
        '{"fake-gpt": {"input": 1, "output": 4}, "fake-*": {"input": 0, "output": 0}}',
    )
    ctx = FakeContext()
    result = await openai_chat.handle(task(), None, ctx)
    usage = result["usage"]
    assert usage["cost_usd"] == pytest.approx((usage["input_tokens"] + 4 * usage["output_tokens"]) / 1e6)
    # The cost survives a resume: it is part of the checkpointed usage.
    first = FakeContext(crash_after=3)
    with pytest.raises(Crash):
        await openai_chat.handle(task(), None, first)
    resumed = await openai_chat.handle(task(), first.state, FakeContext(first.state))
    assert resumed["usage"] == usage


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "not JSON"),
        ("[]", "must be a JSON object"),
        ('{"m": {"input": 1}}', "'m'="),
        ('{"m": {"input": -1, "output": 1}}', r"'m'\.input=-1: must be a number >= 0"),
        ('{"m": {"input": true, "output": 1}}', r"'m'\.input=True"),
    ],
)
def test_bad_price_tables(raw: str, message: str) -> None:
    with pytest.raises(LLMConfigError, match=message):
        PriceTable.from_env({"AGENTSWARM_LLM_PRICES": raw})


def test_price_lookup() -> None:
    prices = {
        "gpt-4o": {"input": 2.5, "output": 10},
        "gpt-*": {"input": 1, "output": 2},
        "gpt-4o-*": {"input": 0.15, "output": 0.6},
    }
    table = PriceTable.from_env({"AGENTSWARM_LLM_PRICES": json.dumps(prices)})
    assert table is not None
    assert table.price("gpt-4o") == Price(2.5, 10.0)  # exact beats prefixes
    assert table.price("gpt-4o-mini") == Price(0.15, 0.6)  # longest prefix
    assert table.price("gpt-3.5") == Price(1.0, 2.0)
    assert table.price("llama") is None
    assert PriceTable.from_env({}) is None


def test_bad_metrics_port_stops_the_agent_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSWARM_")}
    env |= {
        "AGENTSWARM_HANDLER": "agentswarm.handlers.openai_chat:handle",
        "AGENTSWARM_LLM_METRICS_PORT": "http",
        "AGENTSWARM_CHECKPOINT_DIR": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "agentswarm.agent"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "AGENTSWARM_LLM_METRICS_PORT='http': must be a port number 1-65535" in proc.stderr
