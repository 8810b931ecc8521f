"""Token and request counts of one task, as they appear in results, checkpoints and ``usage`` events.

One small JSON shape for every handler (pydantic-ai runs and plain OpenAI-compatible calls), so that
watchers, the coordinator and budgets read the same four numbers whatever produced them::

    {"input_tokens": 1200, "output_tokens": 310, "requests": 4, "tool_calls": 3}

plus, when the operator configured a price table (``AGENTSWARM_LLM_PRICES``), ``"cost_usd"`` and
``"unpriced_requests"`` (see :mod:`agentswarm.llm.prices`).

The counts are part of each checkpoint, so a task resumed after a crash reports the usage of the model
calls it really paid for, including those of earlier attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentswarm.llm.prices import PriceTable


@dataclass
class Usage:
    """Cumulative usage of a task (all attempts).

    ``cost_usd`` and ``unpriced_requests`` exist only with a price table (:mod:`agentswarm.llm.prices`):
    ``cost_usd`` stays None without one.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0
    cost_usd: float | None = None
    unpriced_requests: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests
        self.tool_calls += other.tool_calls
        if other.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + other.cost_usd
        self.unpriced_requests += other.unpriced_requests

    def priced(self, model: str | None, table: PriceTable | None) -> Usage:
        """This usage (of calls to ``model``) with its estimated cost from ``table`` (no-op without one)."""
        if table is None:
            return self
        price = table.price(model or "")
        if price is None:
            self.cost_usd = self.cost_usd or 0.0
            self.unpriced_requests += self.requests
        else:
            self.cost_usd = (self.cost_usd or 0.0) + price.cost(self.input_tokens, self.output_tokens)
        return self

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "requests": self.requests,
            "tool_calls": self.tool_calls,
        }
        if self.cost_usd is not None:
            out["cost_usd"] = round(self.cost_usd, 6)
            out["unpriced_requests"] = self.unpriced_requests
        return out

    @classmethod
    def from_json(cls, data: Any) -> Usage:
        """Read the JSON shape back; missing or malformed counts read as 0 (older checkpoints)."""
        if not isinstance(data, dict):
            return cls()
        values: dict[str, Any] = {}
        for name in ("input_tokens", "output_tokens", "requests", "tool_calls", "unpriced_requests"):
            value = data.get(name, 0)
            values[name] = value if isinstance(value, int) and value >= 0 else 0
        cost = data.get("cost_usd")
        values["cost_usd"] = (
            float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None
        )
        return cls(**values)

    def event(self, model: str | None) -> dict[str, Any]:
        """The ``usage`` event a handler emits when its task ends."""
        return {"type": "usage", "model": model, **self.to_json(), "total_tokens": self.total_tokens}
