"""The rate controller, driven against a token-bucket server with plain arithmetic
(``bucket_driver.drive``: no loop, no sockets, exact numbers)."""

from __future__ import annotations

import math
import statistics
from itertools import pairwise

import pytest

from async_updater.ratelimit import ControllerSettings, Mode, Outcome, RateController
from async_updater.ratelimit.controller import Bounds
from async_updater.ratelimit.estimator import BucketGauge

from .bucket_driver import Drive, drive


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
    out = drive(c, limit=200, burst=20, rtt=0.02, seconds=10)
    assert c.limit == pytest.approx(200, rel=0.05)
    settled = [rate for t, rate in out.rates if t > 2.0]  # probes are brief steps above it
    assert statistics.median(settled) == pytest.approx(0.97 * 200, rel=0.06)


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


def test_probes_for_a_rise_that_find_none_come_ever_more_rarely_where_each_costs_a_pause() -> None:
    """A steady limit behind Retry-After: every probe above it costs a pause. Each that finds
    nothing new doubles the wait before the next (up to 16 times twenty pauses), so over 400
    pauses' time a handful are spent, not one every twenty."""
    c = RateController()
    out = drive(c, limit=100, burst=10, rtt=0.02, seconds=400, retry_after=1.0)
    assert out.sent_in_pause == 0
    assert out.pauses <= 8  # one to find it, then probes 20, 40, 80, 160 pauses apart
    assert out.accepted >= 0.93 * 100 * 400


@pytest.mark.parametrize(
    ("limit", "burst", "rtt"), [(100.0, 10.0, 0.02), (50.0, 5.0, 0.05), (30.0, 3.0, 0.1)]
)
def test_the_reading_around_slow_starts_pause_weighs_each_answer_by_the_rate_it_was_sent_at(
    limit: float, burst: float, rtt: float
) -> None:
    """Slow start doubles once more before its first throttle comes back, so most answers read
    around that pause were sent at twice the rate of the throttled one. Read as if all were
    sent at the lower rate, the limit came out near half its value, cruised at for twenty
    pauses' time (accepted 0.65-0.72 of capacity on these shapes)."""
    c = RateController()
    out = drive(c, limit=limit, burst=burst, rtt=rtt, seconds=40, retry_after=1.0)
    assert out.sent_in_pause == 0
    assert out.accepted >= 0.8 * limit * 40


def test_what_a_step_took_between_two_pauses_bounds_the_limit_from_the_pause_end() -> None:
    """A probe step resumed after a 5 s pause took 11 requests in 0.75 s before the next
    throttle. Over the whole time between the throttles (5.75 s) that reads 1.9/s, since the
    bucket stopped refilling once full in the pause. From the pause's end, with at most a
    second's worth of burst in the bucket, it reads 6.3/s: the floor the search starts from."""
    c = RateController()
    out = drive(c, limit=14.5, burst=2, rtt=0.0017, seconds=8, retry_after=5.0)
    assert out.pauses == 2
    assert c.bounds.lo == pytest.approx(11 / (0.75 + 1.0), rel=0.05)


def test_behind_retry_after_the_search_for_a_thin_buckets_limit_fails_about_once() -> None:
    """Slow start's overshoot leaves the limit between a rate held and one twice as high. A
    bucket of a token or two gives no reading, so the limit is searched between them, and
    behind Retry-After each step above it costs a pause. Bisecting, a search failed 1.5 times
    on average over these ten servers (25 pauses with slow start's); steps planned for the
    pause they risk (``search.best_step``) fail about once (21)."""
    pauses = []
    for limit in (120.0, 135.0, 150.0, 165.0, 180.0):
        for burst in (1.0, 2.0):
            work = int(limit * 40)
            out = drive(
                RateController(),
                limit=limit,
                burst=burst,
                rtt=0.005,
                seconds=80.0,
                retry_after=2.0,
                work=work,
            )
            assert out.accepted == work
            pauses.append(out.pauses)
    assert sum(pauses) <= 21
    assert max(pauses) <= 3


def test_a_rough_reading_above_a_rate_since_throttled_is_not_cruised_at() -> None:
    """A reading from a few answers around a pause can come out above a rate throttled later.
    Cruising at that rate (the lowest throttled), every pause was followed by another (21 in
    40 s here); the rate proven below it is where to cruise."""
    c = RateController()
    out = drive(c, limit=300, burst=10, rtt=0.01, seconds=40, retry_after=1.0)
    assert out.pauses <= 5
    assert c.rate_at(40.0) < c.bounds.hi


def test_no_probe_for_a_rise_where_it_costs_a_pause_once_the_work_left_cannot_pay_for_it() -> None:
    """Behind Retry-After a probe costs a pause now, for faster sending after it. With so little
    work left that sending it a probe step faster would save less than the pause, nothing pays
    for it: the run ends cruising. With the same time and no end to the work in sight, the
    probe is made."""
    seconds, limit = 24.0, 200.0
    work = int(0.93 * limit * seconds)  # all of it accepted within the time

    def run(work: int | None) -> Drive:
        c = RateController()
        return drive(
            c, limit=limit, burst=20, rtt=0.02, seconds=seconds, retry_after=1.0, work=work
        )

    ending = run(work)
    assert ending.accepted == work
    assert (run(None).pauses, ending.pauses) == (2, 1)  # slow start's, then a probe's


def test_a_probe_for_a_rise_behind_retry_after_steps_past_the_bounds_a_search_left() -> None:
    """40/s with a bucket of four, a 1 s pause on every 429, rising to 800/s 15 s in (the
    other clients of the quota have finished). The search after slow start leaves the limit
    between two rates a few per cent apart, and planned steps into them would go on finding
    a little more for minutes, each step a whole wait between probes, never testing the
    bound. A probe for a rise is a step past the bounds: it finds the rise, and the run
    follows it."""
    c = RateController()
    out = drive(
        c,
        limit=40.0,
        burst=4.0,
        rtt=0.02,
        seconds=200.0,
        retry_after=1.0,
        limits=((15.0, 800.0),),
        work=12_000,
    )
    assert out.sent_in_pause == 0
    assert out.accepted == 12_000
    assert out.rate_near(45.0) >= 600.0


def test_a_probe_for_a_rise_is_made_where_the_work_left_pays_for_its_pause() -> None:
    """600/s, a 1 s pause on every 429, rising to 800/s 5 s in; 35 s of work at 600/s, its
    size known from the start. The probe for a rise comes 20 pauses after the first (21 s
    in), with 14 s of work left: sent a probe step (x1.25) faster, that saves 2.8 s, more
    than the 1 s pause a failed probe costs, so it is made, and finds the rise. (Sending for
    the whole wait between probes is not needed for that: a probe's pause is paid for by the
    time it saves.)"""
    work = 21_000
    c = RateController()
    out = drive(
        c,
        limit=600,
        burst=60,
        rtt=0.02,
        seconds=60,
        retry_after=1.0,
        limits=((5.0, 800.0),),
        work=work,
        expected=True,
    )
    assert out.accepted == work and out.sent_in_pause == 0
    assert out.rate_near(20.0) < 600  # cruising on the first reading until the probe
    assert max(rate for when, rate in out.rates if when > 20.0) > 700  # the probe found more


def test_answers_kept_for_a_shared_limit_are_counted_by_send_time_and_bounded_by_time() -> None:
    """A shared limit counts a cool-down's answers by when their requests were sent. Only
    what was sent in the last second (or four round trips) is kept: memory follows the rate
    sent, not the length of the run or the number of scopes."""
    c = RateController(initial=200.0)
    c.keep_answers()
    for i in range(600):  # 3 s at 200/s, a 10 ms round trip, every fifth one throttled
        sent = i / 200.0
        outcome = Outcome.THROTTLED if i % 5 == 4 else Outcome.ACCEPTED
        c.on_answer(c.on_send(sent), sent, sent + 0.01, outcome)
    assert c.answered_since(2.5) == (80, 20)
    assert c.answers is not None and len(c.answers) <= 201
    assert c.answered_since(0.0) == c.answered_since(1.99)  # the first two seconds are gone


@pytest.mark.parametrize(("fleet_left", "probes"), [(math.inf, True), (1_000.0, False)])
def test_the_leader_of_a_shared_limit_probes_for_a_rise_only_if_the_fleets_work_pays(
    fleet_left: float, probes: bool
) -> None:
    """Leading a shared limit behind ``Retry-After``, a probe for a rise costs the whole
    fleet a pause: the fleet's work left must pay for it (sent a probe step faster, it saves
    at least the pause), not this process's share of it."""
    c = RateController()
    c.external, c.share = True, 0.125
    c.adopt(900.0, 0.0)
    c.fleet_left = fleet_left
    c.on_cooldown(0.1, 1.1, 0.08, 900.0)  # another process's 429 at 900/s
    c.on_episode(24, 3, 1.0)  # the fleet's answers since: 24 of 27 accepted (800/s)
    c.rate_at(1.1)  # the pause is over: the rate after it is settled
    assert c.limit == pytest.approx(800.0)
    modes = set()
    for tenth in range(600):  # the minute after the pause
        c.rate_at(1.1 + tenth * 0.1)
        modes.add(c.mode)
    assert (Mode.PROBE in modes) is probes


@pytest.mark.parametrize(
    ("throttled_at", "episode", "fleet_left", "probes"),
    [
        (900.0, (24, 3), 6_000.0, False),
        (900.0, (24, 3), 20_000.0, True),
        (4000.0, (6, 24), 3_700.0, False),
        (4000.0, (6, 24), 20_000.0, True),
    ],
    ids=["narrow-little-left", "narrow-much-left", "wide-little-left", "wide-much-left"],
)
def test_a_probe_for_a_rise_pays_by_the_step_it_would_take(
    throttled_at: float, episode: tuple[int, int], fleet_left: float, probes: bool
) -> None:
    """Read at 800/s after a 429 at 900/s, the probe steps into the bounds, to 849/s: 9%
    above the 776/s cruised at, not ``probe_gain``'s 25%. Held, it would save the work left
    that much, so 6,000 requests left (0.7 s saved) do not pay for the 1 s pause a failed
    probe costs, and 20,000 (2.2 s) do. (Counted at 25%, 6,000 paid: the fleet probed in the
    last fifth of a run, failed and paused.) A step into bounds as wide as a 429 at 4,000/s
    leaves is a long shot: it counts for no more than ``probe_gain``, so 3,700 requests left
    (0.95 s saved) do not pay."""
    c = RateController()
    c.external, c.share = True, 0.125
    c.adopt(throttled_at, 0.0)
    c.fleet_left = fleet_left
    c.on_cooldown(0.1, 1.1, 0.08, throttled_at)
    c.on_episode(*episode, 1.0)
    c.rate_at(1.1)
    assert c.limit == pytest.approx(800.0)
    modes = set()
    for tenth in range(600):
        c.rate_at(1.1 + tenth * 0.1)
        modes.add(c.mode)
    assert (Mode.PROBE in modes) is probes


@pytest.mark.parametrize(
    ("limit", "rtt", "retry_after", "by"),
    [(20.5, 0.037, None, 7.5), (150.0, 0.02, None, 5.0), (14.4, 0.6, 3.0, 45.0)],
)
def test_a_one_token_bucket_that_reads_half_the_rate_sent_is_searched_not_believed(
    limit: float, rtt: float, retry_after: float | None, by: float
) -> None:
    """A bucket of one token wastes a refill at each throttle: evenly spaced requests at one to
    two times the limit come back every other one throttled, so the overload reads half the
    rate sent, well below the limit. It let only a request or two through at the rate that
    ended slow start, so the reading is a lower bound: the bounds are searched at once (not
    after the usual probe interval, nor after twenty pauses)."""
    c = RateController()
    out = drive(c, limit=limit, burst=1, rtt=rtt, seconds=2 * by, retry_after=retry_after)
    assert out.sent_in_pause == 0
    assert 0.9 * limit <= out.rate_near(by) <= limit
    assert out.throttled <= 0.05 * out.sent


@pytest.mark.parametrize(("limit", "rtt"), [(1810.0, 0.011), (150.0, 0.02), (213.0, 0.029)])
def test_without_cool_downs_a_thin_buckets_search_closes_in_to_the_cruising_margin(
    limit: float, rtt: float
) -> None:
    """A step above a thin bucket's limit costs a few throttles where there are no
    cool-downs: the search goes on until the bounds are as close as the margin kept under a
    measured limit (3%), not stopping at 10% and cruising 4-7% under the limit for good."""
    c = RateController()
    drive(c, limit=limit, burst=1, rtt=rtt, seconds=20)
    assert 0.97 * limit <= c.rate_at(20.0) <= limit


@pytest.mark.parametrize(("limit", "rtt"), [(1100.0, 0.84), (250.0, 0.7)])
def test_after_slow_start_a_thin_bucket_is_cruised_at_the_round_that_held_not_its_reading(
    limit: float, rtt: float
) -> None:
    """A thin bucket's overload reads half the rate sent, but the round of slow start before
    it held with no throttle, and so thin a bucket hides nothing: that rate is proven. On a
    long round trip, cruising at the reading until probes (each held for several round
    trips) climb back would cost half the capacity for many seconds."""
    c = RateController()
    out = drive(c, limit=limit, burst=1, rtt=rtt, seconds=15, work=int(15 * limit), known=True)
    assert c.bounds.lo >= 0.8 * limit
    assert min(out.rate_near(t) for t in range(6, 15)) >= 0.8 * limit


def bounded_and_doubling(
    limit: float, burst: float, rtt: float, work: int, *, expected: bool = False
) -> tuple[Drive, Drive]:
    """A job of ``work`` requests over twice the time it takes at the limit, slow start
    bounded by the default ``start_risk``, then free to double (``start_risk`` 1.0).
    ``expected``: the work is told as expected (the input goes on), not as left."""

    def run(start_risk: float) -> Drive:
        c = RateController(settings=ControllerSettings(start_risk=start_risk))
        seconds = 2 * work / limit
        return drive(
            c, limit=limit, burst=burst, rtt=rtt, seconds=seconds, work=work, expected=expected
        )

    return run(ControllerSettings().start_risk), run(1.0)


@pytest.mark.parametrize(
    ("limit", "burst", "rtt", "work"),
    [(10.7, 8.0, 0.556, 160), (14.8, 5.0, 0.294, 222), (29.0, 3.0, 0.697, 434)],
)
def test_slow_start_risks_a_small_share_of_a_small_jobs_work_per_round_trip(
    limit: float, burst: float, rtt: float, work: int
) -> None:
    """On a long round trip a bucket's burst hides slow start's overshoot for a round or two,
    and the rounds it doubles meanwhile are thrown away: on a job of a few hundred requests,
    6-12% of them. Growing by no more than a share of the work left per round trip halves
    that, and the job takes no longer."""

    bounded, doubling = bounded_and_doubling(limit, burst, rtt, work)
    assert bounded.accepted == doubling.accepted == work
    assert bounded.throttled <= 0.6 * doubling.throttled
    assert bounded.rates[-1][0] <= 1.05 * doubling.rates[-1][0]


@pytest.mark.parametrize(
    ("limit", "burst", "rtt", "work"),
    [(1440.0, 836.0, 0.116, 21_600), (279.0, 11.0, 0.307, 4_185), (84.0, 43.0, 0.948, 1_260)],
)
def test_slow_start_risks_a_share_of_the_work_expected_while_the_input_goes_on(
    limit: float, burst: float, rtt: float, work: int
) -> None:
    """The input still being read but its size known (a whole CSV file), what is left to
    send is known as well as at its end: slow start risks no more than ``start_risk`` of it a
    round. Doubling on, a burst hid the limit for rounds and the rate reached many times the
    limit before the first throttle came back. Bounded, a 15 s job has at least a fifth fewer
    throttles (here 41-79% fewer) and takes no longer, give or take a round trip."""

    bounded, doubling = bounded_and_doubling(limit, burst, rtt, work, expected=True)
    assert bounded.accepted == doubling.accepted == work
    assert bounded.throttled <= 0.8 * doubling.throttled
    assert bounded.rates[-1][0] <= doubling.rates[-1][0] + rtt


@pytest.mark.parametrize(("fleet_left", "grown_to"), [(20_000.0, 2_000.0), (2_500.0, 1_500.0)])
def test_leading_a_shared_limit_slow_start_risks_a_share_of_the_fleets_work(
    fleet_left: float, grown_to: float
) -> None:
    """Leading a shared limit, the rate is the whole fleet's: slow start may risk a share of
    the fleet's work in a round (as its processes tell it), not of the leader's own. Sending
    its eighth of 1,000/s, a 50 ms round back clean doubles the rate where the fleet has
    20,000 requests left; were the leader's own 2,500 counted, a round could add only 25
    requests (500/s), as it may where the fleet's work is that small."""
    c = RateController(settings=ControllerSettings(initial_rate=1_000.0))
    c.external, c.share = True, 0.125
    c.work_expected = 2_500.0  # its own work, its input still being read
    c.fleet_left = fleet_left
    pending: list[tuple[float, int, float]] = []  # (answered at, seq, sent at)
    sent = 0.0
    while c.rate_at(sent) == 1_000.0 and sent < 1.0:
        while pending and pending[0][0] <= sent:
            at, seq, sent_at = pending.pop(0)
            c.on_answer(seq, sent_at, at, Outcome.ACCEPTED)
        pending.append((sent + 0.02, c.on_send(sent), sent))
        sent += 1.0 / 125.0
    assert c.mode is Mode.STARTUP
    assert c.rate_at(sent) == pytest.approx(grown_to)


@pytest.mark.parametrize(
    ("limit", "burst", "rtt", "work"),
    [(4500.0, 700.0, 0.75, 67_500), (1800.0, 2.0, 0.3, 27_000), (200.0, 50.0, 0.5, 3_000)],
)
def test_on_a_long_round_trip_slow_start_grows_by_its_share_of_the_work_known(
    limit: float, burst: float, rtt: float, work: int
) -> None:
    """Doubling from a few requests a second takes many long rounds to reach a high limit
    (twelve of 0.75 s for 4,500/s), a large part of a job of 15 s at the limit. With the work
    known, a round may add ``start_risk`` of it: the limit is reached rounds sooner, and what
    is throttled stays a small share (each round risks no more than that share)."""

    def reached(known: bool) -> tuple[float, Drive]:
        out = drive(
            RateController(), limit=limit, burst=burst, rtt=rtt, seconds=60, work=work, known=known
        )
        return next(t for t, r in out.rates if r >= 0.9 * limit), out

    doubling, before = reached(False)
    jumping, after = reached(True)
    assert jumping <= doubling - rtt
    assert after.accepted == before.accepted == work
    assert after.throttled <= 0.03 * after.sent


def test_on_a_short_round_trip_slow_start_only_doubles_whatever_the_work_known() -> None:
    """At a few ms a round, doubling reaches any limit within a second: a jump past it would
    leave the first throttle a wide bracket to search (or, where throttles cost pauses, pause
    after pause), for nothing."""
    rates = []
    for known in (False, True):
        out = drive(
            RateController(), limit=930, burst=189, rtt=0.005, seconds=5, work=14_000, known=known
        )
        rates.append(out.rates)
    assert rates[0] == rates[1]


def test_answers_a_busy_client_reads_late_do_not_make_a_round_trip_long() -> None:
    """A client too busy to read its answers at once sees round trips of half a second from a
    server 10 ms away: the path's round trip is its fastest, and slow start only doubles
    there. Answers that were always that slow are a long path: it grows by its risk share."""

    def rates(first_rtt: float) -> list[int]:
        c = RateController()
        c.work_left = c.work_known = 100_000
        now, rtt, out = 0.0, first_rtt, []
        for _ in range(4):
            rate = c.rate_at(now)
            out.append(round(rate))
            sends = [(now + i / rate, c.on_send(now + i / rate)) for i in range(round(rate / 2))]
            for sent_at, seq in sends:
                c.on_answer(seq, sent_at, sent_at + rtt, Outcome.ACCEPTED)
            now, rtt = sends[-1][0] + rtt, 0.5
        return out

    assert rates(0.01) == [4, 8, 16, 32]
    assert rates(0.5) == [4, 2004, 4004, 6004]  # 1% of the work a round of 0.5 s


def test_a_bucket_drained_by_an_earlier_round_is_not_taken_for_a_thin_one() -> None:
    """Slow start's last round can find the bucket already empty (the round before was above
    the limit, its burst hid that): nothing let through at the rate throttled says nothing of
    the bucket's size, and the reading (the limit, from a bucket of many tokens) holds."""
    c = RateController()
    out = drive(c, limit=200, burst=20, rtt=0.02, seconds=20, retry_after=1.0)
    assert out.pauses == 1
    assert c.rate_at(20.0) == pytest.approx(0.97 * 200, rel=0.06)


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


def _run_of(estimate: object, start: float, rate: float, n: int, now: float) -> float:
    """Feed ``n`` samples in a row (shared ends), one accepted each, ``1/rate`` apart."""
    from async_updater.ratelimit import LimitEstimate, Sample

    assert isinstance(estimate, LimitEstimate)
    t = start
    for _ in range(n):
        estimate.add(Sample(t + 1 / rate, 1, 1 / rate), now, 0.05)
        t += 1 / rate
    return t


def test_a_clump_of_throttles_from_a_stall_does_not_lower_the_estimate() -> None:
    """A stall makes throttles come in a clump with nothing accepted between them: a short
    run of samples that reads far below the limit. It must not count; without the run-span
    rule (run_span=0) the same samples would drag the estimate down."""
    from async_updater.ratelimit import LimitEstimate, Sample

    est = LimitEstimate(min_accepted=8)
    _run_of(est, 0.0, 100.0, 40, now=0.4)
    assert est.value == pytest.approx(100.0)
    clump = [Sample(1.0 + i * 0.002, 0, 0.002) for i in range(1, 6)]  # 10 ms, none accepted
    for s in clump:
        est.add(s, 1.01, run_span=0.05)
    assert est.value == pytest.approx(100.0)
    assert est.newest_run() == pytest.approx(0.01)

    naive = LimitEstimate(min_accepted=8)
    _run_of(naive, 0.0, 100.0, 40, now=0.4)
    for s in clump:
        naive.add(s, 1.01)
    assert naive.value is not None and naive.value < 90.0


def test_a_limit_that_falls_keeps_throttling_and_is_followed() -> None:
    from async_updater.ratelimit import LimitEstimate

    est = LimitEstimate(min_accepted=8)
    _run_of(est, 0.0, 100.0, 40, now=0.4)
    _run_of(est, 2.0, 50.0, 20, now=2.4)  # a run of 400 ms at the new limit
    assert est.value == pytest.approx(50.0)


def test_a_short_run_that_reads_above_the_rate_counts_at_once() -> None:
    """A reading above the rate being sent at is corrected by the next throttles if wrong,
    so it needs no long run; only a lower one must wait for one."""
    from async_updater.ratelimit import LimitEstimate, Sample

    est = LimitEstimate(min_accepted=8)
    for i in range(1, 9):
        est.add(Sample(i * 0.001, 1, 0.001), 0.01, run_span=0.05, short_above=500.0)
    assert est.value == pytest.approx(1000.0)


def test_pooled_counts_the_runs_of_samples_in_a_row() -> None:
    from async_updater.ratelimit import LimitEstimate, Sample

    est = LimitEstimate(min_accepted=1)
    for at in (0.1, 0.2, 0.3):  # one run: each begins where the last ended
        est.add(Sample(at, 10, 0.1), at)
    est.add(Sample(1.2, 10, 0.1), 1.2)  # a second run, after a break
    assert est.pooled(0.0) == pytest.approx((40.0, 0.4, 2))


def test_the_round_trip_spread_is_the_recent_largest_above_the_minimum() -> None:
    from async_updater.ratelimit import RoundTrip

    rt = RoundTrip()
    rt.add(0.020, 0.0)
    rt.add(0.050, 1.0)  # a stall: 30 ms above the fastest
    assert rt.spread == pytest.approx(0.030)
    for t in range(2, 12):
        rt.add(0.021, float(t))
    assert rt.spread == pytest.approx(0.001)  # the stall has left the window


def test_a_stray_throttle_in_slow_start_is_tolerated_but_an_overshoot_is_not() -> None:
    c = RateController()
    out = drive(c, limit=100_000, burst=100_000, rtt=0.01, seconds=1.0)
    assert c.mode is Mode.STARTUP and out.sent > 1000
    rate = c.rate_at(1.0)
    t = 1.0
    seq = c.on_send(t)
    c.on_answer(seq, t, t + 0.01, Outcome.THROTTLED)  # one in over a thousand sent
    assert c.mode is Mode.STARTUP
    assert c.bounds.hi == float("inf")
    for i in range(1, 40):  # then throttles in a row: the rate is over the limit
        s = c.on_send(t + i * 0.0001)
        c.on_answer(s, t + i * 0.0001, t + 0.01 + i * 0.0001, Outcome.THROTTLED)
    assert c.mode is Mode.MEASURE
    assert c.bounds.hi <= rate


def test_throttles_every_second_while_cruising_do_not_put_off_the_probe() -> None:
    """Noise (a stray throttle now and then) returns to cruising without moving the next
    probe: otherwise a server that throttles once a second would never be probed again."""
    c = RateController(settings=ControllerSettings(probe_every_s=3.0))
    drive(c, limit=100, burst=10, rtt=0.02, seconds=6)
    assert c.mode is Mode.CRUISE
    t, modes = 6.0, set()
    while t < 12.0:
        rate = c.rate_at(t)
        modes.add(c.mode)
        if c.mode is Mode.PROBE:
            break
        seq = c.on_send(t)
        stray = int(t * rate) % int(rate) == 0  # about one a second
        c.on_answer(seq, t, t + 0.02, Outcome.THROTTLED if stray else Outcome.ACCEPTED)
        t += 1.0 / rate
    assert Mode.PROBE in modes
    assert t < 10.0  # within the probe interval of the last real change, not after


def test_a_throttle_with_a_cool_down_is_never_tolerated_as_noise() -> None:
    """At a high rate one throttle is under the slow start's tolerance, but a throttle that
    pauses everything ends slow start there and bounds the limit from above."""
    c = RateController()
    out = drive(c, limit=3500, burst=20, rtt=0.004, seconds=2.0, retry_after=3.0)
    assert out.pauses == 1 and out.sent_in_pause == 0
    assert c.mode is Mode.MEASURE
    assert c.bounds.hi <= 4096


def test_how_long_a_refilled_bucket_lasts_at_two_rates_measures_the_limit() -> None:
    """limit 100/s, burst 40: after each pause the bucket is full; at 150/s it lasts
    40/50 = 0.8 s (120 accepted), at 125/s 40/25 = 1.6 s (200 accepted)."""
    from async_updater.ratelimit import DrainFit

    fit = DrainFit()
    for start, rate, accepted, lasted in ((10.0, 150.0, 120, 0.8), (20.0, 125.0, 200, 1.6)):
        fit.resumed(start, rate)
        for i in range(accepted):
            fit.answered(start + i / rate, rate, True)
        fit.throttled(start + lasted)
        result = fit.settle()
    assert result == pytest.approx(100.0)


def test_paced_windows_count_what_the_rate_sent_not_the_answers_seen() -> None:
    """The leader of a shared limit sees a few of the fleet's answers; the shared bucket paced
    the whole fleet at the window's rate, so that rate times the window is what the server
    took. limit 800/s, burst 80: at 1,200/s the bucket lasts 0.2 s, at 1,000/s 0.4 s."""
    from async_updater.ratelimit import DrainFit

    fit = DrainFit()
    results = []
    for start, rate, lasted in ((10.0, 1200.0, 0.2), (20.0, 1000.0, 0.4)):
        fit.resumed(start, rate)
        for i in range(3):  # its own part of the traffic: too few answers to count
            fit.answered(start + i * 0.05, rate, True)
        fit.throttled(start + lasted, paced=True)
        results.append(fit.settle())
    assert results[0] is None  # one window: not yet
    assert results[1] == pytest.approx(800.0)
    assert fit.burst == pytest.approx(80.0)


def test_the_leader_of_a_shared_limit_measures_it_from_the_fleets_windows() -> None:
    """Leading eight processes (an eighth of the answers), every 429 pausing all for 1 s: each
    pause refills the server's bucket (800/s, burst 80), and the fleet then sends at the
    shared rate until it is spent. The fleet's tallies around a pause read high (they hold
    the answers from before the bucket ran dry); the windows, ended by other processes'
    throttles, give the limit itself, not this process's share of it, by the third pause."""
    limit, burst = 800.0, 80.0
    c = RateController()
    c.external, c.share = True, 0.125
    c.adopt(1600.0, 0.0)
    now, pauses = 0.0, 0
    for _ in range(6):
        rate = c.rate_at(now)
        if rate <= limit:
            break
        lasted = burst / (rate - limit)  # from the end of the pause to the first throttle
        c.on_send(now)  # this process's own part of the window
        c.on_answer(c.log.next_seq - 1, now, now + 0.02, Outcome.ACCEPTED)
        sent_at = now + lasted
        c.on_cooldown(sent_at + 0.03, sent_at + 1.03, sent_at, rate)  # another's 429
        c.on_tally(int(rate * 0.2), int(rate * 0.02))  # the slot the pause began in
        pauses += 1
        now = sent_at + 1.03
    assert pauses <= 3
    assert c.estimate.value == pytest.approx(limit, rel=0.02)
    assert 0.9 * limit <= c.rate_at(now) <= limit


def test_the_fleets_throttles_of_requests_sent_before_a_cut_do_not_cut_again() -> None:
    """The leader of a shared limit, throttled once while cruising, waits to see whether the
    limit fell. The fleet's tallies meanwhile hold the other processes' throttles of requests
    they sent before that (at the old rate): counted, they read as half the answers throttled
    and halve the rate; only answers to requests sent since count."""
    c = RateController()
    c.external = True
    c.adopt(1000.0, 0.0)
    held = c.rate_at(1.0)
    seq = c.on_send(1.0)
    c.on_answer(seq, 1.0, 1.02, Outcome.THROTTLED)  # its own: measure whether the limit fell
    assert c.mode is Mode.MEASURE
    c.on_tally(100, 100, sent_from=0.8)  # a slot of answers to requests sent before
    c.on_tally(40, 0, sent_from=1.05)  # answers to requests sent since: all accepted
    for t in (1.1, 1.2, 1.5, 2.0):
        c.rate_at(t)
    assert c.mode is Mode.CRUISE
    assert c.rate_at(2.0) == pytest.approx(held)


def test_the_leader_waits_for_the_fleets_tallies_before_it_takes_silence_for_a_rate_held() -> None:
    """Leading eight processes, slow start doubles to the ceiling (2,400/s: a burst of the
    server's hid its limit of 800/s) and its own first throttle halves the rate. The fleet's
    answers since come in slots of 200 ms, read once the slot has ended: the first one begun
    after the throttle is in 0.45 s later. Taking the quiet before it for "1,200/s holds"
    would cruise a third of the requests into throttles for the rest of the run."""
    from async_updater.ratelimit import Sample

    limit = 800.0
    c = RateController(ceiling=2400.0)
    c.external, c.share, c.lag = True, 0.125, 0.62
    t = 0.0
    while c.mode is Mode.STARTUP:  # the fleet's slots: every request of each round accepted
        t += 0.06
        c.on_round(c.rate_at(t) * 0.2, 0.2, t)
    assert c.rate_at(t) == 2400.0
    seq = c.on_send(t)
    c.on_answer(seq, t, t + 0.02, Outcome.THROTTLED)  # its own request, throttled
    cut = t + 0.02
    slot = 0.2 * math.ceil(cut / 0.2)  # slots end on multiples of 0.2 s
    while t < cut + 3.0:
        t += 0.01
        rate = c.rate_at(t)
        if t >= slot + 0.1:  # the slot [slot - 0.2, slot] is read 0.1 s after it ended
            sent = rate * 0.2
            accepted = min(sent, limit * 0.2)
            c.on_tally(int(accepted), int(sent - accepted), sent_from=slot - 0.2 - 0.03)
            if sent - accepted >= 0.05 * sent:
                c.on_sample(Sample(slot, int(accepted), 0.2), t)
            slot += 0.2
    assert c.bounds.lo < limit  # 1,200/s was never held
    assert 0.9 * limit <= c.rate_at(t) <= limit


def test_the_leaders_failed_probe_step_goes_straight_back_to_the_rate_known() -> None:
    """Leading a shared limit measured at 800/s, a probe step above it is throttled (another
    process's 429, signalled at once). The fleet's answers that would measure the overload
    come a slot or more late, while the whole fleet throttles at the step: the step goes back
    at once, and the next probe comes on the usual schedule."""
    c = RateController(initial=800.0)
    c.external, c.share, c.lag = True, 0.125, 0.62
    cruise = c.rate_at(0.0)
    t = 0.0
    while c.mode is not Mode.PROBE:
        t += 0.1
        c.rate_at(t)
    step = c.rate_at(t)
    assert step > 800.0
    c.fleet_throttled(step, t + 0.3)
    assert c.rate_at(t + 0.31) == pytest.approx(cruise)
    assert c.bounds.hi == pytest.approx(step)
    assert c.mode is Mode.CRUISE


def test_the_leader_cruising_just_above_the_limit_follows_the_fleets_steady_throttles() -> None:
    """Leading a shared limit of 800/s, cruising at 837/s (a probe step the server's burst let
    hold): the fleet is throttled steadily, 4% of its answers, too few in any one slot of
    its tallies to measure the limit, and its own throttles come a few a second. The
    fleet's tallies are no noise: the share they accepted cuts the rate under the limit."""
    limit, held = 800.0, 837.0
    c = RateController(settings=ControllerSettings(probe_every_s=100.0))  # no probe meanwhile
    c.external, c.share, c.lag = True, 0.125, 0.62
    c.adopt(held, 0.0)
    c.bounds.sustained(held)  # the step held
    t, slot, own = 0.0, 0.2, 0.0
    while t < 4.0:
        t += 0.01
        rate = c.rate_at(t)
        if t >= own + 0.25:  # its own share of the throttles: a few a second
            own = t
            seq = c.on_send(t - 0.02)
            c.on_answer(seq, t - 0.02, t, Outcome.THROTTLED if rate > limit else Outcome.ACCEPTED)
        if t >= slot + 0.1:  # the slot [slot - 0.2, slot], read 0.1 s after it ended
            sent = rate * 0.2
            accepted = min(sent, limit * 0.2)
            c.on_tally(int(accepted), round(sent - accepted), sent_from=slot - 0.2 - 0.03)
            slot += 0.2
    assert c.rate_at(t) <= limit


def test_the_leader_at_a_ceiling_never_measured_halves_on_the_fleets_first_throttle() -> None:
    """Slow start doubled up to the ceiling before any throttle came back (a burst hid the
    limit). The first throttle another process signals stops the overshoot at once, as the
    leader's own would: cruising there is a guess, not a rate measured."""
    c = RateController(ceiling=2400.0)
    c.external, c.share, c.lag = True, 0.125, 0.62
    t = 0.0
    while c.mode is Mode.STARTUP:
        t += 0.06
        c.on_round(c.rate_at(t) * 0.2, 0.2, t)
    assert c.mode is Mode.CRUISE and c.rate_at(t) == 2400.0
    c.fleet_throttled(2400.0, t + 0.03)
    assert c.rate_at(t + 0.031) <= 1200.0
    assert c.bounds.hi <= 2400.0


def test_the_leaders_slow_start_doubles_on_rounds_the_fleet_used_with_no_throttle_signalled() -> (
    None
):
    """Leading eight processes, its own answers are an eighth of the fleet's, and the fleet's
    tallies come a slot (200 ms) late: slow start would take a slot per doubling. The tokens
    the fleet takes from the shared bucket say whether it used the rate, and any process's
    throttle is signalled at once: a round of two round trips with neither doubles."""
    c = RateController()
    c.external, c.share, c.lag = True, 0.125, 0.62
    seq = c.on_send(0.0)
    c.on_answer(seq, 0.0, 0.02, Outcome.ACCEPTED)  # its own first answer: the round trip
    taken, t = 0.0, 0.02
    c.on_fleet_taken(taken, t)
    while t < 0.4:
        t += 0.01
        taken += c.rate_at(t) * 0.01  # the fleet uses the rate
        c.on_fleet_taken(taken, t)
    assert c.mode is Mode.STARTUP
    assert c.rate_at(t) >= 4.0 * 2**6  # a doubling every 50 ms, not every 200
    held = c.rate_at(t)
    for _ in range(20):  # the fleet stopped taking tokens (no work): no news
        t += 0.05
        c.on_fleet_taken(taken, t)
    assert c.rate_at(t) == held


def test_the_leaders_probe_into_wide_bounds_is_no_bigger_than_a_climbs_step() -> None:
    """Leading a shared limit measured at 800/s, slow start's overshoot left 2,400/s as the
    lowest rate throttled at. The middle of those bounds is 1,386/s: a step that far throttles
    the whole fleet at 73% above the limit until the throttle is signalled and the cut goes
    round. The step goes no further than an open-ended probe's (``probe_gain``)."""
    c = RateController(initial=800.0)
    c.external, c.share, c.lag = True, 0.125, 0.62
    c.bounds.throttled(2400.0)
    base = c.limit
    assert base is not None
    t = 0.0
    while c.mode is not Mode.PROBE:
        t += 0.1
        c.rate_at(t)
    assert c.rate_at(t) == pytest.approx(base * c.settings.probe_gain)


def test_a_fit_from_two_windows_alike_in_length_is_coarse_and_brackets_the_limit() -> None:
    """Each window's count is whole requests, so a fit is known to within one request over
    the difference of the windows' lengths. limit 8/s, burst 3: at 32/s the bucket lasts
    0.125 s (4 accepted), at 14/s 0.5 s (7 accepted): the fit, 8/s, is give or take one
    request in 0.375 s (2.7/s); over 0.8 s and 1.6 s at 100/s (the test above), 1.25/s."""
    from async_updater.ratelimit import DrainFit

    def fit_of(limit: float, burst: float, *windows: tuple[float, float]) -> DrainFit:
        fit = DrainFit()
        for start, rate in windows:
            lasted = burst / (rate - limit)
            accepted = round(burst + limit * lasted)
            fit.resumed(start, rate)
            for i in range(accepted):
                fit.answered(start + i / rate, rate, True)
            fit.throttled(start + lasted)
            fit.settle()
        return fit

    rough = fit_of(8.0, 3.0, (10.0, 32.0), (20.0, 14.0))
    assert rough.limit == pytest.approx(8.0)
    assert rough.allows() == pytest.approx((8.0 - 1 / 0.375, 8.0 + 1 / 0.375))
    assert rough.coarse(1.1)
    assert rough.lasts_near(8.5, 1.1) == pytest.approx(3.0 / (8.5 - 8.5 / 1.1))

    fine = fit_of(100.0, 40.0, (10.0, 150.0), (20.0, 125.0))
    assert fine.allows() == pytest.approx((100.0 - 1.25, 100.0 + 1.25))
    assert not fine.coarse(1.1)
    assert not DrainFit().coarse(1.1) and DrainFit().allows() == (0.0, math.inf)


@pytest.mark.parametrize(
    ("limit", "burst", "rtt", "pause"), [(42.0, 18.0, 0.001, 3.0), (16.5, 2.0, 0.0012, 5.0)]
)
def test_a_coarse_fit_of_the_bucket_is_searched_now_not_twenty_pauses_on(
    limit: float, burst: float, rtt: float, pause: float
) -> None:
    """One request in flight at a time, a pause on every 429: the limit is measured by how
    long the refilled bucket lasts, from windows a fraction of a second apart in length, to
    within several per cent. Cruising under that reading until the next probe twenty pauses
    on left the run at 0.90 and 0.93 of the limit; searching the bounds the reading allows
    at once finds it within a step."""
    c = RateController()
    seconds = 20 * pause
    out = drive(c, limit=limit, burst=burst, rtt=rtt, seconds=seconds, retry_after=pause)
    assert out.sent_in_pause == 0
    assert out.pauses <= 4
    assert 0.95 * limit <= c.rate_at(seconds) <= limit


def test_a_coarse_fit_is_not_searched_where_the_work_left_cannot_pay_for_a_pause() -> None:
    """The same rough reading with 1,000 requests of work in all: some 18 s of it is left
    after the fit, and a step into the bounds (a few per cent faster) would save less than
    the 3 s pause it costs if it fails, so the run ends cruising under the reading; with no
    end to the work in sight, the step is made."""
    limit = 42.0

    def run(work: int | None) -> Drive:
        c = RateController()
        return drive(c, limit=limit, burst=18, rtt=0.001, seconds=60, retry_after=3, work=work)

    ending, endless = run(1000), run(None)
    assert ending.accepted == 1000 and ending.pauses == endless.pauses == 3
    after_fit = [rate for when, rate in ending.rates if when > 11.0]
    assert max(after_fit) == min(after_fit)  # no step
    assert endless.rate_near(30.0) >= 0.95 * limit
    assert endless.rate_near(30.0) > max(after_fit)


def test_a_window_whose_rate_changed_measures_nothing() -> None:
    from async_updater.ratelimit import DrainFit

    fit = DrainFit()
    fit.resumed(0.0, 150.0)
    for i in range(120):
        fit.answered(i / 150, 150.0, True)
    fit.throttled(0.8)
    assert fit.settle() is None  # one window: not yet
    fit.resumed(10.0, 125.0)
    for i in range(100):
        fit.answered(10.0 + i / 125, 125.0, True)
    fit.answered(10.9, 160.0, True)  # a probe stepped up inside the window
    fit.throttled(11.6)
    assert fit.settle() is None


def test_answers_that_come_after_the_throttle_still_count_in_the_bucket_s_window() -> None:
    """limit 400/s, burst 2, a round trip of 415 ms give or take 10%: at 600/s the bucket
    lasts 10 ms, at 480/s 25 ms. Requests sent in the last 80 ms before the throttled one
    can be answered after it; each window counts them once the pause is over, so the fit
    reads the limit, not a few hundred per second below it."""
    from async_updater.ratelimit import DrainFit

    fit = DrainFit()
    for start, rate in ((10.0, 600.0), (20.0, 480.0)):
        lasted = 2.0 / (rate - 400.0)
        sends = [start + i / rate for i in range(round(2.0 + 400.0 * lasted))]
        fit.resumed(start, rate)
        early, late = sends[: len(sends) // 2], sends[len(sends) // 2 :]
        for at in early:
            fit.answered(at, rate, True)
        fit.throttled(start + lasted)  # its answer overtook the later half's
        for at in late:
            fit.answered(at, rate, True)
        fit.answered(start + lasted + 0.5 / rate, rate, False)  # sent after it: not counted
        limit = fit.settle()
    assert limit == pytest.approx(400.0, rel=0.05)


def test_the_fit_is_read_from_the_two_windows_furthest_apart_in_length() -> None:
    """limit 16.5/s, burst 2: windows at 32/s, 21.3/s and 19.7/s last 0.13 s, 0.42 s and
    0.63 s. The third window with the second (the newest pair) fits the limit give or take
    one request in 0.21 s; with the first, give or take one in 0.50 s."""
    from async_updater.ratelimit import DrainFit

    fit = DrainFit()
    lasted = {}
    for start, rate in ((10.0, 32.0), (20.0, 21.3), (30.0, 19.7)):
        lasted[rate] = 2.0 / (rate - 16.5)
        fit.resumed(start, rate)
        for i in range(round(2.0 + 16.5 * lasted[rate])):
            fit.answered(start + i / rate, rate, True)
        fit.throttled(start + lasted[rate])
        fit.settle()
    assert fit.spread == pytest.approx(1.0 / (lasted[19.7] - lasted[32.0]))
    assert fit.limit == pytest.approx(16.5, rel=0.1)


def _bucket_row(times: list[float], limit: float, burst: float) -> int:
    """Index of the first of ``times`` a bucket, full at the first, refilled at ``limit``,
    throttles (-1: none)."""
    tokens, prev = burst, times[0]
    for i, at in enumerate(times):
        tokens = min(burst, tokens + limit * (at - prev))
        prev = at
        if tokens < 1.0:
            return i
        tokens -= 1.0
    return -1


def test_the_first_sends_and_the_row_after_their_pause_bound_the_limit() -> None:
    """limit 100/s, burst 10. Slow start doubles from 4/s every 50 ms until a request is
    throttled; the cool-down refills the bucket, and the next row, at 120/s, is throttled
    when the burst is spent (half a second on). Each row alone fits any limit with some
    burst; together they agree only near 100/s."""
    from async_updater.ratelimit.estimator import StartHistory

    first: list[float] = []
    t, rate = 0.0, 4.0
    while len(first) < 400:
        end = t + 0.05
        while t < end:
            first.append(t)
            t += 1.0 / rate
        rate *= 2.0
    cut = _bucket_row(first, 100.0, 10.0)
    second = [10.0 + i / 120.0 for i in range(200)]
    stop = _bucket_row(second, 100.0, 10.0)
    assert cut > 0 and stop > 0
    history = StartHistory()
    seq = 0
    for times, end in ((first, cut), (second, stop)):
        for at in times[: end + 1]:
            history.sent(seq, at)
            seq += 1
        history.throttled(seq - 1)
        limits = history.pause()
    assert limits is not None
    low, high = limits
    assert low <= 100.0 <= high
    assert high / low < 1.1


def test_rows_sent_at_one_instant_that_disagree_on_the_bucket_bound_nothing() -> None:
    """Four requests left at once, the fourth throttled; after a pause three more at once,
    the third throttled. With no time between them to refill, the rows say the bucket holds
    three, then two, whatever the limit: no limit agrees with both, and none is made up (nor
    is a pace of zero seconds divided by)."""
    from async_updater.ratelimit.estimator import StartHistory

    history = StartHistory()
    for seq in range(4):
        history.sent(seq, 1.0)
    history.throttled(3)
    assert history.pause() is None
    for seq in range(4, 7):
        history.sent(seq, 5.0)
    history.throttled(6)
    assert history.pause() is None


def test_a_throttle_without_a_cool_down_ends_the_history() -> None:
    from async_updater.ratelimit.estimator import StartHistory

    history = StartHistory()
    for seq in range(10):
        history.sent(seq, seq * 0.01)
    history.throttled(9)
    history.sent(10, 0.1)  # sending on: no cool-down came with that throttle
    assert not history.open
    assert history.pause() is None


@pytest.mark.parametrize(
    ("limit", "burst", "rtt", "retry_after", "pauses"),
    [(14.5, 2.0, 0.002, 5.0, 2), (79.9, 14.0, 0.007, 3.0, 3), (30.0, 4.0, 0.01, 3.0, 3)],
)
def test_a_limit_hidden_by_a_short_round_trip_costs_one_pause_less_to_find(
    limit: float, burst: float, rtt: float, retry_after: float, pauses: int
) -> None:
    """A round trip so short that a request or two are in flight: slow start's overshoot
    and the row after its pause are throttled at once, with nothing to measure. What they
    let through bounds the limit (``StartHistory``), so the search for it costs a pause less
    than before (3, 4 and 4 pauses in the first minute)."""
    c = RateController()
    out = drive(c, limit=limit, burst=burst, rtt=rtt, seconds=60.0, retry_after=retry_after)
    assert out.sent_in_pause == 0
    assert out.pauses <= pauses
    assert 0.9 * limit <= c.rate_at(60.0) <= limit


@pytest.mark.parametrize(("work", "pauses"), [(58_680, 1), (3 * 58_680, 2)])
def test_a_probe_for_a_rise_that_costs_a_pause_waits_for_work_to_pay_for_it(
    work: int, pauses: int
) -> None:
    """978/s, a 20-token bucket, a 3 s pause on every 429, the input still being read but its
    size known (``work_expected``). The first pause finds the limit; a probe for a rise would
    come a minute later (20 pauses on) and cost a pause of its own. A minute's work is done
    by then, so none is sent: one pause in all (two before, the probe failing in the last
    seconds of the run). Three minutes' work still pays for one."""
    c = RateController()
    out = drive(
        c, limit=978, burst=20, rtt=0.036, seconds=70, retry_after=3.0, work=work, expected=True
    )
    assert out.sent_in_pause == 0
    assert out.pauses == pauses


def test_a_limit_found_through_cool_downs_needs_few_of_them() -> None:
    """One request in flight at a time (1 ms round trips), a 2 s pause on every 429: nothing
    is measured from throttles in a row, so each overshoot costs a pause; how long the
    refilled bucket lasts finds the limit within a few of them."""
    c = RateController()
    out = drive(c, limit=113, burst=41, rtt=0.002, seconds=60, retry_after=2.0)
    assert out.sent_in_pause == 0
    assert out.pauses <= 5
    assert 0.85 * 113 <= c.rate_at(60.0) <= 113


def test_an_overload_is_followed_even_when_round_trips_spread_widely() -> None:
    """A loaded machine spreads round trips so widely that no run of throttles is long enough
    to time the limit; throttles that go on past the spread are still no noise: the share of
    answers accepted measures the limit."""
    c = RateController(settings=ControllerSettings(probe_every_s=100.0))
    drive(c, limit=1000, burst=10, rtt=0.01, seconds=5)
    assert c.mode is Mode.CRUISE
    before = c.rate_at(5.0)
    seq = c.on_send(5.0)
    c.on_answer(seq, 5.0, 5.8, Outcome.ACCEPTED)  # one answer 0.8 s late: spread 0.8 s
    t, n = 5.8, 0
    while t < 7.0:  # the limit halved: every other request throttled
        rate = c.rate_at(t)
        seq = c.on_send(t)
        n += 1
        c.on_answer(seq, t, t + 0.01, Outcome.THROTTLED if n % 2 else Outcome.ACCEPTED)
        t += 1.0 / rate
    assert c.rate_at(t) <= 0.6 * before  # cut within a second, not after runs of 4 x 0.8 s


def test_the_leader_of_a_shared_limit_follows_the_fleets_samples_whatever_its_own_timing() -> None:
    """The leader's samples are the whole fleet's, tallied elsewhere; its own round trips (one
    answer 0.8 s late here) say nothing of the other processes' timing, so no run-span rule
    holds a lower limit back."""
    from async_updater.ratelimit import Sample

    c = RateController(initial=1000.0)
    c.external = True
    for sent, rtt in ((0.0, 0.01), (0.1, 0.8)):  # a wide spread of its own
        seq = c.on_send(sent)
        c.on_answer(seq, sent, sent + rtt, Outcome.ACCEPTED)
    assert c.rtt.spread > 0.5
    for i in range(1, 41):  # the fleet: throttles in a row, 2 accepted every 10 ms
        c.on_sample(Sample(1.0 + i * 0.01, 5, 0.01), 1.0 + i * 0.01)
    assert c.limit == pytest.approx(500.0)
    assert c.rate_at(1.5) <= 500.0


@pytest.mark.parametrize("limit", [1000.0, 1800.0])
def test_above_a_one_token_bucket_a_low_reading_of_an_overshoot_does_not_undo_a_rate_held(
    limit: float,
) -> None:
    """Sending above a bucket of one token wastes refills, so throttles in a row read about
    half the limit. Those sent before a cut measured the overshoot the cut answered for: they
    must not drop the rate below one already held without a throttle."""
    c = RateController()
    out = drive(c, limit=limit, burst=1.0, rtt=0.01, seconds=30)
    held = [rate for t, rate in out.rates if t > 10.0]
    assert statistics.median(held) >= 0.9 * limit
    assert out.accepted >= 0.85 * limit * 30


def test_a_lone_throttle_while_cruising_keeps_the_cruise_rate_not_the_one_it_was_sent_at() -> None:
    """On a long round trip, answers to slow start's overshoot still come in after the
    controller cruises; one of them, sent at a lower rate, is a lone throttle. Whether it was
    noise is known a few round trips later; meanwhile, and after, the rate is the cruise's."""
    c = RateController()
    out = drive(c, limit=300, burst=30, rtt=0.5, seconds=16)
    cruising = [rate for t, rate in out.rates if t > 8.0]
    assert statistics.median(cruising) >= 0.9 * 300


def test_a_limit_that_rose_is_measured_afresh_not_pooled_with_the_old_one() -> None:
    """Once a climb shows the limit rose, the samples of the old limit say nothing: the
    overshoot of the new slow start measures the new one, and the rate follows at once."""
    c = RateController()
    out = drive(c, limit=800, burst=80, rtt=0.02, seconds=30, limits=((8.0, 300.0), (18.0, 800.0)))
    back = next(t for t, rate in out.rates if t > 18.0 and rate > 600)
    settled = [rate for t, rate in out.rates if back + 0.5 < t < back + 2.5]
    assert min(settled) >= 0.9 * 800


@pytest.mark.parametrize("rtt", [0.025, 0.03])
def test_the_first_climb_after_a_fall_also_tests_the_bound_the_fall_left(rtt: float) -> None:
    """After the limit fell, the lowest rate throttled at is a bound of the low limit. The
    first climb that reaches it goes on to test it, so a limit that rose again is found in
    one probe period, not two."""
    c = RateController()
    out = drive(c, limit=800, burst=80, rtt=rtt, seconds=30, limits=((8.0, 300.0), (18.0, 800.0)))
    back = next(t for t, rate in out.rates if t > 18.0 and rate >= 0.9 * 800)
    assert back - 18.0 <= 4.5  # at most one probe period (3 s) and a climb


def test_a_throttle_at_a_ceiling_slow_start_reached_halves_the_rate_at_once() -> None:
    # The ceiling is a guess (--rate): slow start reached it with nothing measured, so the
    # first throttle there says as little as one in slow start. Holding the ceiling to measure
    # sent five throttles into a 5/s limit within 0.3 s.
    c = RateController(20.0)
    out = drive(c, limit=5.0, burst=3.0, rtt=0.005, seconds=20.0)
    rates = [rate for _, rate in out.rates]
    top = rates.index(20.0)
    assert next(rate for rate in rates[top:] if rate < 20.0) == pytest.approx(10.0)
    assert out.throttled <= 4
    assert c.limit == pytest.approx(5.0, rel=0.1)


def test_half_the_ceiling_held_without_a_throttle_is_a_bound_to_climb_from() -> None:
    # The limit (9/s) is above half the ceiling (8.25/s): the halved rate holds, and the
    # controller climbs toward the ceiling instead of cruising at what it sent.
    c = RateController(16.5)
    out = drive(c, limit=9.0, burst=1.7, rtt=0.0044, seconds=20.0)
    assert c.bounds.lo >= 8.25
    assert out.rate_near(20.0) >= 0.9 * 9.0


@pytest.mark.parametrize(
    ("limit", "rtt"), [(229.0, 0.003), (1430.0, 0.0011)], ids=["at-the-cut", "mixed-rates"]
)
def test_a_reading_of_answers_all_accepted_after_slow_starts_cut_is_probed_once_held(
    limit: float, rtt: float
) -> None:
    # Slow start's one throttle drained a two-token bucket; every answer after it was
    # accepted, so the reading (the rate sent after the cut, or a mix of it and the
    # overshoot's) is a rate the server took, a bound below the limit. The first probe comes
    # once the cruise has held, not a probe interval (3 s) on.
    c = RateController()
    out = drive(c, limit=limit, burst=2.0, rtt=rtt, seconds=3.0)
    first_cut = next(t for (_, before), (t, rate) in pairwise(out.rates) if rate < before)
    cruised = out.rate_near(first_cut + 0.1)
    assert cruised < 0.9 * limit  # (the reading was low: the case at hand)
    assert max(rate for t, rate in out.rates if t < first_cut + 1.5) > 1.1 * cruised
    assert out.rate_near(3.0) >= 0.9 * limit


def test_lone_throttles_recurring_at_one_rate_more_often_than_tolerated_lower_it() -> None:
    # An estimate 5% high cruises just above the limit: a bucket refilled just short of it
    # empties once every few seconds, one lone throttle each time, each taken for noise. Two
    # at one rate, fewer than 1/throttle_tolerance requests apart, measure the limit instead.
    settings = ControllerSettings(probe_every_s=1000.0, probe_every_requests=1e6)
    c = RateController(initial=15.1 / 0.97, settings=settings)
    out = drive(c, limit=14.8, burst=5.0, rtt=0.294, seconds=60.0)
    assert c.limit == pytest.approx(14.8, rel=0.01)
    assert out.throttled <= 0.005 * out.sent  # 14 of 906 (1.5%) before, and on for ever


def test_a_probe_from_a_low_estimate_holds_long_enough_for_the_burst_of_the_step() -> None:
    # A rough reading after a pause put the estimate at a third of the limit (323 of 930/s);
    # slow start's overshoot left the upper bound at 4,096. The probe steps into the middle,
    # 1,150/s: a 189-token bucket lasts 0.86 s there, and a hold sized by the low estimate's
    # burst (0.5 s) took it for a rate the server sustains.
    class Recorded(Bounds):
        __slots__ = ("held",)

        def __init__(self) -> None:
            super().__init__()
            self.held: list[float] = []

        def sustained(self, rate: float) -> None:
            self.held.append(rate)
            super().sustained(rate)

    settings = ControllerSettings(probe_every_s=2.0, probe_every_requests=0, probe_every_rtts=0)
    c = RateController(initial=323.0 / 0.97, settings=settings)
    c.cooldowns = 1  # the server has announced cool-downs before
    c.bounds = bounds = Recorded()
    bounds.throttled(4096.0)
    drive(c, limit=930, burst=189, rtt=0.005, seconds=30, retry_after=5.0)
    assert max(bounds.held, default=0.0) < 930  # 1,168 before


def test_a_cool_down_while_cruising_at_a_rate_once_held_disproves_it() -> None:
    # A rate a burst made look sustainable is the lower bound; cruising there ends in a
    # cool-down each time the bucket runs dry. That must lower the bound, not be followed by
    # cruising at it again after every pause (11 pauses in 60 s before).
    settings = ControllerSettings(
        probe_every_s=1000.0, probe_every_requests=1e6, cooldown_probe_factor=1000.0
    )
    c = RateController(initial=1150 / 0.97, settings=settings)
    c.bounds.sustained(1150.0)
    out = drive(c, limit=930, burst=189, rtt=0.005, seconds=60, retry_after=5.0)
    assert out.pauses <= 2
    assert c.rate_at(60.0) < 930


A, T = Outcome.ACCEPTED, Outcome.THROTTLED


def _gauge(*rows: tuple[float, list[Outcome]], gauge: BucketGauge | None = None) -> BucketGauge:
    gauge = gauge if gauge is not None else BucketGauge()
    for rate, outcomes in rows:
        for outcome in outcomes:
            gauge.answered(rate, outcome)
    return gauge


@pytest.mark.parametrize(
    ("rows", "thin"),
    [
        ([(80.0, [A] * 20), (100.0, [A, T, A, T])], True),  # one let through, then alternating
        ([(80.0, [A] * 20), (100.0, [T, A, T])], True),  # none: sent too soon after the last
        ([(80.0, [A] * 20), (100.0, [A, A, A, T, A])], False),  # three: a bucket of more
    ],
)
def test_a_probe_step_that_lets_a_token_or_two_through_finds_the_bucket_thin(
    rows: list[tuple[float, list[Outcome]]], thin: bool
) -> None:
    gauge = _gauge(*rows)
    gauge.step_ended(probe=True)
    assert gauge.thin is thin


def test_a_probe_step_from_a_cruise_with_a_throttle_taken_for_noise_does_not_find_it_thin() -> None:
    """A probe step begins from a full bucket only if the cruise before it held without a
    throttle: one throttle there, taken for noise (a stalling server's clump), may have left
    the bucket short, and the step's few let through say nothing of its size."""
    gauge = _gauge((80.0, [A] * 20), (100.0, [A, T, A, T]))
    gauge.step_ended(probe=True, full=False)
    assert not gauge.thin
    gauge = _gauge((80.0, [A] * 20), (100.0, [A, T, A, T]))
    gauge.step_ended(probe=True, full=True)
    assert gauge.thin


def test_sharing_a_limit_counts_what_the_fleet_let_through_not_this_process() -> None:
    gauge = _gauge((80.0, [A] * 20), (100.0, [A, T]))
    gauge.step_ended(probe=True, share=0.25)  # one seen here: about four sent by the fleet
    assert not gauge.thin


@pytest.mark.parametrize(
    ("before", "reading", "thin"),
    [
        ([A] * 6, 52.0, True),  # reads half the rate throttled: a thin bucket's reading
        ([A] * 6, 30.0, False),  # reads the limit below half: drained by the round before
        ([A] * 6, 72.0, False),  # reads the limit above half: a bucket that wastes nothing
        ([A], None, True),  # no reading; one let through in this round and the one before
        ([A] * 6, None, False),  # no reading; the round before may have drained a bigger one
    ],
)
def test_slow_start_settles_thinness_once_its_overload_is_read(
    before: list[Outcome], reading: float | None, thin: bool
) -> None:
    gauge = _gauge((50.0, before), (100.0, [A, T]))
    gauge.step_ended(probe=False)
    assert not gauge.thin  # not before the reading
    gauge.settle(reading, 100.0)
    assert gauge.thin is thin


@pytest.mark.parametrize(
    ("rows", "reading", "held"),
    [
        # Thin: the round at 80/s held 20 with no throttle, so the limit is >= 80 x (1 - 2/20).
        ([(50.0, [A] * 10), (80.0, [A] * 20), (100.0, [A, T])], 52.0, 72.0),
        # Answers of the rounds interleaved (round trips spread more than a send apart): the
        # tally is by rate, not by the row being answered.
        ([(80.0, [A] * 10), (50.0, [A] * 5), (80.0, [A] * 10), (100.0, [A, T])], 52.0, 72.0),
        # A throttle in the round at 80/s: it proves nothing; the one at 50/s still does.
        ([(50.0, [A] * 10), (80.0, [A] * 19 + [T]), (100.0, [A, T])], 52.0, 40.0),
        # Not thin (the reading is the limit): nothing proven by the rounds.
        ([(50.0, [A] * 10), (80.0, [A] * 20), (100.0, [A, T])], 90.0, 0.0),
        # Two answers are no more than a thin bucket lets through: nothing proven.
        ([(80.0, [A, A]), (100.0, [A, T])], 52.0, 0.0),
    ],
)
def test_slow_start_rounds_that_held_prove_a_rate_once_the_bucket_is_found_thin(
    rows: list[tuple[float, list[Outcome]]], reading: float, held: float
) -> None:
    gauge = _gauge(*rows)
    gauge.step_ended(probe=False)
    assert gauge.settle(reading, 100.0) == pytest.approx(held)
    assert gauge.settle(reading, 100.0) == 0.0  # once


def test_a_slow_start_begun_again_is_proven_only_by_its_own_rounds() -> None:
    """A rate that held before the limit fell (and rose again) proves nothing now: slow start
    begun again tallies its rounds afresh."""
    gauge = _gauge((80.0, [A] * 20))
    gauge.started()
    _gauge((50.0, [A] * 10), (100.0, [A, T]), gauge=gauge)
    gauge.step_ended(probe=False)
    assert gauge.settle(52.0, 100.0) == pytest.approx(40.0)  # 50 x (1 - 2/10), not 80's


@pytest.mark.parametrize(("cruised", "checked_soon"), [(2.0, True), (0.2, False)])
def test_a_far_lower_reading_is_checked_soon_only_below_a_rate_that_had_held(
    cruised: float, checked_soon: bool
) -> None:
    """A pause read the limit at 85/s, and the controller cruised at 82/s from its end. A
    second pause then reads 31/s: more than a probe step below. Had 82/s held for as long as
    a probe step must (0.5 s), the limit fell that far or the reading is rough, and a probe
    into the gap comes soon. Throttled within 0.2 s, 82/s was only the first reading's
    estimate, never proven: the second reading disproves it, and no probe is owed (behind
    ``Retry-After`` each costs a pause)."""
    c = RateController(initial=100.0)
    t = 0.0

    def cruise(until: float) -> float:
        now = t
        while now < until:
            c.on_answer(c.on_send(now), now, now + 0.02, Outcome.ACCEPTED)
            now += 1 / c.rate_at(now)
        return now

    def pause(now: float, accepted: list[int]) -> float:
        rate = c.rate_at(now)
        sent = [now + i / rate for i in range(len(accepted) + 1)]
        seqs = [c.on_send(s) for s in sent]
        answered = sent[-1] + 0.02
        c.on_answer(seqs[0], sent[0], answered, Outcome.THROTTLED)
        c.on_cooldown(answered, answered + 2.0, sent[0])
        for seq, s, ok in zip(seqs[1:], sent[1:], accepted, strict=True):
            c.on_answer(seq, s, answered + 0.01, Outcome.ACCEPTED if ok else Outcome.THROTTLED)
        return answered + 2.0

    t = cruise(2.0)
    t = pause(t, [1, 1, 1, 1, 1, 1, 1, 0])  # after the first throttle, 7 of 8 at 97/s: 85/s
    assert c.rate_at(t) == pytest.approx(0.97 * 97 * 7 / 8, rel=0.01)
    t = cruise(t + cruised)
    t = pause(t, [1, 0, 1, 0, 1, 0, 0, 0])  # 3 of 8 at 82/s: 31/s
    assert c.rate_at(t) < 0.7 * 82  # believed for now (or what 82/s held proves, if more)
    modes = set()
    for tenth in range(200):  # the 20 s after the pause (the usual wait is 40 s)
        c.rate_at(t + tenth * 0.1)
        modes.add(c.mode)
    assert (Mode.PROBE in modes) is checked_soon


def test_a_pause_that_reads_the_limit_far_below_the_rate_held_is_checked_soon() -> None:
    """Cruising at 97/s, a pause whose few answers say 3 of 8 were accepted reads the limit at
    36/s: a fall that far, or a rough reading. It cruises there, but one probe into the gap
    comes within the usual probe interval, not twenty pauses (40 s) later."""
    c = RateController(initial=100.0)
    t = 0.0
    while t < 2.0:  # cruising, every request accepted
        seq = c.on_send(t)
        c.on_answer(seq, t, t + 0.02, Outcome.ACCEPTED)
        t += 1 / 97
    sent = [t + i / 97 for i in range(9)]
    seqs = [c.on_send(s) for s in sent]
    now = sent[-1] + 0.02
    c.on_answer(seqs[0], sent[0], now, Outcome.THROTTLED)
    c.on_cooldown(now, now + 2.0, sent[0])
    for seq, s, ok in zip(seqs[1:], sent[1:], [1, 0, 1, 0, 0, 1, 0, 0], strict=True):
        c.on_answer(seq, s, now + 0.01, Outcome.ACCEPTED if ok else Outcome.THROTTLED)
    after = c.rate_at(now + 2.0)
    assert after < 0.5 * 97  # it believes the reading for now
    assert c.rate_at(now + 2.0 + 16.0) > after  # and checks it before long
    assert c.mode is Mode.PROBE


def _cruising_low(reading: float) -> RateController:
    """A controller cruising on a low first reading (as one account's can be, where a silence
    spoiled its first throttles), with nothing throttled near the limit."""
    c = RateController(initial=reading)
    c.bounds.throttled(525.0)  # slow start's overshoot, far above
    return c


def test_a_scope_far_below_what_other_scopes_measured_probes_at_their_rate_once() -> None:
    """146/s, a 2-token bucket, 242 ms round trips. Cruising at 18/s, its next probe for a rise
    is 500 requests (28 s) away, and would step up a quarter. Told that the other accounts
    measured 146/s, it steps to the rate they cruise at, at once, holds it and cruises there:
    no throttle, before any probe of its own is due."""
    hinted, alone = _cruising_low(18.0), _cruising_low(18.0)
    hinted.hint(146.0, 0.0, 0.0)
    assert hinted.mode is Mode.PROBE and hinted.rate_at(0.0) == pytest.approx(146.0 * 0.97)
    for c in (hinted, alone):
        out = drive(c, limit=146, burst=2, rtt=0.242, seconds=8, retry_after=4.0)
        assert out.throttled == 0
    assert hinted.mode is Mode.CRUISE and hinted.rate_at(8.0) == pytest.approx(146.0 * 0.97)
    assert alone.mode is Mode.CRUISE and alone.rate_at(8.0) < 20.0  # without the hint


def test_a_scope_with_a_lower_quota_than_its_peers_pays_one_pause_for_the_hint() -> None:
    """Its own quota is 40/s, the others' 146/s: the probe at their rate costs a pause (and
    the reading it brings may cost one more, as any pause's does), and it is not tried again
    however often the hint comes."""
    c = _cruising_low(36.0)
    c.hint(146.0, 0.0, 0.0)
    out = drive(c, limit=40, burst=2, rtt=0.242, seconds=30, retry_after=4.0)
    assert 1 <= out.pauses <= 2 and out.sent_in_pause == 0
    assert 0.85 * 40 <= c.rate_at(30.0) <= 40
    c.hint(146.0, 0.0, 30.0)
    assert c.mode is not Mode.PROBE and c.rate_at(30.0) <= 40


@pytest.mark.parametrize(
    ("throttled_at", "reading"), [(120.0, 18.0), (None, 130.0)], ids=["throttled", "near"]
)
def test_a_hint_is_not_followed_against_what_the_scope_measured(
    throttled_at: float | None, reading: float
) -> None:
    """No probe at the others' rate where this scope was throttled at or below it, nor where
    its own reading is within a probe step of it (the usual probes find that)."""
    c = RateController(initial=reading)
    if throttled_at is not None:
        c.bounds.throttled(throttled_at)
    before = c.rate_at(0.0)
    c.hint(146.0, 0.0, 0.0)
    assert c.mode is Mode.CRUISE and c.rate_at(0.0) == before


def test_a_rate_another_scope_held_counts_above_the_median_they_measured() -> None:
    """Most accounts read their first pause low (a rough reading from a few answers), one held
    161.6/s without a throttle: a scope cruising at 115 steps to the rate held, not to the
    median of the readings (121, within a probe step of its own)."""
    c = _cruising_low(115.0)
    c.hint(121.0, 161.6, 0.0)
    assert c.mode is Mode.PROBE and c.rate_at(0.0) == pytest.approx(161.6)
    out = drive(c, limit=167, burst=151, rtt=0.0093, seconds=3, retry_after=1.0)
    assert out.throttled == 0
    assert c.mode is Mode.CRUISE and c.rate_at(3.0) == pytest.approx(161.6)


def test_a_cruise_used_without_a_throttle_long_enough_is_proven() -> None:
    """What other scopes are told a scope held (``proven``): the rate it cruises at, once sent
    at for as long as a probe step must hold; before that, or if it was not used, only what
    its bounds say."""
    short, long = RateController(initial=100.0), RateController(initial=100.0)
    rate = long.rate_at(0.0)
    assert long.proven(0.0) == 0.0  # nothing sent yet
    drive(short, limit=146, burst=2, rtt=0.02, seconds=0.5)
    assert short.proven(0.5) == 0.0  # held half a second: a burst could hide that much
    drive(long, limit=146, burst=2, rtt=0.02, seconds=4.0)
    assert long.mode is Mode.CRUISE and long.proven(4.0) == rate
    assert long.proven(40.0) == 0.0  # cruising on with nothing sent since proves nothing
