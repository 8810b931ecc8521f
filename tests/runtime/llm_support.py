"""Test support for the LLM handlers: an in-memory task context and a real OpenAI-compatible HTTP server.

:class:`FakeOpenAI` is a small HTTP/1.1 server (asyncio streams) on a free loopback port that speaks the
chat-completions wire format: every request body is validated with the official ``openai`` package's
``CompletionCreateParams`` type, and every response and streamed chunk is built from its
``ChatCompletion`` / ``ChatCompletionChunk`` models and serialised by them. Replies are scripted by a
function of the conversation; faults (status codes with headers, hangs, dropped streams) are queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentswarm.handlers import ShutdownRequested
from openai.types.chat import ChatCompletion, ChatCompletionChunk, CompletionCreateParams
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import (
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.chat.chat_completion_message import ChatCompletionMessage
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function,
)
from openai.types.completion_usage import CompletionUsage
from pydantic import TypeAdapter

_REQUEST: TypeAdapter[Any] = TypeAdapter(CompletionCreateParams)


class Crash(BaseException):
    """Stands for SIGKILL right after a checkpoint was stored."""


class FakeContext:
    """A TaskContext that stores checkpoints (as JSON, like the stores) and events in memory."""

    def __init__(self, state: Any = None, *, crash_after: int | None = None, stop_after: int | None = None):
        self.task_id = "task-1"
        self.agent_id = "agent-0"
        self.attempt = 1
        self.restored_version: int | None = None
        self.states: list[Any] = [state] if state is not None else []
        self.events: list[dict[str, Any]] = []
        self.crash_after = crash_after
        self.stop_after = stop_after
        self.saves = 0

    @property
    def stopping(self) -> bool:
        return self.stop_after is not None and self.saves >= self.stop_after

    @property
    def state(self) -> Any:
        return self.states[-1] if self.states else None

    async def checkpoint(self, state: Any) -> int:
        self.states.append(json.loads(json.dumps(state)))
        self.saves += 1
        if self.crash_after is not None and self.saves >= self.crash_after:
            raise Crash(f"killed after checkpoint {self.saves}")
        if self.stopping:
            raise ShutdownRequested("stopping")
        return len(self.states)

    async def emit(self, event: dict[str, Any]) -> str:
        self.events.append(json.loads(json.dumps(event)))
        return str(len(self.events))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


@dataclass
class Reply:
    """What the scripted model answers: text (streamed in ``pieces``) and/or tool calls."""

    text: str | None = None
    tool_calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (id, name, args)


@dataclass
class Fault:
    """A failure served instead of (``status``, ``hang``) or in (``drop_after``, ``stall_after``) a reply."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0
    drop_after: int | None = None  # streamed chunks sent before the connection is closed
    stall_after: int | None = None  # streamed chunks sent before the server stops sending


MODEL = "fake-gpt"


def usage_for(body: dict[str, Any], reply: Reply) -> CompletionUsage:
    prompt = len(json.dumps(body["messages"])) // 4 + 1
    completion = len(reply.text or "") // 4 + 1 + 5 * len(reply.tool_calls)
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


class FakeOpenAI:
    """The server; ``async with FakeOpenAI(script) as server`` then use ``server.base_url``."""

    def __init__(self, script: Callable[[list[dict[str, Any]]], Reply]) -> None:
        self.script = script
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []  # every request body, validated
        self.auth: list[str | None] = []
        self.served = 0  # replies completed
        self._server: asyncio.Server | None = None
        self._n = 0

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aenter__(self) -> FakeOpenAI:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                keep = await self._respond(method, path, headers, body, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _send(
        self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}.get(
            status, "Error"
        )
        head = [
            f"HTTP/1.1 {status} {reason}",
            f"Content-Length: {len(body)}",
            "Content-Type: application/json",
        ]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()

    async def _respond(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        if method != "POST" or path != "/v1/chat/completions":
            await self._send(writer, 404, {}, b'{"error": {"message": "not found"}}')
            return True
        body = json.loads(raw)
        validated = dict(_REQUEST.validate_python(body))
        validated["messages"] = list(validated["messages"])  # an iterable: consuming it validates it
        self.requests.append(body)
        self.auth.append(headers.get("authorization"))
        fault = self.faults.pop(0) if self.faults else Fault()
        if fault.hang:
            await asyncio.sleep(fault.hang)
        if fault.status is not None:
            error = {"error": {"message": f"injected {fault.status}", "type": "server_error", "code": None}}
            await self._send(writer, fault.status, fault.headers, json.dumps(error).encode())
            return True
        reply = self.script(body["messages"])
        if body.get("tool_choice") == "none" and reply.tool_calls:
            reply = Reply(text=reply.text or "No more tools.")  # what servers do with tool_choice none
        self._n += 1
        cid = f"chatcmpl-{self._n}"
        if not body.get("stream"):
            completion = ChatCompletion(
                id=cid,
                object="chat.completion",
                created=int(time.time()),
                model=MODEL,
                choices=[
                    Choice(
                        index=0,
                        finish_reason="tool_calls" if reply.tool_calls else "stop",
                        message=ChatCompletionMessage(
                            role="assistant",
                            content=reply.text,
                            tool_calls=[
                                ChatCompletionMessageFunctionToolCall(
                                    id=i, type="function", function=Function(name=n, arguments=json.dumps(a))
                                )
                                for i, n, a in reply.tool_calls
                            ]
                            or None,
                        ),
                    )
                ],
                usage=usage_for(body, reply),
            )
            await self._send(writer, 200, {}, completion.model_dump_json().encode())
            self.served += 1
            return True
        chunks = self._chunks(cid, body, reply)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Connection: close\r\n\r\n"
        )
        for index, chunk in enumerate(chunks):
            if fault.drop_after is not None and index >= fault.drop_after:
                return False  # connection closed mid-stream
            if fault.stall_after is not None and index >= fault.stall_after:
                await asyncio.sleep(5)
            writer.write(f"data: {chunk.model_dump_json()}\n\n".encode())
            await writer.drain()
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        self.served += 1
        return False

    def _chunks(self, cid: str, body: dict[str, Any], reply: Reply) -> list[ChatCompletionChunk]:
        created = int(time.time())

        def chunk(delta: ChoiceDelta, finish: Any = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id=cid,
                object="chat.completion.chunk",
                created=created,
                model=MODEL,
                choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
            )

        out = [chunk(ChoiceDelta(role="assistant", content=""))]
        for piece in pieces(reply.text or ""):
            out.append(chunk(ChoiceDelta(content=piece)))
        for index, (call_id, name, args) in enumerate(reply.tool_calls):
            out.append(
                chunk(
                    ChoiceDelta(
                        tool_calls=[
                            ChoiceDeltaToolCall(
                                index=index,
                                id=call_id,
                                type="function",
                                function=ChoiceDeltaToolCallFunction(name=name, arguments=""),
                            )
                        ]
                    )
                )
            )
            for part in pieces(json.dumps(args), 4):
                out.append(
                    chunk(
                        ChoiceDelta(
                            tool_calls=[
                                ChoiceDeltaToolCall(
                                    index=index, function=ChoiceDeltaToolCallFunction(arguments=part)
                                )
                            ]
                        )
                    )
                )
        out.append(chunk(ChoiceDelta(), "tool_calls" if reply.tool_calls else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            out.append(
                ChatCompletionChunk(
                    id=cid,
                    object="chat.completion.chunk",
                    created=created,
                    model=MODEL,
                    choices=[],
                    usage=usage_for(body, reply),
                )
            )
        return out
