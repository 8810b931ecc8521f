"""One chat-completions call against an OpenAI-compatible endpoint: the request, its retries and spans.

:class:`ChatClient` retries what :mod:`agentswarm.llm.retry` allows and records metrics for each call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx

from agentswarm import tracing
from agentswarm.llm import metrics
from agentswarm.llm.chat_config import LLMConfig
from agentswarm.llm.chat_wire import Completion, Retryable, read_json, read_stream
from agentswarm.llm.errors import ModelCallError
from agentswarm.llm.events import Emit
from agentswarm.llm.retry import parse_retry_after, retryable_status
from agentswarm.llm.tools import Tool


class ChatClient:
    """Chat completions against one endpoint, streamed or not, with the retry policy."""

    def __init__(self, config: LLMConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[Tool],
        tool_choice: str | None = None,
        stream: bool = True,
        params: Mapping[str, Any] | None = None,
        emit: Emit,
        step: int,
    ) -> Completion:
        body: dict[str, Any] = {"model": self.config.model, "messages": messages, **(params or {})}
        if tools:
            body["tools"] = [t.spec() for t in tools]
            if tool_choice:
                body["tool_choice"] = tool_choice
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": self.config.model}
        with tracing.span(f"chat {self.config.model}", attrs) as span:
            completion = await self._with_retries(body, stream=stream, emit=emit, step=step, span=span)
            tracing.set_attributes(
                span,
                {
                    "gen_ai.response.model": completion.model,
                    "gen_ai.response.finish_reasons": [completion.finish_reason or ""],
                    "gen_ai.usage.input_tokens": completion.usage.input_tokens,
                    "gen_ai.usage.output_tokens": completion.usage.output_tokens,
                },
            )
        return completion

    async def _with_retries(
        self, body: dict[str, Any], *, stream: bool, emit: Emit, step: int, span: Any
    ) -> Completion:
        retry = 0
        backoff = self.config.retry.backoff()
        while True:
            started = time.monotonic()
            try:
                completion = await self._attempt(body, stream=stream, emit=emit, step=step)
            except Retryable as exc:
                metrics.record_error(self.config.model, exc.kind)
                retry += 1
                wait = self.config.retry.delay(retry, exc.retry_after, backoff)
                if wait is None:
                    raise ModelCallError(f"model call failed after {retry - 1} retries: {exc}") from None
                if span is not None:
                    span.add_event("retry", {"retry": retry, "wait": wait, "reason": str(exc)})
                await emit(
                    {
                        "type": "retry",
                        "step": step,
                        "retry": retry,
                        "wait": round(wait, 3),
                        "reason": str(exc),
                    }
                )
                await asyncio.sleep(wait)
                continue
            completion.usage.priced(completion.model, self.config.prices)
            metrics.record_response(
                completion.model,
                input_tokens=completion.usage.input_tokens,
                output_tokens=completion.usage.output_tokens,
                seconds=time.monotonic() - started,
                cost_usd=completion.usage.cost_usd if not completion.usage.unpriced_requests else None,
            )
            return completion

    async def _attempt(self, body: dict[str, Any], *, stream: bool, emit: Emit, step: int) -> Completion:
        try:
            async with self.http.stream("POST", "/chat/completions", json=body) as resp:
                if resp.status_code != 200:
                    text = (await resp.aread()).decode(errors="replace")[:500]
                    what = f"HTTP {resp.status_code} from {self.config.base_url}/chat/completions: {text}"
                    if retryable_status(resp.status_code):
                        kind = "rate_limited" if resp.status_code == 429 else "server_error"
                        raise Retryable(what, kind, parse_retry_after(resp.headers))
                    metrics.record_error(self.config.model, "client_error")
                    raise ModelCallError(what, status=resp.status_code)
                if stream:
                    return await read_stream(resp, emit=emit, step=step, model=self.config.model)
                return read_json(await resp.aread(), self.config.model)
        except httpx.TimeoutException as exc:
            raise Retryable(
                f"timed out after {self.config.timeout}s ({type(exc).__name__})", "timeout"
            ) from None
        except httpx.TransportError as exc:
            raise Retryable(f"connection failed: {type(exc).__name__}: {exc}", "connection") from None
