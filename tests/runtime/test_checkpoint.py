"""Checkpoint files: atomic versions, corrupt or partial latest detected, previous one used."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from agentswarm.checkpoint import CorruptCheckpoint, FileCheckpointStore, decode, encode


async def test_versions_and_pruning(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path, keep=3)
    assert await store.load("t1") is None
    for i in range(5):
        assert await store.save("t1", {"i": i}) == i + 1
    files = sorted(p.name for p in (tmp_path / "tasks" / "t1").iterdir())
    assert files == ["0000000003.ckpt", "0000000004.ckpt", "0000000005.ckpt"]
    ckpt = await store.load("t1")
    assert ckpt is not None and (ckpt.version, ckpt.state) == (5, {"i": 4})
    # A new process (fresh store object) continues the version sequence from disk.
    again = FileCheckpointStore(tmp_path, keep=3)
    assert await again.save("t1", {"i": 5}) == 6
    await again.clear("t1")
    assert await again.load("t1") is None and not (tmp_path / "tasks" / "t1").exists()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="torn-write"),
        pytest.param(lambda b: b"", id="empty-file"),
        pytest.param(lambda b: b.replace(b'"i":2', b'"i":9'), id="bit-flip"),
        pytest.param(lambda b: b"\x00\xff garbage", id="garbage"),
    ],
)
async def test_corrupt_latest_falls_back_to_previous(tmp_path: Path, damage) -> None:
    store = FileCheckpointStore(tmp_path)
    await store.save("t", {"i": 1})
    await store.save("t", {"i": 2})
    latest = tmp_path / "tasks" / "t" / "0000000002.ckpt"
    latest.write_bytes(damage(latest.read_bytes()))
    ckpt = await FileCheckpointStore(tmp_path).load("t")
    assert ckpt is not None and (ckpt.version, ckpt.state) == (1, {"i": 1})
    # The next save does not reuse the damaged version number.
    fresh = FileCheckpointStore(tmp_path)
    await fresh.load("t")
    assert await fresh.save("t", {"i": 3}) == 3


async def test_leftover_temp_file_is_ignored(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    await store.save("t", {"i": 1})
    # A crash between write and rename leaves only a temp file behind.
    (tmp_path / "tasks" / "t" / ".0000000002.99999.tmp").write_bytes(encode("t", 2, {"i": 2})[:10])
    ckpt = await FileCheckpointStore(tmp_path).load("t")
    assert ckpt is not None and ckpt.version == 1
    await store.save("t", {"i": 2})
    assert not list((tmp_path / "tasks" / "t").glob("*.tmp"))


def test_envelope_checks() -> None:
    blob = encode("a", 1, {"x": [1, 2]})
    assert decode(blob, "a").state == {"x": [1, 2]}
    with pytest.raises(CorruptCheckpoint, match="belongs to task"):
        decode(blob, "b")
    env = json.loads(blob)
    env["version"] = 7
    with pytest.raises(CorruptCheckpoint, match="checksum"):
        decode(json.dumps(env).encode())
    with pytest.raises(TypeError):
        encode("a", 1, {"not json": object()})


async def test_invalid_task_id_cannot_escape_directory(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path / "vol")
    with pytest.raises(ValueError, match="invalid task id"):
        await store.save("../../etc", {})
    assert await asyncio.to_thread(os.listdir, tmp_path) == []  # nothing created anywhere
