"""The rate controller, driven against a token-bucket server with plain arithmetic
(``bucket_driver.drive``: no loop, no sockets, exact numbers)."""

from __future__ import annotations

import pytest

from async_updater.ratelimit import ControllerSettings, Mode, Outcome, RateController
from async_updater.ratelimit.controller import Bounds

from .bucket_driver import drive


def test_slow_start_doubles_once_per_round_trip_of_requests_sent_and_accepted() -> None:
    c = RateController()
    out = drive(c, limit=10_000, burst=10_000, rtt=0.1, seconds=0.65)
    rates = sorted({round(r) for _, r in out.rates})
    # 4 at the start, then one doubling per 100 ms round trip, no faster.
    assert rates[:5] == [8, 16, 32, 64, 128]
    assert max(rates) <= 4 * 2**7


def test_slow_start_does_not_grow_a_rate_the_work_never_used() -> None:
    c = RateController()
    now = 0.0
    for seq_time in range(20):  # one request every second, at an allowed rate of 4+/s
        now = float(seq_time)
        seq = c.on_send(now)
        c.on_answer(seq, now, now + 0.01, Outcome.ACCEPTED)
    assert c.rate_at(now) == 4.0  # a round at 1/s says nothing about 8/s


def test_the_first_throttle_ends_slow_start_and_the_rate_settles_just_under_the_limit() -> None:
    c = RateController()
    drive(c, limit=200, burst=20, rtt=0.02, seconds=10)
    assert c.mode is Mode.CRUISE
    assert c.limit == pytest.approx(200, rel=0.05)
    assert c.rate_at(10.0) == pytest.approx(0.97 * 200, rel=0.06)


@pytest.mark.parametrize("burst", [1.0, 20.0, 200.0], ids=["one-token", "tenth", "one-second"])
def test_a_burst_does_not_fool_the_estimate(burst: float) -> None:
    """The burst is drained before the first throttle and never counted: only requests
    accepted between throttled ones measure the limit."""
    c = RateController()
    drive(c, limit=200, burst=burst, rtt=0.02, seconds=12)
    assert c.limit is not None
    assert 0.85 * 200 <= c.limit <= 1.05 * 200


def test_a_pause_breaks_the_chain_so_no_sample_spans_it() -> None:
    from async_updater.ratelimit import SendLog

    log = SendLog(gap_s=10.0)
    seqs = [log.sent(t) for t in (0.0, 0.1, 0.2)]
    log.break_chain(0.25)  # a cool-down starts here
    seqs += [log.sent(t) for t in (5.0, 5.1)]
    outcomes = [Outcome.THROTTLED, Outcome.ACCEPTED, Outcome.ACCEPTED]
    outcomes += [Outcome.ACCEPTED, Outcome.THROTTLED]
    samples = [s for seq, o in zip(seqs, outcomes, strict=True) for s in log.answered(seq, o)]
    assert samples == []  # throttles at 0.0 and 5.1 were not in one chain


def test_samples_are_read_back_in_send_order_whatever_the_answer_order() -> None:
    from async_updater.ratelimit import SendLog

    log = SendLog(gap_s=1.0)
    seqs = [log.sent(t / 100) for t in range(6)]
    outcomes = [Outcome.THROTTLED, *[Outcome.ACCEPTED] * 4, Outcome.THROTTLED]
    answered = []
    for i in reversed(range(6)):  # answers arrive last first
        answered += log.answered(seqs[i], outcomes[i])
    (sample,) = answered
    assert (sample.accepted, round(sample.span, 9)) == (4, 0.05)  # 4 accepted in 50 ms


def test_a_lone_throttle_while_cruising_is_noise() -> None:
    c = RateController(settings=ControllerSettings(probe_every_s=100.0))  # no probe meanwhile
    drive(c, limit=100, burst=10, rtt=0.02, seconds=6)
    assert c.mode is Mode.CRUISE
    before = c.rate_at(6.0)
    seq = c.on_send(6.0)
    c.on_answer(seq, 6.0, 6.02, Outcome.THROTTLED)  # one throttle, then only acceptances
    for i in range(1, 40):
        t = 6.0 + i / 90
        s = c.on_send(t)
        c.on_answer(s, t, t + 0.02, Outcome.ACCEPTED)
    assert c.rate_at(6.6) == pytest.approx(before, rel=0.01)


def test_a_limit_that_falls_is_followed_and_one_that_rises_is_found() -> None:
    c = RateController()
    out = drive(c, limit=800, burst=80, rtt=0.02, seconds=25, limits=((6.0, 300.0), (14.0, 800.0)))
    assert out.rate_near(8.0) <= 1.1 * 300  # followed the drop within 2 s
    assert out.rate_near(24.0) >= 0.9 * 800  # back at the restored limit within 10 s


def test_after_a_cool_down_the_rate_resumes_at_the_estimate_one_pause_per_overload() -> None:
    c = RateController()
    out = drive(c, limit=200, burst=20, rtt=0.02, seconds=20, retry_after=1.0)
    assert out.sent_in_pause == 0
    assert out.pauses == 1  # the slow start's overshoot; then it holds under the limit
    assert c.rate_at(20.0) == pytest.approx(0.97 * 200, rel=0.06)


def test_with_too_few_in_flight_to_measure_a_cool_down_bisects_to_the_limit() -> None:
    c = RateController()
    out = drive(c, limit=100, burst=10, rtt=0.001, seconds=40, retry_after=1.0)
    assert out.sent_in_pause == 0
    assert out.pauses <= 5
    assert 0.85 * 100 <= c.rate_at(40.0) <= 100


def test_the_ceiling_is_never_exceeded_and_says_when_it_binds() -> None:
    c = RateController(50.0)
    drive(c, limit=10_000, burst=100, rtt=0.01, seconds=5)
    assert max(c.rate_at(t) for t in (1.0, 3.0, 5.0)) <= 50.0
    assert c.at_ceiling


def test_a_new_scope_starts_at_what_the_others_measured() -> None:
    c = RateController(initial=300.0)
    assert c.mode is Mode.CRUISE
    assert c.rate_at(0.0) == pytest.approx(0.97 * 300)


def test_bounds_keep_the_lowest_throttled_and_drop_what_a_throttle_disproves() -> None:
    b = Bounds()
    b.sustained(80)
    b.sustained(100)
    b.throttled(120)
    assert (b.lo, b.hi) == (100, 120)
    b.throttled(95)  # 100 looked sustainable (a burst?) but was not
    assert (b.lo, b.hi) == (80, 95)
    b.sustained(130)  # what once failed now holds: the limit rose
    assert b.hi == float("inf")


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"cruise_gain": 1.2}, "cruise_gain"),
        ({"probe_gain": 1.0}, "probe_gain"),
        ({"initial_rate": 0}, "initial_rate"),
        ({"first_accepted": 100, "min_accepted": 32}, "first_accepted"),
        ({"hold_s": -1}, "holds"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        ControllerSettings(**kwargs)  # type: ignore[arg-type]
