"""taskiq broker: ``taskiq worker bench.peers.taskiq_app:broker --workers 1``.

Redis Streams broker (consumer group, acks) with the Redis result backend.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

_url = f"redis://127.0.0.1:{os.environ.get('BENCH_REDIS_PORT', '6379')}/0"
broker = RedisStreamBroker(url=_url).with_result_backend(RedisAsyncResultBackend(redis_url=_url))


@broker.task(task_name="noop")
async def noop(payload: dict[str, Any]) -> float:
    begin = time.time()
    if payload.get("sleep"):
        await asyncio.sleep(float(payload["sleep"]))
    return begin
