"""What one finished task costs the broker while it is retained: bytes and keys/messages per task.

``python -m bench.retention [--tasks N]`` runs N tasks of each profile through two agents on a private
``redis-server`` and ``nats-server`` (retention one hour, so nothing is forgotten while measuring) and prints
the growth of :meth:`Broker.usage` per task: Redis ``used_memory_dataset`` / ``used_memory`` / keys, NATS
stream bytes / messages (file storage). docs/retention.md turns these into a Memorystore size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agentswarm.broker import Broker, NewTask
from agentswarm.broker.nats_jetstream import NatsJetStreamBroker
from agentswarm.broker.redis_streams import RedisStreamsBroker

from bench.common import Child, NatsServer, RedisServer, stop_all

#: name -> payload of the ``sized`` handler: a no-op, and a small LLM-like task (1 KiB prompt, 5 streamed
#: events of 200 bytes, 2 KiB answer).
PROFILES: dict[str, dict[str, Any]] = {
    "no-op": {},
    "1 KiB in, 5 events, 2 KiB out": {
        "prompt": "p" * 1024,
        "events": 5,
        "event_bytes": 200,
        "result_bytes": 2048,
    },
}
RETENTION = 3600


async def drain(broker: Broker, within: float = 600) -> None:
    deadline = time.monotonic() + within
    while await broker.backlog() > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("tasks did not finish")
        await asyncio.sleep(0.5)


async def measure(backend: str, url: str, workdir: Path, tasks: int) -> dict[str, Any]:
    namespace = "sizing"
    broker: Broker
    if backend == "redis":
        broker = RedisStreamsBroker(url, namespace=namespace, retention_seconds=RETENTION)
    else:
        broker = NatsJetStreamBroker(url, namespace=namespace, retention_seconds=RETENTION)
    await broker.connect()
    env = {
        "AGENTSWARM_BROKER": backend,
        "AGENTSWARM_REDIS_URL" if backend == "redis" else "AGENTSWARM_NATS_URL": url,
        "AGENTSWARM_NAMESPACE": namespace,
        "AGENTSWARM_HANDLER": "bench.retention_handlers:sized",
        "AGENTSWARM_CONCURRENCY": "20",
        "AGENTSWARM_RETENTION_SECONDS": str(RETENTION),
        "AGENTSWARM_LOG_LEVEL": "WARNING",
    }
    agents = [
        Child(
            f"agent-{i}",
            [sys.executable, "-m", "agentswarm.agent"],
            {**env, "AGENTSWARM_AGENT_ID": f"agent-{i}", "AGENTSWARM_CHECKPOINT_DIR": str(workdir / f"a{i}")},
            workdir / f"{backend}-agent-{i}.log",
        )
        for i in range(2)
    ]
    for agent in agents:
        agent.start()
    out: dict[str, Any] = {}
    try:
        await broker.enqueue_many([NewTask(payload={}) for _ in range(100)])  # warm up: connections, keys
        await drain(broker)
        for name, payload in PROFILES.items():
            await asyncio.sleep(1)
            before = await broker.usage()
            for start in range(0, tasks, 500):
                await broker.enqueue_many([NewTask(payload=payload) for _ in range(min(500, tasks - start))])
            await drain(broker)
            await asyncio.sleep(1)
            after = await broker.usage()
            out[name] = {
                "tasks": tasks,
                "data_bytes_per_task": round((after.data_bytes - before.data_bytes) / tasks),
                "bytes_per_task": round((after.bytes - before.bytes) / tasks),
                "items_per_task": round((after.items - before.items) / tasks, 2),
            }
    finally:
        stop_all(agents)
        await broker.close()
    return out


async def main_async(tasks: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="agentswarm-retention-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis")
        redis.start()
        try:
            results["redis"] = await measure("redis", redis.url, work, tasks)
        finally:
            redis.stop()
        nats = NatsServer(work / "nats")
        nats.start()
        try:
            results["nats"] = await measure("nats", nats.url, work, tasks)
        finally:
            nats.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.tasks)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
