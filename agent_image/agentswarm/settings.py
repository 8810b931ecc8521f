"""Runtime configuration from ``AGENTSWARM_*`` environment variables (see docs/runtime-contract.md).

One :class:`Settings` object serves the coordinator, the agents and the local supervisor. Bad values fail
at start-up with one line per bad variable naming it, the value and what is allowed
(:func:`load_settings` raises :class:`SettingsError`), instead of surfacing later as a connection error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentswarm import defaults
from agentswarm.defaults import ENV_PREFIX
from agentswarm.secret_files import read_secret_file, read_token_file

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SettingsError(ValueError):
    """Configuration is invalid; ``str()`` names every bad variable, its value and what is allowed."""


class Settings(BaseSettings):
    """All runtime settings. Environment variable = ``AGENTSWARM_`` + field name in upper case."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    # -- broker (both roles) ------------------------------------------------------------------------------
    broker: Literal["redis", "nats"] = Field(default=defaults.DEFAULT_BROKER, description="queue backend")
    redis_url: str = Field(
        default=defaults.DEFAULT_REDIS_URL, description="redis:// or rediss://, no password"
    )
    redis_password: SecretStr | None = Field(
        default=None, description="prefer AGENTSWARM_REDIS_PASSWORD_FILE: env values leak into crash dumps"
    )
    redis_password_file: Path | None = Field(
        default=None,
        description="file holding the Redis password (a mounted Secret); read once at start-up",
    )
    redis_ca_file: Path | None = Field(default=None, description="CA bundle for rediss:// (Memorystore)")
    nats_url: str = Field(default=defaults.DEFAULT_NATS_URL, description="nats://HOST:PORT")
    namespace: str = Field(
        default=defaults.DEFAULT_NAMESPACE,
        description="prefix of every stream/key/bucket, so several swarms (or tests) can share one server",
    )

    # -- queue tunables -----------------------------------------------------------------------------------
    claim_idle_ms: int = Field(
        default=60_000,
        ge=100,
        description="a delivery whose keep-alive is older than this is taken over by another agent "
        "(Redis XAUTOCLAIM min-idle-time; JetStream AckWait)",
    )
    keepalive_interval_ms: int = Field(
        default=0,
        ge=0,
        description="how often an agent refreshes its in-flight delivery; 0 = claim_idle_ms / 4",
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="unproductive deliveries (the handler raised, or the agent died without checkpoint "
        "progress) before a task is dead-lettered",
    )
    retry_backoff_ms: int = Field(
        default=500,
        ge=0,
        le=30_000,
        description="delay before retrying a failed attempt; doubles per attempt, capped at 30 s",
    )
    max_ack_pending: int = Field(
        default=10_000,
        ge=1,
        description="JetStream MaxAckPending of the shared consumer (>= number of agents x concurrency)",
    )
    claim_block_ms: int = Field(default=1000, ge=10, description="how long one claim waits for new tasks")
    retention_seconds: int = Field(
        default=defaults.DEFAULT_RETENTION_SECONDS,
        ge=0,
        description="how long a finished task's result, event log and records, dead letters and the swarm "
        "feed's entries are kept; 0 = keep everything forever",
    )

    # -- agent --------------------------------------------------------------------------------------------
    agent_id: str = Field(default="agent-0", description="stable identity = StatefulSet pod name")
    checkpoint_dir: Path = Field(default=defaults.DEFAULT_CHECKPOINT_DIR, description="per-agent volume")
    checkpoint_backend: Literal["file", "broker"] = Field(
        default="file",
        description="'file': the agent volume (a task resumes on the agent that owned it); "
        "'broker': Redis hash / NATS KV, so any agent that takes the task over resumes it",
    )
    broker_state_dir: Path | None = Field(
        default=None,
        description="where the broker keeps an agent's state that must survive its restarts (the NATS "
        "in-flight ledger), apart from the checkpoints; default <checkpoint_dir>/broker-state",
    )
    concurrency: int = Field(
        default=defaults.DEFAULT_CONCURRENCY,
        ge=1,
        le=1000,
        description="tasks one agent process runs at once (for handlers that wait on I/O, such as LLM "
        "calls); all share the agent's identity, each has its own checkpoint and events",
    )
    checkpoint_keep: int = Field(default=2, ge=2, le=100, description="checkpoint versions kept per task")
    handler: str = Field(default=defaults.DEFAULT_HANDLER, description="module:function of the handler")
    heartbeat_interval_seconds: float = Field(
        default=2.0, gt=0, description="how often .heartbeat is touched"
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        gt=0,
        description="on SIGTERM the agent waits this long for the handler's next checkpoint, then exits "
        "(keep it below terminationGracePeriodSeconds)",
    )

    rate_limits: dict[str, float] = Field(
        default_factory=dict,
        description="rates of the limits handlers take with ctx.limit(key): a JSON object of key -> units "
        'per second, e.g. {"openai:gpt-4o": 10}; shared by every agent',
    )
    tree_ttl_seconds: int = Field(
        default=defaults.DEFAULT_TREE_TTL_SECONDS,
        ge=60,
        description="a task tree's records (children, waiting parents, shared context) expire this long "
        "after their last write",
    )
    tree_log: str | None = Field(
        default=None,
        description="a file the deterministic demo handlers (agentswarm.handlers.tree) append their runs to, "
        "for tests and observers; set by the operator, never taken from a payload",
    )

    # -- token budget (agentswarm/budget.py) --------------------------------------------------------------
    budget_tokens_per_day: int = Field(
        default=0, ge=0, description="swarm-wide LLM tokens per UTC day; 0 = no total limit"
    )
    budget_model_tokens_per_day: dict[str, int] = Field(
        default_factory=dict, description='per-model tokens per UTC day, JSON {"model": tokens}'
    )

    @field_validator("budget_model_tokens_per_day")
    @classmethod
    def _check_model_budget(cls, v: dict[str, int]) -> dict[str, int]:
        if any(not k or tokens < 1 for k, tokens in v.items()):
            raise ValueError('must be a JSON object {"model": positive tokens per day}')
        return v

    # -- coordinator --------------------------------------------------------------------------------------
    port: int = Field(default=defaults.DEFAULT_PORT, ge=1, le=65535, description="HTTP + websocket port")
    host: str = Field(default="0.0.0.0", description="bind address of the coordinator")
    api_token: SecretStr | None = Field(
        default=None, description="bearer token for websocket clients; prefer AGENTSWARM_API_TOKEN_FILE"
    )
    api_token_file: Path | None = Field(
        default=None,
        description="file of valid bearer tokens, one per line (a mounted Secret: current and next during a "
        "rotation); re-read when it changes, no restart needed",
    )
    shutdown_drain_seconds: float = Field(
        default=5.0, ge=0, description="keep serving after SIGTERM, then close websockets with 1012"
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        if re.match(r"^rediss?://[^/@]*:[^/@]+@", v):
            raise ValueError("must not contain a password; set AGENTSWARM_REDIS_PASSWORD instead")
        return v

    @field_validator("nats_url")
    @classmethod
    def _check_nats_url(cls, v: str) -> str:
        for url in v.split(","):
            if not url.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError("must be nats://HOST:PORT (comma-separated for a cluster)")
        return v

    @field_validator("handler")
    @classmethod
    def _check_handler(cls, v: str) -> str:
        if not defaults.HANDLER_PATTERN.match(v):
            raise ValueError("must be 'package.module:function'")
        return v

    @field_validator("agent_id", "namespace")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be 1-64 characters from A-Z, a-z, 0-9, '_' and '-'")
        return v

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        """``*_FILE`` variants: secrets reach pods as files, never as env values; not both for one secret."""
        if self.redis_password_file is not None:
            if self.redis_password is not None and self.redis_password.get_secret_value():
                raise ValueError("set AGENTSWARM_REDIS_PASSWORD_FILE or AGENTSWARM_REDIS_PASSWORD, not both")
            try:
                password = read_secret_file(self.redis_password_file)
            except OSError as exc:
                raise ValueError(f"AGENTSWARM_REDIS_PASSWORD_FILE cannot be read: {exc.strerror}") from None
            if not password:
                raise ValueError("AGENTSWARM_REDIS_PASSWORD_FILE is empty")
            self.redis_password = SecretStr(password)
        if self.api_token_file is not None:
            if self.api_token is not None and self.api_token.get_secret_value():
                raise ValueError("set AGENTSWARM_API_TOKEN_FILE or AGENTSWARM_API_TOKEN, not both")
            try:
                tokens = read_token_file(self.api_token_file)
            except OSError as exc:
                raise ValueError(f"AGENTSWARM_API_TOKEN_FILE cannot be read: {exc.strerror}") from None
            if not tokens:
                raise ValueError("AGENTSWARM_API_TOKEN_FILE holds no token")
        return self

    @model_validator(mode="after")
    def _check_combination(self) -> Settings:
        if self.redis_ca_file is not None and not self.redis_url.startswith("rediss://"):
            raise ValueError("AGENTSWARM_REDIS_CA_FILE is set but AGENTSWARM_REDIS_URL is not rediss://")
        if self.keepalive_interval_ms and self.keepalive_interval_ms >= self.claim_idle_ms:
            raise ValueError(
                f"AGENTSWARM_KEEPALIVE_INTERVAL_MS={self.keepalive_interval_ms} must be below "
                f"AGENTSWARM_CLAIM_IDLE_MS={self.claim_idle_ms}, or long tasks get taken over while running"
            )
        return self

    @property
    def keepalive_seconds(self) -> float:
        """Effective keep-alive period in seconds."""
        ms = self.keepalive_interval_ms or self.claim_idle_ms // 4
        return max(ms, 50) / 1000.0

    @property
    def broker_state_path(self) -> Path:
        """The effective ``broker_state_dir``."""
        return self.broker_state_dir or self.checkpoint_dir / "broker-state"

    @property
    def heartbeat_file(self) -> Path:
        """The exec probe's heartbeat file: ``$AGENTSWARM_CHECKPOINT_DIR/.heartbeat``."""
        return self.checkpoint_dir / defaults.HEARTBEAT_FILE


def env_name(field: str) -> str:
    """The environment variable of a settings field: ``redis_url`` -> ``AGENTSWARM_REDIS_URL``."""
    return ENV_PREFIX + field.upper()


def to_env(overrides: Mapping[str, Any]) -> dict[str, str]:
    """Settings overrides (field name -> value) as the environment of a child process.

    The one place where settings become ``AGENTSWARM_*`` strings, so that a supervisor hands its children
    typed values (names checked against :class:`Settings`) and each child reads them back unchanged.
    """
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise KeyError(f"not settings fields: {', '.join(unknown)}")
    env: dict[str, str] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[env_name(name)] = str(value)
    return env


#: AGENTSWARM_* variables read by other parts of the runtime (clients, logging, example handlers).
OTHER_KNOWN_VARIABLES = frozenset(
    {
        "AGENTSWARM_LOG_LEVEL",
        "AGENTSWARM_URL",
        "AGENTSWARM_CA_FILE",
        "AGENTSWARM_LLM_BASE_URL",
        "AGENTSWARM_LLM_MODEL",
        "AGENTSWARM_LLM_API_KEY",
        "AGENTSWARM_LLM_TIMEOUT_SECONDS",
        "AGENTSWARM_LLM_MAX_RETRIES",
        "AGENTSWARM_LLM_TOOLS",
        "AGENTSWARM_LLM_METRICS_PORT",
        "AGENTSWARM_LLM_PRICES",
        "AGENTSWARM_PYDANTIC_AI_AGENT",
        "AGENTSWARM_PYDANTIC_AI_ALLOWED",
        "AGENTSWARM_SECRET_ENV_FILES",
    }
)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``AGENTSWARM_*`` variables that nothing reads: most likely typos (``AGENTSWARM_BROKR``)."""
    env = os.environ if environ is None else environ
    known = {env_name(name) for name in Settings.model_fields} | OTHER_KNOWN_VARIABLES
    # the path variables of secrets delivered as files (agentswarm.secrets_env)
    known |= {f"{n.strip().upper()}_FILE" for n in env.get("AGENTSWARM_SECRET_ENV_FILES", "").split(",")}
    return sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)


def _describe(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error.get("loc", ()) if p != "__root__"]
    value = error.get("input")
    msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc:
        return msg
    var = env_name(loc[0])
    shown = "<secret>" if "password" in loc[0] or "token" in loc[0] else repr(value)
    return f"{var}={shown}: {msg}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (``overrides`` win); raise :class:`SettingsError` when invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe(dict(e)) for e in exc.errors()]
        raise SettingsError("invalid agentswarm configuration:\n  " + "\n  ".join(lines)) from None
