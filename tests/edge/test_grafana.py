"""The Grafana dashboard in docs/grafana asks only for series the coordinator exports.

Every PromQL expression of the dashboard is taken apart: the metric names it selects must be samples of the
coordinator's registry (counters as ``_total``, histograms as ``_bucket``/``_sum``/``_count``), the labels it
matches or aggregates by must be labels of those metrics (or target labels the scraper adds), and the task
states it names must be states the coordinator reports. A renamed metric or label therefore fails here, not
on someone's empty panel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentswarm.coordinator.metrics import TASK_STATES, CoordinatorMetrics
from agentswarm.llm import metrics as llm_metrics
from prometheus_client import CollectorRegistry

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "agentswarm.json"

#: Labels the scraper attaches to every target (Managed Prometheus and the documented kind scrape config).
TARGET_LABELS = {"namespace", "pod", "instance", "job", "container"}
#: PromQL words that look like metric names but are not.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or"}
KEYWORDS |= {"unless", "inf", "nan", "atan2"}

_NAME = r"[a-zA-Z_:][\w:]*"


def exported() -> dict[str, set[str]]:
    """Sample name -> its label names, for everything the coordinator and the agents' LLM counters expose."""
    samples: dict[str, set[str]] = {}
    for registry in (CoordinatorMetrics().registry, llm_metrics.REGISTRY):
        samples.update(_samples(registry))
    return samples


def _samples(registry: CollectorRegistry) -> dict[str, set[str]]:
    samples: dict[str, set[str]] = {}
    for metric in registry._collector_to_names:  # every collector, including labelled ones without children
        family_labels = set(getattr(metric, "_labelnames", ()))
        kind = getattr(metric, "_type", "")
        base = metric._name  # type: ignore[attr-defined]
        if kind == "counter":
            names = {f"{base}_total": family_labels}
        elif kind == "histogram":
            names = {f"{base}_bucket": family_labels | {"le"}, f"{base}_sum": family_labels}
            names[f"{base}_count"] = family_labels
        else:
            names = {base: family_labels}
        samples.update(names)
    return samples


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query, rows' nested panels included."""
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


def _strip(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr: str) -> set[str]:
    e = _strip(expr)
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    found = re.findall(rf"(?<![\w:.$])({_NAME})(?![\w:])(?!\s*\()", e)
    return {n for n in found if n not in KEYWORDS}


def matchers(expr: str) -> list[tuple[str, str, str, str]]:
    """(metric, label, operator, value) of every label matcher."""
    out = []
    for metric, body in re.findall(rf"({_NAME})\s*\{{([^}}]*)\}}", expr):
        for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', body):
            out.append((metric, label, op, value))
    return out


def grouping_labels(expr: str) -> set[str]:
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {g.strip() for g in group.split(",") if g.strip()}
    return labels


def problems(expr: str, samples: dict[str, set[str]]) -> list[str]:
    """What is wrong with one expression against the exported samples (empty: nothing)."""
    found = []
    names = metric_names(expr)
    if not names:
        found.append("selects no metric")
    for name in sorted(names - samples.keys()):
        found.append(f"{name} is not exported")
    for metric, label, op, value in matchers(expr):
        if metric not in samples:
            continue
        if label not in samples[metric] | TARGET_LABELS:
            found.append(f"{metric} has no label {label}")
        if label == "state" and op in ("=", "=~"):
            for state in value.split("|"):
                if state not in TASK_STATES:
                    found.append(f"state {state!r} is not one of {TASK_STATES}")
    allowed = set().union(*(samples.get(n, set()) for n in names)) | TARGET_LABELS
    for label in sorted(grouping_labels(expr) - allowed):
        found.append(f"groups by {label}, which none of {sorted(names)} has")
    return found


def test_every_query_asks_for_exported_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    samples = exported()
    queries = list(expressions(dashboard))
    assert len(queries) >= 20
    errors = [f"{title}: {expr}: {p}" for title, expr in queries for p in problems(expr, samples)]
    assert errors == []
    used = set().union(*(metric_names(e) for _, e in queries))
    # The panels the dashboard promises: queue depth, throughput, durations, dead letters, websockets.
    for name in (
        "agentswarm_tasks",
        "agentswarm_tasks_enqueued",
        "agentswarm_task_duration_seconds_bucket",
        "agentswarm_websocket_connections",
        "agentswarm_websocket_connections_opened_total",
        "agentswarm_frame_errors_total",
        "agentswarm_broker_up",
        "agentswarm_llm_tokens_total",
    ):
        assert name in used, name


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ('max(agentswarm_task{state="queued"})', "agentswarm_task is not exported"),
        ("sum(rate(agentswarm_frame_errors[5m]))", "agentswarm_frame_errors is not exported"),
        ('max(agentswarm_tasks{state="pending"})', "state 'pending'"),
        ('max(agentswarm_tasks{status="queued"})', "agentswarm_tasks has no label status"),
        ("sum by (code) (agentswarm_websocket_connections)", "groups by code"),
        ('sum(rate(agentswarm_llm_tokens_total{type="input"}[5m]))', "has no label type"),
        ("histogram_quantile(0.9, sum by (le) (rate(agentswarm_task_duration_seconds[5m])))", "not exported"),
    ],
)
def test_the_check_catches_a_wrong_query(expr: str, problem: str) -> None:
    found = problems(expr, exported())
    assert any(problem in p for p in found), found


def test_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "agentswarm"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert names == {"datasource", "namespace"}
    for title, expr in expressions(dashboard):
        assert 'namespace=~"$namespace"' in expr, title  # every panel follows the namespace picker
