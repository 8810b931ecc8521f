"""Shared context on both backends: get/put/delete, compare-and-set without lost updates, limits, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agentswarm.broker import Broker
from agentswarm.swarm import InvalidKey, ValueTooLarge, VersionConflict
from agentswarm.swarm.runtime import make_swarm_store
from agentswarm.swarm.shared import MAX_SHARED_VALUE_BYTES, SharedContext
from rt_support import AgentProcess, make_test_broker, wait_until
from test_tree import tree_env

pytestmark = pytest.mark.timeout(240)


async def shared(brokers: Callable[..., Any], scope: str | None = "tree-a", **kw: Any) -> SharedContext:
    broker: Broker = await brokers()
    store = make_swarm_store(broker, **kw)
    await store.connect()
    return SharedContext(store, scope)


async def test_get_put_delete_and_versions(brokers: Callable[..., Any]) -> None:
    ctx = await shared(brokers)
    assert await ctx.get("plan", "none yet") == "none yet"
    v1 = await ctx.put("plan", {"steps": ["a", "b"]})
    assert await ctx.get("plan") == {"steps": ["a", "b"]}
    entry = await ctx.get_versioned("plan")
    assert entry is not None and entry.version == v1
    v2 = await ctx.put("plan", [1, 2], if_version=v1)
    assert v2 > v1
    with pytest.raises(VersionConflict, match="'plan'"):
        await ctx.put("plan", "stale", if_version=v1)
    with pytest.raises(VersionConflict):
        await ctx.put("plan", "only if absent", if_version=0)
    assert await ctx.get("plan") == [1, 2]  # the refused writes changed nothing
    assert await ctx.put("fresh", True, if_version=0) > 0
    with pytest.raises(VersionConflict):
        await ctx.delete("plan", if_version=v1)
    assert await ctx.delete("plan", if_version=v2) is True
    assert await ctx.delete("plan") is False
    assert await ctx.get("plan") is None
    v3 = await ctx.put("plan", "again")
    assert v3 > v2  # versions never repeat, so an old version cannot match again
    await ctx.put("finding.1", "x")
    await ctx.put("finding.2", {"y": None})
    assert await ctx.items("finding.") == {"finding.1": "x", "finding.2": {"y": None}}
    assert set(await ctx.items()) == {"fresh", "plan", "finding.1", "finding.2"}


async def test_scopes_are_separate(brokers: Callable[..., Any]) -> None:
    a = await shared(brokers, "tree-a")
    b = SharedContext(a._store, "tree-b")
    await a.put("k", "a")
    await b.put("k", "b")
    await a.swarm.put("k", "swarm")
    assert (await a.get("k"), await b.get("k"), await b.swarm.get("k")) == ("a", "b", "swarm")
    assert await SharedContext(a._store, "tree-c").items() == {}
    assert await a.swarm.items() == {"k": "swarm"}


async def test_bad_keys_and_values_are_refused_with_a_clear_error(brokers: Callable[..., Any]) -> None:
    ctx = await shared(brokers)
    for key in ("", "a b", "../etc", "x" * 201, ".lead", "trail.", "a..b", "$KV"):
        with pytest.raises(InvalidKey, match="invalid key"):
            await ctx.put(key, 1)
    with pytest.raises(ValueTooLarge, match=f"limit is {MAX_SHARED_VALUE_BYTES} bytes"):
        await ctx.put("big", "x" * MAX_SHARED_VALUE_BYTES)
    with pytest.raises(TypeError, match="not JSON"):
        await ctx.put("obj", object())
    await ctx.put("ok", "x" * (MAX_SHARED_VALUE_BYTES - 1000))
    assert await ctx.items() == {"ok": "x" * (MAX_SHARED_VALUE_BYTES - 1000)}


async def test_compare_and_set_under_concurrent_writers_loses_no_update(
    backend: str, server_url: str, unique_namespace: str
) -> None:
    """4 connections x 25 read-increment-write loops on one key: the counter ends at exactly 100."""
    brokers = [make_test_broker(backend, server_url, unique_namespace) for _ in range(4)]
    for b in brokers:
        await b.connect()
    try:
        written: list[int] = []
        conflicts = 0

        async def writer(broker: Broker) -> None:
            nonlocal conflicts
            store = make_swarm_store(broker)
            await store.connect()
            ctx = SharedContext(store, "tree-cas")
            for _ in range(25):
                while True:
                    entry = await ctx.get_versioned("counter")
                    value, version = (entry.value, entry.version) if entry else (0, 0)
                    await asyncio.sleep(0)
                    try:
                        await ctx.put("counter", value + 1, if_version=version)
                        written.append(value + 1)
                        break
                    except VersionConflict:
                        conflicts += 1

        await asyncio.gather(*(writer(b) for b in brokers))
        store = make_swarm_store(brokers[0])
        await store.connect()
        assert await SharedContext(store, "tree-cas").get("counter") == 100
        assert sorted(written) == list(range(1, 101))  # every value written exactly once
        assert conflicts > 0, "the writers never raced: the test proved nothing"
    finally:
        for b in brokers:
            await b.close()


async def test_agents_incrementing_a_swarm_counter_lose_no_update(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path
) -> None:
    env = tree_env(backend, server_url, unique_namespace, "agentswarm.handlers.tree:count")
    agents = [AgentProcess(f"agent-{i}", env, tmp_path).start() for i in range(3)]
    broker = make_test_broker(backend, server_url, unique_namespace)
    await broker.connect()
    try:
        ids = [f"count-{i}" for i in range(30)]
        for task_id in ids:
            await broker.enqueue({"scope": "swarm", "think": 0.01}, task_id)

        async def done() -> bool:
            return (await broker.stats()).done == len(ids)

        await wait_until(done, within=120, interval=0.2, what="30 increments")
        wrote = sorted([(await broker.get_result(t)).value["wrote"] for t in ids])  # type: ignore[union-attr]
        assert wrote == list(range(1, 31))
        store = make_swarm_store(broker)
        await store.connect()
        assert await SharedContext(store, None).get("counter") == 30
    finally:
        for a in agents:
            a.stop()
        await broker.close()


async def test_tree_entries_expire_and_swarm_entries_do_not(brokers: Callable[..., Any]) -> None:
    ctx = await shared(brokers, "tree-short", ttl_seconds=1)
    await ctx.put("k", "v")
    await ctx.swarm.put("k", "stays")

    async def gone() -> bool:
        return await ctx.get("k") is None

    await wait_until(gone, within=60, interval=0.5, what="the tree entry to expire")
    assert await ctx.swarm.get("k") == "stays"
