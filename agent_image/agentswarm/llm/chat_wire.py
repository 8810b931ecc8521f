"""The chat-completions wire format: decoding a JSON or server-sent-event response into a completion.

A failure the retry policy should retry (a 429/5xx, a broken or cut stream) is raised as :class:`Retryable`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from agentswarm.llm.errors import ModelCallError
from agentswarm.llm.events import Emit, TokenStream
from agentswarm.llm.usage import Usage


@dataclass
class Completion:
    """One model response: the assistant message to append, its usage and the reporting model."""

    message: dict[str, Any]
    usage: Usage
    model: str
    finish_reason: str | None


class Retryable(Exception):
    """A failed attempt that the retry policy may repeat; ``kind`` labels it in the error metrics."""

    def __init__(self, message: str, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined), per the SSE format."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def read_json(raw: bytes, model: str) -> Completion:
    """The completion of a non-streamed response body; ``model`` when the server names none."""
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelCallError(f"not a chat completion: {raw[:300]!r} ({exc})") from None
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": tc.get("id") or f"call_{index}",
                "type": "function",
                "function": {
                    "name": tc["function"]["name"],
                    "arguments": tc["function"].get("arguments") or "",
                },
            }
            for index, tc in enumerate(message["tool_calls"])
        ]
    return Completion(
        out,
        wire_usage(data.get("usage")),
        str(data.get("model") or model),
        choice.get("finish_reason"),
    )


async def read_stream(resp: httpx.Response, *, emit: Emit, step: int, model: str) -> Completion:
    """The completion of a streamed response, its text sent as ``token`` events as it arrives."""
    tokens = TokenStream(emit, step=step)
    text: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    usage: Any = None
    finish: str | None = None
    done = False
    async for data in sse_data(resp.aiter_lines()):
        if data.strip() == "[DONE]":
            done = True
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ModelCallError(f"not a chat completion chunk: {data[:300]!r}") from None
        if not isinstance(chunk, dict):
            raise ModelCallError(f"not a chat completion chunk: {data[:300]!r}")
        if chunk.get("error"):
            raise Retryable(f"error in stream: {chunk['error']}", "server_error")
        model = str(chunk.get("model") or model)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                text.append(delta["content"])
                await tokens.add(delta["content"])
            for tc in delta.get("tool_calls") or []:
                slot = calls.setdefault(int(tc.get("index", 0)), {"id": "", "name": "", "arguments": ""})
                slot["id"] += tc.get("id") or ""
                fn = tc.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    await tokens.flush()
    if not done and finish is None:
        raise Retryable("the stream ended before the response was complete", "connection")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = [
            {
                "id": slot["id"] or f"call_{step}_{index}",
                "type": "function",
                "function": {"name": slot["name"], "arguments": slot["arguments"]},
            }
            for index, slot in sorted(calls.items())
        ]
    return Completion(message, wire_usage(usage), model, finish)


def wire_usage(data: Any) -> Usage:
    """Usage of one call from the wire's ``usage`` object (servers without it: tokens unknown, 0)."""
    usage = Usage(requests=1)
    if isinstance(data, dict):
        usage.input_tokens = int(data.get("prompt_tokens") or 0)
        usage.output_tokens = int(data.get("completion_tokens") or 0)
    return usage
