"""GCP pieces around the cluster: Workload Identity for agents, Memorystore, and the agent image.

- Workload Identity: a GCP service account that the agents' Kubernetes ServiceAccount impersonates
  (``roles/iam.workloadIdentityUser`` for ``serviceAccount:<project>.svc.id.goog[<ns>/<ksa>]``; the KSA
  carries ``iam.gke.io/gcp-service-account``), so agents get GCP credentials without keys.
- Memorystore: private (``PRIVATE_SERVICE_ACCESS`` over a ``VPC_PEERING`` range), AUTH on, TLS
  (``SERVER_AUTHENTICATION``); its auth string and CA go into Kubernetes Secrets
  (``redis.managed_redis_connection``).
- AgentImage: an Artifact Registry repository and a pulumi-docker-build image of ``agent_image/``, pinned by
  digest; on kind the image is built into the local Docker and loaded into the nodes.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_gcp as gcp

from components import _k8s
from components.config import ImageConfig, MemorystoreConfig
from components.paths import project_path


class AgentIdentityArgs(TypedDict):
    project: str
    """GCP project id (also names the workload pool)."""
    namespace: str
    """Namespace of the agents' Kubernetes ServiceAccount."""
    service_account: str
    """Name of the agents' Kubernetes ServiceAccount."""
    account_id: str
    """GCP service account id (6-30 chars)."""


class AgentIdentity(pulumi.ComponentResource):
    """GCP service account + workloadIdentityUser binding for the agents' Kubernetes ServiceAccount."""

    email: pulumi.Output[str]

    def __init__(
        self, name: str, args: AgentIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agentswarm:index:AgentIdentity", name, None, opts)
        project = args["project"]
        gsa = gcp.serviceaccount.Account(
            f"{name}-service-account",
            project=project,
            account_id=args["account_id"],
            display_name="agentswarm agents (Workload Identity)",
            opts=_k8s.child_opts(self),
        )
        member = f"serviceAccount:{project}.svc.id.goog[{args['namespace']}/{args['service_account']}]"
        gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity-user",
            service_account_id=gsa.name,
            role="roles/iam.workloadIdentityUser",
            member=member,
            opts=_k8s.child_opts(self),
        )
        self.email = gsa.email
        self.register_outputs({"email": self.email})


class MemorystoreArgs(TypedDict):
    project: str
    region: str
    network_id: pulumi.Input[str]
    """VPC to peer with (the cluster's)."""
    instance_name: str
    config: MemorystoreConfig


class Memorystore(pulumi.ComponentResource):
    """Private-service-access range + peering + a TLS, AUTH-enabled Memorystore for Redis instance."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    auth_string: pulumi.Output[str]
    ca_certificate: pulumi.Output[str]

    def __init__(self, name: str, args: MemorystoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:Memorystore", name, None, opts)
        cfg = MemorystoreConfig.model_validate(args["config"])
        project = args["project"]
        instance_name = args["instance_name"]
        peering_range = gcp.compute.GlobalAddress(
            f"{name}-peering-range",
            name=f"{instance_name}-psa",
            project=project,
            purpose="VPC_PEERING",
            address_type="INTERNAL",
            prefix_length=16,
            network=args["network_id"],
            opts=_k8s.child_opts(self),
        )
        connection = gcp.servicenetworking.Connection(
            f"{name}-peering",
            network=args["network_id"],
            service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[peering_range.name],
            opts=_k8s.child_opts(self),
        )
        instance = gcp.redis.Instance(
            f"{name}-instance",
            name=instance_name,
            project=project,
            region=args["region"],
            tier=cfg.tier,
            memory_size_gb=cfg.memory_size_gb,
            redis_version=cfg.redis_version,
            authorized_network=args["network_id"],
            connect_mode="PRIVATE_SERVICE_ACCESS",
            auth_enabled=True,
            transit_encryption_mode="SERVER_AUTHENTICATION",
            # Memorystore for Redis persists with RDB snapshots (AOF is not offered on this product).
            persistence_config={"persistence_mode": "RDB", "rdb_snapshot_period": "ONE_HOUR"},
            # Memorystore's default maxmemory-policy is volatile-lru: when full it would evict keys with a
            # TTL, which are a task tree's records (waiting parents, children). A full broker must refuse
            # writes (agents retry) rather than silently lose them; docs/retention.md says how to size it.
            redis_configs={"maxmemory-policy": "noeviction"},
            opts=_k8s.child_opts(self, depends_on=[connection], additional_secret_outputs=["auth_string"]),
        )
        self.host = instance.host
        self.port = instance.port
        self.auth_string = pulumi.Output.secret(instance.auth_string)
        self.ca_certificate = instance.server_ca_certs.apply(lambda certs: certs[0].cert if certs else "")
        self.register_outputs({"host": self.host, "port": self.port})


class AgentImageArgs(TypedDict):
    config: ImageConfig
    """Validated ``image`` section (build settings, tag)."""
    registry: NotRequired[str]
    """``<region>-docker.pkg.dev/<project>/<repo>`` to push to; unset = build into the local Docker (kind)."""
    project: NotRequired[str]
    """With ``registry``: the project of the Artifact Registry repository."""
    region: NotRequired[str]
    """With ``registry``: its region."""
    repository_id: NotRequired[str]
    """With ``registry``: the repository id."""


class AgentImage(pulumi.ComponentResource):
    """Build the image (``agent_image/``, or your project's Dockerfile built on it) with pulumi-docker-build;
    push to Artifact Registry or load into Docker. Context and Dockerfile are relative to the project root."""

    ref: pulumi.Output[str]
    """Image reference the pods use (digest-pinned when pushed)."""
    digest: pulumi.Output[str]
    """Content digest of the build; changes whenever the image does."""

    def __init__(self, name: str, args: AgentImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agentswarm:index:AgentImage", name, None, opts)
        import pulumi_docker_build as docker_build  # only stacks that build an image need the provider

        cfg = ImageConfig.model_validate(args["config"])
        tag = cfg.tag or "latest"
        build_args: dict[str, Any] = {
            "context": {"location": project_path(cfg.build.context)},
            "dockerfile": {"location": project_path(cfg.build.dockerfile)},
            "platforms": [cfg.build.platform],
        }
        registry = args.get("registry")
        if registry:
            repo = gcp.artifactregistry.Repository(
                f"{name}-repository",
                project=args["project"],
                location=args["region"],
                repository_id=args["repository_id"],
                format="DOCKER",
                description="agentswarm runtime images",
                opts=_k8s.child_opts(self),
            )
            token = gcp.organizations.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
            # The image keeps its own name in the registry (`repository: myswarm` -> `<registry>/myswarm`).
            full = f"{registry}/{cfg.repository.rsplit('/', 1)[-1]}:{tag}"
            image = docker_build.Image(
                f"{name}-image",
                tags=[full],
                push=True,
                registries=[
                    {
                        "address": registry.split("/")[0],
                        "username": "oauth2accesstoken",
                        "password": pulumi.Output.secret(token.access_token),
                    }
                ],
                opts=_k8s.child_opts(self, depends_on=[repo]),
                **build_args,
            )
            self.ref = image.ref
        else:
            local = f"{cfg.repository}:{tag}"
            image = docker_build.Image(
                f"{name}-image",
                tags=[local],
                push=False,
                load=True,
                opts=_k8s.child_opts(self),
                **build_args,
            )
            self.ref = image.digest.apply(lambda _digest: local)
        self.image = image
        self.digest = image.digest
        self.register_outputs({"ref": self.ref, "digest": self.digest})
