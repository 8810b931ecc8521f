"""The exceptions of the LLM handlers: one tree, so callers can catch :class:`LLMError` for all of them.

A handler that raises fails the task attempt (the runtime retries it, then dead-letters it); the message
names the variable or payload field, the value and what is allowed.
"""

from __future__ import annotations


class LLMError(RuntimeError):
    """Base class of every error raised by :mod:`agentswarm.llm` and the LLM handlers."""


class LLMConfigError(LLMError, ValueError):
    """An ``AGENTSWARM_LLM_*`` / ``AGENTSWARM_PYDANTIC_AI_*`` variable is missing or invalid."""


class PayloadError(LLMError, ValueError):
    """The task payload is not what the handler accepts."""


class AgentRefError(PayloadError):
    """An agent reference is malformed, not allowed by the operator, or does not name an agent."""


class ModelCallError(LLMError):
    """A model endpoint kept failing (after the retries the policy allows) or answered garbage."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
