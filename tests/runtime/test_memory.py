"""Agent memory: durable per identity on the agent's volume, across tasks, SIGKILLs and restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentswarm.swarm import InvalidKey, ValueTooLarge
from agentswarm.swarm.memory import MAX_MEMORY_VALUE_BYTES, AgentMemory
from rt_support import AgentProcess, make_test_broker, wait_until
from test_tree import tree_env

pytestmark = pytest.mark.timeout(240)


async def test_memory_key_value_and_path(tmp_path: Path) -> None:
    memory = AgentMemory(tmp_path / "memory")
    assert await memory.get("notes", []) == []
    await memory.put("notes", ["a"])
    await memory.put("user.alice", {"lang": "fr"})
    assert await memory.get("notes") == ["a"]
    assert await memory.keys() == ["notes", "user.alice"]
    assert await memory.keys("user.") == ["user.alice"]
    assert await memory.delete("notes") is True
    assert await memory.delete("notes") is False
    (memory.path / "index.bin").write_bytes(b"\0")
    with pytest.raises(InvalidKey):
        await memory.put("../escape", 1)
    with pytest.raises(ValueTooLarge, match=f"limit is {MAX_MEMORY_VALUE_BYTES} bytes"):
        await memory.put("big", "x" * MAX_MEMORY_VALUE_BYTES)
    memory.close()
    again = AgentMemory(tmp_path / "memory")
    assert await again.get("user.alice") == {"lang": "fr"} and await again.keys() == ["user.alice"]
    assert (again.path / "index.bin").exists()
    again.close()


async def test_memory_survives_sigkill_and_restart_with_the_same_identity(
    backend: str, server_url: str, unique_namespace: str, tmp_path: Path
) -> None:
    env = tree_env(backend, server_url, unique_namespace, "agentswarm.handlers.tree:remember")
    agent = AgentProcess("agent-0", env, tmp_path).start()
    other: AgentProcess | None = None
    broker = make_test_broker(backend, server_url, unique_namespace)
    await broker.connect()

    async def result_of(task_id: str) -> dict[str, object]:
        async def has() -> bool:
            return await broker.get_result(task_id) is not None

        await wait_until(has, within=60, what=f"task {task_id}")
        res = await broker.get_result(task_id)
        assert res is not None
        return dict(res.value)

    try:
        await broker.enqueue({}, "m1")
        assert await result_of("m1") == {"agent": "agent-0", "seen": ["m1"]}
        agent.kill()
        agent.start()  # same identity, same volume
        await broker.enqueue({}, "m2")
        assert await result_of("m2") == {"agent": "agent-0", "seen": ["m1", "m2"]}
        assert sorted(p.name for p in (agent.checkpoint_dir / "memory" / "files").iterdir()) == [
            "m1.txt",
            "m2.txt",
        ]
        agent.stop()
        other = AgentProcess("agent-1", env, tmp_path).start()  # another identity remembers nothing
        await broker.enqueue({}, "m3")
        assert await result_of("m3") == {"agent": "agent-1", "seen": ["m3"]}
    finally:
        agent.stop()
        if other is not None:
            other.stop()
        await broker.close()
