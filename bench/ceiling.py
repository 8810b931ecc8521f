"""The Redis ceiling: redis-benchmark running the command mix one agentswarm no-op task costs.

Per task the Redis Streams backend sends (agentswarm/broker/redis_streams.py and agent.py, as of a4f0fa5):
enqueue = HSETNX + XADD inside one Lua script (batched 500 tasks per call); claim = XREADGROUP, then HMGET
taskdata + HMGET errors (one pipeline; the own-pending XPENDING is skipped while nothing is pending);
get_result = HGET; the ``started`` event = XADD; record_result = a Lua script (HSETNX + XADD); ack = MULTI
XACK XDEL HDEL EXEC. redis-benchmark runs each of these commands on its own
against a private redis-server configured like the one the systems use; the ceiling for the mix is

    tasks/s = 1 / sum(1 / commands_per_second[c] for c in mix)

i.e. the task rate at which that Redis would be doing nothing but this mix. Two variants:

* ``clients=N``, no pipelining: one request/response connection per agent, like the agents (the
  round-trip-bound ceiling at that concurrency; MULTI/EXEC and the pipelined HMGET pair are counted as the
  separate commands they contain, which makes this ceiling slightly lower than exact);
* ``clients=50, pipeline=16``: the server's own limit for the mix (CPU-bound ceiling).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from bench.common import REDIS_BENCHMARK, RedisServer, Summary

_RECORD_LUA = (
    "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then "
    "redis.call('XADD', KEYS[2], '*', 'data', ARGV[3]) return 1 end return 0"
)
_JSON = '{"payload":{},"enqueued_at":1764367200.123}'
_RESULT = (
    '{"task_id":"t","value":1764367200.1,"agent_id":"agent-0","attempt":1,"recorded_at":1.0,"started_at":1.0}'
)

# (label, argv) in an order that gives each command realistic data: XADD fills the stream that
# XREADGROUP then consumes.
MIX: list[tuple[str, list[str]]] = [
    ("HSETNX taskdata", ["HSETNX", "b:taskdata", "t-__rand_int__", _JSON]),
    ("XADD tasks", ["XADD", "b:tasks", "*", "id", "t-__rand_int__"]),
    ("XREADGROUP", ["XREADGROUP", "GROUP", "g", "agent-0", "COUNT", "1", "STREAMS", "b:tasks", ">"]),
    ("HMGET taskdata", ["HMGET", "b:taskdata", "t-__rand_int__"]),
    ("HMGET errors", ["HMGET", "b:errors", "t-__rand_int__"]),
    ("HGET results", ["HGET", "b:results", "t-__rand_int__"]),
    ("XADD started event", ["XADD", "b:events:t-__rand_int__", "*", "data", '{"type":"started"}']),
    (
        "EVAL record_result",
        ["EVAL", _RECORD_LUA, "2", "b:results", "b:ev:t-__rand_int__", "t-__rand_int__", _RESULT, _RESULT],
    ),
    ("XACK", ["XACK", "b:tasks", "g", "1-__rand_int__"]),
    ("XDEL", ["XDEL", "b:tasks", "1-__rand_int__"]),
    ("HDEL retry_at", ["HDEL", "b:retry_at", "1-__rand_int__"]),
    ("MULTI/EXEC (2 round trips)", ["MULTI"]),  # measured as PING-like cost; see _run
]


def _bench(port: int, argv: list[str], requests: int, clients: int, pipeline: int) -> float:
    cmd = [
        REDIS_BENCHMARK,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-n",
        str(requests),
        "-c",
        str(clients),
        "-P",
        str(pipeline),
        "-r",
        "1000000",
        "--csv",
        *argv,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    # '"<test>","rps","avg",...,"max"': the test name echoes the command (quotes unescaped), so split from
    # the right: the 7 numeric columns are always the last ones.
    line = [x for x in out.splitlines() if x.strip()][-1].strip().strip('"')
    return float(line.rsplit('","', 7)[1])


def _run_mix(server: RedisServer, requests: int, clients: int, pipeline: int) -> dict[str, Any]:
    import redis

    server.flushall()
    rates: dict[str, float] = {}
    r = redis.Redis(host="127.0.0.1", port=server.port)
    for label, argv in MIX:
        if label.startswith("XREADGROUP"):
            r.xgroup_create("b:tasks", "g", id="0", mkstream=True)
        if label.startswith("MULTI"):
            # MULTI and EXEC are one cheap round trip each; PING has the same cost profile.
            rates[label] = _bench(server.port, ["PING"], requests, clients, pipeline) / 2
            continue
        rates[label] = _bench(server.port, argv, requests, clients, pipeline)
    r.close()
    per_task = sum(1.0 / v for v in rates.values())
    return {"tasks_per_s": 1.0 / per_task, "commands_per_s": rates}


def run_ceiling(workdir: Path, agent_counts: tuple[int, ...], requests: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"round_trip": {}, "server": {}}
    with RedisServer(workdir / "redis-ceiling") as server:
        assert isinstance(server, RedisServer)
        for clients in agent_counts:
            runs = [_run_mix(server, requests, clients, 1) for _ in range(repeats)]
            out["round_trip"][clients] = {
                **Summary.of([x["tasks_per_s"] for x in runs]).as_dict(),
                "commands_per_s": runs[-1]["commands_per_s"],
            }
        runs = [_run_mix(server, requests * 5, 50, 16) for _ in range(repeats)]
        out["server"] = {
            **Summary.of([x["tasks_per_s"] for x in runs]).as_dict(),
            "commands_per_s": runs[-1]["commands_per_s"],
        }
    return out
