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
        return await ctx.spawn([{"name": "child"}])
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
        (child_id,) = result.value
        await wait_until(lambda: finished(child_id), within=30, what="the child's result")
        stored = await reader.get_task(task_id)
        assert stored is not None and stored.meta and "traceparent" in stored.meta["trace"]
    finally:
        agent.request_stop()
        await asyncio.wait_for(serving, timeout=30)
        await coordinator.shutdown(drain_seconds=0)

    finished_spans = {s.name: s for s in spans.get_finished_spans()}
    trace_id = root.get_span_context().trace_id
    submit = finished_spans["submit"]
    parent_chat, child_chat = finished_spans["chat fake parent"], finished_spans["chat fake child"]
    processes = [s for s in spans.get_finished_spans() if s.name == "process_task"]
    by_task = {s.attributes["agentswarm.task_id"]: s for s in processes}
    assert set(by_task) == {task_id, child_id}
    for s in [submit, parent_chat, child_chat, *processes]:
        assert s.context.trace_id == trace_id, s.name
    assert submit.parent.span_id == root.get_span_context().span_id
    assert by_task[task_id].parent.span_id == submit.context.span_id
    assert parent_chat.parent.span_id == by_task[task_id].context.span_id
    assert by_task[child_id].parent.span_id == by_task[task_id].context.span_id  # spawned under it
    assert child_chat.parent.span_id == by_task[child_id].context.span_id


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
