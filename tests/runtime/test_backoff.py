"""The one retry pace of the runtime: exponential growth to a cap, jitter within its bounds, reset."""

from __future__ import annotations

import pytest
from agentswarm.backoff import Backoff


def test_backoff_grows_to_the_cap_and_resets() -> None:
    b = Backoff(initial=0.1, maximum=1.0)
    delays = [b.next_delay() for _ in range(10)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert max(delays[-3:]) > 0.5  # reached the cap region
    b.reset()
    assert b.next_delay() <= 0.1


def test_without_jitter_the_schedule_is_exact() -> None:
    b = Backoff(initial=0.05, maximum=2.0, jitter=0)
    assert [b.next_delay() for _ in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    b.reset()
    assert b.current == 0.0
    assert b.next_delay() == 0.05


def test_jitter_stays_within_its_fraction_of_each_delay() -> None:
    for jitter in (0.25, 0.5, 1.0):
        b = Backoff(initial=1.0, maximum=8.0, factor=2.0, jitter=jitter)
        for _ in range(50):
            d = b.next_delay()
            assert b.current * (1 - jitter) <= d <= b.current
    # Jitter really varies the delays (fifty equal draws would mean no randomness at all).
    b = Backoff(initial=1.0, maximum=1.0)
    assert len({b.next_delay() for _ in range(50)}) > 1


def test_a_cap_below_the_first_delay_caps_it_too() -> None:
    b = Backoff(initial=10.0, maximum=5.0, jitter=0)
    assert [b.next_delay(), b.next_delay()] == [5.0, 5.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0}, "must be positive"),
        ({"maximum": -1}, "must be positive"),
        ({"factor": 0.5}, "factor must be at least 1"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
