"""OpenTelemetry traces of agent work: on only when an OTLP endpoint is configured, free when off.

The OpenTelemetry spec makes ``otlp`` the default exporter, so "follow the ``OTEL_*`` variables" alone would
switch tracing on (and make every agent try to reach ``localhost:4318``) everywhere. Here tracing is on only
when all of these hold:

* ``OTEL_SDK_DISABLED`` is not ``true``;
* ``OTEL_TRACES_EXPORTER`` is unset or ``otlp``;
* ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Then a ``TracerProvider`` with a batching OTLP exporter is installed; everything else (protocol via
``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf``, the spec's default, or ``grpc``; headers; timeouts;
``OTEL_SERVICE_NAME``, default ``agentswarm-agent``; ``OTEL_RESOURCE_ATTRIBUTES``) is read by the SDK from the
standard variables. The SDK and the exporter come with the ``agentswarm[tracing]`` extra; an endpoint set
without them is reported once and tracing stays off.

When off, :func:`span` is a shared no-op context manager and nothing from the SDK is imported.

Spans (names and attributes after the OpenTelemetry GenAI semantic conventions):

* ``invoke_agent <agent>``: one pydantic-ai run of a task attempt (``agentswarm.task_id``,
  ``agentswarm.attempt``, ``agentswarm.resumed_from_version``, usage at the end);
* ``chat <model>``: each model call actually made (``gen_ai.request.model``, ``gen_ai.response.model``,
  ``gen_ai.usage.input_tokens`` / ``output_tokens``); calls replayed from a checkpoint make no span;
* ``execute_tool <tool>``: each tool call executed (``gen_ai.tool.name``, ``gen_ai.tool.call.id``).

:func:`inject` / :func:`extract` carry the W3C trace context in a plain dict, for task metadata. A task's
trace starts at its submitter: the client sends its context with each task (``trace`` in the submit frame),
the coordinator makes a ``submit`` span under it and stores its own context in the task's metadata
(:func:`task_meta`), and the agent runs each delivery in a ``process_task`` span under that (retries are
sibling ``process_task`` spans of one trace); children spawned by a handler carry the context of the span
that spawned them, so one trace shows a task's whole life.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "agentswarm-agent"
_TRUE = {"true", "1", "yes", "on"}

_tracer: Any = None  # an opentelemetry Tracer when on, None when off
_provider: Any = None
_configured = False
_NULL = contextlib.nullcontext()


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for tracing (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter != "otlp":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _otlp_exporter(environ: Mapping[str, str]) -> Any:
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol in ("http/protobuf", ""):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use 'http/protobuf' or 'grpc'")


def configure(provider: Any = None, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on or off for this process; returns whether it is on.

    ``provider``: a ready ``TracerProvider`` (tests pass one with an in-memory exporter); otherwise one is
    built from the environment when :func:`wanted` says so. Called lazily by :func:`span`; call it again
    to reconfigure.
    """
    global _tracer, _provider, _configured
    _configured = True
    _tracer = _provider = None
    if provider is None:
        env = os.environ if environ is None else environ
        if not wanted(env):
            return False
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            exporter = _otlp_exporter(env)
        except (ImportError, ValueError) as exc:
            log.warning("tracing requested by OTEL_EXPORTER_OTLP_*ENDPOINT but not available: %s", exc)
            return False
        resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider = provider
    _tracer = provider.get_tracer("agentswarm")
    return True


def flush(timeout_seconds: float = 10.0) -> bool:
    """Export the spans still batched (before a process exits; tests). True when there was nothing to do."""
    if _provider is None or not hasattr(_provider, "force_flush"):
        return True
    return bool(_provider.force_flush(int(timeout_seconds * 1000)))


def enabled() -> bool:
    if not _configured:
        configure()
    return _tracer is not None


def span(name: str, attributes: Mapping[str, Any] | None = None, *, context: Any = None) -> Any:
    """A context manager for one span (yielding it), or a no-op yielding None when tracing is off.

    An exception marks the span as an error; a task that stops on purpose (a ``BaseException`` that is not
    an ``Exception``: paused at SIGTERM, parked by ``ctx.gather``) is not an error, its span says
    ``agentswarm.stopped=<reason>``.
    """
    if not _configured:
        configure()
    if _tracer is None:
        return _NULL
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    return _recorded(
        _tracer.start_as_current_span(
            name, context=context, attributes=attrs, record_exception=False, set_status_on_exception=False
        )
    )


@contextlib.contextmanager
def _recorded(manager: Any) -> Iterator[Any]:
    with manager as current:
        try:
            yield current
        except Exception as exc:
            record_error(current, exc)
            raise
        except BaseException as exc:
            current.set_attribute("agentswarm.stopped", type(exc).__name__)
            raise


def set_attributes(current: Any, attributes: Mapping[str, Any]) -> None:
    """Set attributes on a span from :func:`span` (no-op for None, so callers need no checks)."""
    if current is not None:
        current.set_attributes({k: v for k, v in attributes.items() if v is not None})


def record_error(current: Any, exc: BaseException) -> None:
    if current is not None:
        from opentelemetry.trace import Status, StatusCode

        current.record_exception(exc)
        current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def inject(carrier: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as W3C ``traceparent``/``tracestate`` entries (empty when off)."""
    out = {} if carrier is None else carrier
    if enabled():
        from opentelemetry.propagate import inject as otel_inject

        otel_inject(out)
    return out


def extract(carrier: Mapping[str, str] | None) -> Any:
    """An OpenTelemetry context from :func:`inject`'s entries, for ``span(..., context=...)``."""
    if not carrier or not enabled():
        return None
    from opentelemetry.propagate import extract as otel_extract

    return otel_extract(dict(carrier))


def task_meta(carrier: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Metadata for a task enqueued now (``NewTask.meta``): the current trace context when tracing is on,
    else ``carrier`` (the submitter's) passed through, so a trace still connects submitter and agent."""
    current = inject()
    if current.get("traceparent"):
        return {"trace": current}
    if carrier:
        return {"trace": dict(carrier)}
    return None


def task_context(meta: Mapping[str, Any] | None) -> Any:
    """The parent context a task's metadata carries, for ``span(..., context=...)`` (None when none)."""
    carrier = meta.get("trace") if meta else None
    if not isinstance(carrier, Mapping):
        return None
    return extract({str(k): str(v) for k, v in carrier.items()})
