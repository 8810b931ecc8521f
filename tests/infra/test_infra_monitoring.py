"""Managed Prometheus on GKE: PodMonitoring objects scraping what the coordinator serves, only if asked."""

from __future__ import annotations

import pytest
from mockharness import Recording

from components.config import ConfigError, parse_config
from components.monitoring import METRICS_PATH


def test_pod_monitoring_scrapes_the_coordinator_port(stack_recordings: dict[str, Recording]) -> None:
    rec = stack_recordings["gke-prod"]
    [monitor] = rec.kinds("PodMonitoring")
    [deployment] = [d for d in rec.kinds("Deployment") if d["metadata"]["name"].endswith("-coordinator")]
    pod = deployment["spec"]["template"]
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    # The selector picks exactly the coordinator's pods, and the endpoint names a port they declare.
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert endpoint["port"] in ports
    assert endpoint == {"port": "http", "path": METRICS_PATH, "interval": "30s", "timeout": "30s"}


@pytest.mark.parametrize("stack", ["gke", "local", "render"])
def test_no_pod_monitoring_unless_asked(stack: str, stack_recordings: dict[str, Recording]) -> None:
    assert stack_recordings[stack].kinds("PodMonitoring") == []


def test_managed_prometheus_is_refused_on_kind() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"platform": "kind", "monitoring": {"managed_prometheus": True}})
    message = str(info.value)
    assert "monitoring.managed_prometheus" in message and "True" in message and "kind" in message


@pytest.mark.parametrize("interval", ["30", "0s", "1h", "1.5m", "30s "])
def test_scrape_interval_is_checked(interval: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"platform": "gke", "monitoring": {"managed_prometheus": True, "scrape_interval": interval}}
        )
    assert "monitoring.scrape_interval" in str(info.value)
