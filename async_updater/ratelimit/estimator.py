"""What the server's answers say about its limit: round-trip times and the refill rate.

``SendLog`` puts answers back in the order the requests were sent and turns each pair of
throttled requests into a sample of the server's limit. Between two throttled requests the
server's token bucket was empty at both ends, so the requests it accepted in between are
exactly what it refilled in that time: ``accepted / (t2 - t1)`` is its refill rate, whatever
its burst. That holds only while we kept sending: a pause or a gap lets the bucket fill (and
overflow, unseen), so either one breaks the chain. ``LimitEstimate`` pools the recent samples.
``DrainFit`` measures the limit from how long a refilled bucket lasts where every throttle
pauses; ``BucketGauge`` tells a bucket of a token or two, whose overloads all read low;
``RoundTrip`` keeps the round-trip times.

Pure: times are arguments, nothing here reads a clock or sleeps.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "THIN_BURST",
    "BucketGauge",
    "DrainFit",
    "LimitEstimate",
    "Outcome",
    "RoundTrip",
    "Sample",
    "SendLog",
]


class Outcome(Enum):
    """What one answer tells the limiter."""

    ACCEPTED = "accepted"  # the server took a token (any answer but a throttle)
    THROTTLED = "throttled"  # 429 or a throttling code: the bucket was empty
    UNKNOWN = "unknown"  # no answer (connection error, timeout): may or may not have counted


@dataclass(frozen=True, slots=True)
class Sample:
    """``accepted`` requests accepted between two throttled ones sent ``span`` seconds apart,
    the later sent at ``at``."""

    at: float
    accepted: float  # a count, scaled when a process sees only its share of the traffic
    span: float


class SendLog:
    """Requests of one scope in send order, answered out of order, read back in order.

    ``sent`` numbers a request; ``answered`` records its outcome and returns the samples
    completed by it (usually none). A request that never answers would hold everything
    after it, so at most ``max_pending`` are kept: the oldest unanswered one is then given up
    as ``UNKNOWN`` (which breaks the chain, never invents a sample).
    """

    __slots__ = (
        "_acc",
        "_anchor",
        "_base",
        "_breaks",
        "_gap",
        "_max_pending",
        "_pending",
        "_prev",
        "dense",
    )

    def __init__(self, *, gap_s: float = 0.25, max_pending: int = 4096, dense: int = 32) -> None:
        self._pending: deque[list[object]] = deque()  # [sent_at, outcome | None, rate]
        self._base = 0  # sequence number of _pending[0]
        self._gap = gap_s
        self._max_pending = max_pending
        self._anchor = math.nan  # send time of the last throttled request in the chain
        self._acc = 0  # accepted since the anchor
        self._prev = math.nan  # send time of the last request read back
        self._breaks: deque[float] = deque()
        self.dense = dense

    @property
    def next_seq(self) -> int:
        return self._base + len(self._pending)

    def sent(self, now: float, rate: float = 0.0) -> int:
        """Number a request sent at ``now`` while the allowed rate was ``rate``."""
        seq = self._base + len(self._pending)
        self._pending.append([now, None, rate])
        if len(self._pending) > self._max_pending:
            self._pending[0][1] = Outcome.UNKNOWN
        return seq

    def break_chain(self, at: float) -> None:
        """Requests sent from ``at`` on do not continue the chain (a cool-down starts there)."""
        self._breaks.append(at)

    def open_rate(self) -> tuple[int, float]:
        """The chain still open: requests accepted since the last throttled one, and the time
        from it to the last request read back. The bucket was empty at the start and is
        empty or nearly so at the end if we kept sending above the limit, so this is a
        (slightly low) measure of the limit before a second throttle closes the interval."""
        if math.isnan(self._anchor):
            return 0, 0.0
        return self._acc, self._prev - self._anchor

    def set_gap(self, gap_s: float) -> None:
        """The longest silence between two sends that still counts as sending continuously."""
        self._gap = gap_s

    def rate_at_send(self, seq: int) -> float:
        """The allowed rate when request ``seq`` left (0.0 once it is no longer kept)."""
        i = seq - self._base
        if 0 <= i < len(self._pending):
            return float(self._pending[i][2])  # type: ignore[arg-type]
        return 0.0

    def answered(self, seq: int, outcome: Outcome) -> list[Sample]:
        i = seq - self._base
        if i < 0 or i >= len(self._pending):
            return []  # given up on already
        self._pending[i][1] = outcome
        samples: list[Sample] = []
        pending = self._pending
        while pending and pending[0][1] is not None:
            sent_at, result, _ = pending.popleft()
            self._base += 1
            sample = self._read(sent_at, result)  # type: ignore[arg-type]
            if sample is not None:
                samples.append(sample)
        return samples

    def _read(self, sent_at: float, outcome: Outcome) -> Sample | None:
        breaks = self._breaks
        broken = sent_at - self._prev > self._gap
        while breaks and breaks[0] <= sent_at:
            if breaks.popleft() > self._prev:
                broken = True
        self._prev = sent_at
        if broken or outcome is Outcome.UNKNOWN:
            self._anchor = math.nan
            if outcome is not Outcome.THROTTLED:
                return None
        if outcome is Outcome.ACCEPTED:
            self._acc += 1
            return None
        anchor, accepted = self._anchor, self._acc
        self._anchor = sent_at
        self._acc = 0
        if math.isnan(anchor) or accepted > self.dense:
            # Throttles far apart: we were mostly below the limit, and the bucket may have
            # overflowed in between, so this says little. Only close ones measure it.
            return None
        return Sample(sent_at, accepted, sent_at - anchor)


def _continues(older: Sample, start: float) -> bool:
    """``older`` ends where the newer sample, which began at ``start``, began: the two are
    throttles in a row with no break between them."""
    return abs(older.at - start) <= 1e-9


class LimitEstimate:
    """The server's refill rate, pooled over the most recent samples.

    The newest samples are summed until they hold ``min_accepted`` accepted requests (each
    sample is off by up to one token at each end; consecutive ones share their ends, so the
    pooled error is one token in ``min_accepted``), looking back at most ``horizon_s``.
    ``value`` is None until enough has been seen.
    """

    __slots__ = ("_horizon", "_min_accepted", "_samples", "updated_at", "value")

    def __init__(self, *, min_accepted: int = 32, horizon_s: float = 10.0) -> None:
        self._samples: deque[Sample] = deque()
        self._min_accepted = min_accepted
        self._horizon = horizon_s
        self.value: float | None = None
        self.updated_at = -math.inf

    def add(
        self, sample: Sample, now: float, run_span: float = 0.0, short_above: float = math.inf
    ) -> float | None:
        """Pool ``sample`` with the newest ones. ``run_span``: the newest run of samples that
        share their ends (throttles in a row, no break between) must span at least this long
        before the pool counts. A short run is a clump of throttles from a stall (the server,
        or this loop, held requests and decided them together, its bucket overflowing
        meanwhile): it reads as a limit far below the real one, and it ends as soon as the
        stall does, whereas a limit that fell keeps throttling. A pool from a short run still
        counts when it reads at least ``short_above`` (a high reading is corrected by the next
        throttles; a low one would hold the rate down until a probe)."""
        self._samples.append(sample)
        cutoff = now - self._horizon
        while self._samples and self._samples[0].at < cutoff:
            self._samples.popleft()
        while len(self._samples) > 256:
            self._samples.popleft()
        accepted, span, _ = self._pool(-math.inf, self._min_accepted)
        if accepted >= self._min_accepted and span > 0:
            value = accepted / span
            if value >= short_above or self.newest_run() >= run_span:
                self.value = value
                self.updated_at = now
        return self.value

    def _pool(self, since: float, enough: float) -> tuple[float, float, int]:
        """Sum the newest samples that began at or after ``since`` until they hold ``enough``
        accepted requests: (accepted, span, runs of samples in a row)."""
        accepted = 0.0
        span = 0.0
        runs = 0
        start = math.nan  # where the sample after this one began (its send time)
        for s in reversed(self._samples):
            if s.at - s.span < since:
                break
            if not _continues(s, start):
                runs += 1
            start = s.at - s.span
            accepted += s.accepted
            span += s.span
            if accepted >= enough:
                break
        return accepted, span, runs

    def newest_run(self) -> float:
        """The time spanned by the newest run of samples in a row."""
        span = 0.0
        start = math.nan
        for s in reversed(self._samples):
            if not math.isnan(start) and not _continues(s, start):
                break
            start = s.at - s.span
            span += s.span
        return span

    def pooled(self, since: float) -> tuple[float, float, int]:
        """Accepted requests, time and runs of samples in a row, summed over the samples that
        began at or after ``since`` (send time)."""
        return self._pool(since, math.inf)

    def provisional(self, value: float, now: float) -> None:
        """A rougher measure (fewer accepted requests) to use until pooled samples replace it."""
        self.value = value
        self.updated_at = now

    def forget(self) -> None:
        self._samples.clear()
        self.value = None
        self.updated_at = -math.inf


class DrainFit:
    """The limit from how long a full bucket lasts, where throttles come with cool-downs.

    A cool-down long enough refills the server's bucket (``burst`` tokens, unknown). Sending
    from its end at one rate ``r`` above the limit ``L``, the first throttle comes when the
    burst is spent: the requests accepted until then are ``n = burst + L * T``, ``T`` being
    the time from the end of the pause to the throttled request. Two such windows at
    different rates (so of different lengths) give ``L`` and ``burst`` both. This is what
    measures the limit where too few requests are in flight for throttles in a row: each
    overshoot costs a pause, and each pause says how long the burst lasted.
    """

    __slots__ = (
        "_acc",
        "_end",
        "_mixed",
        "_paced",
        "_points",
        "_rate",
        "_start",
        "burst",
        "limit",
        "spread",
    )

    def __init__(self) -> None:
        self.limit: float | None = None  # the last fit: refill rate and bucket size
        self.burst = 0.0
        # How far the last fit may be off either way: each window's count is whole requests,
        # one short of the tokens at most, so the counts between two windows are known to
        # within one request, over the difference of their lengths.
        self.spread = math.inf
        self._points: deque[tuple[float, float, float]] = deque(maxlen=3)  # (T, n, rate)
        self._start = math.nan  # the open window's start (nan: none)
        self._end = math.inf  # its end, once a throttle closed it
        self._rate = 0.0
        self._acc = 0
        self._mixed = self._paced = False

    def resumed(self, at: float, rate: float) -> None:
        """Sending resumes at ``at`` after a cool-down, at ``rate``."""
        self._start, self._end, self._rate, self._acc, self._mixed = at, math.inf, rate, 0, False

    def answered(self, sent_at: float, rate: float, accepted: bool) -> None:
        if not self._start <= sent_at < self._end:
            return
        if rate != self._rate:
            self._mixed = True  # the rate changed: the window is not one rate any more
        elif accepted:
            self._acc += 1

    def throttled(self, sent_at: float, *, paced: bool = False) -> None:
        """A throttle with a cool-down, for a request sent at ``sent_at``: the window ends there.
        Answers to requests sent before it still count, however late they come (a round trip
        that varies by more than the time between two sends brings some after this one): the
        window is read by ``settle``, once the cool-down is over. ``paced``: count the requests
        the server took as the window's rate times its length instead of the answers seen (for
        the leader of a shared limit: its own answers are a part of the fleet's, whose sending
        the shared bucket paced at that rate; the server took all of it until the throttle)."""
        if self._start <= sent_at < self._end:
            self._end, self._paced = sent_at, paced

    def settle(self) -> float | None:
        """Read the window a throttle ended: the limit, if two windows now measure it."""
        start, end = self._start, self._end
        self._start, self._end = math.nan, math.inf
        if self._mixed or not end > start or math.isinf(end):
            return None
        accepted = self._rate * (end - start) if self._paced else self._acc
        if accepted < 2:
            return None
        point = (end - start, accepted, self._rate)
        # The new window with each kept: the pair furthest apart in length fits it closest.
        best, apart = None, 0.0
        for other in self._points:
            fit, gap = self._fit(point, other), abs(point[0] - other[0])
            if fit is not None and gap > apart:
                best, apart = fit, gap
        self._points.append(point)
        if best is None:
            return None
        self.limit, self.burst = best
        self.spread = 1.0 / apart
        return best[0]

    @staticmethod
    def _fit(
        a: tuple[float, float, float], b: tuple[float, float, float]
    ) -> tuple[float, float] | None:
        (t1, n1, r1), (t2, n2, r2) = sorted((a, b))
        if t2 < 1.25 * t1:
            return None  # too alike to tell the burst from the refill
        limit = (n2 - n1) / (t2 - t1)
        burst = n1 - limit * t1
        # Both windows were over the limit (they ended in a throttle) and the burst is at
        # least a token (give or take one at each end): otherwise the fit is noise.
        if not 0 < limit < min(r1, r2) or burst < -2:
            return None
        return limit, max(burst, 1.0)

    def lasts(self, rate: float) -> float:
        """How long a full bucket lasts at ``rate``, by the last fit (0 if none or below)."""
        if self.limit is None or rate <= self.limit:
            return 0.0
        return self.burst / (rate - self.limit)

    def lasts_near(self, rate: float, ratio: float) -> float:
        """How long a full bucket lasts at ``rate`` for the highest limit the last fit allows
        that is more than ``ratio`` below it: a step that holds this long is within ``ratio``
        of the limit, however rough the fit (0 if none)."""
        if self.limit is None:
            return 0.0
        return self.burst / (rate - min(self.limit + self.spread, rate / ratio))

    def coarse(self, ratio: float) -> bool:
        """The last fit is too coarse to be the limit: the limits it allows span more than
        ``ratio`` (a short difference between its windows, a few requests between them)."""
        if self.limit is None:
            return False
        low = self.limit - self.spread
        return low <= 0 or self.limit + self.spread > ratio * low

    def allows(self) -> tuple[float, float]:
        """The lowest and highest limit the last fit allows (its reading, give or take
        ``spread``)."""
        if self.limit is None:
            return 0.0, math.inf
        return max(self.limit - self.spread, 0.0), self.limit + self.spread


class StartHistory:
    """The limit from a scope's first sends and the row of sends after their pause.

    A run begins with the server's bucket full (``burst`` tokens, unknown, refilled at the
    limit ``L``), and a cool-down refills it. In each of two rows of sends (the scope's first,
    slow start's as a rule, and the next, from the end of the cool-down the first throttle
    brought) every request was accepted up to the first one throttled. For a given ``L``, a
    bucket that let all of a row but its last through holds at least the most tokens any of
    them had taken beyond what it refilled, and fewer than the last had. The limits at which
    the two rows agree on the bucket's size bound ``L``. Where too few requests are in flight
    for throttles in a row to measure it, this is what the first sends and one pause tell
    (``DrainFit`` needs two pauses).
    """

    __slots__ = ("_firsts", "_rows", "_starts", "open")

    MAX_SENDS = 1024  # a row longer than this has enough answers to measure the limit anyway
    STEPS = 300  # limits tried over a thousandfold range below the highest it can be
    STEP = 1000.0 ** (1.0 / STEPS)  # the ratio between two limits tried (2.3%)

    def __init__(self) -> None:
        self._rows: list[list[float]] = [[]]  # send times of each row, in send order
        self._starts = [-1]  # sequence number of each row's first request
        self._firsts = [-1]  # index in each row of its first request throttled
        self.open = True  # a row is being recorded

    def sent(self, seq: int, at: float) -> None:
        """Request ``seq`` was sent at ``at`` (sequence numbers rise by one per request)."""
        if not self.open:
            return
        row = self._rows[-1]
        if len(row) >= self.MAX_SENDS or self._firsts[-1] >= 0:
            # Long enough for answers to measure the limit, or ended by a throttle that
            # brought no cool-down: nothing for this to bound.
            self.abandon()
            return
        if not row:
            self._starts[-1] = seq
        row.append(at)

    def throttled(self, seq: int) -> None:
        """Request ``seq`` was throttled."""
        for r in range(len(self._rows) - 1, -1, -1):
            start = self._starts[r]
            if 0 <= start <= seq:
                index = seq - start
                first = self._firsts[r]
                if index < len(self._rows[r]) and (first < 0 or index < first):
                    self._firsts[r] = index
                return

    def pause(self, above: float = math.inf) -> tuple[float, float] | None:
        """A cool-down began. The first row ends (the next begins with the next send); the
        second row ends too, and the limits that agree with both are returned (``above``: a
        rate known to be above the limit, if any)."""
        if not self.open:
            return None
        if len(self._rows) == 1 and self._firsts[0] > 0:
            self._rows.append([])
            self._starts.append(-1)
            self._firsts.append(-1)
            return None
        limits = self.limits(above) if len(self._rows) == 2 else None
        self.abandon()
        return limits

    def abandon(self) -> None:
        """Record no more (and keep nothing)."""
        self.open = False
        self._rows, self._starts, self._firsts = [], [], []

    def limits(self, above: float = math.inf) -> tuple[float, float] | None:
        """The lowest and highest limit at which both rows agree on the bucket's size (None:
        the rows did not each end in a throttle after an accepted request, or none agrees),
        tried from twice ``above`` (a rate throttled at), or without one from the fastest
        pace any four requests in a row were sent at, down a thousandfold."""
        if len(self._rows) != 2 or min(self._firsts) <= 0:
            return None
        rows = [r[: f + 1] for r, f in zip(self._rows, self._firsts, strict=True)]
        if math.isfinite(above):
            top = 2.0 * above
        else:
            spans = [r[i + 4] - r[i] for r in rows for i in range(len(r) - 4)]
            top = max((4.0 / span for span in spans if span > 0), default=0.0)
        if not top > 0:
            return None
        agree = []
        for i in range(self.STEPS + 1):
            limit = top / self.STEP**i
            low, high = 0.0, math.inf
            for times in rows:
                least, below = self._burst(times, limit)
                low, high = max(low, least), min(high, below)
            if low < high:
                agree.append(limit)
        if not agree:
            return None
        # Between a limit that agrees and the next tried, either could hold: one step wider.
        return min(agree) / self.STEP, max(agree) * self.STEP

    @staticmethod
    def _burst(times: list[float], limit: float) -> tuple[float, float]:
        """The sizes of a bucket, full at the first of ``times`` and refilled at ``limit``,
        that let all but the last through: at least the first value, below the second."""
        taken, prev, least = 0.0, times[0], 0.0
        last = len(times) - 1
        for j, at in enumerate(times):
            taken = max(taken - limit * (at - prev), 0.0) + 1.0  # beyond what it refilled
            prev = at
            if j < last:
                least = max(least, taken)
        return least, taken


_ROWS = 4  # rates whose answers ``BucketGauge`` tallies

THIN_BURST = 2
"""A bucket that let at most this many requests through above its rate, full when that rate
began, holds no more than a token or two (see ``BucketGauge``)."""


class BucketGauge:
    """Whether the server's bucket is thin: a token or two, no burst to speak of.

    Below the limit a bucket stays full, so a step above it (slow start's last round, a probe
    step) is let through for as long as the bucket lasts: ``THIN_BURST`` requests or fewer
    (none, if the first came too soon after the last one at the rate before) and it is thin. A
    thin bucket wastes a refill at each throttle (the token that was nearly in cannot be
    stored), so every overload reads low, as low as half the rate sent (evenly spaced requests
    between one and two times the limit: every other one is throttled). Its readings are then
    only lower bounds; the limit is found between the bounds instead, and a step that holds
    beyond a couple of requests is below it.

    A probe step begins full (from a rate that held). A round of slow start may not: the round
    before may have been above the limit already (a burst hid it) and drained the bucket. That
    is settled once the overload is read (``settle``).
    """

    __slots__ = (
        "_accepted",
        "_before",
        "_first",
        "_held",
        "_pending",
        "_rate",
        "_rows",
        "thin",
    )

    def __init__(self) -> None:
        self.thin = False
        self._rate = 0.0  # the rate of the row of sends being answered
        self._accepted = 0  # accepted answers to them so far
        self._first = -1  # accepted before the first throttle among them (-1: none yet)
        self._before = 0  # accepted answers to the row before, at another rate
        # Answers by the rate their request was sent at, (accepted, throttled), for the last
        # few rates: answers to slow start's rounds come back interleaved (the round trip
        # varies by more than the time between two sends).
        self._rows: dict[float, list[int]] = {}
        self._held = 0.0  # what the rounds before prove if the bucket is thin, until it is read
        self._pending = math.inf  # slow start's bound on the bucket, until its overload is read

    def answered(self, rate: float, outcome: Outcome) -> None:
        """An answer to a request sent at ``rate``."""
        row = self._rows.get(rate)
        if row is None:
            if len(self._rows) >= _ROWS:
                del self._rows[next(iter(self._rows))]
            row = self._rows[rate] = [0, 0]
        row[outcome is not Outcome.ACCEPTED] += 1
        if rate != self._rate:
            self._rate, self._before, self._accepted, self._first = rate, self._accepted, 0, -1
        if outcome is Outcome.ACCEPTED:
            self._accepted += 1
        elif outcome is Outcome.THROTTLED and self._first < 0:
            self._first = self._accepted

    def started(self) -> None:
        """Slow start begins again (the limit rose): only its own rounds prove a rate."""
        self._rows.clear()

    def step_ended(self, *, probe: bool, share: float = 1.0, full: bool = True) -> None:
        """A throttle ended slow start's round or (``probe``) a probe step. ``share``: the part
        of what was sent that this process saw (sharing a limit, the fleet sent the rest)."""
        let_through = self._first / share
        self._pending = math.inf
        if not 0 <= let_through <= THIN_BURST:
            self.thin = False  # it held more: whatever was read, it is not thin
        elif probe and full:
            self.thin = True
        elif probe:
            pass  # it may have begun short of full: nothing learned
        else:
            self._pending = let_through + self._before / share
            self._held = self._proven(share)
        self._rows.clear()

    def _proven(self, share: float) -> float:
        """What slow start's rounds below the one throttled prove if the bucket is thin: it
        lets at most ``THIN_BURST`` requests through above its rate, so a round of ``n``
        accepted with no throttle at rate ``r`` was at most that many above it, and the limit
        is at least ``r * (1 - THIN_BURST / n)``."""
        best = 0.0
        for rate, (accepted, throttled) in self._rows.items():
            n = accepted / share
            if rate < self._rate and not throttled and n > THIN_BURST:
                best = max(best, rate * (1.0 - THIN_BURST / n))
        return best

    def settle(self, reading: float | None, throttled_at: float) -> float:
        """Slow start's overload is read (``reading``: the limit it shows, if any) after a
        throttle at ``throttled_at``. A thin bucket reads half that rate (evenly spaced
        requests at one to two times its limit: slow start's last round, since the round before
        held), give or take the reading's noise (a tenth below, a fifth above). A reading
        outside that is a bigger bucket's: below, one drained by the round before, which reads
        the limit; above, one whose overload reads the limit too. With no reading (a cool-down
        came first), the bucket held no more than was let through in this round and the one
        before.

        Returns what the round before proved once the bucket is found thin: the rate it held
        with no throttle, less what so thin a bucket could have let through above the limit
        (0 if nothing)."""
        pending, self._pending = self._pending, math.inf
        held, self._held = self._held, 0.0
        if pending == math.inf:
            return 0.0
        if reading is not None:
            self.thin = 0.45 * throttled_at <= reading <= 0.6 * throttled_at
        else:
            self.thin = pending <= THIN_BURST
        return held if self.thin else 0.0


class RoundTrip:
    """Smoothed round-trip time, its minimum, a high percentile for sizing, and the timing
    noise: how far above the minimum round trips have spread lately."""

    __slots__ = ("_spread", "_spread_at", "high", "min", "srtt")

    WINDOW_S = 5.0  # the spread is the largest seen over the last one to two windows

    def __init__(self) -> None:
        self.srtt = math.nan
        self.min = math.inf
        self.high = math.nan  # decays slowly toward srtt; jumps up on a slow answer
        self._spread = [0.0, 0.0]  # largest spread in the previous window and in this one
        self._spread_at = -math.inf  # when this window began

    def add(self, rtt: float, now: float | None = None) -> None:
        if rtt < 0:
            return
        if math.isnan(self.srtt):
            self.srtt = self.high = rtt
        else:
            self.srtt += 0.125 * (rtt - self.srtt)
            self.high = rtt if rtt > self.high else self.high + 0.01 * (rtt - self.high)
        if rtt < self.min:
            self.min = rtt
        if now is not None:
            if now - self._spread_at >= self.WINDOW_S:
                fresh = now - self._spread_at < 2 * self.WINDOW_S
                self._spread = [self._spread[1] if fresh else 0.0, 0.0]
                self._spread_at = now
            self._spread[1] = max(self._spread[1], rtt - self.min)

    @property
    def spread(self) -> float:
        """The largest round trip above the minimum over the last 5 to 10 s: how far apart in
        time answers that the server decided together can be, and so how precisely a sample's
        ends are known."""
        return max(self._spread)
