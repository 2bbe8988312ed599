"""The rate controller of one limit scope: finds the server's limit, holds just under it,
probes now and then for more, and obeys cool-downs. Pure: every time is an argument.

Two kinds of knowledge feed one estimate of the limit (``limit``):

- **Measured**: between two throttled requests sent in a row, the server's bucket was empty at
  both ends, so what it accepted in between is what it refilled (``SendLog``,
  ``LimitEstimate``). Exact whatever the burst, as long as we kept sending above the limit.
- **Bounds**: ``lo``, a rate held long enough without a throttle, and ``hi``, the lowest rate
  throttled at. A server whose bucket holds a token or two wastes refills while we send just
  above its limit, so measuring reads low there (``BucketGauge`` tells such a bucket, and its
  limit is searched between the bounds instead). And a server that answers every throttle
  with a cool-down (``Retry-After``) gives too few throttles in a row to measure when few
  requests are in flight; searching the bounds finds the limit there too (each step chosen
  for the pause it risks, ``search.best_step``), and the scope's first sends with the row
  after their pause narrow them first (``StartHistory``).

The estimate is the best lower bound: ``max(measured, lo)``, capped by ``hi``. Modes:

- ``STARTUP`` (slow start): from a low rate, double once per round trip of requests actually
  sent at that rate and accepted, until the first throttle (or the ceiling).
- ``MEASURE``: a throttle came back. Stop growing; stay just above what the answers measure,
  so they keep measuring, until an estimate is in (or a cool-down that began meanwhile ends).
- ``CRUISE``: send at ``cruise_gain`` x the estimate. A lone throttle is noise; several in a
  row measure a lower limit, which is followed at once.
- ``PROBE``: now and then, step above the estimate (into the middle of the bounds, or by
  ``probe_gain``), hold each step long enough to tell, climb while steps hold, and stop at the
  first throttle, whose answers refresh the estimate. Above all bounds, a probe that sends more
  above the estimate than any burst explains returns to ``STARTUP``: the limit rose (and is
  measured afresh). The first climb after the limit fell also tests the bound the fall left.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .estimator import (
    THIN_BURST,
    BucketGauge,
    DrainFit,
    LimitEstimate,
    Outcome,
    RoundTrip,
    Sample,
    SendLog,
    StartHistory,
)
from .search import best_step

__all__ = ["Bounds", "ControllerSettings", "Mode", "RateController"]


class Mode(Enum):
    STARTUP = "startup"
    MEASURE = "measure"
    CRUISE = "cruise"
    PROBE = "probe"


# Answers kept for ``answered_since``: to requests sent within this long (or four of the
# highest round trips) of the newest, at most this many.
_KEEP_S = 1.0
_KEEP_MAX = 65536


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """How the controller behaves; none of these is a property of any one server.

    ``initial_rate``: where slow start begins (requests/s) when nothing is known.
    ``min_round_s``: slow start doubles at most this often, however short the round trip (on
    a fast server a bucket's burst would otherwise let the rate double many times over before
    the first throttle).
    ``cruise_gain`` / ``probe_gain``: multiples of the estimated limit to hold and to probe at;
    ``measure_gain``: how far above what it has measured so far a measurement keeps sending.
    ``probe_every_s`` / ``probe_every_rtts`` / ``probe_every_requests``: the time between
    probes is the largest of the three (a probe costs a round trip's worth of throttles, and a
    few throttles at least: at a low rate those must be spread over enough requests to stay a
    small share of them). After a server cool-down, probes wait at least
    ``cooldown_probe_factor`` times the pause, doubling each time a probe found nothing new.
    ``hold_s`` / ``hold_rtts`` / ``hold_requests``: a probe step counts as sustained once held
    for the longest of these without a throttle, and long enough that a burst of
    ``burst_allowance_s`` could not have hidden it, up to ``hold_max_s`` (times
    ``cooldown_hold_factor`` once the server has announced cool-downs: there a step that only
    seemed to hold costs a whole pause).
    ``burst_allowance_s``: sending this many seconds' worth of the estimate above it, with no
    throttle, means the limit rose (no server burst is taken to be larger).
    ``min_accepted``: accepted requests pooled into one estimate (its error is ~1/min_accepted);
    ``first_accepted``: how many the first, provisional estimate needs.
    ``narrow``: bounds closer than this ratio are the limit, found.
    ``start_risk``: once the work left is known (the input has ended, or its size is known),
    the share of it slow start may send in one round trip above a rate proven so far: the
    throttles its overshoot costs stay a small part of the job (a burst can hide an overshoot
    for several rounds, so a round's doubling can be all over the limit). Where round trips
    are at least ``long_round_s``, that share of the work known may also make a round grow
    faster than doubling (below it, doubling reaches any limit within a second or two).
    ``throttle_tolerance``: the share of a slow start's or a probe step's requests that may be
    throttled before its rate counts as over the limit (a clump of throttles from a stall on
    either side is timing noise, not the limit; an overshoot soon exceeds any small share).
    ``noise_spans``: a measurement of the limit must span this many times the timing noise
    (how far round trips spread above their minimum) per run of throttles in a row, so that
    the noise at the ends of each run is a small part of it; but throttles over ``noise_share``
    of the answers while it waits are never noise.
    """

    initial_rate: float = 4.0
    min_round_s: float = 0.05
    cruise_gain: float = 0.97
    probe_gain: float = 1.25
    measure_gain: float = 1.25
    probe_every_s: float = 3.0
    probe_every_rtts: float = 30.0
    probe_every_requests: float = 500.0
    cooldown_probe_factor: float = 20.0
    hold_s: float = 0.5
    hold_max_s: float = 1.0
    cooldown_hold_factor: float = 4.0
    hold_rtts: float = 8.0
    hold_requests: float = 16.0
    burst_allowance_s: float = 1.0
    min_accepted: int = 32
    first_accepted: int = 8
    narrow: float = 1.1
    start_risk: float = 0.01
    long_round_s: float = 0.2
    floor: float = 0.2
    throttle_tolerance: float = 0.01
    noise_spans: float = 4.0
    noise_share: float = 0.1

    def __post_init__(self) -> None:
        if not self.initial_rate > 0 or not self.floor > 0:
            raise ValueError("initial_rate and floor must be > 0")
        if not 0 < self.cruise_gain <= 1:
            raise ValueError("cruise_gain must be in (0, 1]")
        if min(self.probe_gain, self.measure_gain, self.narrow) <= 1:
            raise ValueError("probe_gain, measure_gain and narrow must be > 1")
        periods = (
            self.probe_every_s,
            self.probe_every_rtts,
            self.probe_every_requests,
            self.cooldown_probe_factor,
            self.hold_s,
            self.hold_rtts,
            self.hold_requests,
            self.hold_max_s,
            self.cooldown_hold_factor,
            self.min_round_s,
            self.long_round_s,
        )
        if min(periods) < 0:
            raise ValueError("probe intervals, holds and round lengths must be >= 0")
        if not self.burst_allowance_s > 0:
            raise ValueError("burst_allowance_s must be > 0")
        if not 1 <= self.first_accepted <= self.min_accepted:
            raise ValueError("need 1 <= first_accepted <= min_accepted")
        if not 0 < self.start_risk <= 1:
            raise ValueError("start_risk must be in (0, 1]")
        if not 0 <= self.throttle_tolerance < 1:
            raise ValueError("throttle_tolerance must be in [0, 1)")
        if self.noise_spans < 0:
            raise ValueError("noise_spans must be >= 0")
        if not 0 <= self.noise_share < 1:
            raise ValueError("noise_share must be in [0, 1)")


class Bounds:
    """What is known of the limit without measuring it: ``lo``, a rate held long enough
    without a throttle, and ``hi``, the lowest rate throttled at since the limit last rose."""

    __slots__ = ("fell_since", "hi", "lo", "lo_before")

    def __init__(self) -> None:
        self.lo = 0.0
        self.lo_before = 0.0  # the ``lo`` before the current one, in case that proves wrong
        self.hi = math.inf
        self.fell_since = False  # the limit fell, and nothing has been held since

    def sustained(self, rate: float) -> None:
        self.fell_since = False
        if rate > self.lo:
            self.lo_before, self.lo = self.lo, rate
        if rate >= self.hi:
            self.hi = math.inf  # what once failed now holds: the limit rose

    def throttled(self, rate: float) -> None:
        """A throttle at ``rate``: it is above the limit, and so is any ``lo`` that high (a
        burst can make a rate look sustainable for a while)."""
        self.hi = min(self.hi, rate)
        while self.lo >= self.hi and self.lo > 0:
            self.lo, self.lo_before = self.lo_before, 0.0

    def fell(self, below: float) -> None:
        """The limit fell below ``below``: rates held before say nothing any more."""
        if self.lo >= below:
            self.lo = self.lo_before = 0.0
        self.fell_since = True
        self.hi = min(self.hi, below)

    def bracket(self, low: float, high: float) -> None:
        """The limit is between ``low`` and ``high``, known without holding or being throttled
        at either (``StartHistory``): the bounds narrow to them where they are wider."""
        if self.lo < low < self.hi:
            self.lo_before, self.lo = self.lo, low
        if self.lo < high < self.hi:
            self.hi = high

    def disprove(self, limit: float) -> None:
        """The limit was measured at ``limit``: rates above it only seemed to hold."""
        while self.lo > limit:
            self.lo, self.lo_before = self.lo_before, 0.0

    def narrow(self, ratio: float) -> bool:
        return self.lo > 0 and self.hi <= self.lo * ratio


class RateController:
    """Allowed request rate of one scope, from what the server answers (see module doc).

    Call ``on_send`` when a request leaves (it returns the request's sequence number),
    ``on_answer`` when its answer arrives, ``on_cooldown`` when the server announces a pause,
    and read ``rate_at(now)`` for the rate to pace at.
    """

    __slots__ = (
        "_ceiling",
        "_climb",
        "_climb_base",
        "_climb_fell",
        "_climb_sent",
        "_climb_since",
        "_cooldown_until",
        "_cruise_since",
        "_cut_at",
        "_drain",
        "_ep_accepted",
        "_ep_after",
        "_ep_from",
        "_fleet_mark",
        "_found",
        "_fresh_at",
        "_gauge",
        "_hinted",
        "_history",
        "_lone_at",
        "_lone_rate",
        "_m_acc",
        "_m_back",
        "_m_blind",
        "_m_est",
        "_m_fleet",
        "_m_from",
        "_m_held",
        "_m_late",
        "_m_probe",
        "_m_rate",
        "_m_since",
        "_m_sum",
        "_m_thr",
        "_mode_sent",
        "_mode_thr",
        "_next_probe",
        "_pause_s",
        "_peer_step",
        "_probe_backoff",
        "_probe_base",
        "_probe_since",
        "_quiet_until",
        "_rate",
        "_rise_climb",
        "_rising",
        "_round_at",
        "_round_seq",
        "_thr_rate",
        "accepted",
        "answers",
        "bounds",
        "cooldowns",
        "cuts",
        "estimate",
        "external",
        "fleet_left",
        "lag",
        "listener",
        "log",
        "mode",
        "rtt",
        "settings",
        "share",
        "throttled",
        "work_expected",
        "work_known",
        "work_left",
    )

    listener: Callable[[float, bool], None] | None  # told of each answer kept (``keep_answers``)

    def __init__(
        self,
        ceiling: float | None = None,
        *,
        initial: float | None = None,
        settings: ControllerSettings | None = None,
    ) -> None:
        if ceiling is not None and not ceiling > 0:
            raise ValueError("ceiling must be > 0")
        self.settings = s = settings or ControllerSettings()
        self._ceiling = math.inf if ceiling is None else float(ceiling)
        self._rate = min(self._ceiling, s.initial_rate)
        self.mode = Mode.STARTUP
        self.rtt = RoundTrip()
        self.log = SendLog(dense=s.min_accepted)
        self.estimate = LimitEstimate(min_accepted=s.min_accepted)
        self.bounds = Bounds()
        self._round_seq, self._round_at = 0, -math.inf
        self._fleet_mark = (0.0, -math.inf)  # tokens the fleet had taken, when (``external``)
        self._cut_at = -math.inf  # when the rate was last lowered
        self._fresh_at = -math.inf  # when a sample begun since then last moved the estimate
        self._m_since = -math.inf  # when the current measurement began
        self._m_from = -math.inf  # send time of the throttle that began it
        self._m_rate = 0.0  # the rate that throttle was sent at
        self._m_est: float | None = None  # the estimate before it, when cruising
        # It came at a ceiling slow start reached, nothing measured; it ended a probe step that
        # goes straight back to the rate known (see ``_measure``).
        self._m_blind = self._m_back = self._m_held = False
        # Send time and rate of the last throttle taken for noise while cruising.
        # (``_cruise_since``: when the rate cruised at was set.)
        self._lone_at, self._lone_rate, self._cruise_since = -math.inf, 0.0, -math.inf
        # Answers to requests sent since that throttle: accepted, throttled, and the rates
        # they were sent at, summed.
        # (``_m_fleet``: they are the whole fleet's, counted by each process: ``on_episode``.)
        self._m_acc, self._m_thr, self._m_sum, self._m_fleet = 0, 0, 0.0, False
        self._m_late = [0.0, 0.0, 0.0]  # sent a round-trip spread or more after it: answers
        self._m_probe = math.inf  # when the next probe was due, when cruising
        self._next_probe = math.inf
        self._quiet_until = -math.inf  # no probe before this (set by cool-downs)
        self._probe_since = -math.inf
        self._probe_base = 0.0
        # Probe steps held in a row in the climb under way, and whether it began after the
        # limit fell, before anything was held since.
        self._climb, self._climb_fell = 0, False
        # The estimate the climb started from, when, and sent since.
        self._climb_base, self._climb_since, self._climb_sent = 0.0, -math.inf, 0
        # Cool-down waits before probing grow while probes for a rise find none (``_rising``:
        # the step under way is one).
        # (``_hinted``: a probe at the rate other scopes measured was tried; ``_peer_step``:
        # the step under way is that probe.)
        self._probe_backoff, self._rising, self._hinted, self._peer_step = 1.0, False, False, False
        # ``_rise_climb``: the climb began as a probe for a rise, not a search; ``_found``: the
        # bounds in which no planned step pays (``_plan``).
        self._rise_climb, self._found = False, (0.0, 0.0)
        self._mode_sent = self._mode_thr = 0  # sent, throttled since slow start or a step began
        self._thr_rate = 0.0  # the rate the last throttled request was sent at
        self._cooldown_until = -math.inf
        self._ep_from = math.nan  # send time of the throttle that began the last cool-down
        # Accepted answers since then, and those of them sent after the pause it began.
        self._ep_accepted = self._ep_after = 0
        # The bucket's size and rate; the first sends and the row after their pause.
        self._drain, self._gauge, self._history = DrainFit(), BucketGauge(), StartHistory()
        self.cuts = self.cooldowns = 0
        # The part of the scope's traffic this controller sees (1.0 unless the limit is shared
        # with other processes: then its answers measure only its share of the limit).
        self.share = 1.0
        # With ``external``, samples of the limit come from ``on_sample`` (the answers of every
        # process sharing the limit, tallied elsewhere), not from this process's own answers,
        # and up to ``lag`` seconds late (the slot an answer falls in must end and be read): a
        # measurement waits that long before it takes the fleet's silence for no throttle.
        self.external, self.lag = False, 0.0
        self.accepted = self.throttled = 0  # answers of each kind (a shared pacer reads them)
        # (send time, throttled?) of the answers to requests sent over the last second or few
        # round trips, kept once ``keep_answers`` is called (a shared limit counts a
        # cool-down's answers from them: ``answered_since``). Memory is what was sent in that
        # time, whatever the number of scopes (an idle scope is forgotten).
        self.answers: deque[tuple[float, bool]] | None = None  # (and ``listener``, with it)
        # Requests this scope has left to send, once that is known (the input has ended): a
        # probe near the end of the work would cost its throttles, or a pause, for nothing;
        # and the last cool-down the server announced.
        # (``fleet_left``: leading a shared limit, ``external``, the whole fleet's work left as
        # its processes tell it: what a probe for a rise has to pay for.)
        self.work_left, self.fleet_left, self._pause_s = math.inf, math.inf, 0.0
        # What it has left as far as it is counted while the input goes on (queued, parked,
        # and an input of a known size still to read, for one global limit): a share of it is
        # what slow start may risk in a round of growing faster than doubling (``_grown``).
        # ``work_expected``: all it has left, where the input's size is known (inf: it is
        # not), which a probe for a rise that costs a pause must leave to pay for it.
        self.work_known, self.work_expected = 0.0, math.inf
        if initial is not None:
            # What other scopes learned: start there as a provisional estimate. A limit of
            # its own shows soon enough (throttles measure a lower one, probes a higher one).
            self.estimate.provisional(max(s.floor, initial), -math.inf)
            self.mode = Mode.CRUISE
            self._rate = self._target()
            self._next_probe = self._probe_interval()

    # -- what the scheduler reads ---------------------------------------------------------

    @property
    def ceiling(self) -> float:
        return self._ceiling

    @property
    def at_ceiling(self) -> bool:
        """True when the user's ``--rate`` ceiling, not the server, is what holds the rate."""
        return self._rate >= self._ceiling and self.mode is not Mode.MEASURE

    @property
    def limit(self) -> float | None:
        """The estimated server limit: the best lower bound known (see module doc)."""
        measured = self.estimate.value or 0.0
        best = max(measured, self.bounds.lo)
        if best <= 0:
            return None
        return min(best, self.bounds.hi)

    def rate_at(self, now: float) -> float:
        """The rate to pace at now (time-driven changes happen here)."""
        if now < self._cooldown_until:
            return self._rate
        mode = self.mode
        if mode is Mode.MEASURE:
            if self._cooldown_until >= self._m_since:
                self._after_cooldown(now)
                self._drain.resumed(now, self._rate)
            elif self._m_back and now > self._m_since:
                # A step failed (see ``_measure``): the step is the new upper bound, and
                # nothing the overload reads is worth its throttles. Back to what held, once
                # the answer that ended the step has said all it had to (a cool-down?). What
                # was sent at the step's rate until now answers for the step, not the cruise.
                self._cut_at = now
                self._cruise(now)
            elif self._measure_timed_out(now):
                self._after_silence(now)
        elif mode is Mode.CRUISE:
            if now >= self._next_probe and self._rate < self._ceiling:
                if self._searching():
                    self._search(now)
                elif (coarse := self._coarse_step()) is not None:
                    self._step(now, *coarse)
                    self._rise_climb = False
                elif self._probe_pays(base := self.limit or self._rate):
                    self._rise_climb = True
                    self._probe(now, base)
                    self._rising = True
                else:
                    self._next_probe = now + self._probe_wait()
        elif mode is Mode.PROBE:
            self._probe_held(now)
        return self._rate

    def proven(self, now: float) -> float:
        """The highest rate known to hold: ``bounds.lo``, or the rate cruised at once it has
        been used without a throttle for as long as a probe step must hold at most."""
        lo = self.bounds.lo
        if self.mode is not Mode.CRUISE or self._round_at == -math.inf:
            return lo  # (nothing sent yet)
        s = self.settings
        held = now - max(self._cruise_since, self._round_at)
        hold = s.hold_max_s * (s.cooldown_hold_factor if self.cooldowns else 1.0)
        if held < max(hold, self._held_for()):
            return lo
        if self._mode_sent < 0.5 * self._rate * held:
            return lo  # (not used: no work, or the in-flight cap)
        return max(lo, self._rate)

    def hint(self, measured: float, proven: float, now: float) -> None:
        """Other scopes of this kind (accounts of one service) measured ``measured`` (their
        median), and one of them held ``proven`` without a throttle (the most any held, by
        ``proven``). Such scopes usually share a quota: one cruising more than a probe step
        below the rate they cruise at, never throttled at or below it, probes at that rate
        now, once, rather than a step per probe wait (where throttles cost cool-downs, twenty
        pauses apart). Held, it cruises there; a quota of its own lower than the others'
        costs that one probe (a pause, where throttles cost cool-downs), and the hint is not
        followed again."""
        if self._hinted or self.external or self.mode is not Mode.CRUISE:
            return
        if now < self._cooldown_until or self.limit is None:
            return
        step = min(max(measured * self.settings.cruise_gain, proven), self._ceiling)
        if step <= self._target() * self.settings.probe_gain or self.bounds.hi <= step:
            return
        self._hinted = True
        self._step(now, step, self.limit)
        self._peer_step = True

    # -- events ---------------------------------------------------------------------------

    def on_send(self, now: float) -> int:
        self._mode_sent += 1
        if self.mode is Mode.PROBE:
            self._climb_sent += 1
        if self._round_at == -math.inf:
            self._round_at = now
        seq = self.log.sent(now, self._rate)
        if self._history.open and not self.external:  # (the first rows only: a flag after)
            self._history.sent(seq, now)
        return seq

    def on_answer(self, seq: int, sent_at: float, now: float, outcome: Outcome) -> None:
        """The answer to request ``seq``, sent at ``sent_at``."""
        self.rtt.add(now - sent_at, now)
        # Sending counts as continuous while no two requests are further apart than a few
        # sends at the current rate or a round trip, whichever is longer.
        self.log.set_gap(max(0.05, 4.0 / self._rate, 2.0 * self.rtt.srtt))
        sent_rate = self.log.rate_at_send(seq)
        self._gauge.answered(sent_rate, outcome)
        if outcome is not Outcome.UNKNOWN:
            self._drain.answered(sent_at, sent_rate, outcome is Outcome.ACCEPTED)
        for sample in self.log.answered(seq, outcome):
            if not self.external:
                self._on_sample(sample, now, 1.0 / self.share)
        if outcome is not Outcome.UNKNOWN:
            if self.mode is Mode.MEASURE and sent_at >= self._m_from and not self.external:
                self._measure_answer(sent_at, sent_rate, outcome)
            if self.answers is not None:
                self._keep(sent_at, outcome is Outcome.THROTTLED)
        if outcome is Outcome.THROTTLED:
            self.throttled += 1
            self._history.throttled(seq)
            self._on_throttle(sent_at, sent_rate, now)
        elif outcome is Outcome.ACCEPTED:
            self.accepted += 1
            self._ep_accepted += 1
            self._ep_after += sent_at >= self._cooldown_until
            self._on_accept(seq, now)
        if self.mode is Mode.MEASURE:
            self._measuring(now)

    def on_cooldown(
        self, now: float, until: float, sent_at: float, rate: float | None = None
    ) -> None:
        """The server said: nothing before ``until``, in answer to a request sent at
        ``sent_at`` (call it after ``on_answer`` for that answer), at ``rate`` if it was
        another process's. The pacer pauses; here the chain of samples breaks, and the rate
        after the pause is decided when it ends."""
        if until <= self._cooldown_until:
            return
        if rate is not None:
            self._thr_rate = rate
        self.cooldowns += 1
        if now >= self._cooldown_until:  # a new episode, not one more answer to the last
            if not math.isnan(self._ep_from) and sent_at > self._ep_from:
                # The bucket was empty at both throttles: it refilled at least what it took.
                # Not at its rate while full, in the pause between: from the pause's end it
                # held at most a burst (``burst_allowance_s`` of the limit at most), so it
                # refilled the rest since.
                # (A request sent before that pause and answered after it, on a round trip
                # longer than the pause, says nothing of the time since.)
                lower = self._ep_accepted / (sent_at - self._ep_from)
                since = sent_at - self._cooldown_until
                if since > 0:
                    burst = self.settings.burst_allowance_s
                    lower = max(lower, self._ep_after / (since + burst))
                self.bounds.sustained(lower)
            self._ep_from = sent_at
            self._ep_accepted = self._ep_after = 0
            if self._rising:
                # A probe for a rise that cost a pause: if it found nothing (no step held),
                # the next waits twice as long (up to 16 times); for one that did, not.
                self._rising = False
                found = self._climb > 0
                self._probe_backoff = 1.0 if found else min(2.0 * self._probe_backoff, 16.0)
            self._drain.throttled(sent_at, paced=self.external)
            self._from_history(now)
            self.log.break_chain(now)
            if self.mode is Mode.STARTUP or self.mode is Mode.PROBE:
                # A throttle that stops everything for a while is never noise to tolerate.
                if rate is None:
                    self._note_burst()
                self.bounds.throttled(self._thr_rate or self._rate)
                self._measure(now, self._thr_rate or self._rate, sent_at)
            else:
                # Cruising (the throttle's answer may have begun measuring already): not noise
                # either. The rate is above the limit, and so is any rate held that high (a
                # burst hid the limit while it was held).
                if self.mode is not Mode.MEASURE:
                    self._measure(now, self._rate, sent_at)
                if self._m_est is not None:
                    self.bounds.throttled(self._m_rate)
        self._cooldown_until = until
        self._pause_s = until - now
        self._quiet_until = max(self._quiet_until, until + self._probe_wait())
        self._next_probe = max(self._next_probe, self._quiet_until)

    def _drained(self, limit: float, now: float) -> None:
        """How long the refilled bucket lasted measured ``limit`` (``DrainFit``), to within a
        request over the difference of the two windows' lengths: where that is wide, the limit
        is between the ends, and the search goes on there (``_coarse_step``)."""
        self.bounds.disprove(limit)
        self.estimate.provisional(limit, now)
        if self._drain.coarse(self.settings.narrow):
            self.bounds.bracket(*self._drain.allows())

    def _from_history(self, now: float) -> None:
        """A cool-down began. The first sends and the row after their pause bound the limit
        (``StartHistory``): that close, it is the estimate; otherwise the search goes on
        between them."""
        if self.external:
            self._history.abandon()  # its own sends are only its share of the fleet's
            return
        limits = self._history.pause(self.bounds.hi)
        if limits is None:
            return
        low, high = limits
        if high <= low * self.settings.narrow:
            self.estimate.provisional(math.sqrt(low * high), now)
        else:
            self.bounds.bracket(low, high)

    # -- transitions ----------------------------------------------------------------------

    def adopt(self, rate: float, now: float) -> None:
        """Take over ``rate`` from elsewhere (the process that led a shared limit, or the share
        this process had of it when the limit stops being shared): cruise there, as measured."""
        rate = self._clamp(rate)
        self.estimate.provisional(rate / self.settings.cruise_gain, now)
        self.bounds = Bounds()
        self.mode = Mode.CRUISE
        self._rate = rate
        self._cut_at = now
        self._next_probe = max(self._quiet_until, now + self._probe_interval())

    def on_round(self, accepted: float, span: float, now: float) -> None:
        """``accepted`` answers in ``span`` seconds, none throttled, from elsewhere (the whole
        fleet sharing the limit): in slow start, a round trip that used the rate."""
        if self.mode is not Mode.STARTUP or now - self._round_at < self.settings.min_round_s:
            return
        if accepted >= 0.5 * self._rate * span:
            self._round_seq = self.log.next_seq
            self._round_at = now
            self._rate = min(self._ceiling, self._rate * 2.0)
            if self._rate >= self._ceiling:
                self._cruise(now)

    def on_fleet_taken(self, taken: float, now: float) -> None:
        """The tokens the whole fleet sharing the limit has taken from it so far (``external``).
        In slow start, a round of two round trips in which the fleet used the rate and no
        process signalled a throttle (``fleet_throttled`` ends slow start) came back clean:
        double, as one's own answers would (while the fleet's rate is low they are few, and
        the fleet's tallies come a slot late)."""
        if self.mode is not Mode.STARTUP:
            return
        srtt = self.rtt.srtt
        if math.isnan(srtt) or now - self._round_at < max(self.settings.min_round_s, 2.0 * srtt):
            return
        before, since = self._fleet_mark
        self._fleet_mark = (taken, now)
        if taken - before < 0.5 * self._rate * (now - since):
            return  # the rate was not used: it says nothing of the server
        self._round_seq = self.log.next_seq
        self._round_at = now
        self._rate = min(self._ceiling, self._rate * 2.0)
        if self._rate >= self._ceiling:
            self._cruise(now)

    def fleet_throttled(self, rate: float, now: float) -> None:
        """Another process sharing the limit was throttled while pacing at ``rate``: in slow
        start or a probe, stop growing now (as its own first throttle would); so too cruising
        at the ceiling slow start reached with nothing measured (its own throttles are only
        its share of the fleet's, and come late on a busy machine)."""
        mode = self.mode
        # (Once: a signal says the sender's rate now, not the throttled request's, so later
        # signals of requests sent before the cut would halve again and again.)
        blind = mode is Mode.CRUISE and self.limit is None and rate >= self._ceiling
        if mode is Mode.STARTUP or mode is Mode.PROBE or blind:
            self.bounds.throttled(rate)
            self._measure(now, rate, now - self._srtt())

    def on_tally(self, accepted: int, throttled: int, sent_from: float = -math.inf) -> None:
        """Answers of the whole fleet sharing the limit (``external``), tallied elsewhere, to
        requests sent from ``sent_from`` on. Answers to requests sent before the rate was
        last lowered say nothing of the new rate (the other processes' throttles of the
        overshoot come back after the cut): they do not count, except around a cool-down,
        whose answers are all to requests sent before it."""
        if self.mode is not Mode.MEASURE or self._m_fleet:
            return
        if sent_from >= self._cut_at or self._cooldown_until >= self._m_since:
            self._m_acc += accepted
            self._m_thr += throttled
            self._m_sum += self._m_rate * (accepted + throttled)  # each one's rate unknown

    def _measure_answer(self, sent_at: float, sent_rate: float, outcome: Outcome) -> None:
        """Count an answer (accepted or throttled) to a request sent since the throttle that
        began the measurement."""
        throttled = outcome is Outcome.THROTTLED
        if throttled:
            self._m_thr += 1
        else:
            self._m_acc += 1
        self._m_sum += sent_rate
        if sent_at >= self._m_from + self.rtt.spread:
            late = self._m_late  # sent after any clump had ended: accepted, throttled, rates
            late[1 if throttled else 0] += 1
            late[2] += sent_rate

    def on_episode(self, accepted: int, throttled: int, now: float) -> None:
        """The whole fleet's answers to requests sent since the throttle that began the
        cool-down under way (``external``), each process counting its own by send time. They
        replace the tallies by slot of answer time, whose slot around the throttle mixes in
        the answers of requests sent before it, while the bucket still had tokens (the share
        accepted reads high)."""
        if self.mode is not Mode.MEASURE or now >= self._cooldown_until:
            return
        if accepted + throttled > 0:
            self._m_fleet = True
            self._m_acc, self._m_thr = accepted, throttled
            self._m_sum = self._m_rate * (accepted + throttled)

    def keep_answers(self, listener: Callable[[float, bool], None] | None = None) -> None:
        """Keep the send time and kind of recent answers (see ``answered_since``), and hand
        each one to ``listener`` as it comes (send time, throttled?)."""
        if self.answers is None:
            self.answers = deque(maxlen=_KEEP_MAX)
        self.listener = listener

    def _keep(self, sent_at: float, throttled: bool) -> None:
        answers = self.answers
        if answers is None:
            return
        answers.append((sent_at, throttled))
        if self.listener is not None:
            self.listener(sent_at, throttled)
        high = self.rtt.high
        keep = 4.0 * high if high > _KEEP_S / 4.0 else _KEEP_S  # (NaN: none measured yet)
        while answers[0][0] < sent_at - keep:
            answers.popleft()

    def answered_since(self, sent_from: float) -> tuple[int, int]:
        """(accepted, throttled) answers kept, to requests sent at ``sent_from`` or later."""
        accepted = throttled = 0
        for sent_at, was_throttled in self.answers or ():
            if sent_at >= sent_from:
                if was_throttled:
                    throttled += 1
                else:
                    accepted += 1
        return accepted, throttled

    @property
    def episode_from(self) -> float:
        """Send time of the request whose answer began the last cool-down (NaN: none yet)."""
        return self._ep_from

    def on_sample(self, sample: Sample, now: float) -> None:
        """A measure of the limit from elsewhere (``external``): the whole fleet's answers."""
        self._on_sample(sample, now, 1.0)
        if self.mode is Mode.MEASURE:
            self._measuring(now)

    def _on_sample(self, sample: Sample, now: float, scale: float) -> None:
        if scale != 1.0:  # what this process saw is its share of what the server took
            sample = Sample(sample.at, sample.accepted * scale, sample.span)
        before = self.estimate.value
        value = self.estimate.add(sample, now, self._run_span(), self._rate)
        if value is None or value == before:
            return
        # Throttles in a row sent before the rate was last lowered measured the overshoot the
        # cut answered for: they may refine the estimate, never say the limit fell since
        # (above a bucket of one token they read low; the rates held since are a better bound).
        fresh = sample.at - sample.span >= self._cut_at
        if fresh:
            self._fresh_at = now
        if self.mode is not Mode.CRUISE:
            return
        if value < self._rate and fresh:
            # Throttles in a row below the rate we cruise at: the limit fell.
            self.bounds.fell(self._rate)
            self.cuts += 1
            self._cut_at = now
        self._rate = self._target()

    def _on_throttle(self, sent_at: float, sent_rate: float, now: float) -> None:
        if sent_at < self._cut_at:
            return  # sent before the last cut: caused by the old rate, already answered for
        rate = self._thr_rate = sent_rate or self._rate
        mode = self.mode
        if mode is Mode.STARTUP or mode is Mode.PROBE:
            self._mode_thr += 1
            if self._within_tolerance():
                return  # a stray throttle or a clump from a stall: not yet the limit
            self._note_burst()
            self.bounds.throttled(rate)
            self._measure(now, rate, sent_at)
        elif mode is Mode.CRUISE:
            # Throttled at the cruising rate: the limit may have fallen. A second throttle
            # soon after will measure it; if none comes, this one was noise.
            self._measure(now, rate, sent_at)

    def _on_accept(self, seq: int, now: float) -> None:
        if self.mode is Mode.STARTUP:
            if seq >= self._round_seq and now - self._round_at >= self.settings.min_round_s:
                # A round trip of requests sent at this rate came back accepted: double it,
                # if it was used (a rate the input or the in-flight cap did not let us reach
                # says nothing about the server).
                sent = (self.log.next_seq - self._round_seq) / self.share
                used = sent >= 0.5 * self._rate * (now - self._round_at)
                self._round_seq = self.log.next_seq
                self._round_at = now
                if used:
                    self._rate = min(self._ceiling, self._grown())
                if self._rate >= self._ceiling:
                    self._cruise(now)
        elif self.mode is Mode.PROBE and self.bounds.hi == math.inf:
            elapsed = now - self._climb_since
            above = self._climb_sent / self.share - self._climb_base * elapsed
            if above > self._climb_base * self.settings.burst_allowance_s:
                # More sent above the estimate than a burst explains: the limit rose.
                self._probe_backoff = 1.0
                self.bounds.sustained(self._rate)
                self.estimate.forget()  # it measured the old limit: pooled, it would read low
                self._enter(Mode.STARTUP)
                self._gauge.started()
                self._round_seq = self.log.next_seq
                self._round_at = now

    def _grown(self) -> float:
        """Slow start's next rate. What a round at it risks is what it adds, times the round
        trip: a burst can hide an overshoot for several rounds, and the round is all over the
        limit. Twice this rate, but where the work left is known (the input has ended, or its
        size is known: ``work_expected``; leading a shared limit, the fleet's: ``_work_ahead``),
        no more than ``start_risk`` of it (or one request) a round.

        Where the round trip is long (``long_round_s``; the fastest one: a client too busy to
        read its answers at once sees them late, and the server is no slower for it), doubling
        from a few requests a second takes many seconds to reach a high limit (ten rounds of
        0.75 s for 4,500/s). There the rate may grow by ``start_risk`` of the work known
        (``work_known``) in one round, faster than doubling, provided that round brings back
        enough answers (``min_accepted``) to read the limit if it overshoots. Elsewhere a jump
        past doubling would leave the first throttle saying only that the limit is far below,
        and the search for it would cost more than the rounds saved."""
        s = self.settings
        srtt = self._srtt()
        round_s = max(srtt, s.min_round_s)
        left = self._work_ahead()
        risk = max(s.start_risk * left, 1.0)  # a request a round, however small
        step = min(self._rate, risk / round_s)
        known = min(self.work_known, self.work_left)
        if self.external and not math.isinf(self.fleet_left):
            known = self.fleet_left  # (the fleet's, once its processes have told it)
        jump = s.start_risk * known / round_s
        # Long by the path's round trip (its fastest), not by answers a busy client read late.
        path = min(self.rtt.min, srtt)
        if path >= s.long_round_s and (self._rate + jump) * srtt >= s.min_accepted:
            step = max(step, jump)
        return self._rate + step

    def _note_burst(self) -> None:
        """A throttle ends slow start or a probe step: was the bucket thin?"""
        # A probe step from a cruise a throttle was taken for noise in (the bucket stayed
        # short of full) may find the bucket as low as slow start's round does.
        full = self._lone_at < self._cruise_since
        self._gauge.step_ended(probe=self.mode is Mode.PROBE, share=self.share, full=full)

    def _settle_thin(self) -> bool:
        """Settle whether slow start found the bucket thin; True if that proved a rate."""
        reading = self.estimate.value
        held = self._gauge.settle(reading, self._m_rate)
        if (reading or 0.0) < held < self.bounds.hi:
            # Slow start's rounds before its overload held, and so thin a bucket hides
            # nothing: they prove more than the reading (half the rate throttled, not the
            # limit).
            self.bounds.sustained(held)
            return True
        return False

    def _narrow(self) -> float:
        """Bounds closer than this ratio are the limit, found. Searching for a thin bucket's
        limit where a step above it costs only its few throttles (no cool-downs), the search
        goes on until they are as close as the margin cruising keeps under a measured limit
        (cruising at ``lo``, the rest of the gap is lost for the whole run)."""
        s = self.settings
        if self.cooldowns or not self._gauge.thin:
            return s.narrow
        return min(s.narrow, 1.0 / s.cruise_gain)

    def _searching(self) -> bool:
        """A thin bucket hid the limit somewhere between the bounds: probe on, not later."""
        return self._gauge.thin and not self.bounds.narrow(self._narrow()) and not self._spent()

    def _coarse_step(self) -> tuple[float, float] | None:
        """Where throttles cost cool-downs and the bucket's drain measured the limit only
        roughly (``DrainFit.coarse``), the step (and its base) that searches the bounds it
        allows now, not twenty pauses on: from the reading (or ``lo``, above a reading since
        throttled at) to the middle of what is left. None where the bounds are narrow, or the
        work left would not pay for the pause the step costs if it fails (held, it is sent
        that much faster)."""
        s, b = self.settings, self.bounds
        if not self.cooldowns or self.external or not self._drain.coarse(s.narrow):
            return None
        if b.narrow(s.narrow) or not b.hi < math.inf or self._spent():
            return None
        limit = self.limit or 0.0
        base = max(b.lo, limit if limit < b.hi else 0.0)
        if not base > 0:
            return None
        if self._plans(base):
            planned = self._plan(base)
            return None if planned is None or not planned > self._rate else (planned, base)
        step = math.sqrt(base * b.hi)
        if not step > self._rate:
            return None
        left = self._work_ahead()
        if left / self._rate * (1.0 - self._rate / step) < self._pause_s:
            return None
        return step, base

    def _search(self, now: float) -> None:
        """The next step of the search for a thin bucket's limit: the planned step where the
        plan applies (none where none pays), else the middle of the bounds, or, nothing below
        them proven yet, the rate cruised at (held, it is the floor)."""
        self._rise_climb = False
        b = self.bounds
        if self._plans(b.lo):
            step = self._plan(b.lo)
            if step is None:
                self._next_probe = now + self._probe_wait()  # found, as near as pays
            else:
                self._step(now, step, b.lo)
        elif b.lo > 0:
            self._step(now, math.sqrt(b.lo * b.hi), b.lo)
        else:
            self._step(now, self._rate, self._rate / 2.0)

    def _enter(self, mode: Mode) -> None:
        """Start slow start, a probe step or cruising: its throttles are counted from here."""
        self.mode = mode
        self._mode_sent = self._mode_thr = 0

    def _within_tolerance(self) -> bool:
        """Throttles in this slow start or probe step are few enough to be timing noise."""
        s = self.settings
        sent = float(self._mode_sent)
        if self.mode is Mode.PROBE:
            sent = max(sent, self._rate * self._hold())
        return self._mode_thr <= s.throttle_tolerance * sent

    def _run_span(self) -> float:
        """How long each run of throttles in a row must span to measure the limit. Not where
        the server answers throttles with cool-downs: there every run ends in a pause after a
        few throttles, so none is long, and a pause costs more than a low reading. Nor for
        the leader of a shared limit: its samples are the whole fleet's, tallied per slot,
        and its own round trips say nothing of the other processes' timing."""
        if self.cooldowns or self.external:
            return 0.0
        return self.settings.noise_spans * self.rtt.spread

    def _measure(self, now: float, rate: float, sent_at: float) -> None:
        self._m_est = self.limit if self.mode is Mode.CRUISE else None
        # Whether the rate cruised at had held, up to the request throttled, as long as a
        # probe step must to count as sustained (one throttled sooner was never proven).
        self._m_held = self._m_est is not None and sent_at - self._cruise_since >= self._held_for()
        self._m_probe = self._next_probe
        # Slow start grew up to the ceiling and cruised there with nothing measured: the
        # ceiling is a guess, as likely far above the limit as near it.
        self._m_blind = self._m_est is None and self.mode is Mode.CRUISE
        # A failed probe step goes straight back to the rate known, without measuring the
        # overload, where measuring it costs more than it tells: above a thin bucket
        # (``BucketGauge``) its throttles read nothing; for the leader of a shared limit, the
        # fleet's answers that would read it come a slot or more late (``lag``), all the while
        # the whole fleet throttling at the step. A limit that fell shows in what the rate
        # known reads next.
        self._m_back = self.mode is Mode.PROBE and (
            self._gauge.thin or (self.external and self.limit is not None)
        )
        if self._m_blind:
            self.bounds.throttled(rate)  # as callers do for slow start's own throttles
        if self.mode is Mode.STARTUP or self._m_blind:
            # Slow start doubled into this throttle (or up to the ceiling): the rate before the
            # last doubling is where to measure from (a burst may have hidden more; the
            # answers will say).
            self._rate = rate / 2.0
        self.mode = Mode.MEASURE
        self._m_since = now
        self._m_from = sent_at
        self._m_rate = rate
        self._m_acc = self._m_thr = 0
        self._m_sum = 0.0
        self._m_fleet = False
        self._m_late = [0.0, 0.0, 0.0]
        if self._m_est is None:
            self._rate = self._clamp(min(self._rate, rate))  # no more growth
        # else cruising: hold the rate until the answers say whether the limit fell (a
        # throttle of a request sent earlier, at a lower rate, may well be noise)
        self._cut_at = now
        self.cuts += 1

    def _measured_so_far(self) -> tuple[float, float, int]:
        """Requests accepted from the throttle that began the measurement to the last answer
        read back, the time that spans (the closed intervals plus the open one, which
        continues the newest run), and the runs of throttles in a row it holds."""
        accepted, span, runs = self.estimate.pooled(self._m_from)
        if self.external:
            return accepted, span, runs
        more, extra = self.log.open_rate()
        return accepted + more / self.share, span + extra, max(runs, 1)

    def _measuring(self, now: float) -> None:
        """While measuring, stay just above the limit the answers show, so they keep measuring
        it without throttling more than they must."""
        if self._m_back:
            return  # nothing to read (see ``rate_at``)
        # Throttled while cruising, only samples begun since count (see ``_on_sample``).
        updated = self.estimate.updated_at if self._m_est is None else self._fresh_at
        if updated >= self._m_since:
            if now >= self._cooldown_until:
                self._measured(now)
            return
        if self._overloaded():
            # Throttles went on after any clump would have ended, too many for noise, though
            # no run is long enough to time the limit (a loaded machine spreads round trips
            # widely; an answer that never comes holds the send log): of the requests sent at
            # the rate throttled, the share accepted is the limit's share of it.
            accepted, throttled, rates = self._m_late
            self.estimate.provisional(rates * accepted / (accepted + throttled) ** 2, now)
            if now >= self._cooldown_until:
                self._measured(now)
            return
        if self._m_est is not None:
            # Throttled while cruising: only a second throttle (a closed interval) says the
            # limit fell; the open interval would only measure our own rate, below the limit.
            accepted, span, runs = self.estimate.pooled(self._m_from)
        else:
            accepted, span, runs = self._measured_so_far()
        if accepted < 2 or span <= 0:
            return
        if self._m_blind and not self._m_thr:
            # Dropped from the ceiling, no throttle since: what the answers show is the rate
            # sent, below the limit as far as they tell. Whether it holds is decided when the
            # silence ends.
            return
        measured = accepted / span
        if measured < self._rate and span < self._run_span() * runs:
            return  # too short to tell a lower limit from timing noise yet
        if accepted >= self.settings.first_accepted:
            self.estimate.provisional(measured, now)
            if now >= self._cooldown_until:
                self._measured(now)
                self._unthrottled_reading(now)
            return
        self._rate = self._clamp(min(self._rate, measured * self.settings.measure_gain))

    def _unthrottled_reading(self, now: float) -> None:
        """Every answer since the throttle that began the measurement was accepted: what they
        show is a rate the server took, a bound below the limit (after slow start's cut, as
        like as not the rate sent), not the limit. Cruise there only until a probe step could
        have told: the first probe comes once the cruise has held, not a probe interval on.
        (Called just after ``_cruise``, which set the probe interval.)"""
        if not self._m_thr:
            self._next_probe = min(self._next_probe, max(self._quiet_until, now + self._held_for()))

    def _overloaded(self) -> bool:
        accepted, throttled, _ = self._m_late
        answered = accepted + throttled
        share = self.settings.noise_share
        return answered * share >= 5 and throttled > share * answered

    def _measured(self, now: float) -> None:
        """A fresh estimate is in. If it is below what we cruised at, the limit fell."""
        value = self.estimate.value
        if self._m_est is not None and value is not None and value < self._m_rate:
            self.bounds.fell(self._m_rate)
        self._cruise(now)

    def _measure_timed_out(self, now: float) -> bool:
        srtt = self._srtt()
        sends = 4.0 * self.settings.first_accepted / max(self._rate, self.settings.floor)
        tallied = srtt + self.lag if self.external else 0.0
        return now - self._m_since > max(4.0 * srtt, sends, 0.05, 2.0 * self._run_span(), tallied)

    def _after_silence(self, now: float) -> None:
        """No throttle came after the first. Cruising, it was noise: carry on as before.
        Otherwise the rate it came at was an overshoot that is gone: hold what is known."""
        if self._m_est is None and self.limit is None:
            accepted, span, _ = self._measured_so_far()
            if self._m_blind and not self._m_thr:
                # Not one throttle since the first, at half the ceiling: that rate holds (the
                # answers only show it); the limit is between it and the ceiling.
                self.bounds.sustained(self._rate)
                if self.bounds.narrow(self.settings.narrow):
                    self._cruise(now)
                else:
                    self._step(now, self._bisect())
                return
            if accepted >= self.settings.first_accepted and span > 0:
                # Measured, but too briefly to rule out timing noise: better than a blind
                # step into the bounds (after a large burst those are far apart); a low
                # reading is corrected by the next probe.
                self.estimate.provisional(accepted / span, now)
                self._cruise(now)
                self._unthrottled_reading(now)
                return
            self._step(now, self._bisect())  # nothing measured: find it between the bounds
            return
        if self._m_est is not None:
            answered = self._m_acc + self._m_thr
            # The fleet's tallies (``external``) are every process's answers over slots of
            # Redis's time, with no one process's stalls in them: throttles in them past what
            # a probe step tolerates are the rate above the limit (just above it, a few per
            # cent, for as long as it is held), not noise.
            s = self.settings
            noise = s.throttle_tolerance if self.external else s.noise_share
            if self._m_thr > max(2.0, noise * answered):
                # Too many throttles to be noise, but no run long enough to time the limit
                # (a loaded machine spreads round trips widely): the share of the requests
                # sent since that was accepted is the limit's share of the rate they were sent
                # at (on average).
                self.estimate.provisional(self._m_sum * self._m_acc / answered**2, now)
                self._measured(now)
                return
            # Noise: cruise on as if it had not come, at the rate it held (a stray throttle
            # of a request sent at a lower rate must not leave the rate there), and on the
            # probe schedule it had (a stray throttle every few seconds must not put off the
            # next probe for ever).
            self.mode = Mode.CRUISE
            prev_at, prev_rate = self._lone_at, self._lone_rate
            self._lone_at, self._lone_rate = self._m_from, self._m_rate
            between = self._m_rate * (self._m_from - prev_at)  # requests since the last one
            if prev_rate == self._m_rate and 0 < between * self.settings.throttle_tolerance < 1:
                # Lone throttles at one rate, more often than the share of throttles tolerated:
                # not noise but a rate just above the limit, where a bucket refilled just
                # short of it empties once an interval. It took all but one request of the
                # interval: that is what it accepts. (Rarer ones are noise, or a bucket of one
                # token wasting a refill now and then: not worth a cut.)
                self.estimate.provisional(self._m_rate - 1.0 / (self._m_from - prev_at), now)
                self.bounds.throttled(self._m_rate)
            self._rate = self._target()
            self._next_probe = max(self._m_probe, self._quiet_until)
            return
        self._cruise(now)

    def _after_cooldown(self, now: float) -> None:
        """A cool-down that began while measuring has ended: settle the rate before anything
        is sent, from the best measure there is."""
        drained = self._drain.settle()
        if drained is not None:
            self._drained(drained, now)
        if self._m_back:
            self._cruise(now)  # a step failed (see ``_measure``)
            return
        measured = self.estimate.updated_at >= self._m_since
        if not measured and self._drain.limit is not None:
            # Measured by how long the bucket lasted: a better measure than this episode's
            # few answers (a probe's overshoot, most likely).
            self.estimate.provisional(self._drain.limit, now)
            measured = True
        if not measured:
            accepted, span, runs = self._measured_so_far()
            answered = self._m_acc + self._m_thr
            long_enough = span >= self._run_span() * runs
            if accepted >= 4 and span > 0 and (long_enough or accepted / span >= self._rate):
                self.estimate.provisional(accepted / span, now)
                measured = True
            elif answered >= 6:
                # Too few throttles in a row to time the limit, but the share of the requests
                # sent since the throttle that was accepted is the limit's share of the rate
                # they were sent at (on average: slow start may have doubled once more before
                # that throttle came back).
                self.estimate.provisional(self._m_sum * self._m_acc / answered**2, now)
                measured = True
            else:
                # Nothing measured (too few requests in flight): the rate throttled is above
                # the limit; bisect the bounds from here.
                self.bounds.throttled(self._m_rate)
        if measured or self.bounds.narrow(self.settings.narrow):
            self._cruise(now)
            limit = self.limit
            fell_far = limit is not None and limit * self.settings.probe_gain < self._m_rate
            if self._m_held and fell_far:
                # Cruising, one pause read the limit more than a probe step below the rate it
                # held: a fall that far, or a rough reading (a few answers around a pause).
                # One probe into the gap tells, soon, not twenty pauses on. (Not below a rate
                # throttled before it held: that one was only an estimate, now disproved.)
                self._next_probe = max(self._cooldown_until, now + self._probe_interval())
        else:
            self._step(now, self._bisect())

    def _cruise(self, now: float) -> None:
        self._cruise_since = now
        value = self.limit
        if value is not None:
            self._rate = self._target()
        self._enter(Mode.CRUISE)
        if self._settle_thin():
            self._rate = self._target()
        if self._searching() or self._coarse_step() is not None:
            # Once the answers of what was sent above the limit are in (the bucket refills in
            # a request's time), and after any pause (not twenty: each step that fails costs
            # one, each that holds raises the rate for good).
            srtt = self._srtt()
            self._next_probe = max(self._cooldown_until, now + 2.0 * srtt)
        else:
            self._next_probe = max(self._quiet_until, now + self._probe_interval())

    def _target(self) -> float:
        """Where to cruise: ``cruise_gain`` below a measured limit (measures are noisy), or at
        a rate already held without a throttle (that one is proven)."""
        if self.limit is None:
            return self._rate
        if self._gauge.thin:
            # Readings of a thin bucket are low, or high by its few tokens over a short span:
            # the rates that held, and failed, are what is known.
            b = self.bounds
            if b.lo > 0:
                return self._clamp(b.lo)
            return self._clamp(min(self._rate, b.hi / self.settings.narrow))
        b = self.bounds
        target = max((self.estimate.value or 0.0) * self.settings.cruise_gain, b.lo)
        if target >= b.hi:
            # A measure at or above a rate since throttled (a rough one, from a few answers
            # around a pause) is disproved: cruise at the rate proven, or just under the rate
            # throttled, not at it (every pause there would be followed by another, the bound
            # never moving; a step under it each time converges, and where that throttle was
            # only the bucket that slow start's last round drained, costs little).
            target = b.lo if b.lo > 0 else b.hi * self.settings.cruise_gain
        return self._clamp(target)

    def _bisect(self) -> float:
        """The next rate to try between the bounds: the planned step where the plan applies
        (``lo`` itself where no step pays), else their geometric middle, or half the rate
        throttled while nothing below it is known (slow start overshoots by a doubling, more
        only when a burst hid the limit)."""
        b = self.bounds
        if self._plans(b.lo):
            return self._plan(b.lo) or b.lo  # (held there, it is cruised at)
        return math.sqrt(b.lo * b.hi) if b.lo > 0 else b.hi / 2.0

    def _probe(self, now: float, base: float, *, climbing: bool = False) -> None:
        """Step above ``base``: into the middle of the bounds if the limit is bracketed, else
        by ``probe_gain``, and by twice as much more for each step already held in this climb
        (a limit that rose far is reached in a few steps, as CUBIC's convex probe does)."""
        if not climbing:
            self._begin_climb(base, now)
        self._step(now, self._probe_step(base, self._climb), base)

    def _probe_step(self, base: float, climb: int) -> float:
        """Where a probe from ``base`` steps, ``climb`` steps into a climb (see ``_probe``): the
        planned step into the bounds where there is one (``_plans``), else ``_blind_step``."""
        planned = self._plan(base) if not self._rise_climb and self._plans(base) else None
        return self._blind_step(base, climb) if planned is None else planned

    def _blind_step(self, base: float, climb: int) -> float:
        """Into the middle of the bounds, or by ``probe_gain``, twice as much more for each
        step already held in this climb (past the bounds: a probe for a rise)."""
        b = self.bounds
        step = base * (1.0 + (self.settings.probe_gain - 1.0) * 2.0**climb)
        if b.hi < math.inf and b.hi > base * self._narrow():
            into = math.sqrt(base * b.hi)
            # Leading a shared limit, a step above the limit throttles the whole fleet until
            # a throttle is signalled and the cut has reached every process: into bounds as
            # wide as slow start's overshoot leaves, no bigger than a climb's.
            step = min(into, step) if self.external else into
        return step

    def _plans(self, base: float) -> bool:
        """Whether steps from ``base`` into the bounds are planned (``search.best_step``):
        where the bounds are all that is known of the limit (no reading, or a thin bucket's,
        or a rough drain fit), each step that fails costs a cool-down, and the work left is
        known (it is what a step that holds gains on). Leading a shared limit, steps stay a
        climb's (see ``_probe_step``)."""
        b = self.bounds
        if not self.cooldowns or self.external or not 0 < base < b.hi < math.inf:
            return False
        unread = self.estimate.value is None or self._gauge.thin
        if not (unread or self._drain.coarse(self.settings.narrow)) or self._spent():
            return False
        return self._work_ahead() < math.inf

    def _spent(self) -> bool:
        """The plan found no step worth its pause in these very bounds: the limit is found as
        near as pays; only a probe for a rise (``_probe_pays``) looks further."""
        return self._found == (self.bounds.lo, self.bounds.hi)

    def _plan(self, base: float) -> float | None:
        """The planned step from ``base`` (None: cruising there loses least)."""
        step = best_step(
            base,
            self.bounds.hi,
            pause_s=self._pause_s,
            work_s=self._work_ahead() / base,
            hold_s=self._hold_at,
            cruise=self._target(),
        )
        if step is None or not self._clamp(step) > base:
            self._found = (self.bounds.lo, self.bounds.hi)
            return None
        return self._clamp(step)

    def _step(self, now: float, rate: float, base: float | None = None) -> None:
        """Hold ``rate`` as a probe: sustained, it raises ``lo``; throttled, it lowers ``hi``."""
        self._settle_thin()
        self._rising = self._peer_step = False  # (set again by a probe from cruising, a hint)
        self._enter(Mode.PROBE)  # counts the step's requests (``_mode_sent``) from here
        self._probe_since = now
        self._probe_base = base if base is not None else max(self.bounds.lo, rate / 2.0)
        if base is None:  # a first step, not one of a climb
            self._begin_climb(self._probe_base, now)
            self._rise_climb = False
        self._rate = self._clamp(rate)
        self._next_probe = math.inf

    def _begin_climb(self, base: float, now: float) -> None:
        """A climb starts from ``base``: no step held yet, nothing sent above it yet."""
        self._climb = 0
        self._climb_base, self._climb_since, self._climb_sent = base, now, 0
        self._climb_fell = self.bounds.fell_since

    def _probe_held(self, now: float) -> None:
        """A probe step held without a throttle for long enough: it is sustainable. Climb on
        while the bounds are wide; stop once they are narrow (the limit is found)."""
        hold = self._hold()
        elapsed = now - self._probe_since
        if elapsed < hold:
            return
        if self._mode_sent / self.share < 0.5 * self._rate * elapsed:
            self._cruise(now)  # the step was not used (no work, or the in-flight cap): no news
            return
        below = self._rate < self.bounds.hi
        self.bounds.sustained(self._rate)
        if self._rate >= self._ceiling or self._peer_step:
            self._cruise(now)  # (at the rate other scopes hold: found, as they found it)
            return
        if not self._rise_climb and (self._spent() or self._plans(self._rate)):
            # A search behind cool-downs: the planned step (computed once), none where no
            # step left pays for the pause it risks, or where the bounds are narrow.
            planned = None if self._spent() else self._plan(self._rate)
            if planned is None or self.bounds.narrow(self._narrow()):
                self._cruise(now)
                return
            self._climb += 1
            self._step(now, planned, self._rate)
            return
        if self.bounds.narrow(self._narrow()):
            if self.cooldowns or not (below and self._climb_fell):
                self._cruise(now)  # found it: hold it
                return
            # The first climb since the limit fell came up to the lowest rate throttled at:
            # test that one too, once, as the limit may have risen again since. Not where
            # throttles cost cool-downs: there a bound found is held.
            self._climb_fell = False
            self._probe(now, self._rate, climbing=True)
            return
        self._climb += 1
        self._probe(now, self._rate, climbing=True)

    def _hold(self) -> float:
        """How long a probe step must hold without a throttle to count as sustained."""
        return self._hold_at(self._rate, self._probe_base)

    def _hold_at(self, rate: float, base: float) -> float:
        """How long a step to ``rate`` from ``base`` must hold to count as sustained."""
        s = self.settings
        # Long enough that a burst of ``burst_allowance_s`` of the limit could not have hidden
        # a step above it (within reason: a bigger burst is caught by a later throttle). If the
        # step is above the limit, the limit is below the step, and above the base only if the
        # base was a good estimate: a low one (a rough reading after a pause) would shorten
        # the hold just when a step is most likely to be far above the base.
        excess = max(rate - base, 1e-9)
        # Where every overshoot costs a cool-down, being fooled costs a pause: hold longer.
        cap = s.hold_max_s * (s.cooldown_hold_factor if self.cooldowns else 1.0)
        if self._gauge.thin:
            burst = THIN_BURST / excess  # the bucket holds no more than that
        else:
            burst = min(cap, s.burst_allowance_s * rate / excess)
        # Where the server's bucket has been measured (``DrainFit``), long enough that it
        # would have run dry, whatever the cap.
        burst = max(burst, 1.25 * self._drain.lasts(rate))
        if self._drain.coarse(s.narrow):
            # A rough measure: long enough that a step further above any limit it allows than
            # the margin cruising keeps under a limit would have run the bucket dry (a step
            # held is cruised at).
            burst = max(burst, self._drain.lasts_near(rate, 1.0 / s.cruise_gain))
        return max(self._held_for(rate), burst)

    def _held_for(self, rate: float | None = None) -> float:
        """How long a rate (the one sent at, by default) must hold without a throttle to count
        as sustained, whatever the server's burst."""
        s = self.settings
        rate = self._rate if rate is None else rate
        return max(s.hold_s, s.hold_rtts * self._srtt(), s.hold_requests / rate)

    def _srtt(self) -> float:
        """The smoothed round trip, 0 before the first answer."""
        srtt = self.rtt.srtt
        return 0.0 if math.isnan(srtt) else srtt

    def _clamp(self, rate: float) -> float:
        return min(self._ceiling, max(self.settings.floor, rate))

    def _probe_wait(self) -> float:
        """The time between probes: ``_probe_interval``, or once the server has announced
        cool-downs, long enough that a probe's pause is a small part of it."""
        wait = self._probe_interval()
        if self.cooldowns:
            pause = self.settings.cooldown_probe_factor * self._pause_s
            wait = max(wait, pause) * self._probe_backoff
        return wait

    def _probe_pays(self, base: float) -> bool:
        """Where the server answers throttles with cool-downs, a probe for a rise costs a
        pause if it fails; if it holds, it sends the work left (while the input goes on, the
        work its size says is left, where known) as much faster as the step it takes: into
        bounds, the step may be well short of ``probe_gain``. It pays where the time that
        saves is at least the pause. (The wait between probes is what keeps their cost a small
        part of the time.)
        Elsewhere a probe costs a few throttles, and where the rate held is well below the
        limit, a probe late in the run still pays. (Leading a shared limit, the work is the
        whole fleet's, not this process's.)"""
        if not self.cooldowns:
            return True
        left = self._work_ahead()
        # A step past ``probe_gain`` (into bounds slow start's overshoot left wide) is a long
        # shot: it counts for no more than a step of ``probe_gain``.
        step = min(self._clamp(self._blind_step(base, 0)), self._rate * self.settings.probe_gain)
        saved = left * (1.0 / self._rate - 1.0 / max(step, self._rate))
        return saved >= self._pause_s

    def _work_ahead(self) -> float:
        """The requests the rate is for: this scope's left to send (what the input's size
        says, while it goes on), or leading a shared limit (``external``), the whole fleet's,
        as its processes tell it (its own are only its share)."""
        if self.external:
            return self.fleet_left
        return min(self.work_left, self.work_expected)

    def _probe_interval(self) -> float:
        s = self.settings
        srtt = self._srtt()
        requests = s.probe_every_requests / max(self._rate, s.floor)
        return max(s.probe_every_s, s.probe_every_rtts * srtt, requests)
