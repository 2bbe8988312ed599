"""A token bucket that never waits: it answers "may I send now, and if not, when?".

The scheduler does the waiting (one timer for all scopes), so the bucket is plain arithmetic
over the times it is given, like botocore's ``CubicCalculator``: no clock, no I/O, no futures.
"""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["Pacer", "Pacing"]

# Refill is floating point: a token 1 - 1e-12 short must count as whole, or a wake-up computed
# for "exactly when the token is there" finds it missing and the caller spins.
_WHOLE = 1.0 - 1e-9


class Pacing(Protocol):
    """What the scheduler needs of a scope's pacer: ``Pacer`` here, or a pacer that takes its
    tokens from a limit shared with other processes (``shared.SharedPacer``)."""

    @property
    def rate(self) -> float: ...

    @property
    def paused_until(self) -> float: ...

    def delay(self, now: float) -> float: ...

    def take(self, now: float) -> None: ...

    def give_back(self) -> None: ...

    def forgo(self, now: float) -> None: ...

    def set_rate(self, rate: float, now: float) -> None: ...

    def pause_until(self, when: float) -> bool: ...

    def full(self, now: float) -> bool: ...


class Pacer:
    """Tokens at ``rate`` per second, at most ``burst_s`` seconds' worth (at least one) held.

    It starts with one token, so a run never opens with a burst. ``set_rate`` keeps the tokens
    already earned (up to the new capacity); a lower rate earns them again at that rate.
    ``pause_until`` grants nothing before that time and restarts from empty, so the end of a
    server cool-down is not met with a burst either.
    """

    __slots__ = ("_burst_s", "_capacity", "_last", "_tokens", "paused_until", "rate")

    def __init__(self, rate: float, now: float, *, burst_s: float = 0.02) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self._burst_s = burst_s
        self._capacity = max(1.0, self.rate * burst_s)
        self._tokens = 1.0
        self._last = now
        self.paused_until = -math.inf

    def delay(self, now: float) -> float:
        """Seconds until a token is available (0.0: one is available now)."""
        if now < self.paused_until:
            return self.paused_until - now
        self._refill(now)
        if self._tokens >= _WHOLE:
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def take(self, now: float) -> None:
        """Spend one token; only valid right after ``delay(now)`` returned 0.0."""
        self._refill(now)
        self._tokens -= 1.0

    def give_back(self) -> None:
        """Return an unused token (the request it was taken for was not sent)."""
        self._tokens = min(self._capacity, self._tokens + 1.0)

    def forgo(self, now: float) -> None:
        """The scope was held back by something else (the in-flight cap), not by this pacer:
        keep at most one token of those earned meanwhile, so that what held it back letting
        go does not release them at one instant (a small bucket throttles all but one)."""
        self._refill(now)
        if self._tokens > 1.0:
            self._tokens = 1.0

    def set_rate(self, rate: float, now: float) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self._refill(now)
        if rate < self.rate:
            # Lower: what was earned is time since the last request, earned now at the new
            # rate, so the next one waits the new interval from it (sent sooner, it would be
            # sent at the old rate, and a bucket of one token throttles it).
            self._tokens *= rate / self.rate
        self.rate = float(rate)
        self._capacity = max(1.0, self.rate * self._burst_s)
        if self._tokens > self._capacity:
            self._tokens = self._capacity

    def pause_until(self, when: float) -> bool:
        """Grant nothing before ``when``; a pause can be extended, never shortened.
        Returns True if this call extended the pause."""
        if when <= self.paused_until:
            return False
        self.paused_until = when
        self._tokens = 0.0
        self._last = when
        return True

    def full(self, now: float) -> bool:
        """True when the bucket holds all it can: forgetting it would lose nothing."""
        if now < self.paused_until:
            return False
        self._refill(now)
        return self._tokens >= self._capacity - 1e-9

    def _refill(self, now: float) -> None:
        if now > self._last:
            tokens = self._tokens + (now - self._last) * self.rate
            self._tokens = tokens if tokens < self._capacity else self._capacity
            self._last = now
