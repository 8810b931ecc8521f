"""Traces of LLM tasks: on only with an OTLP endpoint, one span per paid model call and executed tool call.

Spans are checked with the SDK's in-memory exporter, and once end to end through the OTLP/HTTP exporter
into a real HTTP receiver started by the test (protobuf decoded with ``opentelemetry-proto``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pai_agents
import pytest
from agentswarm import tracing
from agentswarm.broker.base import Task
from agentswarm.handlers import openai_chat
from agentswarm.handlers import pydantic_ai as handler
from llm_support import Crash, FakeContext, FakeOpenAI, Fault
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[InMemorySpanExporter]:
    monkeypatch.setenv("PAI_TEST_DIR", str(tmp_path))
    monkeypatch.setenv(handler.AGENT_VARIABLE, "pai_agents:counting")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.configure(provider)
    yield exporter
    tracing.configure(environ={})  # off again for the other tests


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_EXPORTER": "otlp"}, False),  # the spec default alone: off
    ],
)
def test_on_only_with_an_endpoint(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on
    try:
        assert tracing.configure(environ=env) is on
        assert tracing.enabled() is on
        assert (tracing.span("x") is tracing._NULL) is not on
        assert bool(tracing.inject()) is False  # no current span either way
    finally:
        tracing.configure(environ={})


def test_bad_protocol_leaves_tracing_off(caplog: pytest.LogCaptureFixture) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}
    assert tracing.configure(environ=env) is False
    assert "carrier-pigeon" in caplog.text


def by_name(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


async def test_pydantic_ai_spans_one_per_paid_call_across_a_crash(spans: InMemorySpanExporter) -> None:
    task = Task(id="traced", payload={"prompt": "add them up"})
    first = FakeContext(crash_after=7)
    with pytest.raises(Crash):
        await handler.handle(task, None, first)
    resumed = FakeContext(first.state)
    resumed.attempt = 2
    result = await handler.handle(task, first.state, resumed)
    assert result["output"] == pai_agents.EXPECTED_OUTPUT
    runs = by_name(spans, "invoke_agent ")
    assert [s.attributes["agentswarm.attempt"] for s in runs] == [1, 2]  # type: ignore[index]
    # The killed attempt's span ended with the (simulated) kill; an exception would mark it an error.
    assert runs[0].attributes["agentswarm.stopped"] == "Crash"  # type: ignore[index]
    assert [s.status.status_code.name for s in runs] == ["UNSET", "UNSET"]
    chats = by_name(spans, "chat scripted")
    tools = by_name(spans, "execute_tool ")
    # Each model call and tool call that was paid for has exactly one span; replays have none.
    assert len(chats) == pai_agents.MODEL_CALLS
    assert sorted(str(s.attributes["gen_ai.tool.call.id"]) for s in tools) == sorted(pai_agents.TOOL_CALL_IDS)  # type: ignore[index]
    run_ids = {r.context.span_id: r for r in runs}  # type: ignore[union-attr]
    for s in chats + tools:
        assert s.parent is not None and s.parent.span_id in run_ids, s.name
        assert s.context.trace_id == run_ids[s.parent.span_id].context.trace_id  # type: ignore[union-attr]
    assert (
        sum(int(s.attributes["gen_ai.usage.output_tokens"]) for s in chats)
        == result["usage"]["output_tokens"]
    )  # type: ignore[arg-type,index]
    assert runs[1].attributes["gen_ai.usage.input_tokens"] == result["usage"]["input_tokens"]  # type: ignore[index]


async def test_openai_chat_spans_with_retry_events(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_openai_chat import EXPECTED, QUESTION, script

    async with FakeOpenAI(script) as server:
        monkeypatch.setenv("AGENTSWARM_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("AGENTSWARM_LLM_MODEL", "fake-gpt")
        monkeypatch.setenv("AGENTSWARM_LLM_TOOLS", "llm_tools:tools")
        server.faults = [Fault(status=429, headers={"Retry-After": "0"})]
        result = await openai_chat.handle(
            Task(id="t", payload={"prompts": [QUESTION, "Thanks!"]}), None, FakeContext()
        )
    assert result["answers"] == EXPECTED
    chats = by_name(spans, "chat fake-gpt")
    assert len(chats) == 3
    assert [e.name for e in chats[0].events] == ["retry"]
    assert [s.attributes["gen_ai.tool.name"] for s in by_name(spans, "execute_tool ")] == ["add", "lookup"]  # type: ignore[index]
    [run] = by_name(spans, "invoke_agent openai_chat")
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in chats)  # type: ignore[union-attr]


class _Receiver(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_end_to_end_through_a_real_otlp_http_receiver(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Receiver.received = []
    monkeypatch.setenv("PAI_TEST_DIR", str(tmp_path))
    monkeypatch.setenv(handler.AGENT_VARIABLE, "pai_agents:counting")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "OTEL_SERVICE_NAME": "agent-under-test",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        assert tracing.configure()
        await handler.handle(Task(id="e2e", payload={"prompt": "add them up"}), None, FakeContext())
        assert tracing.flush()
    finally:
        tracing.configure(environ={})
        server.shutdown()
        thread.join()
    names = []
    services = set()
    for request in _Receiver.received:
        for resource_spans in request.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    services.add(attr.value.string_value)
            for scope in resource_spans.scope_spans:
                names += [s.name for s in scope.spans]
    assert services == {"agent-under-test"}
    assert names.count("chat scripted") == pai_agents.MODEL_CALLS
    assert "invoke_agent counting" in names


def test_errors_mark_spans(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError), tracing.span("failing"):
        raise ValueError("bad")
    [failed] = by_name(spans, "failing")
    assert failed.status.status_code.name == "ERROR" and "ValueError: bad" in str(failed.status.description)
    assert [e.name for e in failed.events] == ["exception"]
