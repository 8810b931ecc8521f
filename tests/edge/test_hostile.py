"""Hostile input against a real coordinator: property-based fuzzing of the websocket protocol (both backends),
a flood of malformed frames from one client, and 1,000 idle unauthenticated connections.

What must hold (docs/protocol.md, "Errors" and "Limits"): the coordinator never crashes; every reply is a
well-formed server frame and every error carries exactly one documented code; another client's connection
and subscription are never affected; memory stays bounded. Hypothesis runs a bounded number of examples
without deadlines, so the suite's time stays bounded on a loaded CI machine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from agentswarm import protocol as p
from agentswarm.broker.base import TaskResult
from agentswarm.coordinator import Coordinator, ServerOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .helpers import TOKEN, Swarm, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ERROR_CODES = set(get_args(p.ErrorCode))
CLIENT_TYPES = ["auth", "submit", "subscribe", "unsubscribe", "stats"]
#: Growth of the coordinator's resident memory allowed with 1,000 idle unauthenticated connections.
IDLE_RSS_BOUND_MIB = 60

# --- strategies --------------------------------------------------------------------------------------

EDGE_TEXT = st.sampled_from(
    ["", "\x00", "\u200b", "\ufeff", "\U0001f600" * 50, "e\u0301", "\u202etxt", "\\u0000", "﷽", "\uffff"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    EDGE_TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)
FIELD_NAMES = st.sampled_from(["type", "ref", "token", "tasks", "task_id", "after", "payload", "x"])


def _frame(kind: str, fields: dict[str, Any]) -> str:
    return json.dumps({"type": kind, **fields})


TYPED_FRAMES = st.builds(
    _frame, st.sampled_from([*CLIENT_TYPES, "welcome", "TYPE", ""]), st.dictionaries(FIELD_NAMES, JSON_VALUES)
)
DEEP = st.integers(min_value=100, max_value=20_000).map(lambda n: "[" * n + "]" * n)
DEEP_OBJECT = st.integers(min_value=100, max_value=5_000).map(lambda n: '{"a":' * n + "1" + "}" * n)
HUGE = st.integers(min_value=10_000, max_value=300_000).map(
    lambda n: json.dumps({"type": "submit", "tasks": [{"payload": {"s": "x" * n}}]})
)
TOO_LARGE = st.just(json.dumps({"type": "stats", "pad": "y" * (p.DEFAULT_MAX_FRAME_BYTES + 10)}))
WRONG_TYPES = st.sampled_from(
    [
        '{"type": "submit", "tasks": "not a list"}',
        '{"type": "submit", "tasks": []}',
        '{"type": "subscribe", "task_id": 42}',
        '{"type": "subscribe", "task_id": "no-such-task", "after": "garbage"}',
        '{"type": "unsubscribe", "task_id": "never-subscribed"}',
        '{"type": "auth", "token": "late and wrong"}',
        '{"type": "stats", "ref": {"nested": true}}',
        '["type", "stats"]',
        '"just a string"',
        "null",
        "{",
        "NaN",
    ]
)
FRAMES = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    JSON_VALUES.map(json.dumps),
    TYPED_FRAMES,
    DEEP,
    DEEP_OBJECT,
    HUGE,
    TOO_LARGE,
    WRONG_TYPES,
)

# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
async def live(brokers: Any) -> AsyncIterator[dict[str, Any]]:
    """An in-process coordinator on a real broker (both backends), and a victim client subscribed to a real
    task."""
    broker = await brokers()
    coordinator = Coordinator(
        broker, ServerOptions(api_token=TOKEN, host="127.0.0.1", port=0, poll_interval_seconds=0.05)
    )
    await coordinator.start()
    url = f"ws://127.0.0.1:{coordinator.port}/ws"
    victim = await connect(url, additional_headers=AUTH)
    assert json.loads(await victim.recv())["type"] == "welcome"
    await victim.send(
        json.dumps({"type": "submit", "ref": "v", "tasks": [{"task_id": "victim-task", "payload": {}}]})
    )
    assert json.loads(await victim.recv())["type"] == "submitted"
    await victim.send(json.dumps({"type": "subscribe", "ref": "vs", "task_id": "victim-task"}))
    assert json.loads(await victim.recv())["type"] == "subscribed"
    try:
        yield {"coordinator": coordinator, "broker": broker, "url": url, "victim": victim}
    finally:
        await victim.close()
        await coordinator.shutdown(drain_seconds=0)


async def _replies_until(ws: ClientConnection, ref: str) -> list[dict[str, Any]]:
    """Every frame received until the reply carrying ``ref``; each must be a valid server frame."""
    seen: list[dict[str, Any]] = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), 30)
        assert isinstance(raw, str)
        frame = p.parse_server_frame(raw)  # raises on anything that is not a documented server frame
        data = json.loads(raw)
        seen.append(data)
        if data["type"] == "error":
            assert data["code"] in ERROR_CODES, data
            assert isinstance(data["message"], str)
        if getattr(frame, "ref", None) == ref:
            return seen


# --- property-based fuzzing --------------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(frames=st.lists(FRAMES, min_size=1, max_size=12))
async def test_fuzzed_frames_get_documented_errors_and_harm_nobody(
    live: dict[str, Any], frames: list[str | bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="agentswarm.coordinator")
    async with connect(live["url"], additional_headers=AUTH, max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        closed_by_server = None
        try:
            for frame in frames:
                await ws.send(frame)
            await ws.send(json.dumps({"type": "stats", "ref": "probe"}))
            await _replies_until(ws, "probe")
        except ConnectionClosed as exc:
            closed_by_server = exc.rcvd.code if exc.rcvd is not None else None
        if closed_by_server is not None:
            # Only a frame above the 2 MiB hard cap may end the connection (1009); nothing here is that big.
            pytest.fail(f"connection closed with {closed_by_server} by {frames!r:.300}")
    # The coordinator is alive and the other client untouched: its subscription still delivers.
    victim: ClientConnection = live["victim"]
    await victim.send(json.dumps({"type": "stats", "ref": "victim-probe"}))
    await _replies_until(victim, "victim-probe")
    assert [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()] == []


async def test_victim_subscription_survives_fuzzing_and_gets_its_result(live: dict[str, Any]) -> None:
    """After a burst of hostile frames from another client, the victim still receives its task's result."""
    async with connect(live["url"], additional_headers=AUTH, max_size=None) as ws:
        await ws.recv()
        for frame in [
            "{",
            b"\x00\xff",
            "[" * 5000 + "]" * 5000,
            '{"type": "unsubscribe", "task_id": "victim-task"}',
        ]:
            await ws.send(frame)
        await ws.send(json.dumps({"type": "stats", "ref": "p"}))
        await _replies_until(ws, "p")
    broker = live["broker"]
    (delivery,) = await broker.claim("agent-0", count=1, block_ms=1000)
    assert delivery.task.id == "victim-task"
    await broker.record_result(TaskResult("victim-task", {"ok": True}, "agent-0", delivery.attempt))
    await broker.ack(delivery)
    victim: ClientConnection = live["victim"]
    while True:
        data = json.loads(await asyncio.wait_for(victim.recv(), 30))
        if data["type"] == "result":
            assert data["task_id"] == "victim-task" and data["result"] == {"ok": True}
            break


# --- floods and idle connections (a real coordinator process) ----------------------------------------


async def test_a_flood_of_malformed_frames_is_rate_limited(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    async with connect(redis_swarm.url, additional_headers=AUTH) as bystander:
        await bystander.recv()
        async with connect(redis_swarm.url, additional_headers=AUTH) as flooder:
            await flooder.recv()
            codes: list[str] = []
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(p.MAX_BAD_FRAMES * 4):
                    await flooder.send("{not json")
                while True:
                    codes.append(json.loads(await asyncio.wait_for(flooder.recv(), 30))["code"])
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert codes == ["bad_json"] * p.MAX_BAD_FRAMES + ["rate_limited"]
        await bystander.send(json.dumps({"type": "stats", "ref": "b"}))
        assert (await _replies_until(bystander, "b"))[-1]["type"] == "stats"


async def test_an_unauthenticated_flood_is_rate_limited_too(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    async with connect(redis_swarm.url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(p.MAX_BAD_FRAMES * 4):
                await ws.send("[")
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason == "too many malformed frames"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def _idle_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def test_a_thousand_idle_unauthenticated_connections(redis_swarm: Swarm) -> None:
    coordinator = redis_swarm.start_coordinator()
    await asyncio.sleep(0.5)
    before = _rss_mib(coordinator.pid)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(10):  # in batches, so the handshakes do not time out on a loaded machine
        conns += await asyncio.gather(*(_idle_handshake(redis_swarm.port) for _ in range(100)))
    peak = _rss_mib(coordinator.pid)
    print(f"coordinator RSS {before:.1f} MiB idle, {peak:.1f} MiB with {len(conns)} idle connections")
    assert peak - before < IDLE_RSS_BOUND_MIB, (before, peak)
    # Each is closed at the auth deadline with auth_timeout and 1008, without a frame from the client.
    closes = await asyncio.gather(*(asyncio.wait_for(r.read(), 60) for r, _ in conns))
    for data in closes:
        assert b"auth_timeout" in data and (1008).to_bytes(2, "big") in data
    for _, writer in conns:
        writer.close()
    wait_until(lambda: httpx.get(f"{redis_swarm.http}/healthz", timeout=5).status_code == 200, 30, "healthz")
