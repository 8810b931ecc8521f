"""Token and request counts of one task, as they appear in results, checkpoints and ``usage`` events.

One small JSON shape for every handler (pydantic-ai runs and plain OpenAI-compatible calls), so that
watchers, the coordinator and budgets read the same four numbers whatever produced them::

    {"input_tokens": 1200, "output_tokens": 310, "requests": 4, "tool_calls": 3}

The counts are part of each checkpoint, so a task resumed after a crash reports the usage of the model
calls it really paid for, including those of earlier attempts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Usage:
    """Cumulative usage of a task (all attempts)."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests
        self.tool_calls += other.tool_calls

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Usage:
        """Read the JSON shape back; missing or malformed counts read as 0 (older checkpoints)."""
        if not isinstance(data, dict):
            return cls()
        values = {}
        for name in ("input_tokens", "output_tokens", "requests", "tool_calls"):
            value = data.get(name, 0)
            values[name] = value if isinstance(value, int) and value >= 0 else 0
        return cls(**values)

    def event(self, model: str | None) -> dict[str, Any]:
        """The ``usage`` event a handler emits when its task ends."""
        return {"type": "usage", "model": model, **self.to_json(), "total_tokens": self.total_tokens}
