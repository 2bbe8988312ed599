"""The rate controller of one limit scope: finds the server's limit, holds just under it,
probes now and then for more, and obeys cool-downs. Pure: every time is an argument.

It moves between four modes:

- ``STARTUP`` (slow start): from a low rate, double once per round trip of requests actually
  sent at that rate and accepted, until the first throttle (or the ceiling). The first seconds
  never flood the server, and a rate the input could not use is not grown.
- ``MEASURE``: a throttle came back. Stop growing and read the limit off the answers
  (``SendLog``: requests accepted between throttled ones, sent in a row). Until two throttles
  close an interval, the interval opened by the first one already measures it; the rate is held
  just above that, so the answers keep measuring, at a cost of a few throttles.
- ``CRUISE``: send at ``cruise_gain`` x the estimate. Isolated throttles change nothing; dense
  ones (the limit fell) lower the estimate at once.
- ``PROBE``: every so often, send at ``probe_gain`` x the estimate until the server throttles
  (the estimate is refreshed from that) or until we have sent more above the estimate than any
  burst explains (the limit rose: back to ``STARTUP`` from there).

A server cool-down (``Retry-After``) stops all sending, so it ends a measurement; the rate
after it is decided when it ends, from whatever the answers in flight measured. When they
measured nothing (a fast server: too few requests in flight to catch two throttles), the
controller brackets the limit between the lowest rate throttled and a lower bound it can
prove: the requests accepted from one throttle to the next, across the pause, divided by the
time between them (the bucket was empty at both ends, so it refilled at least that many).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from .estimator import LimitEstimate, Outcome, RoundTrip, Sample, SendLog

__all__ = ["ControllerSettings", "Mode", "RateController"]


class Mode(Enum):
    STARTUP = "startup"
    MEASURE = "measure"
    CRUISE = "cruise"
    PROBE = "probe"


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """How the controller behaves; none of these is a property of any one server.

    ``initial_rate``: where slow start begins (requests/s) when nothing is known.
    ``cruise_gain`` / ``probe_gain``: multiples of the estimated limit to hold and to probe at.
    ``probe_every_s`` / ``probe_every_rtts``: the time between probes is the larger of the two
    (longer round trips cost more per probe). After a server cool-down, probes wait at least
    ``cooldown_probe_factor`` times the pause, doubling each time a probe found nothing new.
    ``burst_allowance_s``: sending this many seconds' worth of the estimate above it, with no
    throttle, means the limit rose (no server burst is taken to be larger).
    ``min_accepted``: accepted requests pooled into one estimate (its error is ~1/min_accepted);
    ``first_accepted``: how many the first, provisional estimate needs.
    ``min_round_s``: slow start doubles at most this often, however short the round trip.
    """

    initial_rate: float = 4.0
    min_round_s: float = 0.05
    cruise_gain: float = 0.97
    probe_gain: float = 1.25
    probe_every_s: float = 3.0
    probe_every_rtts: float = 30.0
    cooldown_probe_factor: float = 20.0
    burst_allowance_s: float = 1.0
    min_accepted: int = 32
    first_accepted: int = 8
    floor: float = 0.2

    def __post_init__(self) -> None:
        if not self.initial_rate > 0 or not self.floor > 0:
            raise ValueError("initial_rate and floor must be > 0")
        if not 0 < self.cruise_gain <= 1:
            raise ValueError("cruise_gain must be in (0, 1]")
        if not self.probe_gain > 1:
            raise ValueError("probe_gain must be > 1")
        if self.probe_every_s < 0 or self.probe_every_rtts < 0 or self.cooldown_probe_factor < 0:
            raise ValueError("probe intervals must be >= 0")
        if not self.burst_allowance_s > 0:
            raise ValueError("burst_allowance_s must be > 0")
        if not 1 <= self.first_accepted <= self.min_accepted:
            raise ValueError("need 1 <= first_accepted <= min_accepted")


class Bracket:
    """The limit between ``lo`` (proven or sustained) and ``hi`` (throttled at); used when the
    answers cannot measure it directly. Narrow once ``hi / lo <= NARROW``: holding ``lo`` then
    loses at most that much of the limit."""

    NARROW = 1.1

    __slots__ = ("active", "hi", "lo", "lo_before", "since")

    def __init__(self) -> None:
        self.active = False
        self.lo = 0.0
        self.lo_before = 0.0  # the last ``lo`` before the current one, in case it proves wrong
        self.hi = math.inf
        self.since = -math.inf  # the current rate has been held without a throttle since

    @property
    def narrow(self) -> bool:
        return self.lo > 0 and self.hi <= self.lo * self.NARROW

    def raise_lo(self, rate: float) -> None:
        if rate > self.lo:
            self.lo_before, self.lo = self.lo, rate

    def throttled_at(self, rate: float) -> None:
        """A throttle at ``rate``: it is above the limit, and so is any ``lo`` that high."""
        self.hi = min(self.hi, rate)
        while self.lo >= self.hi and self.lo > 0:
            self.lo, self.lo_before = self.lo_before, 0.0

    def next_rate(self) -> float:
        """Where to try next: the geometric middle, or the bottom once it is narrow."""
        if self.hi == math.inf:
            return self.lo
        if self.lo <= 0:
            return self.hi / 2.0
        if self.narrow:
            return self.lo
        return math.sqrt(self.lo * self.hi)


class RateController:
    """Allowed request rate of one scope, from what the server answers (see module doc).

    Call ``on_send`` when a request leaves (it returns the request's sequence number),
    ``on_answer`` when its answer arrives, ``on_cooldown`` when the server announces a pause,
    and read ``rate_at(now)`` for the rate to pace at.
    """

    __slots__ = (
        "_ceiling",
        "_cooldown_until",
        "_cut_at",
        "_ep_accepted",
        "_ep_from",
        "_m_est",
        "_m_from",
        "_m_rate",
        "_m_since",
        "_next_probe",
        "_probe_backoff",
        "_probe_est",
        "_probe_sent",
        "_probe_since",
        "_rate",
        "_round_at",
        "_round_seq",
        "bracket",
        "cooldowns",
        "cuts",
        "estimate",
        "log",
        "mode",
        "rtt",
        "settings",
    )

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
        start = s.initial_rate if initial is None else max(s.floor, initial)
        self._rate = min(self._ceiling, start)
        self.mode = Mode.STARTUP
        self.rtt = RoundTrip()
        self.log = SendLog(dense=s.min_accepted)
        self.estimate = LimitEstimate(min_accepted=s.min_accepted)
        self.bracket = Bracket()
        self._round_seq = 0
        self._round_at = -math.inf
        self._cut_at = -math.inf  # when the rate was last lowered
        self._m_since = -math.inf
        self._m_rate = 0.0
        self._m_est: float | None = None  # the estimate when the measurement began
        self._m_from = -math.inf  # send time of the throttle that began it
        self._next_probe = math.inf
        self._probe_since = -math.inf
        self._probe_sent = 0
        self._probe_est = 0.0
        self._probe_backoff = 1.0
        self._cooldown_until = -math.inf
        self._ep_from = math.nan  # send time of the throttle that began the last cool-down
        self._ep_accepted = 0  # accepted answers since then
        self.cuts = 0
        self.cooldowns = 0

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
        """The estimated server limit, if one has been measured."""
        return self.estimate.value

    def rate_at(self, now: float) -> float:
        """The rate to pace at now (time-driven changes happen here)."""
        if now < self._cooldown_until:
            return self._rate
        mode = self.mode
        if mode is Mode.MEASURE:
            if self._cooldown_until >= self._m_since:
                self._after_cooldown(now)
            elif self._measure_timed_out(now):
                self._give_up_measuring(now)
        elif mode is Mode.CRUISE:
            if self.bracket.active:
                self._climb(now)
            elif now >= self._next_probe and self._rate < self._ceiling:
                self._probe(now)
        return self._rate

    # -- events ---------------------------------------------------------------------------

    def on_send(self, now: float) -> int:
        if self.mode is Mode.PROBE:
            self._probe_sent += 1
        if self._round_at == -math.inf:
            self._round_at = now
        return self.log.sent(now, self._rate)

    def on_answer(self, seq: int, sent_at: float, now: float, outcome: Outcome) -> None:
        """The answer to request ``seq``, sent at ``sent_at``."""
        self.rtt.add(now - sent_at)
        # Sending counts as continuous while no two requests are further apart than a few
        # sends at the current rate or a round trip, whichever is longer.
        self.log.set_gap(max(0.05, 4.0 / self._rate, 2.0 * self.rtt.srtt))
        sent_rate = self.log.rate_at_send(seq)
        for sample in self.log.answered(seq, outcome):
            self._on_sample(sample, now)
        if outcome is Outcome.THROTTLED:
            self._on_throttle(sent_at, sent_rate, now)
        elif outcome is Outcome.ACCEPTED:
            self._ep_accepted += 1
            self._on_accept(seq, now)
        if self.mode is Mode.MEASURE:
            self._measuring(now)

    def on_cooldown(self, now: float, until: float, sent_at: float) -> None:
        """The server said: nothing before ``until``, in answer to a request sent at
        ``sent_at``. The pacer pauses; here the chain of samples breaks, and the rate after the
        pause is decided when it ends."""
        if until <= self._cooldown_until:
            return
        self.cooldowns += 1
        if now >= self._cooldown_until:  # a new episode, not one more answer to the last
            if not math.isnan(self._ep_from) and sent_at > self._ep_from:
                # The bucket was empty at both throttles: it refilled at least what it took.
                self.bracket.raise_lo(self._ep_accepted / (sent_at - self._ep_from))
            self._ep_from = sent_at
            self._ep_accepted = 0
            self.log.break_chain(now)
            if self.mode is not Mode.MEASURE:
                self._measure(now, self._rate, sent_at)
        self._cooldown_until = until
        pause = until - now
        wait = max(self._probe_interval(), self.settings.cooldown_probe_factor * pause)
        self._next_probe = max(self._next_probe, until + wait * self._probe_backoff)

    # -- transitions ----------------------------------------------------------------------

    def _on_sample(self, sample: Sample, now: float) -> None:
        before = self.estimate.value
        value = self.estimate.add(sample, now)
        if value is None or value == before:
            return
        if self.mode is Mode.CRUISE:
            self.bracket.active = False
            target = self._clamp(value * self.settings.cruise_gain)
            if target < self._rate:
                self.cuts += 1
                self._cut_at = now
            self._rate = target

    def _on_throttle(self, sent_at: float, sent_rate: float, now: float) -> None:
        if sent_at < self._cut_at:
            return  # sent before the last cut: caused by the old rate, already answered for
        mode = self.mode
        if mode is Mode.STARTUP or mode is Mode.PROBE:
            self._measure(now, sent_rate or self._rate, sent_at)
        elif mode is Mode.CRUISE and not self.bracket.active:
            # Throttled at the cruising rate: the limit may have fallen. A second throttle
            # soon after will measure it; if none comes, this one was noise.
            self._measure(now, sent_rate or self._rate, sent_at)
        elif mode is Mode.CRUISE:
            b = self.bracket
            b.throttled_at(self._rate)
            self._rate = self._clamp(b.lo if b.lo > 0 else b.hi / 2.0)
            b.since = max(now, self._cooldown_until)
            self._cut_at = now
            self.cuts += 1

    def _on_accept(self, seq: int, now: float) -> None:
        if self.mode is Mode.STARTUP:
            if seq >= self._round_seq and now - self._round_at >= self.settings.min_round_s:
                # A round trip of requests sent at this rate came back accepted: double it,
                # if it was used (a rate the input or the in-flight cap did not let us reach
                # says nothing about the server). Rounds last at least ``min_round_s``: on a
                # fast server a bucket's burst would otherwise let the rate double many times
                # over before the first throttle, and every request of the last round be one.
                sent = self.log.next_seq - self._round_seq
                used = sent >= 0.5 * self._rate * (now - self._round_at)
                self._round_seq = self.log.next_seq
                self._round_at = now
                if used:
                    self._rate = min(self._ceiling, self._rate * 2.0)
                if self._rate >= self._ceiling:
                    self._cruise(now, None)
        elif self.mode is Mode.PROBE:
            above = self._probe_sent - self._probe_est * (now - self._probe_since)
            if above > self._probe_est * self.settings.burst_allowance_s:
                # More sent above the estimate than a burst explains: the limit rose.
                self._probe_backoff = 1.0
                self.mode = Mode.STARTUP
                self._round_seq = self.log.next_seq
                self._round_at = now

    def _measure(self, now: float, rate: float, sent_at: float) -> None:
        self._m_est = self.estimate.value if self.mode is Mode.CRUISE else None
        self.mode = Mode.MEASURE
        self._m_since = now
        self._m_from = sent_at
        self._m_rate = rate
        self._rate = self._clamp(min(self._rate, rate))  # no more growth
        self._cut_at = now
        self.cuts += 1

    def _measured_so_far(self) -> tuple[int, float]:
        """Requests accepted from the throttle that began the measurement to the last answer
        read back, and the time that spans: the closed intervals plus the open one."""
        accepted, span = self.estimate.pooled(self._m_from)
        more, extra = self.log.open_rate()
        return accepted + more, span + extra

    def _measuring(self, now: float) -> None:
        """While measuring, stay just above the limit the answers show, so they keep measuring
        it without throttling more than they must."""
        if self.estimate.updated_at >= self._m_since:
            if now >= self._cooldown_until:
                self._cruise(now, self.estimate.value)
            return
        accepted, span = self._measured_so_far()
        if accepted < 2 or span <= 0:
            return
        measured = accepted / span
        if accepted >= self.settings.first_accepted:
            self.estimate.provisional(measured, now)
            if now >= self._cooldown_until:
                self._cruise(now, measured)
            return
        self._rate = self._clamp(min(self._rate, measured * self.settings.probe_gain))

    def _measure_timed_out(self, now: float) -> bool:
        srtt = self.rtt.srtt if not math.isnan(self.rtt.srtt) else 0.0
        sends = 4.0 * self.settings.first_accepted / max(self._rate, self.settings.floor)
        return now - self._m_since > max(4.0 * srtt, sends, 0.05)

    def _give_up_measuring(self, now: float) -> None:
        """No throttle came after the first. Cruising, it was noise: carry on. Otherwise the
        rate it came at was an overshoot that is gone (or a burst): bracket the limit."""
        if self._m_est is not None:
            self._cruise(now, self._m_est)
            return
        self.bracket.throttled_at(self._m_rate)
        self._bracketing(now)

    def _after_cooldown(self, now: float) -> None:
        """A cool-down that began while measuring has ended: settle the rate before anything
        is sent, from the best measure there is."""
        if self.estimate.updated_at >= self._m_since:
            self._cruise(now, self.estimate.value)
            return
        accepted, span = self._measured_so_far()
        if accepted >= 4 and span > 0:
            self.estimate.provisional(accepted / span, now)
            self._cruise(now, accepted / span)
            return
        # The rate measuring settled on is already below the rate throttled, if it moved.
        self.bracket.throttled_at(min(self._m_rate, self._rate))
        self._bracketing(now)

    def _bracketing(self, now: float) -> None:
        b = self.bracket
        b.active = True
        b.since = now
        self._rate = self._clamp(b.next_rate())
        self.mode = Mode.CRUISE
        self._next_probe = max(self._next_probe, now + self._probe_interval())

    def _cruise(self, now: float, value: float | None) -> None:
        if value is not None:
            self.bracket.active = False
            self._rate = self._clamp(value * self.settings.cruise_gain)
            if self._probe_est and value <= self._probe_est * 1.05:
                self._probe_backoff = min(self._probe_backoff * 2.0, 16.0)
        self.mode = Mode.CRUISE
        self._next_probe = max(self._next_probe, now + self._probe_interval())

    def _probe(self, now: float) -> None:
        value = self.estimate.value or self._rate
        self.mode = Mode.PROBE
        self._probe_since = now
        self._probe_sent = 0
        self._probe_est = value
        self._rate = self._clamp(value * self.settings.probe_gain)
        self._next_probe = math.inf

    def _climb(self, now: float) -> None:
        """Bracketing: a rate held long enough without a throttle is sustainable; move up."""
        b = self.bracket
        srtt = self.rtt.srtt if not math.isnan(self.rtt.srtt) else 0.0
        hold = max(1.0, 10.0 * srtt, 8.0 / self._rate)
        if now - b.since < hold:
            return
        b.raise_lo(self._rate)
        b.since = now
        if b.narrow:
            # Narrow: hold the bottom as the estimate; the usual probes look for more.
            self.estimate.provisional(b.lo, now)
            b.active = False
            self._rate = self._clamp(b.lo)
            return
        if b.hi == math.inf:
            self._rate = self._clamp(b.lo * self.settings.probe_gain)
        else:
            self._rate = self._clamp(b.next_rate())

    def _clamp(self, rate: float) -> float:
        return min(self._ceiling, max(self.settings.floor, rate))

    def _probe_interval(self) -> float:
        s = self.settings
        srtt = self.rtt.srtt if not math.isnan(self.rtt.srtt) else 0.0
        return max(s.probe_every_s, s.probe_every_rtts * srtt)
