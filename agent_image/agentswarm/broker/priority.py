"""The order in which an agent looks at the priority classes for new tasks, with the starvation rule.

Both backends keep one queue per class (Redis: a stream per class, NATS: a subject and consumer per class)
and ask a :class:`ClassOrder` which class to read next. New tasks come from the highest class that has one
(``high``, then ``normal``, then ``low``), except that a class passed over :data:`STARVATION_LIMIT` times in
a row (that many new tasks taken from classes above it by this consumer) is looked at first once. If it has
a task waiting, that one is taken; if it is empty, its count starts again. So a waiting ``low`` task is
passed over at most ``STARVATION_LIMIT`` times by each agent, however many higher tasks keep arriving, and
the rule costs at most one extra (empty) read per ``STARVATION_LIMIT`` claims.

The counts live in the claiming process, per consumer: deterministic for one agent, and with many agents
each one applies the rule to the tasks it takes.
"""

from __future__ import annotations

from agentswarm.broker.types import PRIORITIES, STARVATION_LIMIT, Priority


class ClassOrder:
    """Per consumer: which class to read new tasks from next (see the module docstring)."""

    def __init__(self, limit: int = STARVATION_LIMIT) -> None:
        self.limit = limit
        self.passed: dict[Priority, int] = dict.fromkeys(PRIORITIES, 0)

    def order(self) -> list[tuple[Priority, bool]]:
        """``(class, starved)`` pairs in the order to read them: starved classes first (lowest first, one
        task each), then every class from the highest down."""
        starved = [c for c in reversed(PRIORITIES) if self.passed[c] >= self.limit]
        return [(c, True) for c in starved] + [(c, False) for c in PRIORITIES]

    def took(self, cls: Priority, n: int = 1) -> None:
        """``n`` new tasks were taken from ``cls``: every class below it was passed over ``n`` times."""
        if n <= 0:
            return
        self.passed[cls] = 0
        for lower in PRIORITIES[PRIORITIES.index(cls) + 1 :]:
            self.passed[lower] += n

    def empty(self, cls: Priority) -> None:
        """``cls`` had nothing waiting: nothing of it was passed over."""
        self.passed[cls] = 0
