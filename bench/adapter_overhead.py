"""Overhead of the pydantic-ai adapter per model call (checkpoints + events) against the bare agent, on Redis.

    python -m bench.adapter_overhead                  # 10- and 40-call conversations, 7 runs each
    python -m bench.adapter_overhead --calls 20 --runs 3

The agent is a pydantic-ai ``Agent`` on a ``FunctionModel`` that costs nothing: each model call but the last
asks for one (no-op) tool call, the last streams a five-chunk answer. So every millisecond measured is
framework or adapter work, none of it model latency. Timed, alternately, in one process:

* ``direct``: ``agent.run(prompt)``, pydantic-ai alone;
* ``direct, streamed``: the same node-by-node drive the adapter uses (``Agent.iter`` + ``node.stream``),
  without checkpoints or events;
* ``adapter, file``: ``agentswarm.handlers.pydantic_ai.handle`` with the agent process's own task context
  (``agentswarm.agent``), checkpoints as fsynced files on a temporary directory, events to Redis;
* ``adapter, broker``: the same with checkpoints in Redis (``AGENTSWARM_CHECKPOINT_BACKEND=broker``).

Per model call the adapter writes two checkpoints (after the response, after the tool result) and emits
four events (model_response, tool_call, tool_result, and tokens or usage). It prints milliseconds per model
call (median of the runs, min-max), the overhead against ``direct`` as the median of per-round differences
(robust to drifting load on a shared machine), and the same overhead in CPU time of this process (what the
adapter computes, without waiting for Redis, the disk or the scheduler). Redis: a private ``redis-server``
with ``appendfsync everysec`` on a free port, as in the rest of the benchmarks. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from agentswarm.agent import Agent as SwarmAgent
from agentswarm.agent import _Context
from agentswarm.broker.base import Delivery, Task
from agentswarm.broker.redis_streams import RedisStreamsBroker
from agentswarm.checkpoint import BrokerCheckpointStore, CheckpointStore, FileCheckpointStore
from agentswarm.handlers import pydantic_ai as adapter
from agentswarm.settings import load_settings
from agentswarm.swarm.store import Node
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from bench.common import RedisServer, Summary, machine, uptime_line

AGENT_REF = "bench.adapter_overhead:AGENT"
CALLS = 10


async def _script(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    pos = sum(isinstance(m, ModelResponse) for m in messages)
    if pos < CALLS - 1:
        yield {0: DeltaToolCall(name="noop", json_args=json.dumps({"i": pos}), tool_call_id=f"c{pos}")}
    else:
        for chunk in ["All ", "tools ", "were ", "called", "."]:
            yield chunk


def _plain(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    pos = sum(isinstance(m, ModelResponse) for m in messages)
    if pos < CALLS - 1:
        return ModelResponse(parts=[ToolCallPart("noop", {"i": pos}, tool_call_id=f"c{pos}")])
    return ModelResponse(parts=[TextPart("All tools were called.")])


AGENT = Agent(FunctionModel(_plain, stream_function=_script, model_name="free"), name="bench")


@AGENT.tool_plain
def noop(i: int) -> int:
    """Return the argument."""
    return i


async def _direct() -> None:
    await AGENT.run("go")


async def _direct_streamed() -> None:
    async with AGENT.iter("go") as run:
        node = run.next_node
        while not Agent.is_end_node(node):
            if Agent.is_model_request_node(node) or Agent.is_call_tools_node(node):
                async with node.stream(run.ctx) as stream:
                    async for _event in stream:
                        pass
            node = await run.next(node)


def _adapter(
    broker: RedisStreamsBroker, store: CheckpointStore, checkpoint_dir: Path
) -> Callable[[], Awaitable[None]]:
    settings = load_settings(checkpoint_dir=checkpoint_dir, agent_id="bench-0")
    swarm_agent = SwarmAgent(settings, broker, store, adapter.handle)

    async def run() -> None:
        task = Task(id=f"b{uuid.uuid4().hex[:12]}", payload={"prompt": "go"})
        delivery = Delivery(task=task, consumer="bench-0", attempt=1, source="new")
        ctx = _Context(swarm_agent, delivery, None, Node(task_id=task.id, root=task.id), store)
        result = await adapter.handle(task, None, ctx)
        assert result["usage"]["requests"] == CALLS, result
        await store.clear(task.id)

    return run


async def measure(calls: int, runs: int, redis_url: str, workdir: Path) -> dict[str, Any]:
    global CALLS
    CALLS = calls
    broker = RedisStreamsBroker(redis_url, namespace=f"bench{uuid.uuid4().hex[:6]}")
    await broker.connect()
    try:
        variants: dict[str, Callable[[], Awaitable[None]]] = {
            "direct": _direct,
            "direct, streamed": _direct_streamed,
            "adapter, file": _adapter(broker, FileCheckpointStore(workdir / "ckpt"), workdir / "ckpt"),
            "adapter, broker": _adapter(broker, BrokerCheckpointStore(broker), workdir / "ckpt"),
        }
        for run in variants.values():  # warm up: imports, connections, caches
            await run()
        wall: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(runs):
            for name, run in variants.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                await run()
                wall[name].append((time.perf_counter() - started) * 1000 / calls)
                cpu[name].append((time.process_time() - started_cpu) * 1000 / calls)
    finally:
        await broker.close()
    out: dict[str, dict[str, Summary]] = {}
    for name in wall:
        # Overhead = median of per-round differences: rounds are back to back, so drifting load on a shared
        # machine hits both sides of a difference alike.
        diffs = [w - d for w, d in zip(wall[name], wall["direct"], strict=True)]
        cpu_diffs = [c - d for c, d in zip(cpu[name], cpu["direct"], strict=True)]
        out[name] = {
            "wall": Summary.of(wall[name]),
            "cpu": Summary.of(cpu[name]),
            "overhead": Summary.of(diffs),
            "cpu_overhead": Summary.of(cpu_diffs),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.adapter_overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--calls", type=int, nargs="+", default=[10, 40], help="model calls per conversation")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per variant")
    args = parser.parse_args(argv)
    os.environ[adapter.AGENT_VARIABLE] = AGENT_REF
    print(f"machine: {machine()}\n{uptime_line()}")
    with tempfile.TemporaryDirectory(prefix="adapter-overhead-") as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            for calls in args.calls:
                results = asyncio.run(measure(calls, args.runs, server.url, Path(tmp)))
                print(f"\n{calls} model calls per task; ms per model call, median of {args.runs} (min-max)")
                print(f"  {'variant':<18} {'wall':>20} {'overhead (wall)':>22} {'overhead (CPU)':>16}")
                for name, r in results.items():
                    w, o, c = r["wall"], r["overhead"], r["cpu_overhead"]
                    over = "" if name == "direct" else f"{o.median:+7.2f} ({o.min:+.2f}..{o.max:+.2f})"
                    cpu = "" if name == "direct" else f"{c.median:+7.2f}"
                    print(f"  {name:<18} {w.median:7.2f} ({w.min:5.2f}-{w.max:6.2f}) {over:>22} {cpu:>16}")
        finally:
            server.stop()
    print(f"\n{uptime_line()}")
    return 0


if __name__ == "__main__":
    # Run as the importable module, so the handler (which imports AGENT_REF) sees the same agent and CALLS.
    from bench.adapter_overhead import main as module_main

    raise SystemExit(module_main())
