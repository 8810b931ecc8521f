"""The config sections of the workload: Kubernetes access, the image, the coordinator and its edge (TLS,
rate limits, Cloud Armor), the agents (environment, secrets, egress) and their autoscaling."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, SecretStr, model_validator

from components.config_base import (
    CHECKPOINT_DIR,
    COORDINATOR_PORT,
    DEFAULT_HANDLER,
    HANDLER_PATTERN,
    NODE_PORT,
    Cidr,
    DnsLabel,
    Quantity,
    Resources,
    _Model,
    _resources,
)
from components.config_errors import ConfigError
from components.config_rules import CLOUD_ARMOR_INTERVALS


class KubernetesConfig(_Model):
    """How the program reaches Kubernetes when it does not create the cluster itself."""

    context: str | None = Field(
        default=None,
        description="kubeconfig context to deploy into; unset means the ambient current context.",
    )
    render_yaml_to_directory: str | None = Field(
        default=None,
        description=(
            "When set, the Kubernetes provider writes manifests into this directory instead of talking to a "
            "cluster (Pulumi `renderYamlToDirectory`); no cluster is created."
        ),
    )


class ImageBuildConfig(_Model):
    """Build the agent image from source (pulumi-docker-build) instead of using a prebuilt one."""

    enabled: bool = Field(
        default=False, description="Build the image during `pulumi up` (`agent_image/`, or your own project)."
    )
    context: str = Field(
        default="agent_image",
        description="Docker build context, relative to the project root (`.` in a project of your own).",
    )
    dockerfile: str = Field(
        default="agent_image/Dockerfile", description="Dockerfile path, relative to the project root."
    )
    platform: Literal["linux/amd64", "linux/arm64"] = Field(
        default="linux/amd64", description="Target platform of the build."
    )


class ImageConfig(_Model):
    """The one agentswarm image used by the coordinator and the agents."""

    repository: str = Field(
        default="agentswarm",
        min_length=1,
        description=(
            "Image repository. The default is the local name `docker build -t agentswarm:dev agent_image/` "
            "gives; without `build.enabled` on GKE set your registry's path. With `build.enabled` on GKE the "
            "image is pushed as `<Artifact Registry path>/<last segment of this>`."
        ),
    )
    tag: str | None = Field(default="dev", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", description="Tag.")
    digest: str | None = Field(
        default=None,
        pattern=r"^sha256:[a-f0-9]{64}$",
        description="Digest; when set it wins over the tag (immutable reference).",
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Kubernetes imagePullPolicy."
    )
    build: ImageBuildConfig = Field(default_factory=ImageBuildConfig, description="Build from source.")

    @property
    def reference(self) -> str:
        """``repository@digest`` or ``repository:tag``."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


GLOBAL_GATEWAY_CLASSES = ("gke-l7-global-external-managed", "gke-l7-gxlb")
"""GatewayClasses whose load balancer is global: a Certificate Manager map, a global address, Cloud Armor."""
REGIONAL_GATEWAY_CLASSES = ("gke-l7-regional-external-managed", "gke-l7-rilb")
"""GatewayClasses whose load balancer is regional: regional Certificate Manager certificates, no map."""


class TlsConfig(_Model):
    """TLS at the GKE load balancer: clients use `https://` and `wss://`; the pods behind it speak HTTP."""

    mode: Literal["managed", "pre-shared", "none"] | None = Field(
        default=None,
        description=(
            "`managed`: a Google-managed certificate for `coordinator.hostname` (Ingress: a "
            "ManagedCertificate; Gateway: Certificate Manager); `pre-shared`: Compute Engine SSL "
            "certificates you created, named in `pre_shared_certificates`; `none`: plain HTTP, the API "
            "token in clear text (must be explicit on "
            "gke and warns at preview). Unset: `managed` on gke, `none` on kind."
        ),
    )
    pre_shared_certificates: list[DnsLabel] = Field(
        default_factory=list,
        max_length=15,
        description="Names of existing Compute Engine SSL certificates (mode `pre-shared` only).",
    )
    static_ip_name: DnsLabel | None = Field(
        default=None,
        description=(
            "Name of an existing reserved global address for the load balancer; unset: one is reserved "
            "(needs the gcp section). Global load balancers only (Ingress, global GatewayClasses)."
        ),
    )


class RateLimitConfig(_Model):
    """A per-client-IP rate limit (Cloud Armor ``rateLimitOptions``, enforced on key ``IP``)."""

    requests: int = Field(default=600, ge=1, le=1_000_000, description="Requests allowed per interval.")
    interval_seconds: int = Field(
        default=60,
        ge=10,
        le=3600,
        description=f"Interval of the count, in seconds: {', '.join(map(str, CLOUD_ARMOR_INTERVALS))}.",
    )
    action: Literal["throttle", "rate_based_ban"] = Field(
        default="throttle",
        description="`throttle`: refuse (429) what exceeds the rate; `rate_based_ban`: also ban the IP.",
    )
    ban_seconds: int = Field(
        default=600, ge=1, le=86400, description="How long a banned IP stays banned (`rate_based_ban`)."
    )


class CloudArmorConfig(_Model):
    """A Cloud Armor security policy on the coordinator's backend, created by the components."""

    enabled: bool = Field(
        default=False, description="Create the policy and attach it (needs the gcp section)."
    )
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig, description="Per-IP rate limit.")


class CoordinatorConfig(_Model):
    """The coordinator Deployment and how it is exposed."""

    replicas: int = Field(default=1, ge=1, le=10, description="Coordinator replicas.")
    port: int = Field(
        default=COORDINATOR_PORT, ge=1024, le=65535, description="HTTP + websocket port (non-privileged)."
    )
    websocket_backend_timeout_seconds: int = Field(
        default=3600,
        ge=1,
        le=86400,
        description=(
            "GKE load-balancer backend timeout = maximum lifetime of a websocket. GKE default: 30 s; above "
            "24 h is discouraged (Google front ends restart for maintenance)."
        ),
    )
    connection_draining_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Load-balancer connection draining and the coordinator's SIGTERM drain time.",
    )
    prestop_delay_seconds: int = Field(
        default=5, ge=0, le=120, description="preStop sleep so endpoints are removed before draining starts."
    )
    termination_grace_seconds: int = Field(
        default=90,
        ge=1,
        le=3600,
        description="Pod terminationGracePeriodSeconds; must exceed preStop + drain.",
    )
    node_port: int = Field(
        default=NODE_PORT, ge=30000, le=32767, description="kind only: fixed NodePort mapped to the host."
    )
    gateway_class: Literal[
        "gke-l7-global-external-managed", "gke-l7-regional-external-managed", "gke-l7-rilb", "gke-l7-gxlb"
    ] = Field(default="gke-l7-global-external-managed", description="GKE GatewayClass (exposure gateway).")
    hostname: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$",
        description=(
            "Public hostname of the coordinator (Ingress rule / HTTPRoute, and the managed certificate's "
            "domain); needed by `tls.mode: managed`, the gke default."
        ),
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS at the load balancer (GKE).")
    cloud_armor: CloudArmorConfig = Field(
        default_factory=CloudArmorConfig, description="Optional Cloud Armor policy with a per-IP rate limit."
    )
    resources: Resources = Field(
        default_factory=lambda: _resources("250m", "256Mi", "512Mi"), description="Container resources."
    )


class EgressRule(_Model):
    """One model-API destination agents may reach (NetworkPolicy ipBlock)."""

    cidr: Cidr = Field(description="Destination CIDR, e.g. `0.0.0.0/0` or `203.0.113.0/24`.")
    except_cidrs: list[Cidr] = Field(default_factory=list, description="CIDRs carved out of `cidr`.")
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=lambda: [443], min_length=1, description="TCP ports."
    )


_PUBLIC_HTTPS = EgressRule(cidr="0.0.0.0/0", except_cidrs=["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])


class AutoscalingConfig(_Model):
    """Agents that follow the queue's backlog through KEDA, down to zero (docs/autoscaling.md)."""

    enabled: bool = Field(
        default=False,
        description=(
            "Create a KEDA ScaledObject for the agent StatefulSet (KEDA must be installed, or set "
            "`install_keda`); `agents.replicas` is then ignored and agents use broker checkpoints."
        ),
    )
    min_replicas: int = Field(default=0, ge=0, le=10000, description="Fewest agents; 0 = none while idle.")
    max_replicas: int = Field(default=50, ge=1, le=10000, description="Most agents.")
    target_tasks_per_agent: int = Field(
        default=1, ge=1, le=100000, description="Outstanding tasks (queued + running) per agent."
    )
    activation_tasks: int = Field(
        default=0, ge=0, le=100000, description="Backlog above which agents start from zero (activation)."
    )
    polling_interval_seconds: int = Field(
        default=30, ge=1, le=3600, description="How often KEDA reads the backlog (pollingInterval)."
    )
    cooldown_seconds: int = Field(
        default=300, ge=0, le=86400, description="Idle seconds before the last step to min_replicas."
    )
    scale_down_stabilization_seconds: int = Field(
        default=300, ge=0, le=3600, description="HPA scale-down stabilisation window between 1 and max."
    )
    install_keda: bool = Field(
        default=False, description="Install KEDA from the kedacore Helm chart (pinned); needs chart access."
    )


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_SECRET_VERSION = r"^projects/[a-z0-9-]{6,30}/secrets/[A-Za-z0-9_-]{1,255}/versions/([0-9]+|latest)$"


#: ``AGENTSWARM_*`` variables a handler reads (the LLM handlers' settings); the other ``AGENTSWARM_*`` ones
#: are the runtime's, set by the components from their own config keys.
HANDLER_ENV_PREFIXES = ("AGENTSWARM_LLM_", "AGENTSWARM_PYDANTIC_AI_")


def _check_env_name(name: str) -> str:
    """A handler variable name: not one of the runtime's own ``AGENTSWARM_*`` settings."""
    import re

    if not re.match(_ENV_NAME, name):
        raise ValueError(f"{name!r} is not an environment variable name (letters, digits, '_')")
    if name.upper().startswith("AGENTSWARM_") and not name.startswith(HANDLER_ENV_PREFIXES):
        raise ValueError(
            f"{name!r}: AGENTSWARM_* runtime settings come from their own config keys; "
            "only AGENTSWARM_LLM_* and AGENTSWARM_PYDANTIC_AI_* are handler settings"
        )
    return name


EnvName = Annotated[str, AfterValidator(_check_env_name)]
SecretVersion = Annotated[str, Field(pattern=_SECRET_VERSION)]


class AgentsConfig(_Model):
    """The agent StatefulSet."""

    replicas: int = Field(default=50, ge=0, le=10000, description="Number of agent pods.")
    handler: str = Field(
        default=DEFAULT_HANDLER,
        pattern=HANDLER_PATTERN,
        description="`module:function` of the async task handler (AGENTSWARM_HANDLER).",
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Tasks one agent pod runs at once, for I/O-bound handlers (AGENTSWARM_CONCURRENCY).",
    )
    storage_size: Quantity = Field(default="1Gi", description="Per-agent checkpoint PVC size.")
    storage_class: str | None = Field(
        default=None, description="StorageClass of the PVCs; unset = cluster default."
    )
    checkpoint_path: str = Field(
        default=CHECKPOINT_DIR,
        pattern=r"^/[A-Za-z0-9._/-]*$",
        description="Mount path of the checkpoint volume (AGENTSWARM_CHECKPOINT_DIR).",
    )
    resources: Resources = Field(
        default_factory=lambda: _resources("100m", "256Mi", "512Mi"), description="Container resources."
    )
    termination_grace_seconds: int = Field(
        default=60, ge=5, le=3600, description="Time an agent gets to checkpoint after SIGTERM."
    )
    probe_max_age_seconds: int = Field(
        default=60, ge=5, le=3600, description="Liveness: heartbeat file must be younger than this."
    )
    egress_allow: list[EgressRule] = Field(
        default_factory=lambda: [_PUBLIC_HTTPS],
        description="Model-API allow-list; default: public internet on 443, private ranges excluded.",
    )
    pvc_retention_when_deleted: Literal["Retain", "Delete"] = Field(
        default="Retain", description="Keep checkpoints when the StatefulSet is deleted."
    )
    pvc_retention_when_scaled: Literal["Retain", "Delete"] = Field(
        default="Retain", description="Keep checkpoints of scaled-down agents so they resume when scaled up."
    )
    max_unavailable: str = Field(
        default="10%", pattern=r"^([0-9]+|[0-9]{1,3}%)$", description="PodDisruptionBudget maxUnavailable."
    )
    dedicated_nodes: bool = Field(
        default=True,
        description=(
            "Select nodes labelled `agentswarm.io/pool=agents` and tolerate their taint. The clusters this "
            "project creates carry that label; set false for a plain existing cluster."
        ),
    )
    autoscaling: AutoscalingConfig = Field(
        default_factory=AutoscalingConfig, description="Scale with the queue (KEDA)."
    )
    env: dict[EnvName, str] = Field(
        default_factory=dict,
        description="Plain environment variables for the handler (model name, base URL); never secrets.",
    )
    secret_env: dict[EnvName, SecretStr] = Field(
        default_factory=dict,
        description="Handler secrets (model API keys), set with `pulumi config set --secret --path "
        "agentswarm:agents.secret_env.NAME ...`: a Kubernetes Secret mounted as files, NAME_FILE in the pod, "
        "NAME in the handler's environment.",
    )
    secret_manager: dict[EnvName, SecretVersion] = Field(
        default_factory=dict,
        description="GKE: handler secrets from Secret Manager (`projects/P/secrets/S/versions/V`), "
        "mounted as files by the Secret Manager add-on through Workload Identity; the agents' GCP "
        "service account gets secretAccessor on each secret.",
    )

    @model_validator(mode="after")
    def _one_source_per_name(self) -> Self:
        seen: dict[str, str] = {}
        for section in ("env", "secret_env", "secret_manager"):
            for name in getattr(self, section):
                if name in seen:
                    raise ConfigError(section, name, f"already set in agents.{seen[name]}")
                seen[name] = section
        for name in [*self.secret_env, *self.secret_manager]:
            if f"{name}_FILE" in seen:
                raise ConfigError(
                    seen[f"{name}_FILE"], f"{name}_FILE", f"is the path variable of secret {name}"
                )
        return self
