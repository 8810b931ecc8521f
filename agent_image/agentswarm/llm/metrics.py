"""Prometheus counters of model calls made by this process, and their optional exporter.

The agent process itself serves no HTTP, so the counters live in a private registry (:data:`REGISTRY`)
that the LLM handlers fill, and are served on ``AGENTSWARM_LLM_METRICS_PORT`` when that variable is set
(:func:`start_exporter_for_handler`, called when an LLM handler module is loaded, that is when the agent
starts).
Without it the same numbers still reach the swarm through each task's result and ``usage`` event.

Families (``model`` is the model name the server reported, or the configured one):

* ``agentswarm_llm_tokens_total{model,kind}``: tokens, ``kind`` = ``input`` | ``output``.
* ``agentswarm_llm_requests_total{model}``: model calls that returned a response.
* ``agentswarm_llm_errors_total{model,kind}``: failed attempts, ``kind`` = ``rate_limited`` |
  ``server_error`` | ``timeout`` | ``connection`` | ``client_error`` | ``other``.
* ``agentswarm_llm_request_duration_seconds{model}``: latency of successful calls (whole stream).
* ``agentswarm_llm_cost_usd_total{model}``: estimated cost, with a price table (``AGENTSWARM_LLM_PRICES``).
* ``agentswarm_llm_tool_calls_total{tool}``: tool calls executed (journal replays are not counted).
"""

from __future__ import annotations

import logging
import os
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from agentswarm.llm.errors import LLMConfigError

log = logging.getLogger(__name__)

PORT_VARIABLE = "AGENTSWARM_LLM_METRICS_PORT"

#: Model calls take from tens of milliseconds (small local models) to minutes (long generations).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))

REGISTRY = CollectorRegistry(auto_describe=True)

TOKENS = Counter(
    "agentswarm_llm_tokens",
    "Tokens used by model calls, by model and kind.",
    ["model", "kind"],
    registry=REGISTRY,
)
REQUESTS = Counter(
    "agentswarm_llm_requests", "Model calls that returned a response.", ["model"], registry=REGISTRY
)
ERRORS = Counter(
    "agentswarm_llm_errors",
    "Failed model call attempts, by model and kind.",
    ["model", "kind"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "agentswarm_llm_request_duration_seconds",
    "Duration of successful model calls (a streamed call until its last chunk).",
    ["model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
COST = Counter(
    "agentswarm_llm_cost_usd",
    "Estimated cost of model calls in US dollars, from AGENTSWARM_LLM_PRICES (priced models only).",
    ["model"],
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "agentswarm_llm_tool_calls", "Tool calls executed on behalf of a model.", ["tool"], registry=REGISTRY
)

_exporter_lock = threading.Lock()
_exporter_port: int | None = None


def record_response(
    model: str, *, input_tokens: int, output_tokens: int, seconds: float | None, cost_usd: float | None = None
) -> None:
    """Count one model call that returned a response."""
    REQUESTS.labels(model).inc()
    TOKENS.labels(model, "input").inc(max(input_tokens, 0))
    TOKENS.labels(model, "output").inc(max(output_tokens, 0))
    if seconds is not None:
        LATENCY.labels(model).observe(seconds)
    if cost_usd is not None:
        COST.labels(model).inc(max(cost_usd, 0.0))


def record_error(model: str, kind: str) -> None:
    """Count one failed attempt (see the module docstring for ``kind``)."""
    ERRORS.labels(model, kind).inc()


def record_tool_call(tool: str) -> None:
    TOOL_CALLS.labels(tool).inc()


class MetricsConfigError(LLMConfigError):
    """``AGENTSWARM_LLM_METRICS_PORT`` is not a port number."""


def start_exporter(environ: dict[str, str] | None = None) -> int | None:
    """Serve :data:`REGISTRY` on ``AGENTSWARM_LLM_METRICS_PORT`` (once per process); return the port."""
    global _exporter_port
    env = os.environ if environ is None else environ
    raw = env.get(PORT_VARIABLE, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise MetricsConfigError(f"{PORT_VARIABLE}={raw!r}: must be a port number 1-65535")
    with _exporter_lock:
        if _exporter_port is None:
            try:
                start_http_server(int(raw), addr="0.0.0.0", registry=REGISTRY)
            except OSError as exc:  # e.g. several local-mode agents on one host: the first one serves
                log.warning("%s=%s: cannot serve LLM metrics (%s); not serving them", PORT_VARIABLE, raw, exc)
                return None
            _exporter_port = int(raw)
            log.info("serving LLM metrics on :%d/metrics", _exporter_port)
        return _exporter_port


def start_exporter_for_handler() -> None:
    """:func:`start_exporter` when an LLM handler module is imported (the agent loads it at start-up).

    A bad ``AGENTSWARM_LLM_METRICS_PORT`` becomes an ImportError, so the agent refuses to start with the
    one-line reason (``AGENTSWARM_HANDLER=...: cannot import ...: AGENTSWARM_LLM_METRICS_PORT='x': ...``).
    """
    try:
        start_exporter()
    except LLMConfigError as exc:
        raise ImportError(str(exc)) from None
