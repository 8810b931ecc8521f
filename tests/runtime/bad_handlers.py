"""Handlers that misbehave, for tests (imported by agent processes via PYTHONPATH)."""

from __future__ import annotations

from typing import Any


async def returns_set(task: Any, state: Any, ctx: Any) -> Any:
    return {"not", "json"}


async def emits_non_json(task: Any, state: Any, ctx: Any) -> Any:
    await ctx.emit({"type": "progress", "blob": b"bytes"})
    return "unreachable"
