"""Frames of the coordinator's websocket API (see docs/protocol.md).

Every frame is one JSON object in one text message with a ``type`` field. Client frames are parsed
with :func:`parse_client_frame`, which never raises for bad input: it returns an :class:`ErrorFrame`
that the server sends back while the connection stays usable. Keeping parsing here (and out of the
server) lets the client, the server and the tests share one definition of the wire format.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from agentswarm.broker.types import DEFAULT_PRIORITY, Priority, validate_priority

PROTOCOL_VERSION = 1

#: Application limit on one client frame, in bytes. Larger frames get a ``too_large`` error frame.
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
#: Hard cap handed to websockets' ``max_size`` once a connection is authenticated; frames above it are
#: closed with 1009 by the library (the frame is not even buffered). It sits above the application
#: limit so that a merely too-large frame gets a ``too_large`` error frame instead.
DEFAULT_HARD_MAX_FRAME_BYTES = 2 * 1024 * 1024
#: Until a connection is authenticated it may send only frames up to this size (an auth frame needs
#: well under 1 KiB); larger ones are closed with 1009 before their payload is read.
AUTH_MAX_FRAME_BYTES = 4 * 1024
#: Frames a connection may have received but not yet handled (websockets' ``max_queue``): with the
#: hard cap, what one connection can make the coordinator buffer is at most
#: ``(MAX_QUEUED_FRAMES + 1) * DEFAULT_HARD_MAX_FRAME_BYTES`` (10 MiB).
MAX_QUEUED_FRAMES = 4
#: Most tasks one ``submit`` frame may carry.
MAX_TASKS_PER_SUBMIT = 1000
#: Malformed frames (any error frame the parser answers) one connection may send per
#: ``BAD_FRAME_WINDOW_SECONDS`` before it is closed with ``rate_limited`` and 1008.
MAX_BAD_FRAMES = 50
BAD_FRAME_WINDOW_SECONDS = 10.0

#: Same rule as :data:`agentswarm.broker.base.TASK_ID_PATTERN` (ids are NATS subject tokens / Redis keys).
TASK_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"

ErrorCode = Literal[
    "bad_json",  # the message is not valid JSON, or not a JSON object
    "binary_not_supported",  # a binary message was sent; the API is JSON text only
    "too_large",  # the message exceeds the application frame limit
    "unknown_type",  # ``type`` is missing or not one of the client frame types
    "invalid_frame",  # the frame has the right type but wrong fields
    "unauthenticated",  # no/invalid token (the connection is then closed with 1008)
    "auth_timeout",  # no auth frame in time (closed with 1008)
    "already_authenticated",  # a second auth frame
    "not_found",  # subscribe to an unknown task / unsubscribe of one not subscribed (see ``task_id``)
    "broker_error",  # the queue backend failed the operation; retry later
    "shutting_down",  # the coordinator is draining; reconnect (possibly elsewhere)
    "not_waiting",  # an ``answer`` to a task that is not waiting for input (see ``task_id``)
    "already_answered",  # a second ``answer`` to the same question, or one after its timeout
    "rate_limited",  # too many malformed frames on this connection (then closed with 1008)
]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def dump(self) -> str:
        """Serialise for the wire (compact JSON, ``None`` fields kept so the shape is stable)."""
        return self.model_dump_json()


# --- client -> server -------------------------------------------------------------------------


class TraceContext(BaseModel):
    """W3C trace context (``traceparent``, ``tracestate``): a task's trace starts at its submitter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    traceparent: Annotated[str, Field(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")]
    tracestate: Annotated[str, Field(max_length=512)] | None = None

    def carrier(self) -> dict[str, str]:
        return self.model_dump(exclude_none=True)


class TaskSpec(BaseModel):
    """One task to enqueue. ``task_id`` is optional: the coordinator generates one when absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: Annotated[str, Field(pattern=TASK_ID_PATTERN)] | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    trace: TraceContext | None = Field(
        default=None, description="W3C trace context of the submitter (traceparent, tracestate)"
    )
    priority: Priority | None = Field(
        default=None, description="high, normal or low; null = the submit frame's priority"
    )

    @field_validator("priority", mode="before")
    @classmethod
    def _known_priority(cls, value: object) -> object:
        return value if value is None else validate_priority(value)


class AuthFrame(_Frame):
    type: Literal["auth"]
    token: str


class SubmitFrame(_Frame):
    type: Literal["submit"]
    ref: str | None = Field(default=None, max_length=200, description="echoed in the reply")
    tasks: list[TaskSpec] = Field(min_length=1, max_length=MAX_TASKS_PER_SUBMIT)
    priority: Priority = Field(
        default=DEFAULT_PRIORITY, description="priority class of the tasks that name none: high, normal, low"
    )

    @field_validator("priority", mode="before")
    @classmethod
    def _known_priority(cls, value: object) -> object:
        return validate_priority(value)


class SubscribeFrame(_Frame):
    type: Literal["subscribe"]
    ref: str | None = Field(default=None, max_length=200)
    task_id: Annotated[str, Field(pattern=TASK_ID_PATTERN)]
    after: str | None = Field(
        default=None, max_length=100, description="last event id already seen; null = from the start"
    )


class UnsubscribeFrame(_Frame):
    type: Literal["unsubscribe"]
    ref: str | None = Field(default=None, max_length=200)
    task_id: Annotated[str, Field(pattern=TASK_ID_PATTERN)]


class StatsRequestFrame(_Frame):
    type: Literal["stats"]
    ref: str | None = Field(default=None, max_length=200)


class SubscribeSwarmFrame(_Frame):
    type: Literal["subscribe_swarm"]
    ref: str | None = Field(default=None, max_length=200)
    after: str | None = Field(
        default=None, max_length=100, description="last swarm event id already seen; null = oldest retained"
    )


class UnsubscribeSwarmFrame(_Frame):
    type: Literal["unsubscribe_swarm"]
    ref: str | None = Field(default=None, max_length=200)


class CancelFrame(_Frame):
    type: Literal["cancel"]
    ref: str | None = Field(default=None, max_length=200)
    task_ids: list[Annotated[str, Field(pattern=TASK_ID_PATTERN)]] = Field(
        min_length=1, max_length=MAX_TASKS_PER_SUBMIT
    )


class AnswerFrame(_Frame):
    type: Literal["answer"]
    ref: str | None = Field(default=None, max_length=200)
    task_id: Annotated[str, Field(pattern=TASK_ID_PATTERN)]
    input: Any = Field(description="the answer (any JSON) returned by the task's ctx.ask")


ClientFrame = Annotated[
    AuthFrame
    | SubmitFrame
    | SubscribeFrame
    | UnsubscribeFrame
    | StatsRequestFrame
    | SubscribeSwarmFrame
    | UnsubscribeSwarmFrame
    | CancelFrame
    | AnswerFrame,
    Field(discriminator="type"),
]
CLIENT_FRAME_TYPES = (
    "auth",
    "submit",
    "subscribe",
    "unsubscribe",
    "stats",
    "subscribe_swarm",
    "unsubscribe_swarm",
    "cancel",
    "answer",
)
_client_adapter: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


# --- server -> client -------------------------------------------------------------------------


class WelcomeFrame(_Frame):
    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    connection_id: str
    max_frame_bytes: int


class SubmittedFrame(_Frame):
    type: Literal["submitted"] = "submitted"
    ref: str | None = None
    task_ids: list[str]


class SubscribedFrame(_Frame):
    type: Literal["subscribed"] = "subscribed"
    ref: str | None = None
    task_id: str
    after: str | None = None


class UnsubscribedFrame(_Frame):
    type: Literal["unsubscribed"] = "unsubscribed"
    ref: str | None = None
    task_id: str


class EventFrame(_Frame):
    type: Literal["event"] = "event"
    task_id: str
    event_id: str
    data: dict[str, Any]


class ResultFrame(_Frame):
    type: Literal["result"] = "result"
    task_id: str
    status: Literal["done", "dead", "cancelled"]
    result: Any = None
    error: str | None = None
    agent_id: str | None = None
    attempt: int | None = None
    duration_seconds: float | None = None


class CancelledFrame(_Frame):
    """The reply to ``cancel``: per task ``cancelled`` (now), ``finished`` (no-op) or ``not_found``."""

    type: Literal["cancelled"] = "cancelled"
    ref: str | None = None
    outcomes: dict[str, Literal["cancelled", "finished", "not_found"]]


class AnsweredFrame(_Frame):
    """The reply to ``answer``: the task was woken with the answer to its question number ``question``."""

    type: Literal["answered"] = "answered"
    ref: str | None = None
    task_id: str
    question: int


class StatsFrame(_Frame):
    type: Literal["stats"] = "stats"
    ref: str | None = None
    stats: dict[str, Any]


class SubscribedSwarmFrame(_Frame):
    type: Literal["subscribed_swarm"] = "subscribed_swarm"
    ref: str | None = None
    after: str | None = None


class UnsubscribedSwarmFrame(_Frame):
    type: Literal["unsubscribed_swarm"] = "unsubscribed_swarm"
    ref: str | None = None


class SwarmFrame(_Frame):
    """One swarm feed entry: ``data.kind`` is ``"task"`` (a state change) or ``"agent"`` (a status)."""

    type: Literal["swarm"] = "swarm"
    event_id: str
    data: dict[str, Any]


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    ref: str | None = None
    #: The task the error is about (``not_found``, a subscription's ``broker_error``), else null.
    task_id: str | None = None


ServerFrame = Annotated[
    WelcomeFrame
    | SubmittedFrame
    | SubscribedFrame
    | UnsubscribedFrame
    | EventFrame
    | ResultFrame
    | CancelledFrame
    | AnsweredFrame
    | StatsFrame
    | SubscribedSwarmFrame
    | UnsubscribedSwarmFrame
    | SwarmFrame
    | ErrorFrame,
    Field(discriminator="type"),
]
_server_adapter: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)


def _short_validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"][1:]) or "frame"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_client_frame(message: str | bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Any:
    """Parse one client message into a frame model, or an :class:`ErrorFrame` saying what is wrong.

    Returns one of the client frame models (:data:`ClientFrame`) or ``ErrorFrame``. Never raises on bad
    input: the server answers the error frame and carries on.
    """
    if isinstance(message, bytes):
        return ErrorFrame(code="binary_not_supported", message="send JSON frames as text messages")
    size = len(message.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        return ErrorFrame(code="too_large", message=f"frame is {size} bytes; the limit is {max_bytes} bytes")
    try:
        raw = json.loads(message)
    except (json.JSONDecodeError, RecursionError) as exc:
        return ErrorFrame(code="bad_json", message=f"frame is not valid JSON: {exc}")
    if not isinstance(raw, dict):
        return ErrorFrame(code="bad_json", message="frame must be a JSON object")
    ref = raw.get("ref") if isinstance(raw.get("ref"), str) else None
    ftype = raw.get("type")
    if ftype not in CLIENT_FRAME_TYPES:
        return ErrorFrame(
            code="unknown_type",
            message=f"unknown frame type {ftype!r}; expected one of {', '.join(CLIENT_FRAME_TYPES)}",
            ref=ref,
        )
    try:
        return _client_adapter.validate_python(raw)
    except ValidationError as exc:
        return ErrorFrame(
            code="invalid_frame", message=f"bad {ftype} frame: {_short_validation_message(exc)}", ref=ref
        )


def parse_server_frame(message: str | bytes) -> Any:
    """Parse a server frame (client side). Raises ``ValueError`` on anything the server never sends."""
    try:
        return _server_adapter.validate_json(message)
    except ValidationError as exc:
        raise ValueError(f"unexpected frame from the server: {_short_validation_message(exc)}") from exc
