"""The coordinator process: plain-HTTP health routes, auth, bad frames, shutdown with 1012.

One real coordinator subprocess per test (the session redis-server, a private namespace); a
private redis-server where the test kills the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal

import httpx
import pytest
from agentswarm import protocol as p
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from .helpers import TOKEN, Proc, Swarm, pid_alive, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def recv_frame(ws: object, within: float = 15) -> dict:
    raw = await asyncio.wait_for(ws.recv(), within)  # type: ignore[attr-defined]
    return json.loads(raw)


def test_health_routes_answer_plain_http(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    base = redis_swarm.http
    r = httpx.get(f"{base}/healthz")
    assert (r.status_code, r.text) == (200, "ok\n")
    r = httpx.get(f"{base}/readyz")
    assert (r.status_code, r.text) == (200, "ready\n")
    r = httpx.get(f"{base}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    for name in (
        'agentswarm_tasks{state="queued"}',
        'agentswarm_tasks{state="running"}',
        'agentswarm_tasks{state="done"}',
        'agentswarm_tasks{state="dead"}',
        "agentswarm_websocket_connections ",
        "agentswarm_task_duration_seconds_bucket",
    ):
        assert name in r.text, name
    # A plain GET on the websocket path is not upgraded: the library answers 426.
    assert httpx.get(f"{base}/ws", headers=AUTH).status_code == 426
    assert httpx.get(f"{base}/nope").status_code == 404


async def test_readyz_follows_the_broker(tmp_path, redis_factory, unique_namespace) -> None:
    redis = redis_factory()
    swarm = Swarm(
        tmp_path, {"AGENTSWARM_BROKER": "redis", "AGENTSWARM_REDIS_URL": redis.url}, unique_namespace
    )
    try:
        swarm.start_coordinator()
        redis.kill()
        async with httpx.AsyncClient() as http:
            r = await http.get(f"{swarm.http}/readyz")
            assert r.status_code == 503
            assert "broker" in r.text
            assert (await http.get(f"{swarm.http}/healthz")).status_code == 200
            redis.start()

            async def ready() -> bool:
                for _ in range(200):
                    if (await http.get(f"{swarm.http}/readyz")).status_code == 200:
                        return True
                    await asyncio.sleep(0.1)
                return False

            assert await ready()
    finally:
        swarm.stop()


async def test_bad_tokens_are_refused(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    url = redis_swarm.url
    # Wrong bearer header: HTTP 401 before any upgrade.
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers={"Authorization": "Bearer wrong"}):
            pass
    assert info.value.response.status_code == 401
    # Wrong token in the first frame: error frame, then close 1008.
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "wrong"}))
        frame = await recv_frame(ws)
        assert frame["type"] == "error" and frame["code"] == "unauthenticated"
        with pytest.raises(ConnectionClosed):
            await recv_frame(ws)
        assert ws.close_code == 1008
    # Anything but auth as the first frame: refused the same way, nothing enqueued.
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "submit", "tasks": [{"task_id": "sneaky", "payload": {}}]}))
        frame = await recv_frame(ws)
        assert frame["code"] == "unauthenticated"
        with pytest.raises(ConnectionClosed):
            await recv_frame(ws)
        assert ws.close_code == 1008
    # The server is unaffected: a good first-frame auth works.
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        assert (await recv_frame(ws))["type"] == "welcome"
        await ws.send(json.dumps({"type": "stats"}))
        stats = await recv_frame(ws)
        assert stats["type"] == "stats"
        assert stats["stats"]["enqueued_total"] == 0  # the refused submit never reached the broker


async def test_bad_frames_get_errors_and_the_connection_stays_usable(redis_swarm: Swarm) -> None:
    redis_swarm.start_coordinator()
    async with connect(redis_swarm.url, additional_headers=AUTH, max_size=None) as ws:
        welcome = await recv_frame(ws)
        assert welcome["type"] == "welcome"
        limit = welcome["max_frame_bytes"]
        cases = [
            ("{not json", "bad_json"),
            ("[1, 2]", "bad_json"),
            (json.dumps({"type": "launch_missiles"}), "unknown_type"),
            (json.dumps({"no": "type"}), "unknown_type"),
            (json.dumps({"type": "submit", "tasks": []}), "invalid_frame"),
            (json.dumps({"type": "submit", "tasks": [{"task_id": "a b/c", "payload": {}}]}), "invalid_frame"),
            (json.dumps({"type": "subscribe", "task_id": "x", "after": 5, "ref": "r1"}), "invalid_frame"),
            (
                json.dumps({"type": "submit", "tasks": [{"payload": {"pad": "x" * (limit + 10)}}]}),
                "too_large",
            ),
            (json.dumps({"type": "auth", "token": TOKEN}), "already_authenticated"),
            (json.dumps({"type": "unsubscribe", "task_id": "never"}), "not_found"),
            (json.dumps({"type": "subscribe", "task_id": "never-submitted"}), "not_found"),
        ]
        for message, code in cases:
            await ws.send(message)
            frame = await recv_frame(ws)
            assert frame["type"] == "error", message[:80]
            assert frame["code"] == code, (message[:80], frame)
            assert frame["message"]
        await ws.send(b"\x00binary")
        assert (await recv_frame(ws))["code"] == "binary_not_supported"
        # Same connection still does real work.
        await ws.send(
            json.dumps({"type": "submit", "ref": "ok", "tasks": [{"task_id": "t-ok", "payload": {}}]})
        )
        frame = await recv_frame(ws)
        assert frame == {"type": "submitted", "ref": "ok", "task_ids": ["t-ok"]}

    # Beyond the hard cap the library closes with 1009 (documented); the server carries on. The frame goes
    # out uncompressed (the coordinator declines permessage-deflate), so the server closes while the client
    # is still writing: no `async with`, whose close() would trip over the already torn-down transport.
    ws = await connect(redis_swarm.url, additional_headers=AUTH, max_size=None)
    await recv_frame(ws)
    with contextlib.suppress(ConnectionClosed):
        await ws.send("x" * (p.DEFAULT_HARD_MAX_FRAME_BYTES + 1))
    with pytest.raises(ConnectionClosed):
        await recv_frame(ws)
    assert ws.close_code == 1009
    assert ws.state is State.CLOSED
    async with connect(redis_swarm.url, additional_headers=AUTH) as ws:
        assert (await recv_frame(ws))["type"] == "welcome"
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{redis_swarm.http}/metrics")).text
    assert 'agentswarm_frame_errors_total{code="bad_json"} 2.0' in metrics


async def test_no_per_connection_compression(redis_swarm: Swarm) -> None:
    """The client offers permessage-deflate (websockets does by default); the coordinator declines it, so an
    idle connection carries no zlib state."""
    redis_swarm.start_coordinator()
    async with connect(redis_swarm.url, additional_headers=AUTH) as ws:
        assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        assert (await recv_frame(ws))["type"] == "welcome"


async def test_sigterm_drains_then_closes_with_1012(redis_swarm: Swarm) -> None:
    coord = redis_swarm.start_coordinator(AGENTSWARM_SHUTDOWN_DRAIN_SECONDS="2")
    async with connect(redis_swarm.url, additional_headers=AUTH) as ws:
        assert (await recv_frame(ws))["type"] == "welcome"
        coord.signal(signal.SIGTERM)
        # While draining: readyz says 503 so the load balancer stops routing here, the socket still works.
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                if (await http.get(f"{redis_swarm.http}/readyz")).status_code == 503:
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("readyz never turned 503 during the drain")
        await ws.send(json.dumps({"type": "stats", "ref": "during-drain"}))
        assert (await recv_frame(ws))["ref"] == "during-drain"
        with pytest.raises(ConnectionClosed):
            await recv_frame(ws, within=30)
        assert ws.close_code == 1012
    assert coord.proc is not None
    coord.proc.wait(timeout=20)
    assert coord.proc.returncode == 0
    wait_until(lambda: not pid_alive(coord.pid), 10, "coordinator gone")


def test_coordinator_refuses_to_start_without_token(redis_swarm: Swarm) -> None:
    import subprocess
    import sys

    env = {**redis_swarm.base_env, "AGENTSWARM_PORT": str(redis_swarm.port)}
    out = subprocess.run(
        [sys.executable, "-m", "agentswarm.cli", "coordinator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "AGENTSWARM_API_TOKEN" in out.stderr


async def test_coordinator_started_before_its_broker(tmp_path, redis_factory, unique_namespace) -> None:
    redis = redis_factory()
    redis.kill()  # the port is known; nothing listens yet
    env = {"AGENTSWARM_BROKER": "redis", "AGENTSWARM_REDIS_URL": redis.url}
    swarm = Swarm(tmp_path, env, unique_namespace)
    proc = Proc(
        "coordinator",
        ["coordinator"],
        {**swarm.base_env, "AGENTSWARM_API_TOKEN": TOKEN, "AGENTSWARM_PORT": str(swarm.port)},
        tmp_path,
    ).start()
    try:
        async with httpx.AsyncClient() as http:
            # Liveness is served at once; readiness waits for the broker.
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{swarm.http}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            r = await http.get(f"{swarm.http}/readyz")
            assert r.status_code == 503 and "not connected" in r.text
            redis.start()
            for _ in range(300):
                if (await http.get(f"{swarm.http}/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"never ready:\n{proc.log()[-3000:]}")
        async with connect(swarm.url, additional_headers=AUTH) as ws:
            assert (await recv_frame(ws))["type"] == "welcome"
    finally:
        proc.stop()
