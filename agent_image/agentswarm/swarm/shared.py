"""``ctx.shared``: versioned JSON entries shared by a task tree (default) or by the whole swarm.

A tree is a root task and every task spawned below it; its entries live on the broker's server and expire
with the tree (``AGENTSWARM_TREE_TTL_SECONDS`` after their last write). ``ctx.shared.swarm`` is the same API
over one swarm-wide scope whose entries never expire: delete what you no longer need.

Every write returns the entry's new *version*, an integer that grows with each write to the scope. Pass it
back as ``if_version`` to write only if nobody wrote in between (compare-and-set; ``if_version=0`` means
"only if absent"); a lost race raises :class:`VersionConflict` and writes nothing, so a read-modify-write
loop never loses an update.
"""

from __future__ import annotations

import json
import re

from agentswarm.broker.base import JSON
from agentswarm.swarm.store import SwarmError, SwarmStore, Versioned

#: Largest JSON encoding of one value.
MAX_SHARED_VALUE_BYTES = 256 * 1024

#: Keys: dot-separated words of letters, digits, ``_``, ``-`` and ``=``, at most 200 characters.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*$")
MAX_KEY_LENGTH = 200


class InvalidKey(SwarmError, ValueError):
    """A shared-context or memory key does not match :data:`KEY_PATTERN`."""


class ValueTooLarge(SwarmError, ValueError):
    """A value's JSON encoding is larger than the limit."""


class VersionConflict(SwarmError):
    """``if_version`` did not match the entry's current version: someone else wrote first."""


def check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not KEY_PATTERN.match(key):
        raise InvalidKey(
            f"invalid key {key!r}: use 1-{MAX_KEY_LENGTH} characters, dot-separated words of "
            "A-Z, a-z, 0-9, '_', '-' and '='"
        )
    return key


def encode_value(key: str, value: JSON, limit: int) -> bytes:
    """The compact JSON of ``value``; TypeError if it is not JSON, :class:`ValueTooLarge` over ``limit``."""
    try:
        raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"value of key {key!r} is not JSON: {exc}") from None
    if len(raw) > limit:
        raise ValueTooLarge(f"value of key {key!r} is {len(raw)} bytes of JSON; the limit is {limit} bytes")
    return raw


class SharedContext:
    """Get/put/delete on one scope: a tree (``scope`` = root task id) or the swarm (``scope=None``)."""

    def __init__(self, store: SwarmStore, scope: str | None) -> None:
        self._store = store
        self.scope = scope

    @property
    def swarm(self) -> SharedContext:
        """The swarm-wide scope (shared by every task of every tree; entries do not expire)."""
        return SharedContext(self._store, None)

    async def get(self, key: str, default: JSON = None) -> JSON:
        """The value of ``key``, or ``default`` when there is none."""
        entry = await self._store.shared_get(self.scope, check_key(key))
        return default if entry is None else entry.value

    async def get_versioned(self, key: str) -> Versioned | None:
        """The value of ``key`` with its version (for a later ``put(..., if_version=...)``), or None."""
        return await self._store.shared_get(self.scope, check_key(key))

    async def put(self, key: str, value: JSON, *, if_version: int | None = None) -> int:
        """Store ``value``; returns its version. With ``if_version``: only if the version still matches."""
        raw = encode_value(check_key(key), value, MAX_SHARED_VALUE_BYTES)
        version = await self._store.shared_put(self.scope, key, raw, if_version)
        if version is None:
            raise VersionConflict(f"key {key!r} is no longer at version {if_version}: someone wrote first")
        return version

    async def delete(self, key: str, *, if_version: int | None = None) -> bool:
        """Delete ``key``; True if it existed. With ``if_version``: only if the version still matches."""
        existed = await self._store.shared_delete(self.scope, check_key(key), if_version)
        if existed is None:
            raise VersionConflict(f"key {key!r} is no longer at version {if_version}: someone wrote first")
        return existed

    async def items(self, prefix: str = "") -> dict[str, JSON]:
        """Every ``key: value`` of the scope whose key starts with ``prefix`` (meant for small scopes)."""
        entries = await self._store.shared_items(self.scope)
        return {k: v.value for k, v in sorted(entries.items()) if k.startswith(prefix)}
