"""Estimated cost of model calls, from the operator's price table.

``AGENTSWARM_LLM_PRICES`` holds a JSON object mapping a model name to its prices in US dollars per million
tokens (what providers publish)::

    {"gpt-4o-mini": {"input": 0.15, "output": 0.60},
     "claude-*":    {"input": 3.0,  "output": 15.0}}

A name ending in ``*`` matches every model starting with the rest (the longest such prefix wins; an exact
name wins over any prefix). With a table, usage carries ``cost_usd`` (the estimated cost of the calls whose
model is priced) and ``unpriced_requests`` (calls whose model is not in the table, so a missing price is
visible rather than counted as free). Without one, usage has neither.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from agentswarm.llm.errors import LLMConfigError

PRICES_VARIABLE = "AGENTSWARM_LLM_PRICES"


@dataclass(frozen=True)
class Price:
    """US dollars per million input and output tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


@dataclass(frozen=True)
class PriceTable:
    exact: Mapping[str, Price]
    prefixes: tuple[tuple[str, Price], ...]  # longest first

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PriceTable | None:
        """The table in ``AGENTSWARM_LLM_PRICES``, or None when it is not set."""
        env = os.environ if environ is None else environ
        raw = env.get(PRICES_VARIABLE, "").strip()
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise LLMConfigError(f"{PRICES_VARIABLE}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise LLMConfigError(f"{PRICES_VARIABLE}: must be a JSON object of model -> prices")
        exact: dict[str, Price] = {}
        prefixes: list[tuple[str, Price]] = []
        for model, entry in data.items():
            price = _price(model, entry)
            if model.endswith("*"):
                prefixes.append((model[:-1], price))
            else:
                exact[model] = price
        prefixes.sort(key=lambda p: len(p[0]), reverse=True)
        return cls(exact, tuple(prefixes))

    def price(self, model: str) -> Price | None:
        if model in self.exact:
            return self.exact[model]
        for prefix, price in self.prefixes:
            if model.startswith(prefix):
                return price
        return None


def _price(model: str, entry: object) -> Price:
    allowed = 'an object {"input": USD per 1M tokens, "output": USD per 1M tokens}'
    if not isinstance(entry, dict) or set(entry) != {"input", "output"}:
        raise LLMConfigError(f"{PRICES_VARIABLE}: {model!r}={entry!r}: must be {allowed}")
    values = []
    for kind in ("input", "output"):
        value = entry[kind]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or not math.isfinite(value)
        ):
            raise LLMConfigError(f"{PRICES_VARIABLE}: {model!r}.{kind}={value!r}: must be a number >= 0")
        values.append(float(value))
    return Price(values[0], values[1])
