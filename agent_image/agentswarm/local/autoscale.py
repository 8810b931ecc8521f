"""Local mode's autoscaler: agent processes follow the broker's backlog, down to zero, by the rule KEDA and
the Horizontal Pod Autoscaler apply to the agent StatefulSet on a cluster.

The rule (:class:`ScalePolicy`, pure and clock-driven so it is tested without processes):

* Every ``interval`` seconds read :meth:`Broker.backlog` (tasks queued or handed out and not acknowledged;
  see docs/autoscaling.md for why this metric and not the consumer group's lag).
* *Active* while the backlog is above ``activation`` (KEDA's activation threshold). While active the wanted
  count is ``ceil(backlog / target)`` (the HPA's rule for an external metric with an average-value target),
  at least 1, within ``min..max``. Scaling up happens at once.
* Scaling down towards 1 takes the highest wanted count of the last ``stabilization`` seconds (the HPA's
  scale-down stabilisation window), so a draining queue does not stop agents that are needed a moment later.
* The last step to 0 (when ``min`` is 0) is taken only after ``cooldown`` seconds without activity (KEDA's
  ``cooldownPeriod``).

Scaling in stops the highest ordinals first, like a StatefulSet: ``agent-N`` gets SIGTERM, stores a
checkpoint at its handler's next step and exits with the task unacknowledged; because the backlog still
counts that task, at least one agent stays up and takes it over after ``claim_idle_ms`` (or the same
identity does when it is started again). With the broker checkpoint backend, which local mode uses by default
when autoscaling, the agent taking over resumes from that checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agentswarm.broker import Broker

#: Tasks outstanding per agent that the autoscaler aims at (one task at a time per agent).
DEFAULT_TARGET = 1
#: Backlog above which the swarm is active (KEDA's ``activationLagCount``; 0 = any task wakes it).
DEFAULT_ACTIVATION = 0
#: Seconds between two backlog readings (KEDA's ``pollingInterval`` is 30 s on a cluster).
DEFAULT_INTERVAL = 1.0
#: Seconds without activity before the last agents stop (KEDA's ``cooldownPeriod``, 300 s on a cluster).
DEFAULT_COOLDOWN = 30.0
#: Scale-down stabilisation window in seconds (the HPA's ``scaleDown.stabilizationWindowSeconds``).
DEFAULT_STABILIZATION = 10.0

_RANGE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*$")


class ScaleRangeError(ValueError):
    """An ``--autoscale`` range is malformed or empty."""


def parse_range(text: str) -> tuple[int, int]:
    """``"0..8"`` -> ``(0, 8)``; raise :class:`ScaleRangeError` naming the value and what is allowed."""
    match = _RANGE.match(text or "")
    if not match:
        raise ScaleRangeError(f"--autoscale must look like MIN..MAX (for example 0..8), got {text!r}")
    low, high = int(match.group(1)), int(match.group(2))
    if high < 1 or low > high:
        raise ScaleRangeError(f"--autoscale {text!r}: need 0 <= MIN <= MAX and MAX >= 1")
    return low, high


@dataclass
class ScalePolicy:
    """The scaling rule (see the module docstring); :meth:`decide` is called once per reading."""

    min_agents: int
    max_agents: int
    target: int = DEFAULT_TARGET
    activation: int = DEFAULT_ACTIVATION
    cooldown: float = DEFAULT_COOLDOWN
    stabilization: float = DEFAULT_STABILIZATION
    _last_active: float | None = field(default=None, init=False)
    _recent: deque[tuple[float, int]] = field(default_factory=deque, init=False)

    def check(self) -> None:
        """Raise :class:`ScaleRangeError` naming the setting, its value and what is allowed."""
        if not 0 <= self.min_agents <= self.max_agents or self.max_agents < 1:
            raise ScaleRangeError(
                f"autoscale range {self.min_agents}..{self.max_agents}: need 0 <= MIN <= MAX, MAX >= 1"
            )
        if self.target < 1:
            raise ScaleRangeError(f"--autoscale-target must be at least 1, got {self.target}")
        if self.activation < 0:
            raise ScaleRangeError(f"--autoscale-activation must be 0 or more, got {self.activation}")
        if self.cooldown < 0 or self.stabilization < 0:
            raise ScaleRangeError(
                "--autoscale-cooldown and --autoscale-stabilization must be 0 or more seconds"
            )

    def decide(self, now: float, backlog: int, current: int) -> int:
        """The number of agents to run now, given the ``backlog`` read at ``now`` and ``current`` agents."""
        low, high = self.min_agents, self.max_agents
        active = backlog > self.activation
        if active:
            self._last_active = now
        idle_long = self._last_active is None or now - self._last_active >= self.cooldown
        if not active and (current == 0 or (low == 0 and idle_long)):
            wanted = low  # KEDA: stay at (or go back to) MIN, which may be zero
        else:
            # The HPA's rule, which also follows the metric below the activation threshold.
            wanted = min(max(math.ceil(backlog / self.target), low, 1), high)
        self._recent.append((now, wanted))
        while self._recent and now - self._recent[0][0] > self.stabilization:
            self._recent.popleft()
        if wanted == 0 or wanted >= current:
            return wanted
        # Scale-down stabilisation (1..max): the highest recommendation of the window, never above current.
        return min(current, max(r for _, r in self._recent))


@dataclass(frozen=True)
class Sample:
    """One reading of the autoscaler: when (monotonic seconds), the backlog, and agents running after it."""

    at: float
    backlog: int
    agents: int


class Autoscaler:
    """Applies :class:`ScalePolicy` to a pool of agent ordinals ``0..max-1``.

    ``start(i)`` must start agent ``i``; ``stop(i)`` must stop it gracefully (SIGTERM, wait, SIGKILL) and
    return once it is gone; ``running(i)`` says whether it runs. The broker is any connected
    :class:`Broker`; a failed reading keeps the current size and is retried at the next interval.
    """

    def __init__(
        self,
        policy: ScalePolicy,
        broker: Broker,
        *,
        start: Callable[[int], None],
        stop: Callable[[int], Awaitable[None]],
        running: Callable[[int], bool],
        interval: float = DEFAULT_INTERVAL,
        say: Callable[[str], None] = lambda _text: None,
    ) -> None:
        self.policy = policy
        self.broker = broker
        self._start = start
        self._stop = stop
        self._running = running
        self.interval = interval
        self.say = say
        #: Ordinals being stopped (SIGTERM sent, not exited yet); not counted, not restarted.
        self.stopping: set[int] = set()
        #: Ordinals the autoscaler wants running (the supervisor restarts only these).
        self.wanted: set[int] = set()
        self.samples: list[Sample] = []
        self.scale_ins = 0
        self._stops: set[asyncio.Task[None]] = set()

    @property
    def agents(self) -> int:
        """Agents counted as running: wanted and not being stopped."""
        return len(self.wanted)

    def scale_to(self, count: int) -> None:
        """Start the lowest free ordinals or stop the highest running ones until ``count`` are wanted."""
        count = max(0, min(count, self.policy.max_agents))
        for i in range(self.policy.max_agents):
            if len(self.wanted) >= count:
                break
            if i in self.wanted or i in self.stopping:
                continue
            self.wanted.add(i)
            if not self._running(i):
                self._start(i)
        while len(self.wanted) > count:
            i = max(self.wanted)
            self.wanted.discard(i)
            self.stopping.add(i)
            self.scale_ins += 1
            task = asyncio.create_task(self._stop_one(i), name=f"scale-in-{i}")
            self._stops.add(task)
            task.add_done_callback(self._stops.discard)

    async def _stop_one(self, i: int) -> None:
        try:
            await self._stop(i)
        finally:
            self.stopping.discard(i)

    async def step(self, now: float | None = None) -> int:
        """Read the backlog once and resize; returns the number of agents wanted afterwards."""
        now = time.monotonic() if now is None else now
        backlog = await self.broker.backlog()
        before = self.agents
        wanted = self.policy.decide(now, backlog, before)
        if wanted != before:
            self.scale_to(wanted)
            self.say(f"autoscale: backlog {backlog}, agents {before} -> {self.agents}")
        self.samples.append(Sample(now, backlog, self.agents))
        return self.agents

    async def run(self) -> None:
        """Resize every ``interval`` seconds until cancelled; agents being stopped finish stopping."""
        try:
            while True:
                try:
                    await self.step()
                except Exception as exc:  # broker restarting: keep the size, read again next time
                    self.say(f"autoscale: cannot read the backlog ({exc}); keeping {self.agents} agent(s)")
                await asyncio.sleep(self.interval)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._stops, return_exceptions=True)
