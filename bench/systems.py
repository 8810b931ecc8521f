"""One adapter per system: how to start its worker processes, submit tasks and see results.

All adapters submit the same payload to the same no-op work and count a task as done when its result is
recorded in the system's own result store (agentswarm: results hash / KV bucket; arq: ``arq:result:<id>``;
Celery: ``celery-task-meta-<id>``; taskiq: the result backend key). One worker = one process. Peers run at
their defaults, which include their in-process concurrency: arq 10 jobs in flight per process, taskiq 100,
Celery's solo pool 1 (prefork would add processes); an agentswarm agent runs one task at a time. The
``concurrency`` worker option sets it explicitly (agentswarm ``AGENTSWARM_CONCURRENCY``, taskiq
``--max-async-tasks``, Celery a thread pool of that size), for :mod:`bench.concurrency`.
"""

from __future__ import annotations

import abc
import asyncio
import json
import pickle
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Child, script

Item = tuple[str, dict[str, Any]]


class System(abc.ABC):
    name: str = "abstract"
    label: str = "abstract"
    server_kind: str = "redis"

    def __init__(self, server_url: str, port: int, workdir: Path) -> None:
        self.url = server_url
        self.port = port
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)

    @abc.abstractmethod
    def worker(self, index: int, **options: Any) -> Child: ...

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect the producer side (subclasses that need a connection override this)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Close what :meth:`open` opened."""

    @abc.abstractmethod
    async def submit_many(self, items: Sequence[Item]) -> None: ...

    async def submit_one(self, task_id: str, payload: dict[str, Any]) -> None:
        await self.submit_many([(task_id, payload)])

    @abc.abstractmethod
    async def count_done(self, ids: Sequence[str]) -> int: ...

    @abc.abstractmethod
    async def handler_starts(self, ids: Sequence[str]) -> dict[str, float]:
        """Handler start time (the no-op's return value) of each finished task."""

    async def wait_done(self, ids: Sequence[str], timeout: float, interval: float = 0.02) -> int:
        """Poll until every id has a result or ``timeout``; returns how many were done."""
        deadline = time.monotonic() + timeout
        while True:
            done = await self.count_done(ids)
            if done >= len(ids) or time.monotonic() > deadline:
                return done
            await asyncio.sleep(interval)


class _RedisKeys(System):
    """Peers whose result is one Redis key per task: ``EXISTS k1 k2 ...`` counts finished tasks."""

    async def open(self) -> None:
        import redis.asyncio as aioredis

        self.r = aioredis.Redis(host="127.0.0.1", port=self.port)

    async def close(self) -> None:
        await self.r.aclose()

    def result_key(self, task_id: str) -> str:
        raise NotImplementedError

    async def count_done(self, ids: Sequence[str]) -> int:
        total = 0
        for start in range(0, len(ids), 2000):
            total += int(await self.r.exists(*[self.result_key(i) for i in ids[start : start + 2000]]))
        return total


# --------------------------------------------------------------------------------------------------------
class AgentswarmSystem(System):
    """agentswarm agents (``python -m agentswarm.agent``) on the Redis Streams or NATS JetStream backend."""

    def __init__(self, server_url: str, port: int, workdir: Path, backend: str) -> None:
        super().__init__(server_url, port, workdir)
        self.backend = backend
        self.server_kind = backend
        self.name = f"agentswarm-{backend}"
        self.label = f"agentswarm ({'Redis' if backend == 'redis' else 'NATS'})"
        self.namespace = "b" + uuid.uuid4().hex[:10]
        self._base_done = 0

    def new_namespace(self) -> None:
        self.namespace = "b" + uuid.uuid4().hex[:10]

    def env(self, agent_id: str, **options: Any) -> dict[str, str]:
        env = {
            "AGENTSWARM_BROKER": self.backend,
            "AGENTSWARM_NAMESPACE": self.namespace,
            "AGENTSWARM_AGENT_ID": agent_id,
            "AGENTSWARM_CHECKPOINT_DIR": str(self.workdir / self.namespace / agent_id),
            "AGENTSWARM_HANDLER": options.get("handler", "bench.peers.agentswarm_handlers:noop"),
            "AGENTSWARM_LOG_LEVEL": "WARNING",
        }
        if self.backend == "redis":
            env["AGENTSWARM_REDIS_URL"] = self.url
        else:
            env["AGENTSWARM_NATS_URL"] = self.url
        if "concurrency" in options:
            env["AGENTSWARM_CONCURRENCY"] = str(options["concurrency"])
        for key, value in options.get("settings", {}).items():
            env[f"AGENTSWARM_{key.upper()}"] = str(value)
        return env

    def worker(self, index: int, **options: Any) -> Child:
        agent_id = options.get("agent_id", f"agent-{index}")
        return Child(
            agent_id,
            [sys.executable, "-m", "agentswarm.agent"],
            self.env(agent_id, **options),
            self.workdir / f"{self.namespace}-{agent_id}.log",
        )

    async def open(self, **settings: Any) -> None:
        from agentswarm.broker import open_broker
        from agentswarm.settings import load_settings

        kwargs: dict[str, Any] = {"broker": self.backend, "namespace": self.namespace, **settings}
        kwargs["redis_url" if self.backend == "redis" else "nats_url"] = self.url
        kwargs.setdefault("checkpoint_dir", self.workdir / self.namespace / "producer")
        self.broker = await open_broker(load_settings(**kwargs))
        self._base_done = (await self.broker.stats()).done

    async def close(self) -> None:
        await self.broker.close()

    async def submit_many(self, items: Sequence[Item]) -> None:
        from agentswarm.broker import NewTask

        await self.broker.enqueue_many([NewTask(payload=p, id=i) for i, p in items])

    async def submit_one(self, task_id: str, payload: dict[str, Any]) -> None:
        await self.broker.enqueue(payload, task_id)

    async def count_done(self, ids: Sequence[str]) -> int:
        if len(ids) == 1:
            return int(await self.broker.get_result(ids[0]) is not None)
        # The results hash / KV bucket only grows; the session's earlier results are subtracted.
        return (await self.broker.stats()).done - self._base_done

    def mark(self) -> None:
        """Call when ``count_done`` should start counting from zero (tasks before this are excluded)."""

    async def rebase(self) -> None:
        self._base_done = (await self.broker.stats()).done

    async def handler_starts(self, ids: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for task_id in ids:
            res = await self.broker.get_result(task_id)
            if res is not None and isinstance(res.value, (int, float)):
                out[task_id] = float(res.value)
        return out


# --------------------------------------------------------------------------------------------------------
class ArqSystem(_RedisKeys):
    name = "arq"
    label = "arq"

    def worker(self, index: int, **options: Any) -> Child:
        env = {"BENCH_REDIS_PORT": str(self.port)}
        if "job_timeout" in options:
            env["BENCH_ARQ_JOB_TIMEOUT"] = str(options["job_timeout"])
        return Child(
            f"arq-{index}",
            [script("arq"), "bench.peers.arq_worker.WorkerSettings"],
            env,
            self.workdir / f"arq-{index}.log",
        )

    async def open(self) -> None:
        await super().open()
        from arq import create_pool
        from arq.connections import RedisSettings

        self.pool = await create_pool(RedisSettings(host="127.0.0.1", port=self.port))

    async def close(self) -> None:
        await self.pool.aclose()
        await super().close()

    def result_key(self, task_id: str) -> str:
        return f"arq:result:{task_id}"

    async def submit_many(self, items: Sequence[Item], function: str = "noop") -> None:
        for start in range(0, len(items), 64):
            await asyncio.gather(
                *(self.pool.enqueue_job(function, p, _job_id=i) for i, p in items[start : start + 64])
            )

    async def handler_starts(self, ids: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        raws = await self.r.mget([self.result_key(i) for i in ids])
        for task_id, raw in zip(ids, raws, strict=True):
            if raw is not None:
                value = pickle.loads(raw).get("r")
                if isinstance(value, (int, float)):
                    out[task_id] = float(value)
        return out


# --------------------------------------------------------------------------------------------------------
class CelerySystem(_RedisKeys):
    name = "celery"
    label = "Celery"

    def worker(self, index: int, **options: Any) -> Child:
        env = {"BENCH_REDIS_PORT": str(self.port)}
        if "visibility_timeout" in options:
            env["BENCH_CELERY_VISIBILITY_TIMEOUT"] = str(options["visibility_timeout"])
        argv = [
            script("celery"),
            "-A",
            "bench.peers.celery_app",
            "worker",
            # ``concurrency`` > 1: a thread pool (the no-op sleeps in time.sleep, which releases the GIL).
            "-P",
            "solo" if int(options.get("concurrency", 1)) == 1 else "threads",
            "-c",
            str(int(options.get("concurrency", 1))),
            "-n",
            f"w{index}-{uuid.uuid4().hex[:6]}@bench",
            "-l",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        return Child(f"celery-{index}", argv, env, self.workdir / f"celery-{index}.log")

    async def open(self) -> None:
        await super().open()
        import os

        os.environ["BENCH_REDIS_PORT"] = str(self.port)
        from celery import Celery

        url = f"redis://127.0.0.1:{self.port}/0"
        self.app = Celery("bench-producer", broker=url, backend=url)
        self.app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")

    async def close(self) -> None:
        await asyncio.to_thread(self.app.close)
        await super().close()

    def result_key(self, task_id: str) -> str:
        return f"celery-task-meta-{task_id}"

    def _send(self, items: Sequence[Item], name: str) -> None:
        with self.app.producer_or_acquire() as producer:
            for task_id, payload in items:
                self.app.send_task(name, args=[payload], task_id=task_id, producer=producer)

    async def submit_many(self, items: Sequence[Item], function: str = "noop") -> None:
        await asyncio.to_thread(self._send, items, function)

    async def handler_starts(self, ids: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        raws = await self.r.mget([self.result_key(i) for i in ids])
        for task_id, raw in zip(ids, raws, strict=True):
            if raw is not None:
                value = json.loads(raw).get("result")
                if isinstance(value, (int, float)):
                    out[task_id] = float(value)
        return out


# --------------------------------------------------------------------------------------------------------
class TaskiqSystem(_RedisKeys):
    name = "taskiq"
    label = "taskiq"

    def worker(self, index: int, **options: Any) -> Child:
        argv = [
            script("taskiq"),
            "worker",
            "bench.peers.taskiq_app:broker",
            "--workers",
            "1",
            *(["--max-async-tasks", str(options["concurrency"])] if "concurrency" in options else []),
            "--log-level",
            "WARNING",
        ]
        return Child(
            f"taskiq-{index}",
            argv,
            {"BENCH_REDIS_PORT": str(self.port)},
            self.workdir / f"taskiq-{index}.log",
        )

    async def open(self) -> None:
        await super().open()
        import os

        os.environ["BENCH_REDIS_PORT"] = str(self.port)
        import importlib

        import bench.peers.taskiq_app as mod

        self.mod = importlib.reload(mod)
        await self.mod.broker.startup()

    async def close(self) -> None:
        await self.mod.broker.shutdown()
        await super().close()

    def result_key(self, task_id: str) -> str:
        return task_id

    async def submit_many(self, items: Sequence[Item]) -> None:
        for start in range(0, len(items), 64):
            await asyncio.gather(
                *(self.mod.noop.kicker().with_task_id(i).kiq(p) for i, p in items[start : start + 64])
            )

    async def handler_starts(self, ids: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        backend = self.mod.broker.result_backend
        for task_id in ids:
            res = await backend.get_result(task_id)
            if isinstance(res.return_value, (int, float)):
                out[task_id] = float(res.return_value)
        return out


def make_system(name: str, redis: Any, nats: Any, workdir: Path) -> System:
    if name == "agentswarm-redis":
        return AgentswarmSystem(redis.url, redis.port, workdir, "redis")
    if name == "agentswarm-nats":
        return AgentswarmSystem(nats.url, nats.port, workdir, "nats")
    peers: dict[str, type[_RedisKeys]] = {"arq": ArqSystem, "celery": CelerySystem, "taskiq": TaskiqSystem}
    cls = peers[name]
    return cls(redis.url, redis.port, workdir)


SYSTEMS = ("agentswarm-redis", "agentswarm-nats", "arq", "celery", "taskiq")
LABELS = {
    "agentswarm-redis": "agentswarm (Redis)",
    "agentswarm-nats": "agentswarm (NATS)",
    "arq": "arq",
    "celery": "Celery",
    "taskiq": "taskiq",
}
