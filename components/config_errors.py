"""One-line config errors: :class:`ConfigError`, and the translation of pydantic's ``ValidationError`` to it.

Whatever fails (a field bound, a pattern, an unknown key, a cross-field rule), the Pulumi CLI shows one line
naming the key, the bad value and what is allowed, before any resource exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

__all__ = ["ConfigError", "one_line_error"]


class ConfigError(ValueError):
    """A stack config value is wrong. ``str(err)`` is one line: key, bad value, what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        # A key is user input too: control characters (a newline in an unknown key) are shown escaped, so
        # the message stays one line.
        shown = key if key.isprintable() else key.encode("unicode_escape").decode("ascii")
        super().__init__(f"invalid stack config {shown}: got {value!r}; {allowed}")


def one_line_error(exc: ValidationError, data: Mapping[str, Any]) -> ConfigError:
    """The first problem of ``exc`` (raised validating ``data``) as a :class:`ConfigError`.

    A rule raised inside a nested model names its key relative to that model; the error's location supplies
    the prefix (``max_nodes`` of the agent pool becomes ``cluster.gke.agent_pool.max_nodes``).
    """
    err = exc.errors(include_url=False)[0]
    inner = (err.get("ctx") or {}).get("error")
    loc = tuple(err["loc"])
    if isinstance(inner, ConfigError):
        prefix = _loc_key(loc)
        key = inner.key if not prefix or inner.key.startswith(prefix) else f"{prefix}.{inner.key}"
        return ConfigError(key, inner.value, inner.allowed)
    return ConfigError(_loc_key(loc) or "<root>", _lookup(data, loc), _allowed(err))


def _loc_key(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(item)
    return "".join(parts)


def _lookup(data: Any, loc: tuple[int | str, ...]) -> Any:
    for item in loc:
        try:
            data = data[item]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _allowed(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "literal_error":
        return f"allowed: {ctx.get('expected')}"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see docs/config.md)"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg.replace("Input should be", "must be", 1)
