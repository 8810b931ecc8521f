"""The config models' foundation: the settings shared with the runtime, the strict base model and the
field types (CIDR, quantity, DNS label, resources) every section uses."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from components.config_rules import check_rules

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

# Settings the runtime reads too, each defined once on this side; tests/infra/test_infra_contract.py asserts
# them equal to the defaults of agentswarm.settings across the package boundary.
COORDINATOR_PORT = 8080
"""The coordinator's HTTP + websocket port (AGENTSWARM_PORT); kind maps the same port on the host."""
DEFAULT_HANDLER = "agentswarm.handlers.steps:handle"
"""``module:function`` of the task handler an agent runs unless told otherwise (AGENTSWARM_HANDLER)."""
HANDLER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
"""What a handler reference looks like: a dotted module path, a colon, a function name."""
QUEUE_NAMESPACE = "agentswarm"
"""The runtime's AGENTSWARM_NAMESPACE (stream, consumer and key prefix), which the components leave at its
default; the KEDA trigger names the stream and consumer from it."""
CHECKPOINT_DIR = "/var/lib/agentswarm"
"""Where an agent's checkpoint volume is mounted (AGENTSWARM_CHECKPOINT_DIR)."""
RETENTION_SECONDS = 7 * 24 * 3600
"""How long the broker keeps a finished task's records (AGENTSWARM_RETENTION_SECONDS); 0 = forever."""
NODE_PORT = 30080
"""kind: the coordinator's fixed NodePort, mapped to the host port."""


def _check_cidr(value: str) -> str:
    """``value`` unchanged if it is a network address with its prefix (host bits zero), else ValueError."""
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"not a CIDR block ({exc})") from None
    return value


Cidr = Annotated[str, AfterValidator(_check_cidr)]
Quantity = Annotated[str, Field(pattern=_QUANTITY, description="Kubernetes quantity, e.g. `500m`, `1Gi`.")]
DnsLabel = Annotated[str, Field(pattern=_DNS_LABEL, max_length=63)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="after")
    def _rules(self) -> Self:
        check_rules(self)  # the cross-field rules of this model's class, from the one table
        return self


class ResourceAmounts(_Model):
    """CPU and memory amounts (Kubernetes quantities)."""

    cpu: Quantity | None = Field(default=None, description="CPU, e.g. `250m` or `1`.")
    memory: Quantity | None = Field(default=None, description="Memory, e.g. `256Mi`.")


class Resources(_Model):
    """Container requests and limits."""

    requests: ResourceAmounts = Field(default_factory=ResourceAmounts, description="Scheduling requests.")
    limits: ResourceAmounts = Field(default_factory=ResourceAmounts, description="Hard limits.")

    def to_k8s(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for kind in ("requests", "limits"):
            amounts = getattr(self, kind).model_dump(exclude_none=True)
            if amounts:
                out[kind] = amounts
        return out


def _resources(cpu: str, memory: str, memory_limit: str) -> Resources:
    """Requests of both, a memory limit, no CPU limit (throttling hurts more than sharing)."""
    return Resources(
        requests=ResourceAmounts(cpu=cpu, memory=memory), limits=ResourceAmounts(memory=memory_limit)
    )
