"""Reading the running stack's ``agentswarm:`` namespace into a validated :class:`SwarmConfig`.

Pulumi stores every value as a string (sections JSON-encoded) and secrets apart; this module decodes them,
refuses a secret stored in plain text, and hands the mapping to :func:`components.config.parse_config`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from components.config import SwarmConfig, parse_config
from components.config_errors import ConfigError

__all__ = ["NAMESPACE", "SECRET_KEYS", "load_stack_config"]

NAMESPACE = "agentswarm"
"""The Pulumi config namespace every key lives in (``agentswarm:<key>``)."""

#: Stack-config keys that hold secrets: they must be stored with `pulumi config set --secret`.
SECRET_KEYS = ("api_token", "api_token_next", "redis_password")


def _decode(raw: str) -> Any:
    """Sections arrive JSON-encoded; scalars stay strings (a namespace "123" is a name, not a number)."""
    if raw.lstrip().startswith(("{", "[")):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_stack_config(
    values: Mapping[str, str] | None = None, secret_keys: Collection[str] | None = None
) -> SwarmConfig:
    """Read every ``agentswarm:*`` key of the current stack and validate it.

    ``values`` maps ``"agentswarm:<key>"`` (or bare ``<key>``) to the raw string Pulumi stores; structured
    values arrive JSON-encoded. Without it the running program's config is read. ``secret_keys`` are the
    full keys stored encrypted (default: the running program's); a :data:`SECRET_KEYS` value outside them
    is refused, so a token never sits in plain text in a stack file.
    """
    if values is None:
        from pulumi.runtime import config as runtime_config  # keeps the models importable without an engine

        values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    data: dict[str, Any] = {}
    for full_key, raw in values.items():
        ns, _, key = full_key.rpartition(":")
        if ns and ns != NAMESPACE:
            continue
        if not _KEY.match(key):
            raise ConfigError(key, raw, "config keys are snake_case names")
        data[key] = _decode(raw) if isinstance(raw, str) and key not in SECRET_KEYS else raw
    if secret_keys is None:
        from pulumi.runtime import config as runtime_config

        secret_keys = {*runtime_config.get_config_secret_keys_env(), *runtime_config._SECRET_KEYS.get()}
    for key in SECRET_KEYS:
        if key in data and f"{NAMESPACE}:{key}" not in secret_keys:
            raise ConfigError(
                key,
                "<plain text>",
                f"store it encrypted: `pulumi config set --secret {NAMESPACE}:{key} <value>`",
            )
    agents = data.get("agents")
    if isinstance(agents, Mapping) and agents.get("secret_env") and f"{NAMESPACE}:agents" not in secret_keys:
        raise ConfigError(
            "agents.secret_env",
            "<plain text>",
            "store each value encrypted: "
            f"`pulumi config set --secret --path {NAMESPACE}:agents.secret_env.NAME <value>`",
        )
    return parse_config(data)
