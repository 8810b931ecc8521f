"""Handler settings and secrets for the agent pods: plain variables, secrets mounted as files.

``agents.env`` becomes ordinary environment variables. ``agents.secret_env`` becomes one Kubernetes Secret
mounted read-only at :data:`SECRET_ENV_DIR`; ``agents.secret_manager`` (GKE) becomes a ``SecretProviderClass``
of GKE's Secret Manager add-on, mounted by its CSI driver at :data:`SECRET_MANAGER_DIR`, with
``roles/secretmanager.secretAccessor`` on each secret for the agents' GCP service account
(:class:`SecretManagerAccess`). Either way the pod spec carries only paths: ``NAME_FILE=<dir>/NAME`` and the
list of names in ``AGENTSWARM_SECRET_ENV_FILES``, which the runtime (``agentswarm.secrets_env``) reads into
``NAME`` before the handler loads. Where agents may connect stays the egress NetworkPolicy's business.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

import pulumi
import pulumi_gcp as gcp

from components import _k8s
from components.config import AgentsConfig

__all__ = [
    "CSI_DRIVER",
    "SECRET_ENV_DIR",
    "SECRET_MANAGER_DIR",
    "SECRET_PROVIDER_CLASS_API",
    "SecretManagerAccess",
    "SecretManagerAccessArgs",
    "env_vars",
    "secret_provider_class_spec",
    "volumes",
]

SECRET_ENV_DIR = "/var/run/secrets/agentswarm/env"
"""Where the ``agents.secret_env`` Secret is mounted, one file per name."""
SECRET_MANAGER_DIR = "/var/run/secrets/agentswarm/secret-manager"
"""Where the Secret Manager CSI volume is mounted, one file per name."""
CSI_DRIVER = "secrets-store-gke.csi.k8s.io"
"""The CSI driver of GKE's managed Secret Manager add-on."""
SECRET_PROVIDER_CLASS_API = "secrets-store.csi.x-k8s.io/v1"
"""apiVersion of ``SecretProviderClass``."""
LIST_VARIABLE = "AGENTSWARM_SECRET_ENV_FILES"
"""The runtime's list of names to read from ``NAME_FILE`` (``agentswarm.secrets_env.LIST_VARIABLE``)."""

_ENV_VOLUME = "secret-env"
_MANAGER_VOLUME = "secret-manager"


def env_vars(cfg: AgentsConfig) -> list[dict[str, Any]]:
    """Plain variables, then one ``NAME_FILE`` path per secret and the list of secret names."""
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(cfg.env.items())]
    files = {name: f"{SECRET_ENV_DIR}/{name}" for name in cfg.secret_env}
    files |= {name: f"{SECRET_MANAGER_DIR}/{name}" for name in cfg.secret_manager}
    env += [{"name": f"{name}_FILE", "value": path} for name, path in sorted(files.items())]
    if files:
        env.append({"name": LIST_VARIABLE, "value": ",".join(sorted(files))})
    return env


def volumes(
    cfg: AgentsConfig, secret_name: pulumi.Input[str] | None, provider_class: pulumi.Input[str] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) of the agent pod for its secret files; both empty when there are none."""
    vols: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if cfg.secret_env and secret_name is not None:
        vols.append(
            {
                "name": _ENV_VOLUME,
                # 0440 with the pod's fsGroup: readable by the runtime user, by nobody else.
                "secret": {"secretName": secret_name, "defaultMode": 0o440},
            }
        )
        mounts.append({"name": _ENV_VOLUME, "mountPath": SECRET_ENV_DIR, "readOnly": True})
    if cfg.secret_manager and provider_class is not None:
        vols.append(
            {
                "name": _MANAGER_VOLUME,
                "csi": {
                    "driver": CSI_DRIVER,
                    "readOnly": True,
                    "volumeAttributes": {"secretProviderClass": provider_class},
                },
            }
        )
        mounts.append({"name": _MANAGER_VOLUME, "mountPath": SECRET_MANAGER_DIR, "readOnly": True})
    return vols, mounts


def secret_provider_class_spec(cfg: AgentsConfig) -> dict[str, Any]:
    """The add-on's ``SecretProviderClass`` spec: provider ``gke``, one file per name.

    ``parameters.secrets`` is a YAML list in a string; JSON is YAML, and ``json.dumps`` quotes every value.
    """
    secrets = [{"resourceName": ref, "path": name} for name, ref in sorted(cfg.secret_manager.items())]
    return {"provider": "gke", "parameters": {"secrets": json.dumps(secrets)}}


def secret_id(ref: str) -> tuple[str, str]:
    """``projects/P/secrets/S/versions/V`` -> (P, S): what an IAM binding on the secret names."""
    parts = ref.split("/")
    return parts[1], parts[3]


class SecretManagerAccessArgs(TypedDict):
    secrets: list[str]
    """Secret Manager secret versions (``projects/P/secrets/S/versions/V``) the agents read."""
    service_account_email: pulumi.Input[str]
    """Email of the agents' GCP service account (Workload Identity)."""


class SecretManagerAccess(pulumi.ComponentResource):
    """``roles/secretmanager.secretAccessor`` on each secret (not the project) for the agents' GSA."""

    def __init__(
        self, name: str, args: SecretManagerAccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agentswarm:index:SecretManagerAccess", name, None, opts)
        member = pulumi.Output.from_input(args["service_account_email"]).apply(
            lambda e: f"serviceAccount:{e}"
        )
        for project, secret in sorted({secret_id(ref) for ref in args["secrets"]}):
            gcp.secretmanager.SecretIamMember(
                f"{name}-{project}-{secret}",
                project=project,
                secret_id=secret,
                role="roles/secretmanager.secretAccessor",
                member=member,
                opts=_k8s.child_opts(self),
            )
        self.register_outputs({})
