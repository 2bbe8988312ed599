"""Token bucket (with a fake clock: no test sleeps) and the pure rate controller."""

from __future__ import annotations

import asyncio

import pytest

from async_updater.limiter import BucketClosed, ControllerSettings, RateController, TokenBucket

from .conftest import FakeClock


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- TokenBucket ------------------------------------------------------------------------


async def test_bucket_starts_with_one_token_not_full(clock: FakeClock) -> None:
    bucket = TokenBucket(100, clock=clock)
    await bucket.acquire()  # the one starting token: no wait
    second = asyncio.ensure_future(bucket.acquire())
    await settle()
    assert not second.done()
    clock.advance(0.0099)
    await settle()
    assert not second.done()
    clock.advance(0.0002)
    await settle()
    assert second.done()


async def test_bucket_grants_waiters_first_in_first_out_at_the_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(10, clock=clock)
    await bucket.acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    tasks = [asyncio.ensure_future(take(i)) for i in range(5)]
    await settle()
    for expected_done in range(1, 6):
        clock.advance(0.1)
        await settle()
        assert order == list(range(expected_done))
    await asyncio.gather(*tasks)


async def test_set_rate_applies_to_waiters_already_queued(clock: FakeClock) -> None:
    bucket = TokenBucket(1, clock=clock)
    await bucket.acquire()
    waiter = asyncio.ensure_future(bucket.acquire())
    await settle()
    clock.advance(0.05)
    await settle()
    assert not waiter.done()
    bucket.set_rate(100)  # 0.05 s at 1/s left 0.05 tokens; 0.0095 s more at 100/s fills one
    clock.advance(0.0096)
    await settle()
    assert waiter.done()


async def test_lowering_the_rate_delays_queued_waiters(clock: FakeClock) -> None:
    bucket = TokenBucket(100, clock=clock)
    await bucket.acquire()
    waiter = asyncio.ensure_future(bucket.acquire())
    await settle()
    bucket.set_rate(1)
    clock.advance(0.5)
    await settle()
    assert not waiter.done()
    clock.advance(0.51)
    await settle()
    assert waiter.done()


async def test_pause_grants_nothing_until_it_ends_even_with_tokens(clock: FakeClock) -> None:
    bucket = TokenBucket(1000, clock=clock)
    clock.advance(1.0)  # bucket refilled to its small capacity
    bucket.pause_until(clock.now() + 1.0)
    waiter = asyncio.ensure_future(bucket.acquire())
    await settle()
    clock.advance(0.999)
    await settle()
    assert not waiter.done()
    clock.advance(0.0021)  # pause over, refilling from empty: one token after 1 ms
    await settle()
    assert waiter.done()


async def test_pause_can_be_extended_but_not_shortened(clock: FakeClock) -> None:
    bucket = TokenBucket(1000, clock=clock)
    start = clock.now()
    bucket.pause_until(start + 1.0)
    bucket.pause_until(start + 0.5)
    assert bucket.paused_until == start + 1.0
    bucket.pause_until(start + 2.0)
    waiter = asyncio.ensure_future(bucket.acquire())
    await settle()
    clock.advance(1.5)
    await settle()
    assert not waiter.done()
    clock.advance(0.6)
    await settle()
    assert waiter.done()


async def test_cancelled_waiter_leaves_the_queue_and_the_next_one_gets_the_token(
    clock: FakeClock,
) -> None:
    bucket = TokenBucket(10, clock=clock)
    await bucket.acquire()
    first = asyncio.ensure_future(bucket.acquire())
    second = asyncio.ensure_future(bucket.acquire())
    await settle()
    first.cancel()
    await settle()
    assert bucket.waiting == 1
    clock.advance(0.1)
    await settle()
    assert second.done() and not second.cancelled()


async def test_waiter_cancelled_after_its_grant_gives_the_token_back(clock: FakeClock) -> None:
    bucket = TokenBucket(10, clock=clock)
    await bucket.acquire()
    granted = asyncio.ensure_future(bucket.acquire())
    await settle()
    clock.advance(0.1)  # grants the token; the task has not run yet
    granted.cancel()
    await settle()
    assert granted.cancelled()
    # The token came back, so the next acquire is immediate.
    nxt = asyncio.ensure_future(bucket.acquire())
    await settle()
    assert nxt.done()


async def test_burst_is_capped_after_a_long_idle(clock: FakeClock) -> None:
    bucket = TokenBucket(1000, clock=clock, burst_s=0.01)  # capacity 10
    clock.advance(60)
    granted = 0
    for _ in range(20):
        task = asyncio.ensure_future(bucket.acquire())
        await settle()
        if task.done():
            granted += 1
        else:
            task.cancel()
            await settle()
            break
    assert granted == 10


async def test_close_fails_every_waiter_and_later_acquires(clock: FakeClock) -> None:
    bucket = TokenBucket(1, clock=clock)
    await bucket.acquire()
    waiter = asyncio.ensure_future(bucket.acquire())
    await settle()
    bucket.close()
    with pytest.raises(BucketClosed):
        await waiter
    with pytest.raises(BucketClosed):
        await bucket.acquire()


def test_bucket_rejects_a_rate_that_is_not_positive(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, clock=clock)
    with pytest.raises(ValueError):
        TokenBucket(5, clock=clock).set_rate(-1)


# -- RateController -----------------------------------------------------------------------


def accepted(c: RateController, t: float, n: int) -> None:
    for _ in range(n):
        c.on_accepted(t)


def test_starts_at_the_ceiling_and_never_exceeds_it() -> None:
    c = RateController(100.0)
    assert c.rate_at(0.0) == 100.0
    accepted(c, 1.0, 50)
    assert c.rate_at(500.0) == 100.0


def test_first_throttle_cuts_by_the_throttle_backoff() -> None:
    c = RateController(1000.0)
    accepted(c, 10.0, 100)
    assert c.on_throttled(10.0, sent_at=9.98)
    assert c.rate == pytest.approx(900.0)
    assert c.cuts == 1


def test_second_429_in_same_round_trip_does_not_cut_again() -> None:
    c = RateController(1000.0)
    accepted(c, 10.0, 100)
    c.on_throttled(10.0, sent_at=9.98)
    rate = c.rate
    # Answers to requests sent before the cut were caused by the old rate.
    assert not c.on_throttled(10.01, sent_at=9.99)
    assert not c.on_throttled(10.02, sent_at=9.999)
    assert c.rate == rate and c.cuts == 1


def test_throttle_for_a_request_sent_after_the_cut_cuts_again() -> None:
    c = RateController(1000.0)
    accepted(c, 10.0, 100)
    c.on_throttled(10.0, sent_at=9.98)
    accepted(c, 10.02, 100)
    assert c.on_throttled(10.03, sent_at=10.005)
    assert c.cuts == 2 and c.rate < 900.0


def test_cut_is_deeper_when_most_recent_answers_were_throttled() -> None:
    c = RateController(3000.0)
    t = 10.0
    accepted(c, t, 30)
    for _ in range(69):
        c.on_throttled(t, sent_at=-1.0)  # before any cut: counted, no cut... except the first
    # The first throttle cut at 0.9; the window now shows ~70% throttled.
    before = c.rate_at(t + 0.01)
    assert c.on_throttled(t + 0.01, sent_at=t + 0.001)
    assert c.rate == pytest.approx(before * ControllerSettings().max_cut)  # bounded by max_cut


def test_cut_follows_the_accepted_share_between_the_bounds() -> None:
    c = RateController(1000.0, settings=ControllerSettings(window_s=1.0))
    accepted(c, 5.0, 70)
    for _ in range(29):
        c.on_throttled(5.0, sent_at=-10.0)
    c.cut_at = -1e9  # forget the first cut: this test is about the factor only
    c.rate = 1000.0
    c.on_throttled(5.0, sent_at=5.0)  # share accepted = 70/100
    assert c.rate == pytest.approx(700.0)


def cut_at_2400(c: RateController) -> None:
    accepted(c, 10.0, 100)
    assert c.on_throttled(10.0, sent_at=9.99)
    assert c.rate == pytest.approx(2160.0) and c.w_max == pytest.approx(2400.0)


def test_answers_in_flight_at_a_cut_deepen_it_to_the_limit_they_measure() -> None:
    c = RateController(2400.0)
    cut_at_2400(c)
    # Requests sent at 2400/s before the cut: one in three accepted, so the limit is ~800/s.
    for i in range(30):
        if i % 3 == 0:
            c.on_accepted(10.01, sent_at=9.995)
        else:
            assert not c.on_throttled(10.01, sent_at=9.995)
    assert c.cuts == 1  # deepened, not compounded
    assert c.w_max == pytest.approx(800.0)
    assert c.rate == pytest.approx(720.0)


def test_too_few_answers_in_flight_leave_the_cut_alone() -> None:
    c = RateController(2400.0)
    cut_at_2400(c)
    for _ in range(ControllerSettings().in_flight_samples - 1):
        c.on_throttled(10.01, sent_at=9.995)
    assert c.rate == pytest.approx(2160.0)


def test_answers_in_flight_never_raise_the_cut_above_its_own_factor() -> None:
    c = RateController(2400.0)
    cut_at_2400(c)
    for _ in range(50):
        c.on_accepted(10.01, sent_at=9.995)
    assert c.rate == pytest.approx(2160.0) and c.w_max == pytest.approx(2400.0)


def test_answers_in_flight_deepen_the_cut_at_most_to_max_cut() -> None:
    c = RateController(2400.0)
    cut_at_2400(c)
    for _ in range(40):
        c.on_throttled(10.01, sent_at=9.995)
    assert c.w_max == pytest.approx(2400.0 * ControllerSettings().max_cut)


def test_the_estimate_follows_the_answers_as_they_come_in() -> None:
    c = RateController(2400.0)
    cut_at_2400(c)
    for _ in range(10):
        c.on_throttled(10.01, sent_at=9.995)
    low = c.w_max
    for _ in range(10):
        c.on_accepted(10.01, sent_at=9.995)
    assert low == pytest.approx(720.0) and c.w_max == pytest.approx(1200.0)


def test_after_a_cooldown_the_rate_rests_at_the_peak_before_probing_above_it() -> None:
    settings = ControllerSettings(cooldown_plateau=8.0)
    c = RateController(10_000.0, settings=settings)
    c.rate = c.w_max = 1000.0
    accepted(c, 100.0, 100)
    c.on_throttled(100.0, sent_at=100.0)
    c.hold(101.0, now=100.0)  # Retry-After: 1
    assert c.rate_at(100.9) == pytest.approx(900.0)  # nothing grows during the pause
    k = (0.1 / 0.4) ** (1 / 3)
    assert c.rate_at(101.0 + k) == pytest.approx(1000.0)
    assert c.rate_at(101.0 + k + 7.9) == pytest.approx(1000.0)  # 8 x the pause at the peak
    assert c.rate_at(101.0 + k + 9.0) > 1000.0  # then it probes


def test_503_cuts_gently_and_at_most_once_per_overload_interval() -> None:
    c = RateController(1000.0, settings=ControllerSettings(overload_interval_s=1.0))
    assert c.on_overloaded(1.0, sent_at=0.99)
    assert c.rate == pytest.approx(950.0)
    assert not c.on_overloaded(1.01, sent_at=0.995)  # same round trip
    assert not c.on_overloaded(1.5, sent_at=1.4)  # sent after the cut, but within the interval
    assert c.cuts == 1
    assert c.on_overloaded(2.01, sent_at=2.0)
    assert c.cuts == 2


def test_recovery_climbs_back_to_the_previous_peak_then_probes_above_it() -> None:
    c = RateController(10_000.0, settings=ControllerSettings(cubic_c=0.4))
    accepted(c, 0.0, 100)
    c.on_throttled(0.0, sent_at=0.0)  # 1000 is the peak only after we bring the rate there
    c2 = RateController(10_000.0)
    c2.rate = 1000.0
    c2.w_max = 1000.0
    accepted(c2, 100.0, 100)
    c2.on_throttled(100.0, sent_at=100.0)
    assert c2.rate == pytest.approx(900.0)
    k = (0.1 / 0.4) ** (1 / 3)  # time to climb back to the peak
    half = c2.rate_at(100.0 + k / 2)
    assert 900.0 < half < 1000.0
    # Concave: more than half the way back in the first half of the time.
    assert half - 900.0 > 50.0
    assert c2.rate_at(100.0 + k) == pytest.approx(1000.0)
    assert c2.rate_at(100.0 + k + 1.0) == pytest.approx(1000.0 * 1.4)
    assert c2.rate_at(100.0 + k + 1000.0) == 10_000.0  # capped at the ceiling


def test_rate_never_decreases_while_recovering() -> None:
    c = RateController(2000.0)
    accepted(c, 0.0, 10)
    c.on_throttled(0.0, sent_at=0.0)
    rates = [c.rate_at(t / 10) for t in range(0, 100)]
    assert rates == sorted(rates)


def test_a_cut_below_the_last_peak_lowers_the_peak() -> None:
    c = RateController(1000.0)
    accepted(c, 0.0, 100)
    c.on_throttled(0.0, sent_at=0.0)  # peak 1000 -> rate 900
    accepted(c, 0.05, 100)
    c.on_throttled(0.05, sent_at=0.02)  # limit moved down: peak below 900
    assert c.w_max < 900.0


def test_rate_never_goes_below_the_floor() -> None:
    c = RateController(100.0, floor=2.0)
    t = 0.0
    for _ in range(200):
        t += 0.1
        c.on_throttled(t, sent_at=t)
    assert c.rate == 2.0


def test_default_floor_is_positive_even_for_tiny_ceilings() -> None:
    assert RateController(0.5).floor == 0.5
    assert RateController(100.0).floor == 1.0


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"throttle_backoff": 1.0}, "throttle_backoff"),
        ({"overload_backoff": 0.0}, "overload_backoff"),
        ({"max_cut": 0.95}, "max_cut"),
        ({"cubic_c": 0}, "cubic_c"),
    ],
)
def test_controller_settings_are_validated(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        ControllerSettings(**kwargs)  # type: ignore[arg-type]
