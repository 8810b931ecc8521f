"""Which pydantic-ai agents a task may run: the operator's default and allow-list, and their import.

A payload's ``agent`` reference is checked against :class:`AgentPolicy` before anything is imported, so a
client cannot make the agent process import arbitrary modules.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_ai.agent import AbstractAgent

from agentswarm.llm.errors import AgentRefError, LLMConfigError

AGENT_VARIABLE = "AGENTSWARM_PYDANTIC_AI_AGENT"
ALLOWED_VARIABLE = "AGENTSWARM_PYDANTIC_AI_ALLOWED"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REF_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}$")
_MODULE_WILDCARD_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:\*$")
_PACKAGE_WILDCARD_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*\.\*$")


@dataclass(frozen=True)
class AgentPolicy:
    """The operator's choice of agents: a default reference and an allow-list for payloads."""

    default: str | None = None
    allowed: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgentPolicy:
        env = os.environ if environ is None else environ
        default = env.get(AGENT_VARIABLE, "").strip() or None
        if default is not None and not _REF_RE.match(default):
            raise LLMConfigError(f"{AGENT_VARIABLE}={default!r}: expected 'package.module:attribute'")
        allowed = tuple(p.strip() for p in env.get(ALLOWED_VARIABLE, "").split(",") if p.strip())
        for pattern in allowed:
            if not (
                _REF_RE.match(pattern)
                or _MODULE_WILDCARD_RE.match(pattern)
                or _PACKAGE_WILDCARD_RE.match(pattern)
            ):
                raise LLMConfigError(
                    f"{ALLOWED_VARIABLE}: entry {pattern!r} is not 'package.module:attribute', "
                    "'package.module:*' or 'package.*'"
                )
        return cls(default=default, allowed=allowed)

    def permits(self, ref: str) -> bool:
        """Whether a payload may name ``ref`` (assumed well-formed)."""
        if ref == self.default:
            return True
        module, _, _attr = ref.partition(":")
        for pattern in self.allowed:
            if pattern == ref or pattern == f"{module}:*":
                return True
            if pattern.endswith(".*") and module.startswith(pattern[:-1]):
                return True
        return False

    def choose(self, requested: Any) -> str:
        """The reference to run for a payload's ``agent`` field (``None`` = the default)."""
        if requested is None:
            if self.default is None:
                raise AgentRefError(f"payload.agent is not given and {AGENT_VARIABLE} is not set")
            return self.default
        if not isinstance(requested, str) or not _REF_RE.match(requested):
            raise AgentRefError(f"payload.agent={requested!r}: expected 'package.module:attribute'")
        if not self.permits(requested):
            raise AgentRefError(
                f"payload.agent={requested!r}: not allowed; allowed are the default "
                f"{AGENT_VARIABLE}={self.default!r} and {ALLOWED_VARIABLE}={','.join(self.allowed)!r}"
            )
        return requested


_agents: dict[str, AbstractAgent[Any, Any]] = {}


def load_agent(ref: str) -> AbstractAgent[Any, Any]:
    """Import ``module:attribute`` (already checked against the policy) and check it is an agent."""
    cached = _agents.get(ref)
    if cached is not None:
        return cached
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentRefError(f"agent {ref!r}: cannot import {module_name!r}: {exc}") from exc
    agent = getattr(module, attr, None)
    if not isinstance(agent, AbstractAgent):
        raise AgentRefError(
            f"agent {ref!r}: {module_name}.{attr} is {type(agent).__name__}, not a pydantic_ai.Agent"
        )
    _agents[ref] = agent
    return agent
