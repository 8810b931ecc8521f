"""The cross-field rules of the stack config, as one table that the validator runs and docs/config.md renders.

A rule belongs to one model (named by class, so the table needs no import of the models) and names its key
relative to that model; its ``allowed`` text is both the tail of the one-line error and the documented rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.config_errors import ConfigError

if TYPE_CHECKING:
    from components.config import (
        AutoscalingConfig,
        CoordinatorConfig,
        ImageConfig,
        NodePoolConfig,
        RateLimitConfig,
        SwarmConfig,
    )

__all__ = ["MIN_SECRET_LENGTH", "RULES", "Rule", "check_rules"]

#: The rate-limit intervals Cloud Armor accepts (``rateLimitThreshold.intervalSec``).
CLOUD_ARMOR_INTERVALS = (10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600)
#: Shortest accepted user-supplied token or password.
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class Rule:
    """``broken(model)`` true means ``key`` (relative to ``model``) holds a value the rule refuses."""

    model: str
    """Class name of the model the rule checks (subclasses included)."""
    key: str
    """Dotted key the error names, relative to the model."""
    allowed: str
    """What is allowed: the error's tail and the documented rule."""
    broken: Callable[[Any], bool]
    value: Callable[[Any], Any] | None = None
    """The bad value the error shows; default: the value at ``key``."""
    detail: Callable[[Any], str] | None = None
    """Appended to ``allowed`` in the error only (the numbers of this config)."""

    def error(self, model: Any) -> ConfigError:
        value = self.value(model) if self.value is not None else _at(model, self.key)
        detail = self.detail(model) if self.detail is not None else ""
        return ConfigError(self.key, value, self.allowed + detail)


def _at(model: Any, key: str) -> Any:
    for part in key.split("."):
        model = getattr(model, part)
    return model


def _secret(_: Any) -> str:
    return "<secret>"


def _short(secret: Any) -> bool:
    return secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH


# One constructor per model, so that mypy checks each rule's lambdas against the model they receive.


def _image(key: str, allowed: str, broken: Callable[[ImageConfig], bool]) -> Rule:
    return Rule("ImageConfig", key, allowed, broken)


def _coordinator(
    key: str,
    allowed: str,
    broken: Callable[[CoordinatorConfig], bool],
    detail: Callable[[CoordinatorConfig], str],
) -> Rule:
    return Rule("CoordinatorConfig", key, allowed, broken, detail=detail)


def _rate_limit(key: str, allowed: str, broken: Callable[[RateLimitConfig], bool]) -> Rule:
    return Rule("RateLimitConfig", key, allowed, broken)


def _pool(
    key: str, allowed: str, broken: Callable[[NodePoolConfig], bool], detail: Callable[[NodePoolConfig], str]
) -> Rule:
    return Rule("NodePoolConfig", key, allowed, broken, detail=detail)


def _autoscaling(
    key: str,
    allowed: str,
    broken: Callable[[AutoscalingConfig], bool],
    detail: Callable[[AutoscalingConfig], str],
) -> Rule:
    return Rule("AutoscalingConfig", key, allowed, broken, detail=detail)


def _swarm(
    key: str,
    allowed: str,
    broken: Callable[[SwarmConfig], bool],
    value: Callable[[SwarmConfig], Any] | None = None,
) -> Rule:
    return Rule("SwarmConfig", key, allowed, broken, value=value)


_RENDER = "kubernetes.render_yaml_to_directory"

#: Checked in this order; the first broken rule is the error.
RULES: tuple[Rule, ...] = (
    _image("tag", "set image.tag or image.digest", lambda i: i.tag is None and i.digest is None),
    _rate_limit(
        "interval_seconds",
        f"one of the intervals Cloud Armor accepts: {', '.join(map(str, CLOUD_ARMOR_INTERVALS))}",
        lambda r: r.interval_seconds not in CLOUD_ARMOR_INTERVALS,
    ),
    _coordinator(
        "termination_grace_seconds",
        "must be greater than coordinator.prestop_delay_seconds + coordinator.connection_draining_seconds",
        lambda c: c.termination_grace_seconds <= c.prestop_delay_seconds + c.connection_draining_seconds,
        detail=lambda c: f" = {c.prestop_delay_seconds + c.connection_draining_seconds}",
    ),
    _pool(
        "max_nodes",
        "must be >= min_nodes",
        lambda p: p.max_nodes < p.min_nodes,
        detail=lambda p: f" ({p.min_nodes})",
    ),
    _autoscaling(
        "max_replicas",
        "must be >= min_replicas",
        lambda a: a.max_replicas < a.min_replicas,
        detail=lambda a: f" ({a.min_replicas})",
    ),
    _swarm(
        "exposure",
        "platform kind allows only 'nodeport'",
        lambda s: s.platform == "kind" and s.exposure != "nodeport",
    ),
    _swarm(
        "monitoring.managed_prometheus",
        "platform kind has no Managed Prometheus: scrape /metrics with your own Prometheus (docs/metrics.md)",
        lambda s: s.platform == "kind" and s.monitoring.managed_prometheus,
    ),
    _swarm(
        "redis.mode",
        "platform kind allows only 'in-cluster'",
        lambda s: s.platform == "kind" and s.redis.mode == "memorystore",
    ),
    _swarm(
        "redis.mode",
        "broker nats runs NATS in the cluster: leave redis.mode at 'in-cluster' (unused)",
        lambda s: s.broker == "nats" and s.redis.mode == "memorystore",
    ),
    _swarm(
        "exposure",
        "platform gke allows 'ingress' or 'gateway'",
        lambda s: s.platform == "gke" and s.exposure == "nodeport",
    ),
    _swarm(
        "redis_password",
        "must be unset with redis.mode memorystore (its AUTH string is used)",
        lambda s: s.redis_password is not None and s.redis.mode == "memorystore",
        value=_secret,
    ),
    _swarm(
        "api_token",
        f"must be at least {MIN_SECRET_LENGTH} characters",
        lambda s: _short(s.api_token),
        value=_secret,
    ),
    _swarm(
        "api_token_next",
        f"must be at least {MIN_SECRET_LENGTH} characters",
        lambda s: _short(s.api_token_next),
        value=_secret,
    ),
    _swarm(
        "redis_password",
        f"must be at least {MIN_SECRET_LENGTH} characters",
        lambda s: _short(s.redis_password),
        value=_secret,
    ),
    _swarm(
        "kubernetes.context",
        "must be unset when cluster.create is true (the created cluster's kubeconfig is used)",
        lambda s: s.cluster.create and s.kubernetes.context is not None,
    ),
    _swarm(
        "cluster.create",
        f"must be false when {_RENDER} is set",
        lambda s: s.cluster.create and s.kubernetes.render_yaml_to_directory is not None,
    ),
    _swarm(
        "cluster.create",
        "creating a cluster on platform gke needs the gcp section (gcp.project)",
        lambda s: s.platform == "gke" and s.gcp is None and s.cluster.create,
    ),
    _swarm(
        "redis.mode",
        "memorystore on platform gke needs the gcp section (gcp.project)",
        lambda s: s.platform == "gke" and s.gcp is None and s.redis.mode == "memorystore",
    ),
    _swarm(
        "image.build.enabled",
        "building the image on platform gke needs the gcp section (gcp.project)",
        lambda s: s.platform == "gke" and s.gcp is None and s.image.build.enabled,
    ),
    _swarm(
        "redis.mode",
        f"memorystore is not allowed with {_RENDER}",
        lambda s: s.kubernetes.render_yaml_to_directory is not None and s.redis.mode == "memorystore",
    ),
    _swarm(
        "image.build.enabled",
        f"an image build is not allowed with {_RENDER}",
        lambda s: s.kubernetes.render_yaml_to_directory is not None and s.image.build.enabled,
    ),
    _swarm(
        "redis.memorystore.network",
        "needed (VPC id) with memorystore when cluster.create is false",
        lambda s: (
            s.redis.mode == "memorystore" and not s.cluster.create and s.redis.memorystore.network is None
        ),
    ),
    _swarm(
        "cluster.gke.master_authorized_networks",
        "a created GKE cluster with a public endpoint needs it: list at least the CIDR of the machine "
        "running `pulumi up` (only those reach the API)",
        lambda s: (
            s.platform == "gke"
            and s.cluster.create
            and not s.cluster.gke.private_endpoint
            and not s.cluster.gke.master_authorized_networks
        ),
    ),
    _swarm(
        "image.digest",
        "must be unset with image.build.enabled (the build's digest is used)",
        lambda s: s.image.build.enabled and s.image.digest is not None,
    ),
    _swarm(
        "image.pull_policy",
        "a kind-loaded build (platform kind, image.build.enabled) is in no registry: Always is refused, "
        "use IfNotPresent or Never",
        lambda s: s.platform == "kind" and s.image.build.enabled and s.image.pull_policy == "Always",
    ),
    _swarm(
        "coordinator.tls.mode",
        "platform kind serves plain HTTP on the host: allowed 'none'",
        lambda s: s.platform == "kind" and s.tls_mode != "none",
    ),
    _swarm(
        "coordinator.hostname",
        "needed by coordinator.tls.mode managed (the gke default): the certificate's domain; or choose "
        "coordinator.tls.mode pre-shared, or none explicitly",
        lambda s: s.tls_mode == "managed" and s.coordinator.hostname is None,
    ),
    _swarm(
        "coordinator.tls.pre_shared_certificates",
        "coordinator.tls.mode pre-shared needs at least one certificate name",
        lambda s: s.tls_mode == "pre-shared" and not s.coordinator.tls.pre_shared_certificates,
    ),
    _swarm(
        "coordinator.tls.pre_shared_certificates",
        "only with coordinator.tls.mode pre-shared",
        lambda s: s.tls_mode != "pre-shared" and bool(s.coordinator.tls.pre_shared_certificates),
    ),
    _swarm(
        "coordinator.tls.static_ip_name",
        "a reserved global address serves global load balancers only (exposure ingress or a global "
        "coordinator.gateway_class)",
        lambda s: s.coordinator.tls.static_ip_name is not None and not s.global_load_balancer,
    ),
    _swarm(
        "coordinator.tls.static_ip_name",
        "TLS on a global load balancer needs a stable address for the hostname's DNS record: name a "
        "reserved global address, or add the gcp section so one is reserved",
        lambda s: (
            s.platform == "gke"
            and s.tls_mode != "none"
            and s.global_load_balancer
            and s.gcp is None
            and s.coordinator.tls.static_ip_name is None
        ),
    ),
    _swarm(
        "coordinator.tls.mode",
        "managed certificates on a Gateway come from Certificate Manager: add the gcp section, or use "
        "pre-shared",
        lambda s: s.exposure == "gateway" and s.tls_mode == "managed" and s.gcp is None,
    ),
    _swarm(
        "coordinator.cloud_armor.enabled",
        "the security policy is a GCP resource: needs the gcp section",
        lambda s: s.coordinator.cloud_armor.enabled and s.gcp is None,
    ),
    _swarm(
        "coordinator.cloud_armor.enabled",
        "the components create a global security policy: exposure ingress or a global "
        "coordinator.gateway_class",
        lambda s: s.coordinator.cloud_armor.enabled and not s.global_load_balancer,
    ),
    _swarm(
        "agents.secret_manager",
        "needs platform gke with gcp.workload_identity (the agents' GCP service account reads the secrets)",
        lambda s: bool(s.agents.secret_manager) and not s.workload_identity,
        value=lambda s: sorted(s.agents.secret_manager),
    ),
    _swarm(
        "gcp",
        "platform kind creates no GCP resource; remove gcp",
        lambda s: s.platform == "kind" and s.gcp is not None,
        value=lambda s: s.gcp.project if s.gcp else None,
    ),
    _swarm(
        "agents.handler",
        "platform gke needs it set explicitly: the module:function of your task handler (the default is "
        "the built-in demo that only counts steps)",
        lambda s: s.platform == "gke" and "handler" not in s.agents.model_fields_set,
        value=lambda s: None,
    ),
)


def check_rules(model: Any) -> None:
    """Raise the :class:`ConfigError` of the first rule of ``model``'s class (or a base class) it breaks."""
    names = {cls.__name__ for cls in type(model).__mro__}
    for rule in RULES:
        if rule.model in names and rule.broken(model):
            raise rule.error(model)
