"""The components as a Pulumi component package: what TypeScript, Go, C#, Java and YAML programs consume.

`provider/` (a `PulumiPlugin.yaml` with runtime python) runs :func:`serve`, Pulumi's Python component
provider host, which infers the package schema from the classes below: their `args` TypedDicts (plain
TypedDicts with `NotRequired` keys, Enums, `pulumi.Input`) and their `pulumi.Output` annotations, with the
docstrings as descriptions. The analyzer cannot read pydantic models, `Literal` or unions, so the public args
take the generated mirror of the config (:mod:`components.public_args`) and :func:`swarm_config` validates it
with the pydantic models, exactly as a stack's config is validated: the same one-line errors.

The classes subclass the Python components, so the resources and type tokens (`agentswarm:index:<Class>`)
are the same whichever language creates them. Besides :class:`AgentSwarm`, the building blocks it composes
(:class:`SwarmNamespace`, :class:`Redis`, :class:`Nats`, :class:`Coordinator`, :class:`AgentPool`,
:class:`AgentAutoscaler`, :class:`SwarmMonitoring`) take their config section of the same generated shape
and connect through their outputs as AgentSwarm connects them: the parts of one ``instance`` make exactly
AgentSwarm's resources.
"""

# No `from __future__ import annotations`: Pulumi's schema analyzer reads these annotations at runtime.
import typing
from collections.abc import Mapping
from enum import Enum
from importlib import metadata
from typing import Any, NotRequired, TypedDict

import pulumi
from pydantic import BaseModel, ValidationError

from components import agents, autoscaling, coordinator, monitoring, namespace, nats, redis, swarm
from components._k8s import selector_labels
from components.autoscaling import keda_ingress_rule, scaling_rule
from components.config import QUEUE_NAMESPACE, RETENTION_SECONDS, ConfigError, parse_config, runtime_env
from components.config import AgentsConfig as ValidatedAgents
from components.config import AutoscalingConfig as ValidatedAutoscaling
from components.config import CoordinatorConfig as ValidatedCoordinator
from components.config import MonitoringConfig as ValidatedMonitoring
from components.config import NatsConfig as ValidatedNats
from components.config import RedisConfig as ValidatedRedis
from components.config import SwarmConfig as ValidatedConfig
from components.config import TokenBudgetConfig as ValidatedTokenBudget
from components.config_errors import one_line_error
from components.config_rules import MIN_SECRET_LENGTH
from components.public_args import (
    AgentsConfig,
    AutoscalingConfig,
    CoordinatorConfig,
    ImagePullPolicy,
    MonitoringConfig,
    NatsConfig,
    RedisConfig,
    SwarmConfig,
    SwarmExposure,
    TlsMode,
    TokenBudgetConfig,
)

PACKAGE = "agentswarm"
"""The package name: every type token is `agentswarm:index:<Class>`."""


def _plain(value: Any) -> Any:
    """Enum members to their values, recursively (what the provider hands over for Enum-typed inputs)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def swarm_config(public: Mapping[str, Any]) -> ValidatedConfig:
    """The validated config from the public args shape (:class:`components.public_args.SwarmConfig`).

    ``cluster.create`` is false: the package deploys into the cluster the consumer's Kubernetes provider
    reaches. Raises :class:`components.config.ConfigError` with one line naming the key, the value and what is
    allowed.
    """
    # The package deploys into the cluster the consumer's Kubernetes provider reaches; it never creates one.
    return parse_config({**_plain(public), "cluster": {"create": False}})


class ManagedRedis(TypedDict):
    """A Redis that is not in the cluster (Memorystore): TLS, AUTH and a private IP."""

    host: pulumi.Input[str]
    """Private IP or host name of the instance."""
    port: pulumi.Input[int]
    """Its TLS port."""
    auth_string: pulumi.Input[str]
    """The AUTH string (kept secret)."""
    ca_certificate: pulumi.Input[str]
    """PEM of the CA that signed the server certificate."""


class AgentSwarmArgs(TypedDict):
    """Inputs of :class:`AgentSwarm`."""

    config: SwarmConfig
    """The swarm config: the keys of a stack's `agentswarm:` namespace that the workload layer reads."""
    image: NotRequired[pulumi.Input[str]]
    """Image reference overriding `config.image` (e.g. the digest of an image built in the same program)."""
    image_digest: NotRequired[pulumi.Input[str]]
    """Digest of the image when its reference does not carry it (a kind-loaded build); pods roll on change."""
    managed_redis: NotRequired[ManagedRedis]
    """Required when `config.redis.mode` is `memorystore`: connection data of the managed instance."""
    gcp_service_account: NotRequired[pulumi.Input[str]]
    """GCP service account email to bind the agents' ServiceAccount to (Workload Identity)."""


class AgentSwarm(swarm.AgentSwarm):
    """A swarm of AI agents on Kubernetes: namespace, broker, coordinator and agents, wired to each other."""

    namespace: pulumi.Output[str]
    """The namespace everything runs in."""
    coordinator_service: pulumi.Output[str]
    """Name of the coordinator's Service."""
    coordinator_port: pulumi.Output[int]
    """The coordinator's HTTP + websocket port."""
    coordinator_address: pulumi.Output[str]
    """Public IP of the GKE Ingress load balancer (empty for other exposures and until provisioned)."""
    api_token_secret_name: pulumi.Output[str]
    """Secret holding the coordinator API token (key `token`)."""
    redis_url: pulumi.Output[str]
    """URL of the Redis broker, without password (empty with broker `nats`)."""
    agent_statefulset: pulumi.Output[str]
    """Name of the agents' StatefulSet."""
    agent_replicas: pulumi.Output[int]
    """Agent replicas requested."""

    def __init__(self, name: str, args: AgentSwarmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        inner: swarm.AgentSwarmArgs = {"config": swarm_config(args["config"])}
        for key in ("image", "image_digest", "gcp_service_account"):
            if key in args:
                inner[key] = args[key]
        if "managed_redis" in args:
            inner["managed_redis"] = {**args["managed_redis"]}
        super().__init__(name, inner, opts)


class SwarmNamespaceArgs(TypedDict):
    """Inputs of :class:`SwarmNamespace`."""

    namespace: str
    """Namespace name (a DNS label)."""
    instance: NotRequired[str]
    """Swarm instance name, used in the `app.kubernetes.io/instance` label. Default: `"agentswarm"`."""


class SwarmNamespace(namespace.SwarmNamespace):
    """A namespace enforcing Pod Security `restricted`, with default-deny ingress/egress plus DNS."""

    namespace: pulumi.Output[str]
    """The namespace's name."""

    def __init__(
        self, name: str, args: SwarmNamespaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, {**args}, opts)


# --- The building blocks AgentSwarm composes, for programs that assemble a swarm from parts. ---------------
#
# Each takes its config section in the public shape and validates it with the section's pydantic model (the
# same one-line ConfigError, its key prefixed with the section's name). What one block needs from another
# (the namespace, the broker's address and password Secret, the coordinator's port) is an input the other
# block's outputs fill; what AgentSwarm derives from the instance name (the pods' selector labels) is derived
# here the same way, so the parts of one instance find each other as they do inside AgentSwarm.

DEFAULT_INSTANCE = "agentswarm"
"""Instance name when none is given (the labels of :class:`SwarmNamespace` and the Python components)."""

_M = typing.TypeVar("_M", bound=BaseModel)


def section(model: type[_M], key: str, public: Mapping[str, Any] | None) -> _M:
    """One config section from its public shape, validated by its model; :class:`ConfigError` naming
    ``<key>.<field>`` otherwise."""
    data = _plain(dict(public or {}))
    try:
        return model.model_validate(data)
    except ConfigError as exc:
        raise ConfigError(f"{key}.{exc.key}", exc.value, exc.allowed) from None
    except ValidationError as exc:
        err = one_line_error(exc, data)
        raise ConfigError(f"{key}.{err.key}", err.value, err.allowed) from None


def _check_secret(key: str, value: Any) -> None:
    """A token or password given as a plain string is held to the stack config's rule (at least
    ``MIN_SECRET_LENGTH`` characters); one that is an Output (another resource's) is not known yet."""
    if isinstance(value, str) and len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(key, "<secret>", f"must be at least {MIN_SECRET_LENGTH} characters")


def _clients(instance: str, given: list[dict[str, str]] | None) -> list[dict[str, str]]:
    """The broker's clients: the given pod label sets, by default the instance's coordinator and agents."""
    if given is not None:
        return [dict(labels) for labels in given]
    return [selector_labels(instance, coordinator.COMPONENT), selector_labels(instance, agents.COMPONENT)]


class RedisArgs(TypedDict):
    """Inputs of :class:`Redis`."""

    namespace: pulumi.Input[str]
    """Namespace to deploy into (e.g. a `SwarmNamespace`'s `namespace` output)."""
    instance: NotRequired[str]
    """Swarm instance name (labels and object names). Default: `"agentswarm"`."""
    config: NotRequired[RedisConfig]
    """The `redis` config section (`mode` must stay `in-cluster`: a managed instance is not deployed here)."""
    client_selectors: NotRequired[list[dict[str, str]]]
    """Pod label sets allowed to connect. Default: the coordinator and agent pods of the same instance."""
    allow_keda: NotRequired[bool]
    """Admit KEDA's operator (namespace `keda`) to read the backlog, for agent autoscaling. Default: false."""
    password: NotRequired[pulumi.Input[str]]
    """The server password; unset: a generated one. Kept secret either way."""


class Redis(redis.Redis):
    """An in-cluster Redis (Streams) for the swarm's queue: a StatefulSet with a PVC, AOF and a password in a
    Secret, reachable only by its clients."""

    host: pulumi.Output[str]
    """Cluster DNS name of the Redis Service."""
    port: pulumi.Output[int]
    """The Redis port."""
    secret_name: pulumi.Output[str]
    """Secret holding the password (key `password`): the `password_secret` of a `RedisConnection`."""
    url: pulumi.Output[str]
    """`redis://host:port/0`, without password: the `url` of a `RedisConnection`."""

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        cfg = section(ValidatedRedis, "redis", args.get("config"))
        if cfg.mode != "in-cluster":
            raise ConfigError(
                "redis.mode",
                cfg.mode,
                "the Redis component runs Redis in the cluster (in-cluster); for Memorystore give its "
                "connection to Coordinator and AgentPool",
            )
        instance = args.get("instance", DEFAULT_INSTANCE)
        inner: redis.RedisArgs = {
            "namespace": args["namespace"],
            "instance": instance,
            "config": cfg,
            "client_selectors": _clients(instance, args.get("client_selectors")),
        }
        if args.get("allow_keda", False):
            inner["extra_ingress"] = [keda_ingress_rule(redis.REDIS_PORT)]
        if "password" in args:
            _check_secret("password", args["password"])
            inner["password"] = args["password"]
        super().__init__(name, inner, opts)


class NatsArgs(TypedDict):
    """Inputs of :class:`Nats`."""

    namespace: pulumi.Input[str]
    """Namespace to deploy into (e.g. a `SwarmNamespace`'s `namespace` output)."""
    instance: NotRequired[str]
    """Swarm instance name (labels and object names). Default: `"agentswarm"`."""
    config: NotRequired[NatsConfig]
    """The `nats` config section."""
    client_selectors: NotRequired[list[dict[str, str]]]
    """Pod label sets allowed to connect. Default: the coordinator and agent pods of the same instance."""
    allow_keda: NotRequired[bool]
    """Admit KEDA's operator (namespace `keda`) to the monitoring port (agent autoscaling). Default: false."""
    password: NotRequired[pulumi.Input[str]]
    """The client password (URL-safe); unset: a generated one. Kept secret either way."""


class Nats(nats.Nats):
    """An in-cluster NATS server with JetStream on a PVC for the swarm's queue, its password in a Secret,
    reachable only by its clients."""

    host: pulumi.Output[str]
    """Cluster DNS name of the NATS Service (client port 4222): the `host` of a `NatsConnection`."""
    secret_name: pulumi.Output[str]
    """Secret holding the password (key `password`): the `password_secret` of a `NatsConnection`."""

    def __init__(self, name: str, args: NatsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        cfg = section(ValidatedNats, "nats", args.get("config"))
        instance = args.get("instance", DEFAULT_INSTANCE)
        inner: nats.NatsArgs = {
            "namespace": args["namespace"],
            "instance": instance,
            "config": cfg,
            "client_selectors": _clients(instance, args.get("client_selectors")),
        }
        if args.get("allow_keda", False):
            inner["monitoring_ingress"] = [keda_ingress_rule(nats.NATS_MONITORING_PORT)]
        if "password" in args:
            _check_secret("password", args["password"])
            inner["password"] = args["password"]
        super().__init__(name, inner, opts)


class RedisConnection(TypedDict):
    """Where the coordinator and the agents find a Redis broker: a `Redis` component's outputs, or a managed
    instance (Memorystore) whose AUTH string and CA certificate are in Secrets of the namespace."""

    url: pulumi.Input[str]
    """`redis://` or `rediss://` (TLS) URL without password (a `Redis` component's `url`)."""
    password_secret: pulumi.Input[str]
    """Secret holding the password (a `Redis` component's `secret_name`)."""
    password_key: NotRequired[str]
    """Key of the password in that Secret. Default: `"password"`."""
    ca_secret: NotRequired[pulumi.Input[str]]
    """Secret holding the CA certificate of a TLS server (a managed instance)."""
    ca_key: NotRequired[str]
    """Key of the CA certificate in `ca_secret`. Default: `"ca.crt"`."""
    ip_block: NotRequired[pulumi.Input[str]]
    """CIDR of a managed instance (the pods' egress peer); unset: the instance's in-cluster Redis pods."""
    port: NotRequired[int]
    """The port the pods' egress policy opens. Default: 6379 (Memorystore serves TLS on 6378)."""


class NatsConnection(TypedDict):
    """Where the coordinator and the agents find a NATS broker (a `Nats` component's outputs)."""

    host: pulumi.Input[str]
    """Host of the NATS client port (a `Nats` component's `host`)."""
    password_secret: pulumi.Input[str]
    """Secret holding the password (a `Nats` component's `secret_name`)."""
    password_key: NotRequired[str]
    """Key of the password in that Secret. Default: `"password"`."""


def _broker(instance: str, args: Mapping[str, Any]) -> redis.RedisConnection | nats.NatsConnection:
    """The runtime's broker connection from exactly one of ``redis`` and ``nats``."""
    given = [key for key in ("redis", "nats") if key in args]
    if len(given) != 1:
        raise ConfigError("broker", given, "give exactly one of redis and nats (the broker the pods use)")
    if "nats" in args:
        conn: Mapping[str, Any] = args["nats"]
        return nats.NatsConnection(
            host=conn["host"],
            password_secret=conn["password_secret"],
            password_key=conn.get("password_key", nats.PASSWORD_KEY),
            pod_selector=selector_labels(instance, nats.COMPONENT),
        )
    conn = args["redis"]
    if "ca_secret" in conn:
        ca: dict[str, Any] = {
            "ca_secret": conn["ca_secret"],
            "ca_key": conn.get("ca_key", redis.MANAGED_CA_KEY),
        }
    else:
        ca = {}
    if "ip_block" in conn:
        peer: dict[str, Any] = {"ip_block": conn["ip_block"]}
    else:
        peer = {"pod_selector": selector_labels(instance, redis.COMPONENT)}
    return redis.RedisConnection(
        url=conn["url"],
        password_secret=conn["password_secret"],
        password_key=conn.get("password_key", redis.PASSWORD_KEY),
        port=conn.get("port", redis.REDIS_PORT),
        **ca,
        **peer,
    )


class EdgeRefs(TypedDict):
    """Names of GCP objects in front of the coordinator's load balancer (all optional)."""

    static_ip_name: NotRequired[pulumi.Input[str]]
    """Reserved global address (overrides `config.tls.static_ip_name`)."""
    certificate_map: NotRequired[pulumi.Input[str]]
    """Certificate Manager map of a global Gateway."""
    regional_certificates: NotRequired[pulumi.Input[str]]
    """Comma-separated regional Certificate Manager certificates of a regional Gateway."""
    security_policy: NotRequired[pulumi.Input[str]]
    """Cloud Armor policy attached to the coordinator's backend."""


def _runtime_args(
    instance: str, args: Mapping[str, Any], conn: redis.RedisConnection | nats.NatsConnection
) -> dict[str, Any]:
    """The keys Coordinator and AgentPool share, as AgentSwarm fills them."""
    broker = "nats" if isinstance(conn, nats.NatsConnection) else "redis"
    inner: dict[str, Any] = {
        "namespace": args["namespace"],
        "instance": instance,
        "image": args["image"],
        "image_pull_policy": _plain(args.get("image_pull_policy", ImagePullPolicy.IF_NOT_PRESENT)),
        broker: conn,
    }
    budget = section(ValidatedTokenBudget, "token_budget", args.get("token_budget"))
    retention = int(args.get("retention_seconds", RETENTION_SECONDS))
    inner["runtime_env"] = runtime_env(retention, budget)  # what AgentSwarm gives both roles
    if "image_digest" in args:
        inner["pod_annotations"] = {swarm.IMAGE_DIGEST_ANNOTATION: args["image_digest"]}
    return inner


class CoordinatorArgs(TypedDict):
    """Inputs of :class:`Coordinator`."""

    namespace: pulumi.Input[str]
    """Namespace to deploy into (e.g. a `SwarmNamespace`'s `namespace` output)."""
    image: pulumi.Input[str]
    """Image reference of the agentswarm runtime."""
    exposure: SwarmExposure
    """How clients reach the coordinator: `ingress` or `gateway` (GKE), `nodeport` (kind)."""
    instance: NotRequired[str]
    """Swarm instance name (labels and object names). Default: `"agentswarm"`."""
    config: NotRequired[CoordinatorConfig]
    """The `coordinator` config section."""
    redis: NotRequired[RedisConnection]
    """The Redis broker (give exactly one of `redis` and `nats`)."""
    nats: NotRequired[NatsConnection]
    """The NATS broker (give exactly one of `redis` and `nats`)."""
    image_pull_policy: NotRequired[ImagePullPolicy]
    """Kubernetes imagePullPolicy. Default: `IfNotPresent`."""
    image_digest: NotRequired[pulumi.Input[str]]
    """Digest of the image when its reference does not carry it (a kind-loaded build); pods roll on change."""
    tls_mode: NotRequired[TlsMode]
    """TLS at the load balancer (`managed`, `pre-shared`, `none`). Default: `none`."""
    edge: NotRequired[EdgeRefs]
    """GCP objects the exposure objects name (address, certificates, security policy)."""
    api_token: NotRequired[pulumi.Input[str]]
    """The API token clients present; unset: a generated one. Kept secret either way."""
    api_token_next: NotRequired[pulumi.Input[str]]
    """A second valid token during a rotation."""
    token_budget: NotRequired[TokenBudgetConfig]
    """The swarm's LLM token budget the coordinator reports (give the agents the same)."""
    retention_seconds: NotRequired[int]
    """How long the broker keeps a finished task, in seconds (the coordinator trims by it; give the agents the
    same); 0 keeps everything. Default: 7 days."""


class Coordinator(coordinator.Coordinator):
    """The coordinator: Deployment, Service, API token Secret, NetworkPolicy, PDB and the exposure objects."""

    service_name: pulumi.Output[str]
    """Name of the coordinator's Service."""
    port: pulumi.Output[int]
    """The coordinator's HTTP + websocket port (give it to the AgentPool as `coordinator_port`)."""
    api_token_secret_name: pulumi.Output[str]
    """Secret holding the API token (key `token`)."""
    health_path: pulumi.Output[str]
    """Readiness and load-balancer health-check path."""
    address: pulumi.Output[str]
    """Public IP of the GKE Ingress load balancer (empty for other exposures and until provisioned)."""

    def __init__(self, name: str, args: CoordinatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        cfg = section(ValidatedCoordinator, "coordinator", args.get("config"))
        instance = args.get("instance", DEFAULT_INSTANCE)
        inner: dict[str, Any] = {
            **_runtime_args(instance, args, _broker(instance, args)),
            "config": cfg,
            "exposure": _plain(args["exposure"]),
            "tls_mode": _plain(args.get("tls_mode", TlsMode.NONE)),
        }
        for key in ("api_token", "api_token_next"):
            if key in args:
                _check_secret(key, args[key])
                inner[key] = args[key]
        if "edge" in args:
            inner["edge"] = {**args["edge"]}
        super().__init__(name, typing.cast(coordinator.CoordinatorArgs, inner), opts)


class AgentPoolArgs(TypedDict):
    """Inputs of :class:`AgentPool`."""

    namespace: pulumi.Input[str]
    """Namespace to deploy into (e.g. a `SwarmNamespace`'s `namespace` output)."""
    image: pulumi.Input[str]
    """Image reference of the agentswarm runtime."""
    instance: NotRequired[str]
    """Swarm instance name (labels and object names); the coordinator of the same instance is the one the
    agents may reach. Default: `"agentswarm"`."""
    config: NotRequired[AgentsConfig]
    """The `agents` config section. With `autoscaling.enabled` KEDA owns the replicas: add an
    `AgentAutoscaler` with the same `autoscaling` section."""
    redis: NotRequired[RedisConnection]
    """The Redis broker (give exactly one of `redis` and `nats`)."""
    nats: NotRequired[NatsConnection]
    """The NATS broker (give exactly one of `redis` and `nats`)."""
    coordinator_port: NotRequired[pulumi.Input[int]]
    """The coordinator's port (a `Coordinator`'s `port` output). Default: the `coordinator.port` default."""
    image_pull_policy: NotRequired[ImagePullPolicy]
    """Kubernetes imagePullPolicy. Default: `IfNotPresent`."""
    image_digest: NotRequired[pulumi.Input[str]]
    """Digest of the image when its reference does not carry it (a kind-loaded build); pods roll on change."""
    gcp_service_account: NotRequired[pulumi.Input[str]]
    """GCP service account email to bind the agents' ServiceAccount to (Workload Identity)."""
    token_budget: NotRequired[TokenBudgetConfig]
    """The swarm's LLM token budget the agents enforce (give the coordinator the same)."""
    retention_seconds: NotRequired[int]
    """How long the broker keeps a finished task, in seconds (the agents' broker objects are set up with it;
    give the coordinator the same); 0 keeps everything. Default: 7 days."""


class AgentPool(agents.AgentPool):
    """The agents: one StatefulSet with a checkpoint PVC per agent, headless Service, PDB, ServiceAccount and
    NetworkPolicy."""

    statefulset_name: pulumi.Output[str]
    """Name of the agents' StatefulSet."""
    service_account_name: pulumi.Output[str]
    """Name of the agents' Kubernetes ServiceAccount."""
    replicas: pulumi.Output[int]
    """Agent replicas requested."""

    def __init__(self, name: str, args: AgentPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        cfg = section(ValidatedAgents, "agents", args.get("config"))
        instance = args.get("instance", DEFAULT_INSTANCE)
        inner: dict[str, Any] = {
            **_runtime_args(instance, args, _broker(instance, args)),
            "config": cfg,
            "coordinator_selector": selector_labels(instance, coordinator.COMPONENT),
            "coordinator_port": args.get("coordinator_port", ValidatedCoordinator().port),
        }
        if "gcp_service_account" in args:
            inner["gcp_service_account"] = args["gcp_service_account"]
        super().__init__(name, typing.cast(agents.AgentPoolArgs, inner), opts)


class AgentAutoscalerArgs(TypedDict):
    """Inputs of :class:`AgentAutoscaler`."""

    namespace: pulumi.Input[str]
    """Namespace of the agents (e.g. a `SwarmNamespace`'s `namespace` output)."""
    statefulset_name: pulumi.Input[str]
    """The agents' StatefulSet (an `AgentPool`'s `statefulset_name` output)."""
    config: AutoscalingConfig
    """The `agents.autoscaling` section, the same as the AgentPool's (`enabled` must be true)."""
    instance: NotRequired[str]
    """Swarm instance name (labels and object names). Default: `"agentswarm"`."""
    redis: NotRequired[RedisConnection]
    """The Redis broker whose backlog is read (give exactly one of `redis` and `nats`; its component needs
    `allow_keda`)."""
    nats: NotRequired[NatsConnection]
    """The NATS broker whose backlog is read (its component needs `allow_keda`)."""


class AgentAutoscaler(autoscaling.AgentAutoscaler):
    """KEDA sizing the agents by the queue's backlog: a ScaledObject (+ TriggerAuthentication for Redis, + the
    KEDA chart with `install_keda`)."""

    scaled_object_name: pulumi.Output[str]
    """Name of the KEDA ScaledObject."""

    def __init__(
        self, name: str, args: AgentAutoscalerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        cfg = section(ValidatedAutoscaling, "agents.autoscaling", args["config"])
        if not cfg.enabled:
            raise ConfigError(
                "agents.autoscaling.enabled",
                False,
                "must be true, as in the AgentPool's config (KEDA owns the replicas only then)",
            )
        instance = args.get("instance", DEFAULT_INSTANCE)
        inner: autoscaling.AgentAutoscalerArgs = {
            "namespace": args["namespace"],
            "instance": instance,
            "statefulset_name": args["statefulset_name"],
            "rule": scaling_rule(cfg),
            "queue_namespace": QUEUE_NAMESPACE,
            "install_keda": cfg.install_keda,
        }
        conn = _broker(instance, args)
        if isinstance(conn, nats.NatsConnection):
            inner["nats_monitoring_endpoint"] = conn.monitoring_endpoint
        else:
            inner["redis"] = {
                "url": conn.url,
                "password_secret": conn.password_secret,
                "password_key": conn.password_key,
                "ca_secret": conn.ca_secret,
                "ca_key": conn.ca_key,
            }
        super().__init__(name, inner, opts)


class ScrapeTarget(TypedDict):
    """A component whose pods Managed Prometheus scrapes."""

    component: str
    """The component (`coordinator`); its pods are selected by the instance's labels for it, and it names
    the PodMonitoring."""
    port: NotRequired[str]
    """Name of the container port serving `/metrics`. Default: `"http"`."""


class SwarmMonitoringArgs(TypedDict):
    """Inputs of :class:`SwarmMonitoring`."""

    namespace: pulumi.Input[str]
    """Namespace of the swarm (a PodMonitoring selects pods of its own namespace)."""
    instance: NotRequired[str]
    """Swarm instance name (labels). Default: `"agentswarm"`."""
    config: NotRequired[MonitoringConfig]
    """The `monitoring` config section (its `scrape_interval`)."""
    targets: NotRequired[list[ScrapeTarget]]
    """The components to scrape. Default: the coordinator (the one serving metrics)."""


class SwarmMonitoring(monitoring.SwarmMonitoring):
    """Google Cloud Managed Service for Prometheus scraping the swarm on GKE: one PodMonitoring per target."""

    pod_monitorings: pulumi.Output[list[str]]
    """Names of the PodMonitoring objects."""

    def __init__(
        self, name: str, args: SwarmMonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        cfg = section(ValidatedMonitoring, "monitoring", args.get("config"))
        instance = args.get("instance", DEFAULT_INSTANCE)
        given = args.get("targets", [{"component": coordinator.COMPONENT}])
        targets: list[monitoring.ScrapeTarget] = [
            {
                "component": t["component"],
                "selector": selector_labels(instance, t["component"]),
                "port": t.get("port", "http"),
            }
            for t in given
        ]
        inner: monitoring.SwarmMonitoringArgs = {
            "namespace": args["namespace"],
            "instance": instance,
            "config": cfg,
            "targets": targets,
        }
        super().__init__(name, inner, opts)


COMPONENTS: list[type[pulumi.ComponentResource]] = [
    AgentSwarm,
    SwarmNamespace,
    Redis,
    Nats,
    Coordinator,
    AgentPool,
    AgentAutoscaler,
    SwarmMonitoring,
]
"""What the package exposes."""


def version() -> str:
    """The package version: the installed distribution's (`agentswarm-components`)."""
    try:
        return metadata.version("agentswarm-components")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def serve() -> None:
    """Run the component provider (called by `provider/__main__.py` when the engine starts the plugin)."""
    from pulumi.provider.experimental import component_provider_host

    component_provider_host(COMPONENTS, name=PACKAGE, version=version())
