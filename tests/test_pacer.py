"""The pacer: a token bucket that never waits, only says when the next token is due."""

from __future__ import annotations

import pytest

from async_updater.ratelimit import Pacer


def test_it_starts_with_one_token_not_a_burst() -> None:
    p = Pacer(100.0, now=0.0)
    assert p.delay(0.0) == 0.0
    p.take(0.0)
    assert p.delay(0.0) == pytest.approx(0.01)


def test_tokens_come_at_the_rate_and_at_most_a_burst_s_worth_is_kept() -> None:
    p = Pacer(1000.0, now=0.0, burst_s=0.02)
    p.take(0.0)
    taken = 0
    while p.delay(10.0) == 0.0:  # a long idle: the bucket holds 20 ms' worth, not 10 s'
        p.take(10.0)
        taken += 1
    assert taken == 20


def test_a_new_rate_keeps_the_tokens_earned_so_far() -> None:
    p = Pacer(1.0, now=0.0)
    p.take(0.0)
    assert p.delay(0.5) == pytest.approx(0.5)  # half a token earned at 1/s
    p.set_rate(100.0, 0.5)
    assert p.delay(0.5) == pytest.approx(0.005)  # the other half at 100/s


def test_a_pause_grants_nothing_until_it_ends_and_cannot_be_shortened() -> None:
    p = Pacer(1000.0, now=0.0)
    assert p.pause_until(2.0)
    assert not p.pause_until(1.0)
    assert p.delay(1.5) == pytest.approx(0.5)
    assert p.delay(2.0) > 0.0  # it restarts from empty: no burst at the end of a pause
    assert p.delay(2.002) == 0.0


def test_a_token_given_back_is_there_again() -> None:
    p = Pacer(1.0, now=0.0)
    p.take(0.0)
    p.give_back()
    assert p.delay(0.0) == 0.0


def test_full_means_forgetting_it_loses_nothing() -> None:
    p = Pacer(10.0, now=0.0)
    p.take(0.0)
    assert not p.full(0.05)
    assert p.full(1.0)


def test_a_rate_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        Pacer(0.0, now=0.0)


def test_a_lower_rate_spaces_the_next_request_by_its_own_interval() -> None:
    """Half a token earned at 100/s is 5 ms since the last request: at 10/s the next one waits
    100 ms from that request, not the 5 ms left at the old rate (a bucket of one token would
    throttle a request sent at the old spacing, and take it for the new rate's)."""
    p = Pacer(100.0, now=0.0)
    p.take(0.0)
    p.set_rate(10.0, 0.005)
    assert p.delay(0.005) == pytest.approx(0.095)


def test_forgoing_keeps_one_token_of_those_earned_while_something_else_held_it_back() -> None:
    p = Pacer(1000.0, now=0.0, burst_s=0.02)
    p.take(0.0)
    p.forgo(1.0)  # a second held back by the in-flight cap: 20 tokens earned, one kept
    assert p.delay(1.0) == 0.0
    p.take(1.0)
    assert p.delay(1.0) == pytest.approx(0.001)
