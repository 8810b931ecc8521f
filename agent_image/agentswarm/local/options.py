"""What ``agentswarm local`` is asked to run (:class:`LocalOptions`) and the error it reports to the user."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from agentswarm import defaults
from agentswarm.local.autoscale import (
    DEFAULT_ACTIVATION,
    DEFAULT_COOLDOWN,
    DEFAULT_INTERVAL,
    DEFAULT_STABILIZATION,
    DEFAULT_TARGET,
    ScalePolicy,
    ScaleRangeError,
    parse_range,
)


class LocalError(RuntimeError):
    """Set-up failed in a way the user can fix (port busy, redis-server missing, state dir locked)."""


@dataclass
class LocalOptions:
    """The ``agentswarm local`` command line as an object (tests build it directly)."""

    agents: int = defaults.LOCAL_AGENTS
    broker: str = defaults.LOCAL_BROKER
    redis_url: str | None = None
    #: ``module:function``; ``None`` = the ``AGENTSWARM_HANDLER`` setting (or its default).
    handler: str | None = None
    state_dir: Path = defaults.LOCAL_STATE_DIR
    port: int = defaults.DEFAULT_PORT
    host: str = defaults.LOCAL_HOST
    token: str | None = None
    demo: bool = False
    demo_tasks: int = defaults.DEMO_TASKS
    demo_steps: int = defaults.DEMO_STEPS
    demo_delay: float = defaults.DEMO_DELAY
    #: Open the dashboard in a web browser once the swarm is up (the ``webbrowser`` module decides which).
    open: bool = False
    #: Seconds the supervisor waits for a child to exit after SIGTERM before SIGKILLing its group.
    stop_timeout: float = defaults.LOCAL_STOP_TIMEOUT
    #: ``MIN..MAX``: agents follow the backlog within this range (replaces ``agents``); None = fixed pool.
    autoscale: str | None = None
    autoscale_target: int = DEFAULT_TARGET
    autoscale_activation: int = DEFAULT_ACTIVATION
    autoscale_interval: float = DEFAULT_INTERVAL
    autoscale_cooldown: float = DEFAULT_COOLDOWN
    autoscale_stabilization: float = DEFAULT_STABILIZATION
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def check(self) -> None:
        """Raise :class:`LocalError` naming the option, its value and what is allowed."""
        if self.agents < 1:
            raise LocalError(f"--agents must be at least 1, got {self.agents}")
        if self.broker not in ("nats", "redis"):
            raise LocalError(f"--broker must be 'nats' or 'redis', got {self.broker!r}")
        if self.redis_url and self.broker != "redis":
            raise LocalError("--redis-url needs --broker redis")
        if self.autoscale is not None:
            self.scale_policy()
            if self.autoscale_interval <= 0:
                raise LocalError(f"--autoscale-interval must be above 0, got {self.autoscale_interval}")

    def scale_policy(self) -> ScalePolicy:
        """The autoscaling rule of ``--autoscale`` and its tuning options (:class:`LocalError` if invalid)."""
        try:
            low, high = parse_range(self.autoscale or "")
            policy = ScalePolicy(
                low,
                high,
                target=self.autoscale_target,
                activation=self.autoscale_activation,
                cooldown=self.autoscale_cooldown,
                stabilization=self.autoscale_stabilization,
            )
            policy.check()
        except ScaleRangeError as exc:
            raise LocalError(str(exc)) from None
        return policy
