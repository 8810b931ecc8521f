"""The swarm-wide token budget: tokens per UTC day, in total and optionally per model, kept in the broker.

Every agent adds the tokens of each model call it makes (the ``model_response`` events the LLM handlers
emit: ``input_tokens + output_tokens``) to a counter of the current window in the broker, so all agents of a
swarm share one budget whatever their number: a Redis hash per window (``HINCRBY``, atomic), or a NATS KV
bucket updated with compare-and-set. Windows are UTC days; a window's counters expire two days after it.

When the budget is spent, agents stop taking new *LLM tasks* and stay alive; other tasks keep flowing.
A task is an LLM task when

* its payload says so: ``"llm": true`` (``"llm": false`` says it is not, whatever its handler), or
* the handler that runs it is an LLM handler: the shipped ``agentswarm.handlers.openai_chat:handle`` and
  ``agentswarm.handlers.pydantic_ai:handle``, or any handler marked with :func:`llm_handler`.

A per-model limit holds back the LLM tasks of that model: the payload's ``"model"``, else the agent's
``AGENTSWARM_LLM_MODEL``. Tokens are charged to that model too (not to the dated name a server may report,
which is used only when the task asks for no model). The budget is checked when a task is taken:
tasks already running finish (a model call half-paid is not thrown away), so the overshoot is bounded by the
tasks in flight. An agent that takes an LLM task while the budget is spent keeps it (its lease renewed,
nothing paid) and takes no other task until the window resets or the limits are raised, looking at the budget
every :data:`POLL_SECONDS`; on SIGTERM it hands the task back like any task not yet started. The coordinator
reports ``budget_exhausted`` (and the tokens spent, the limit and the reset time) in its stats.

Configured by ``AGENTSWARM_BUDGET_TOKENS_PER_DAY`` (0 = no total limit) and
``AGENTSWARM_BUDGET_MODEL_TOKENS_PER_DAY`` (JSON ``{"model": tokens}``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentswarm.broker.base import Broker, Task

__all__ = [
    "LLM_HANDLERS",
    "POLL_SECONDS",
    "WINDOW_SECONDS",
    "Budget",
    "BudgetStatus",
    "budget_from_settings",
    "is_llm_task",
    "llm_handler",
]

WINDOW_SECONDS = 86_400
"""One budget window: a UTC day."""
POLL_SECONDS = 30.0
"""How often a paused agent looks at the budget again (it also wakes at the window's reset)."""
_KEEP_SECONDS = 2 * WINDOW_SECONDS
_TOTAL = "*"

LLM_HANDLERS = frozenset({"agentswarm.handlers.openai_chat:handle", "agentswarm.handlers.pydantic_ai:handle"})
"""Handler references whose every task is an LLM task."""


def llm_handler(func: Any) -> Any:
    """Mark your own handler as one whose tasks call models (so the budget holds them back when spent)."""
    func.agentswarm_llm = True
    return func


def _reference(handler: Any) -> str:
    return f"{getattr(handler, '__module__', '')}:{getattr(handler, '__qualname__', '')}"


def is_llm_task(task: Task, handler: Any) -> bool:
    """Whether ``task``, run by ``handler``, is an LLM task (see the module docstring)."""
    payload = task.payload
    if isinstance(payload, dict) and isinstance(payload.get("llm"), bool):
        return bool(payload["llm"])
    return bool(getattr(handler, "agentswarm_llm", False)) or _reference(handler) in LLM_HANDLERS


def task_model(task: Task, environ: Mapping[str, str] | None = None) -> str | None:
    """The model a task asks for: its payload's ``model``, else the agent's ``AGENTSWARM_LLM_MODEL``."""
    payload = task.payload
    model = payload.get("model") if isinstance(payload, dict) else None
    if isinstance(model, str) and model:
        return model
    return (os.environ if environ is None else environ).get("AGENTSWARM_LLM_MODEL") or None


@dataclass(frozen=True)
class BudgetStatus:
    """The current window: tokens spent, the limits, what is exhausted, when it resets (epoch seconds)."""

    window: int
    spent: dict[str, int]
    tokens_per_day: int | None
    model_tokens_per_day: dict[str, int]
    resets_at: float
    exhausted: bool = False
    exhausted_models: list[str] = field(default_factory=list)

    def blocks(self, model: str | None) -> bool:
        """Whether an LLM task (of ``model``, when known) must wait for the reset."""
        return self.exhausted or (model is not None and model in self.exhausted_models)

    def as_stats(self) -> dict[str, Any]:
        return {
            "budget_exhausted": self.exhausted,
            "budget_exhausted_models": list(self.exhausted_models),
            "budget_tokens_spent": self.spent.get(_TOTAL, 0),
            "budget_tokens_per_day": self.tokens_per_day,
            "budget_resets_at": self.resets_at,
        }


class Budget:
    """The shared token budget of one swarm (one broker namespace)."""

    def __init__(
        self,
        broker: Broker,
        *,
        tokens_per_day: int | None = None,
        model_tokens_per_day: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        for name, limit in [("tokens_per_day", tokens_per_day), *(model_tokens_per_day or {}).items()]:
            if limit is not None and limit < 1:
                raise ValueError(f"budget {name}={limit}: must be a positive number of tokens")
        self.broker = broker
        self.tokens_per_day = tokens_per_day
        self.model_tokens_per_day = dict(model_tokens_per_day or {})
        self.clock = clock
        self.poll_seconds = poll_seconds
        self._kv: Any = None

    @property
    def enabled(self) -> bool:
        return self.tokens_per_day is not None or bool(self.model_tokens_per_day)

    def window(self) -> int:
        return int(self.clock() // WINDOW_SECONDS)

    # -- storage --------------------------------------------------------------------------------------------
    async def _bucket(self) -> Any:
        if self._kv is None:
            import nats.js.errors
            from nats.js.api import KeyValueConfig, StorageType

            js = self.broker.js  # type: ignore[attr-defined]
            name = f"{self.broker.ns}_budget"  # type: ignore[attr-defined]
            try:
                self._kv = await js.key_value(name)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await js.create_key_value(
                    KeyValueConfig(bucket=name, history=1, ttl=_KEEP_SECONDS, storage=StorageType.FILE)
                )
        return self._kv

    def _redis_key(self, window: int) -> str:
        return f"{self.broker.ns}:budget:{window}"  # type: ignore[attr-defined]

    @staticmethod
    def _kv_key(window: int, model: str) -> str:
        # KV keys allow [-/_=.a-zA-Z0-9]; model names carry ':' or '@', so they are hex-encoded.
        return f"w{window}.{model.encode().hex() if model != _TOTAL else 'total'}"

    async def _add_redis(self, window: int, amounts: dict[str, int]) -> None:
        key = self._redis_key(window)
        pipe = self.broker.r.pipeline(transaction=True)  # type: ignore[attr-defined]
        for name, tokens in amounts.items():
            pipe.hincrby(key, name, tokens)
        pipe.expire(key, _KEEP_SECONDS)
        await pipe.execute()

    async def _add_nats(self, window: int, amounts: dict[str, int]) -> None:
        import nats.js.errors

        kv = await self._bucket()
        for name, tokens in amounts.items():
            key = self._kv_key(window, name)
            while True:  # compare-and-set: concurrent agents never lose an update
                try:
                    entry = await kv.get(key)
                except nats.js.errors.KeyNotFoundError:
                    try:
                        await kv.create(key, str(tokens).encode())
                        break
                    except nats.js.errors.KeyWrongLastSequenceError:
                        continue
                try:
                    await kv.update(key, str(int(entry.value or b"0") + tokens).encode(), last=entry.revision)
                    break
                except nats.js.errors.KeyWrongLastSequenceError:
                    await asyncio.sleep(0)

    async def _spent(self, window: int) -> dict[str, int]:
        if self.broker.name == "redis":
            raw = await self.broker.r.hgetall(self._redis_key(window))  # type: ignore[attr-defined]
            return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        import nats.js.errors

        kv = await self._bucket()
        spent: dict[str, int] = {}
        for name in [_TOTAL, *self.model_tokens_per_day]:
            try:
                entry = await kv.get(self._kv_key(window, name))
            except nats.js.errors.KeyNotFoundError:
                continue
            spent[name] = int(entry.value or b"0")
        return spent

    # -- API ------------------------------------------------------------------------------------------------
    async def charge(self, model: str | None, tokens: int) -> None:
        """Add ``tokens`` spent on ``model`` to the current window (the total, and the model's counter)."""
        if tokens <= 0 or not self.enabled:
            return
        amounts = {_TOTAL: int(tokens)}
        if model:
            amounts[model] = int(tokens)
        window = self.window()
        if self.broker.name == "redis":
            await self._add_redis(window, amounts)
        else:
            await self._add_nats(window, amounts)

    async def status(self) -> BudgetStatus:
        window = self.window()
        spent = await self._spent(window) if self.enabled else {}
        exhausted = self.tokens_per_day is not None and spent.get(_TOTAL, 0) >= self.tokens_per_day
        models = sorted(m for m, limit in self.model_tokens_per_day.items() if spent.get(m, 0) >= limit)
        return BudgetStatus(
            window=window,
            spent=spent,
            tokens_per_day=self.tokens_per_day,
            model_tokens_per_day=dict(self.model_tokens_per_day),
            resets_at=float((window + 1) * WINDOW_SECONDS),
            exhausted=exhausted,
            exhausted_models=models,
        )


def budget_from_settings(broker: Broker, settings: Any) -> Budget | None:
    """The budget the settings configure, or None when they set no limit."""
    total = settings.budget_tokens_per_day or None
    models = dict(settings.budget_model_tokens_per_day or {})
    if total is None and not models:
        return None
    return Budget(broker, tokens_per_day=total, model_tokens_per_day=models)


def usage_of_event(event: Mapping[str, Any]) -> tuple[str | None, int] | None:
    """(model, tokens) of a handler's ``model_response`` event, None for other events."""
    if event.get("type") != "model_response":
        return None
    tokens = 0
    for key in ("input_tokens", "output_tokens"):
        value = event.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            tokens += value
    model = event.get("model")
    return (model if isinstance(model, str) and model else None), tokens
