"""``ctx.memory``: what one agent remembers across tasks and restarts, on its own volume.

Memory belongs to an agent *identity* (the StatefulSet pod name, ``AGENTSWARM_AGENT_ID``), not to a task:
it lives in ``$AGENTSWARM_CHECKPOINT_DIR/memory/`` on the agent's persistent volume, so it survives a crash or
a rescheduled pod with the same name, and other agents never see it. Two ways to use it:

* a small key-value API (``get``/``put``/``delete``/``keys``) with JSON values, stored in SQLite with
  ``synchronous=FULL``: a ``put`` that returned is on disk;
* ``memory.path``: a directory on the same volume for libraries that bring their own store (a SQLite
  database, a vector index, cached files).

Compare: a *checkpoint* (``ctx.checkpoint``) is per task and gone once the task finishes; the *shared
context* (``ctx.shared``) is on the broker's server and visible to every task of a tree (or the swarm).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

from agentswarm.broker.base import JSON
from agentswarm.swarm.shared import check_key, encode_value

#: Largest JSON encoding of one memory value (larger data belongs in files under ``memory.path``).
MAX_MEMORY_VALUE_BYTES = 1024 * 1024


class AgentMemory:
    """The memory of one agent identity under ``root`` (``<checkpoint dir>/memory``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """A directory on the agent's volume for the handler's own files (created on first access)."""
        files = self.root / "files"
        files.mkdir(parents=True, exist_ok=True)
        return files

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.root.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.root / "memory.sqlite3", check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db = db
        return self._db

    def _run(self, sql: str, args: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        with self._lock:
            return list(self._conn().execute(sql, args).fetchall())

    async def get(self, key: str, default: JSON = None) -> JSON:
        """The value stored under ``key``, or ``default``."""
        rows = await asyncio.to_thread(self._run, "SELECT value FROM kv WHERE key = ?", (check_key(key),))
        return json.loads(rows[0][0]) if rows else default

    async def put(self, key: str, value: JSON) -> None:
        """Store ``value`` (JSON, at most :data:`MAX_MEMORY_VALUE_BYTES` encoded) durably under ``key``."""
        raw = encode_value(check_key(key), value, MAX_MEMORY_VALUE_BYTES).decode()
        await asyncio.to_thread(
            self._run,
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, raw),
        )

    async def delete(self, key: str) -> bool:
        """Forget ``key``; True if it was there."""
        sql = "DELETE FROM kv WHERE key = ? RETURNING key"
        rows = await asyncio.to_thread(self._run, sql, (check_key(key),))
        return bool(rows)

    async def keys(self, prefix: str = "") -> list[str]:
        """Stored keys starting with ``prefix``, sorted."""
        rows = await asyncio.to_thread(self._run, "SELECT key FROM kv ORDER BY key")
        return [r[0] for r in rows if r[0].startswith(prefix)]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
