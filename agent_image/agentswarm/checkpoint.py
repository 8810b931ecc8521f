"""Per-task checkpoints that survive SIGKILL: versioned, checksummed, written atomically.

A checkpoint is an envelope ``{"format": 1, "task_id", "version", "saved_at", "state", "sha256"}`` where
``sha256`` covers the canonical JSON of everything else. Each ``save`` writes a new version; loading returns
the newest version whose envelope parses and whose checksum matches, so a torn or corrupted latest file
(power loss, full disk, bit rot) falls back to the previous version instead of crashing or silently
restarting from step 0.

Backends:

* :class:`FileCheckpointStore` (default): ``<checkpoint_dir>/tasks/<task_id>/<version:010d>.ckpt`` on the
  agent's volume. Write = temp file in the same directory, ``fsync``, ``rename``, ``fsync`` of the directory
  (so the rename itself is durable). Keeps the newest ``keep`` versions.
* :class:`BrokerCheckpointStore`: the same envelopes in the broker (Redis list / NATS KV with history), so
  whichever agent takes a task over resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agentswarm.broker.base import JSON, validate_task_id

if TYPE_CHECKING:
    from agentswarm.broker.base import Broker
    from agentswarm.settings import Settings

log = logging.getLogger(__name__)

FORMAT = 1


class CorruptCheckpoint(ValueError):
    """A checkpoint blob failed to parse or its checksum does not match."""


@dataclass(frozen=True)
class Checkpoint:
    """A restored checkpoint: the handler's ``state`` as of ``version``."""

    task_id: str
    version: int
    state: JSON
    saved_at: float


def _digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode(task_id: str, version: int, state: JSON) -> bytes:
    """Serialise one checkpoint version with its checksum. Raises TypeError if ``state`` is not JSON."""
    body = {"format": FORMAT, "task_id": task_id, "version": version, "saved_at": time.time(), "state": state}
    return json.dumps({**body, "sha256": _digest(body)}, separators=(",", ":")).encode()


def decode(blob: bytes, task_id: str | None = None) -> Checkpoint:
    """Parse and verify a checkpoint blob; raise :class:`CorruptCheckpoint` when it is not intact."""
    try:
        env = json.loads(blob)
        if not isinstance(env, dict):
            raise ValueError("not an object")
        digest = env.pop("sha256")
        if env.get("format") != FORMAT:
            raise ValueError(f"unknown format {env.get('format')!r}")
        if _digest(env) != digest:
            raise ValueError("checksum mismatch")
        if task_id is not None and env["task_id"] != task_id:
            raise ValueError(f"belongs to task {env['task_id']!r}")
        return Checkpoint(
            task_id=str(env["task_id"]),
            version=int(env["version"]),
            state=env["state"],
            saved_at=float(env["saved_at"]),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CorruptCheckpoint(str(exc)) from exc


class CheckpointStore(Protocol):
    """Where checkpoints live. ``save`` returns the new version number (1, 2, ...)."""

    #: Where the checkpoints are, for log messages.
    location: str

    async def load(self, task_id: str) -> Checkpoint | None: ...

    async def save(self, task_id: str, state: JSON) -> int: ...

    async def clear(self, task_id: str) -> None: ...

    async def stranded_task_ids(self) -> list[str]:
        """Tasks whose checkpoints only this agent can see (swept at start-up once finished elsewhere)."""
        ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileCheckpointStore:
    """Checkpoints as files on the agent's volume (see module docstring for the layout)."""

    suffix = ".ckpt"

    def __init__(self, root: Path, keep: int = 2) -> None:
        self.root = Path(root) / "tasks"
        self.location = str(self.root)
        self.keep = max(2, keep)
        self._versions: dict[str, int] = {}

    def _dir(self, task_id: str) -> Path:
        return self.root / validate_task_id(task_id)

    def _versions_on_disk(self, task_id: str) -> list[tuple[int, Path]]:
        d = self._dir(task_id)
        if not d.is_dir():
            return []
        out = []
        for p in d.iterdir():
            if p.suffix == self.suffix and p.stem.isdigit():
                out.append((int(p.stem), p))
        return sorted(out, reverse=True)

    def _load_sync(self, task_id: str) -> Checkpoint | None:
        versions = self._versions_on_disk(task_id)
        if versions:
            self._versions[task_id] = max(self._versions.get(task_id, 0), versions[0][0])
        for version, path in versions:
            try:
                ckpt = decode(path.read_bytes(), task_id)
            except (OSError, CorruptCheckpoint) as exc:
                log.warning("checkpoint %s is unusable (%s); trying the previous version", path, exc)
                continue
            if ckpt.version != version:
                log.warning("checkpoint %s claims version %d; ignoring it", path, ckpt.version)
                continue
            return ckpt
        return None

    def _save_sync(self, task_id: str, state: JSON) -> int:
        d = self._dir(task_id)
        if not d.is_dir():
            d.mkdir(parents=True, exist_ok=True)
            _fsync_dir(d.parent)
        if task_id not in self._versions:
            on_disk = self._versions_on_disk(task_id)
            self._versions[task_id] = on_disk[0][0] if on_disk else 0
        version = self._versions[task_id] + 1
        blob = encode(task_id, version, state)
        final = d / f"{version:010d}{self.suffix}"
        tmp = d / f".{version:010d}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(d)
        self._versions[task_id] = version
        for _old, path in self._versions_on_disk(task_id)[self.keep :]:
            with contextlib.suppress(OSError):
                path.unlink()
        for stray in d.glob(".*.tmp"):
            if not stray.name.endswith(f".{os.getpid()}.tmp"):
                with contextlib.suppress(OSError):
                    stray.unlink()
        return version

    def task_ids(self) -> list[str]:
        """Tasks with checkpoint files on this volume (used to sweep ones finished elsewhere)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def _clear_sync(self, task_id: str) -> None:
        self._versions.pop(task_id, None)
        shutil.rmtree(self._dir(task_id), ignore_errors=True)

    async def load(self, task_id: str) -> Checkpoint | None:
        return await asyncio.to_thread(self._load_sync, task_id)

    async def save(self, task_id: str, state: JSON) -> int:
        return await asyncio.to_thread(self._save_sync, task_id, state)

    async def clear(self, task_id: str) -> None:
        await asyncio.to_thread(self._clear_sync, task_id)

    async def stranded_task_ids(self) -> list[str]:
        """Every task with files here: a task taken over by another agent leaves its files behind."""
        return await asyncio.to_thread(self.task_ids)


class BrokerCheckpointStore:
    """Checkpoints kept in the broker (newest two versions), so any agent can resume a task."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.location = f"the {broker.name} broker"
        self._versions: dict[str, int] = {}

    async def load(self, task_id: str) -> Checkpoint | None:
        blobs = await self.broker.get_checkpoints(task_id)
        best: Checkpoint | None = None
        for blob in blobs:
            try:
                ckpt = decode(blob, task_id)
            except CorruptCheckpoint as exc:
                log.warning("checkpoint of task %s in the broker is unusable (%s)", task_id, exc)
                continue
            self._versions[task_id] = max(self._versions.get(task_id, 0), ckpt.version)
            if best is None or ckpt.version > best.version:
                best = ckpt
        return best

    async def save(self, task_id: str, state: JSON) -> int:
        if task_id not in self._versions:
            await self.load(task_id)
        version = self._versions.get(task_id, 0) + 1
        await self.broker.put_checkpoint(task_id, encode(task_id, version, state))
        self._versions[task_id] = version
        return version

    async def clear(self, task_id: str) -> None:
        self._versions.pop(task_id, None)
        await self.broker.delete_checkpoints(task_id)

    async def stranded_task_ids(self) -> list[str]:
        """None: whichever agent finishes a task clears its broker checkpoints."""
        return []


def make_store(settings: Settings, broker: Broker) -> CheckpointStore:
    """The checkpoint store chosen by ``AGENTSWARM_CHECKPOINT_BACKEND``."""
    if settings.checkpoint_backend == "broker":
        return BrokerCheckpointStore(broker)
    return FileCheckpointStore(settings.checkpoint_dir, keep=settings.checkpoint_keep)
