"""Rate limiting: a token bucket whose rate changes at run time, and the controller that sets it.

``RateController`` is pure arithmetic over the times it is given (no clock, no I/O), so it is
tested with plain numbers. ``TokenBucket`` is the only part that waits; its clock is injected.

Why not aiolimiter: ``AsyncLimiter`` fixes its rate at construction (upstream issue #98) and has
no notion of a shared cool-down, and both are needed here. The bucket below stays as small.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BucketClosed",
    "Clock",
    "ControllerSettings",
    "LoopClock",
    "RateController",
    "TokenBucket",
]


# Refill arithmetic is floating point: a token that is 1 - 1e-15 short must count as whole, or
# the wake-up time rounds to "now" and the bucket spins.
_WHOLE = 1.0 - 1e-9
_MIN_WAIT = 1e-6


class BucketClosed(Exception):
    """The bucket was closed (the run is stopping): nobody waiting will get a token."""


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time in seconds, and a way to run a callback at a given time."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable: ...


class LoopClock:
    """The running event loop's monotonic clock."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def now(self) -> float:
        # Read three times per request: the loop itself, not the property's indirection.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        return self.loop.call_at(when, callback)


class TokenBucket:
    """A token bucket with a mutable rate and a shared cool-down.

    ``acquire()`` takes one token, waiting first-in first-out when none is left. The bucket
    holds at most ``burst_s`` seconds' worth of tokens (at least one) and starts with one, so
    a run never opens with a burst. ``set_rate`` applies to the waiters already queued;
    ``pause_until`` releases nobody before that time and restarts refilling from empty.
    A cancelled waiter leaves the queue; a waiter cancelled after being granted gives its
    token back, so cancellation never loses or invents capacity.
    """

    __slots__ = (
        "_burst_s",
        "_capacity",
        "_clock",
        "_closed",
        "_last",
        "_paused_until",
        "_rate",
        "_timer",
        "_timer_at",
        "_tokens",
        "_waiters",
    )

    def __init__(self, rate: float, *, clock: Clock, burst_s: float = 0.02) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self._clock = clock
        self._rate = float(rate)
        self._burst_s = burst_s
        self._capacity = max(1.0, rate * burst_s)
        self._tokens = 1.0
        self._last = clock.now()
        self._paused_until = -math.inf
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: Cancellable | None = None
        self._timer_at = math.inf
        self._closed = False

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def paused_until(self) -> float:
        return self._paused_until

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def set_rate(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self._refill(self._clock.now())
        self._rate = float(rate)
        self._capacity = max(1.0, rate * self._burst_s)
        self._tokens = min(self._tokens, self._capacity)
        if self._waiters:
            self._reschedule()

    def pause_until(self, when: float) -> None:
        """Grant nothing before ``when`` (monotonic seconds); extending a pause is allowed."""
        if when <= self._paused_until:
            return
        self._paused_until = when
        self._tokens = 0.0
        self._last = when
        if self._waiters:
            self._reschedule()

    def close(self) -> None:
        """Fail every waiter, now and later, with ``BucketClosed``."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(BucketClosed())

    async def acquire(self) -> None:
        if self._closed:
            raise BucketClosed()
        now = self._clock.now()
        if not self._waiters and now >= self._paused_until:
            self._refill(now)
            if self._tokens >= _WHOLE:
                self._tokens -= 1.0
                return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._reschedule()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._tokens += 1.0  # granted, then cancelled before use: give it back
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            if self._waiters:
                self._reschedule()
            raise

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now

    def _reschedule(self) -> None:
        now = self._clock.now()
        if now < self._paused_until:
            when = self._paused_until
        else:
            self._refill(now)
            wait = (1.0 - self._tokens) / self._rate
            when = now if self._tokens >= _WHOLE else now + max(wait, _MIN_WAIT)
        if self._timer is not None:
            if when == self._timer_at:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._clock.call_at(when, self._dispatch)

    def _dispatch(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = self._clock.now()
        if now >= self._paused_until:
            self._refill(now)
            waiters = self._waiters
            while waiters and self._tokens >= _WHOLE:
                fut = waiters.popleft()
                if fut.done():  # cancelled while queued
                    continue
                self._tokens -= 1.0
                fut.set_result(None)
            while waiters and waiters[0].done():
                waiters.popleft()
        if self._waiters:
            self._reschedule()


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """Tuning of ``RateController``; the defaults are what the benchmarks were run with.

    ``throttle_backoff``: largest multiplier applied on a 429 (the cut is deeper when a larger
    share of recent answers were throttled, down to ``max_cut``). ``overload_backoff``: the
    gentler multiplier for a 503, applied at most once per ``overload_interval_s`` (a 503 says
    "busy", not "over your quota": a few stray ones must not walk the rate down).
    ``cubic_c``: how fast the rate grows back, as a share of the rate at the last cut per
    second cubed. ``window_s``: how far back the throttled share is read.
    ``in_flight_samples``: how many answers to requests in flight at a cut are needed before
    their accepted share may deepen that cut. ``cooldown_plateau``: after a server cool-down
    (``Retry-After``) the rate stays at the learned limit for this many times the cool-down
    before probing above it.
    """

    throttle_backoff: float = 0.9
    overload_backoff: float = 0.95
    overload_interval_s: float = 1.0
    max_cut: float = 0.3
    cubic_c: float = 0.4
    window_s: float = 0.1
    slots: int = 10
    in_flight_samples: int = 10
    cooldown_plateau: float = 8.0

    def __post_init__(self) -> None:
        for name in ("throttle_backoff", "overload_backoff", "max_cut"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f"{name} must be between 0 and 1 (exclusive), not {value}")
        if self.max_cut > self.throttle_backoff:
            raise ValueError("max_cut must be <= throttle_backoff")
        if not self.cubic_c > 0 or not self.window_s > 0 or self.slots < 1:
            raise ValueError("cubic_c and window_s must be > 0 and slots >= 1")
        if self.in_flight_samples < 1 or self.cooldown_plateau < 0:
            raise ValueError("in_flight_samples must be >= 1 and cooldown_plateau >= 0")
        if self.overload_interval_s < 0:
            raise ValueError("overload_interval_s must be >= 0")


class RateController:
    """Decides the allowed request rate from what the server answers. Pure: times are arguments.

    - Decrease: on a throttle for a request sent *after* the last cut, multiply the rate by
      ``min(throttle_backoff, accepted share of the last window)``, never below ``max_cut``;
      a 503 cuts by ``overload_backoff``. Answers to requests sent before the last cut were
      caused by the old rate, so they never cut again: at most one cut per round trip.
    - Those answers still measure the old rate, though: of requests sent at rate ``r`` to a
      server whose limit is ``L``, about ``L / r`` are accepted. Once ``in_flight_samples`` of
      them are in, the cut is deepened (never compounded) to that estimate of ``L``, so a
      ceiling far above the limit is left in one round trip, not in a dozen cuts of 10%.
    - Increase: CUBIC (RFC 9438 shape) around ``w_max``, the rate at the last cut: a fast
      concave climb back towards it, a plateau just below, then a convex probe upwards, so the
      rate spends most of its time near the server's limit and finds a raised limit quickly.
      After a server cool-down the probe waits ``cooldown_plateau`` times the cool-down: a
      throttle that costs a whole pause is worth probing for only rarely.
    - Bounds: never above ``ceiling`` (the user's ``--rate``), never below ``floor`` (> 0).
    """

    __slots__ = (
        "_accepted",
        "_cut_from",
        "_cut_peak",
        "_cut_rate",
        "_cut_time",
        "_k",
        "_late_accepted",
        "_late_throttled",
        "_probe_after",
        "_slot_ids",
        "_slot_s",
        "_throttled",
        "ceiling",
        "cut_at",
        "cuts",
        "floor",
        "rate",
        "settings",
        "w_max",
    )

    def __init__(
        self,
        ceiling: float,
        *,
        floor: float | None = None,
        settings: ControllerSettings | None = None,
    ) -> None:
        if not ceiling > 0:
            raise ValueError("ceiling must be > 0")
        self.settings = settings or ControllerSettings()
        self.ceiling = float(ceiling)
        self.floor = min(self.ceiling, 1.0) if floor is None else float(floor)
        if not 0 < self.floor <= self.ceiling:
            raise ValueError("floor must be > 0 and <= ceiling")
        self.rate = self.ceiling
        self.w_max = self.ceiling
        self.cut_at = -math.inf  # the recovery curve's origin (a cool-down moves it later)
        self.cuts = 0
        self._k = 0.0
        self._cut_time = -math.inf  # when the last cut happened
        self._cut_from = self.ceiling  # the rate it cut from
        self._cut_peak = self._cut_rate = self.ceiling  # w_max and rate it set
        self._late_accepted = 0  # answers since the cut to requests sent before it
        self._late_throttled = 0
        self._probe_after = -math.inf
        n = self.settings.slots
        self._slot_s = self.settings.window_s / n
        self._slot_ids = [-1] * n
        self._accepted = [0] * n
        self._throttled = [0] * n

    def rate_at(self, now: float) -> float:
        """The allowed rate at ``now``; grows along the recovery curve after a cut."""
        if self.cut_at == -math.inf or self.rate >= self.ceiling:
            return self.rate
        t = now - self.cut_at - self._k
        if t > 0 and self._probe_after > self.cut_at + self._k:
            t = max(0.0, now - self._probe_after)  # resting at the peak after a cool-down
        target = self.w_max * (1.0 + self.settings.cubic_c * t * t * t)
        if target > self.rate:
            self.rate = min(self.ceiling, target)
        return self.rate

    def on_accepted(self, now: float, sent_at: float | None = None) -> float:
        """A request was not throttled (any answer but 429/503). Returns the new rate."""
        self._count(now, throttled=False)
        if sent_at is not None and sent_at < self._cut_time:
            self._late_accepted += 1
            self._deepen(now)
        return self.rate_at(now)

    def on_throttled(self, now: float, sent_at: float) -> bool:
        """A 429 for a request sent at ``sent_at``. Returns True if the rate was cut."""
        self._count(now, throttled=True)
        if sent_at < self._cut_time:
            self._late_throttled += 1
            self._deepen(now)
            return False
        if sent_at < self.cut_at:  # sent during a cool-down the server had not announced yet
            return False
        share = self._accepted_share(now)
        factor = max(self.settings.max_cut, min(self.settings.throttle_backoff, share))
        self._cut(now, factor)
        return True

    def on_overloaded(self, now: float, sent_at: float) -> bool:
        """A 503 for a request sent at ``sent_at``. Returns True if the rate was cut."""
        if sent_at < self.cut_at or now - self.cut_at < self.settings.overload_interval_s:
            return False
        self._cut(now, self.settings.overload_backoff)
        return True

    def hold(self, until: float, now: float | None = None) -> None:
        """The server announced a cool-down until ``until``: no growth before then, and the
        recovery curve restarts at ``until``. Without this the curve would keep climbing through
        the pause, and every pause would end with a burst above the limit (and a new pause).
        Given ``now``, probing above the last peak waits ``cooldown_plateau`` times the pause."""
        if until > self.cut_at:
            self.cut_at = until
        if now is not None and until > now:
            plateau = self.settings.cooldown_plateau * (until - now)
            self._probe_after = max(self._probe_after, until + self._k + plateau)

    def _cut(self, now: float, factor: float) -> None:
        rate = self.rate_at(now)
        middle = rate * (1.0 + factor) / 2.0
        if self._probe_after > -math.inf:
            # The server uses cool-downs, so the next peak is where the rate will rest: below
            # the rate that was throttled, halfway down the cut (a limit that rose is kept).
            self.w_max = max(self.w_max, middle) if rate > self.w_max else middle
        else:
            # CUBIC fast convergence: a cut below the previous peak means the limit moved down.
            self.w_max = middle if rate < self.w_max else rate
        self.rate = max(self.floor, rate * factor)
        self.w_max = max(self.w_max, self.rate)
        self._k = self._time_to_peak()
        self.cut_at = now
        self.cuts += 1
        self._cut_time = now
        self._cut_from = rate
        self._cut_peak = self.w_max
        self._cut_rate = self.rate
        self._late_accepted = self._late_throttled = 0

    def _deepen(self, now: float) -> None:
        """Set the last cut from the limit measured by the answers to requests that were in
        flight at it (sent at ``_cut_from``): recomputed as they come in, never above the cut
        itself and never past ``max_cut``."""
        seen = self._late_accepted + self._late_throttled
        if seen < self.settings.in_flight_samples:
            return
        share = max(self.settings.max_cut, self._late_accepted / seen)
        limit = self._cut_from * share
        self.w_max = max(self.floor, min(self._cut_peak, limit))
        self.rate = max(self.floor, min(self._cut_rate, limit * self.settings.throttle_backoff))
        self._k = self._time_to_peak()
        self.cut_at = max(self.cut_at, now)  # the curve restarts from the corrected cut

    def _time_to_peak(self) -> float:
        gap = max(0.0, self.w_max - self.rate)
        return float((gap / (self.w_max * self.settings.cubic_c)) ** (1 / 3))

    def _count(self, now: float, *, throttled: bool) -> None:
        slot_id = int(now / self._slot_s)
        i = slot_id % len(self._slot_ids)
        if self._slot_ids[i] != slot_id:
            self._slot_ids[i] = slot_id
            self._accepted[i] = 0
            self._throttled[i] = 0
        if throttled:
            self._throttled[i] += 1
        else:
            self._accepted[i] += 1

    def _accepted_share(self, now: float) -> float:
        oldest = int(now / self._slot_s) - len(self._slot_ids) + 1
        accepted = throttled = 0
        for i, slot_id in enumerate(self._slot_ids):
            if slot_id >= oldest:
                accepted += self._accepted[i]
                throttled += self._throttled[i]
        total = accepted + throttled
        return accepted / total if total else 1.0
