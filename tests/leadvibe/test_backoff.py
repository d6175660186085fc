"""Retry delays: doubling from half a second to a cap, jittered, reset after a success."""

from __future__ import annotations

from leadvibe.backoff import Backoff


def test_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(first=0.5, cap=30.0)
    ceilings = [backoff.next_delay(draw=lambda: 1.0) for _ in range(10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_each_delay_is_between_half_and_all_of_its_ceiling() -> None:
    backoff = Backoff(first=1.0, cap=8.0)
    assert backoff.next_delay(draw=lambda: 0.0) == 0.5
    assert backoff.next_delay(draw=lambda: 0.5) == 1.5
    assert 2.0 <= backoff.next_delay() <= 4.0
    for _ in range(200):  # far past the cap, and never an overflow
        assert 4.0 <= backoff.next_delay() <= 8.0


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(first=0.5, cap=30.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay(draw=lambda: 1.0) == 0.5
