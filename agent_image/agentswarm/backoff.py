"""Exponential backoff with jitter: the one retry pace of the runtime (agents, coordinator, clients, local).

Every retry loop that waits for something to come back (a broker, a coordinator, a crashed child)
asks a :class:`Backoff` for its next delay and resets it once things work again. The jitter spreads
many waiters (all agents after a broker restart) over time instead of letting them retry in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays growing by ``factor`` from ``initial`` up to ``maximum``, each shortened by random jitter.

    The n-th delay after a :meth:`reset` is drawn from ``[d * (1 - jitter), d]`` where
    ``d = min(maximum, initial * factor ** (n - 1))``; ``jitter=0`` gives the exact schedule.
    """

    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0
    #: Fraction of each delay that is random (0 = none, 1 = anywhere from 0 to the full delay).
    jitter: float = 0.5
    _current: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum <= 0:
            raise ValueError(f"Backoff delays must be positive, got {self.initial} and {self.maximum}")
        if self.factor < 1:
            raise ValueError(f"Backoff factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff jitter must be between 0 and 1, got {self.jitter}")

    @property
    def current(self) -> float:
        """The un-jittered delay last handed out (0 right after a reset)."""
        return self._current

    def next_delay(self) -> float:
        """The next delay in seconds; each call grows the un-jittered delay until ``maximum``."""
        grown = self.initial if self._current == 0 else self._current * self.factor
        self._current = min(self.maximum, grown)
        return random.uniform(self._current * (1 - self.jitter), self._current)

    def reset(self) -> None:
        """Start over at ``initial``: call it after an attempt that worked."""
        self._current = 0.0
