"""SwarmMonitoring: Google Cloud Managed Service for Prometheus scraping the swarm on GKE.

One ``PodMonitoring`` (``monitoring.googleapis.com/v1``, GoogleCloudPlatform/prometheus-engine
pkg/operator/apis/monitoring/v1/pod_types.go) per scraped component, in the swarm's namespace: the managed
collectors (a DaemonSet in ``gmp-system``) scrape every matching pod's named port on ``/metrics``. Only the
coordinator serves metrics: it reports the queue from the broker at scrape time, so one scrape per replica
sees the whole swarm. The coordinator's NetworkPolicy already admits its port from anywhere (clients come
through the load balancer), which includes the collectors.

Custom resource specs are passed to Pulumi verbatim, so every key here is already camelCase.
"""

from __future__ import annotations

from typing import Any, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from components import _k8s
from components.config import MonitoringConfig

POD_MONITORING_API = "monitoring.googleapis.com/v1"
#: The path every agentswarm metrics endpoint serves.
METRICS_PATH = "/metrics"
COMPONENT = "monitoring"


class ScrapeTarget(TypedDict):
    component: str
    """The component whose pods are scraped (``coordinator``); also the PodMonitoring's name suffix."""
    selector: dict[str, str]
    """Selector labels of those pods."""
    port: str
    """Name of the container port serving ``/metrics``."""


def pod_monitoring_spec(selector: dict[str, str], port: str, interval: str) -> dict[str, Any]:
    """``PodMonitoring.spec``: the named port's ``/metrics``, timeout = interval (its upper bound)."""
    return {
        "selector": {"matchLabels": dict(selector)},
        "endpoints": [{"port": port, "path": METRICS_PATH, "interval": interval, "timeout": interval}],
        # Only pods that run: a pod stuck in Pending or done has nothing to scrape.
        "filterRunning": True,
    }


class SwarmMonitoringArgs(TypedDict):
    namespace: pulumi.Input[str]
    """Namespace of the swarm (PodMonitoring is namespaced and selects pods of its own namespace)."""
    instance: str
    """Swarm instance name (labels)."""
    config: MonitoringConfig
    """The stack's ``monitoring`` section."""
    targets: list[ScrapeTarget]
    """The components to scrape."""


class SwarmMonitoring(pulumi.ComponentResource):
    """One PodMonitoring per scrape target."""

    pod_monitorings: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: SwarmMonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agentswarm:index:SwarmMonitoring", name, None, opts)
        cfg = args["config"]
        names: list[pulumi.Output[str]] = []
        for target in args["targets"]:
            meta = _k8s.metadata(
                f"{args['instance']}-{target['component']}", args["namespace"], args["instance"], COMPONENT
            )
            monitor = k8s.apiextensions.CustomResource(
                f"{name}-{target['component']}",
                api_version=POD_MONITORING_API,
                kind="PodMonitoring",
                metadata=meta,
                spec=pod_monitoring_spec(target["selector"], target["port"], cfg.scrape_interval),
                opts=_k8s.child_opts(self),
            )
            names.append(monitor.metadata.apply(lambda m: str(m["name"])))
        self.pod_monitorings = pulumi.Output.all(*names).apply(list)
        self.register_outputs({"pod_monitorings": self.pod_monitorings})
