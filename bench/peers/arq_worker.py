"""arq worker settings: ``arq bench.peers.arq_worker.WorkerSettings``.

arq's defaults (``max_jobs`` 10 jobs in flight per process, ``poll_delay`` 0.5 s), except
``job_timeout`` from ``BENCH_ARQ_JOB_TIMEOUT`` for the recovery benchmark
(arq retries a job whose worker died only after its in-progress key expires: job_timeout + 10 s).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from arq.connections import RedisSettings

from bench.peers.work import executed, started


async def noop(ctx: dict[str, Any], payload: dict[str, Any]) -> float:
    begin = time.time()
    if payload.get("sleep"):
        await asyncio.sleep(float(payload["sleep"]))
    return begin


async def steps(ctx: dict[str, Any], payload: dict[str, Any]) -> int:
    task_id = ctx["job_id"]
    started(task_id, payload, 0)
    for step in range(int(payload["steps"])):
        await asyncio.sleep(float(payload["delay"]))
        executed(task_id, payload, step)
    return int(payload["steps"])


class WorkerSettings:
    functions = [noop, steps]
    redis_settings = RedisSettings(host="127.0.0.1", port=int(os.environ.get("BENCH_REDIS_PORT", "6379")))
    job_timeout = int(os.environ.get("BENCH_ARQ_JOB_TIMEOUT", "300"))
    max_tries = 5
