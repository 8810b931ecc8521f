"""One trace for a task's whole life: submitter -> coordinator -> broker (task metadata) -> agent -> handler
spans -> children, on both brokers, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentswarm import tracing
from agentswarm.agent import Agent
from agentswarm.broker.base import NewTask, Task
from agentswarm.checkpoint import make_store
from agentswarm.client import SwarmClient
from agentswarm.coordinator.options import ServerOptions
from agentswarm.coordinator.server import Coordinator
from agentswarm.settings import load_settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rt_support import wait_until

TOKEN = "trace-test-token-0123456789"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.configure(provider)
    yield exporter
    tracing.configure(environ={})


async def handler(task: Task, state: Any, ctx: Any) -> Any:
    with tracing.span(f"chat fake {task.payload.get('name')}"):
        await asyncio.sleep(0)
    if task.payload.get("spawn"):
        ids = await ctx.spawn([{"name": "child"}])
        outcomes = await ctx.gather(ids)  # parks until the child is done, then the parent runs again
        return [ids[0], outcomes[0].value]
    return "leaf"


async def test_one_trace_from_submit_to_the_children(
    spans: InMemorySpanExporter,
    brokers: Any,
    backend: str,
    server_url: str,
    unique_namespace: str,
    tmp_path: Path,
) -> None:
    coordinator = Coordinator(await brokers(), ServerOptions(api_token=TOKEN, host="127.0.0.1", port=0))
    await coordinator.start()
    url = {"redis_url": server_url} if backend == "redis" else {"nats_url": server_url}
    settings = load_settings(
        broker=backend,
        namespace=unique_namespace,
        checkpoint_dir=tmp_path / "agent",
        claim_block_ms=100,
        **url,
    )
    broker = await brokers(ledger_dir=tmp_path / "ledger")
    agent = Agent(settings, broker, make_store(settings, broker), handler)
    serving = asyncio.create_task(agent.serve())
    try:
        client = SwarmClient(f"ws://127.0.0.1:{coordinator.port}/ws", TOKEN)
        with tracing.span("submitter") as root:
            (task_id,) = await client.submit([{"payload": {"name": "parent", "spawn": True}}])
        reader = await brokers()

        async def finished(tid: str) -> bool:
            return await reader.get_result(tid) is not None

        await wait_until(lambda: finished(task_id), within=30, what="the parent's result")
        result = await reader.get_result(task_id)
        assert result is not None
        child_id, child_value = result.value
        assert child_value == "leaf"
        stored = await reader.get_task(task_id)
        assert stored is not None and stored.meta and "traceparent" in stored.meta["trace"]
    finally:
        agent.request_stop()
        await asyncio.wait_for(serving, timeout=30)
        await coordinator.shutdown(drain_seconds=0)

    finished = spans.get_finished_spans()
    trace_id = root.get_span_context().trace_id
    (submit,) = [s for s in finished if s.name == "submit"]
    (child_chat,) = [s for s in finished if s.name == "chat fake child"]
    runs = [s for s in finished if s.name == "process_task" and s.attributes["agentswarm.task_id"] == task_id]
    (child_run,) = [
        s for s in finished if s.name == "process_task" and s.attributes["agentswarm.task_id"] == child_id
    ]
    assert len(runs) == 2  # parked at gather, then woken by its child
    for s in [submit, child_chat, child_run, *runs]:
        assert s.context.trace_id == trace_id, s.name
    assert submit.parent.span_id == root.get_span_context().span_id
    for run in runs:  # each delivery of the parent is a child span of the submit
        assert run.parent.span_id == submit.context.span_id
    assert runs[0].attributes["agentswarm.stopped"] == "Parked"
    assert child_run.parent.span_id == runs[0].context.span_id  # spawned under the first run
    assert child_chat.parent.span_id == child_run.context.span_id
    parent_chats = [s for s in finished if s.name == "chat fake parent"]
    assert {c.parent.span_id for c in parent_chats} == {r.context.span_id for r in runs}


async def test_task_metadata_round_trips_through_the_broker(brokers: Any) -> None:
    broker = await brokers()
    meta = {"trace": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}}
    (with_meta, without) = await broker.enqueue_many(
        [NewTask(payload={"n": 1}, meta=meta), NewTask(payload={"n": 2})]
    )
    assert (await broker.get_task(with_meta)).meta == meta
    assert (await broker.get_task(without)).meta is None
    deliveries = await broker.claim("agent-x", count=2, block_ms=1000)
    assert [d.task.meta for d in deliveries] == [meta, None]


def test_without_tracing_the_submitters_context_passes_through() -> None:
    tracing.configure(environ={})
    carrier = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    assert tracing.task_meta(carrier) == {"trace": carrier}
    assert tracing.task_meta(None) is None
    assert tracing.task_context({"trace": carrier}) is None  # off: no SDK touched
