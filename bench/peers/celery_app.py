"""Celery app: ``celery -A bench.peers.celery_app worker -P solo -c 1``.

Redis broker and result backend, ``acks_late`` (so a killed worker's task is redelivered instead of lost),
prefetch 1, JSON. ``visibility_timeout`` (how long an unacknowledged message waits before Redis redelivers
it; 1 h by default) from ``BENCH_CELERY_VISIBILITY_TIMEOUT`` for the recovery benchmark.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

from bench.peers.work import executed, started

_url = f"redis://127.0.0.1:{os.environ.get('BENCH_REDIS_PORT', '6379')}/0"
app = Celery("bench", broker=_url, backend=_url)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": int(os.environ.get("BENCH_CELERY_VISIBILITY_TIMEOUT", "3600"))
    },
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(payload: dict[str, Any]) -> float:
    begin = time.time()
    if payload.get("sleep"):
        time.sleep(float(payload["sleep"]))
    return begin


@app.task(name="steps", bind=True)
def steps(self: Any, payload: dict[str, Any]) -> int:
    task_id = self.request.id
    started(task_id, payload, 0)
    for step in range(int(payload["steps"])):
        time.sleep(float(payload["delay"]))
        executed(task_id, payload, step)
    return int(payload["steps"])
