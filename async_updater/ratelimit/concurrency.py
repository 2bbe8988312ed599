"""How many requests may be in flight: Little's law from the allowed rate and the latency.

A rate-limited API rejects rather than queues, so its latency barely moves near the limit and
a latency-gradient limiter cannot see the limit; the rate controller finds it. The in-flight
cap only has to let that rate through (rate x latency, with headroom for the latency's tail and
for a rate that doubles each round trip in slow start) while bounding connections, and to say
so when the user's ceiling, not the server, is what holds the run back.
"""

from __future__ import annotations

import math

__all__ = ["DEFAULT_MAX_CONCURRENCY", "InFlightLimit"]

DEFAULT_MAX_CONCURRENCY = 1024


class InFlightLimit:
    """``limit`` = clamp(headroom x rate x high latency + spare, minimum, ceiling).

    With ``auto`` false the limit is the ceiling itself (``--concurrency N``). ``bound`` is
    set while the ceiling is what stops a request from leaving.
    """

    __slots__ = (
        "auto",
        "bound_s",
        "bound_since",
        "ceiling",
        "headroom",
        "limit",
        "minimum",
        "spare",
    )

    def __init__(
        self,
        ceiling: int = DEFAULT_MAX_CONCURRENCY,
        *,
        auto: bool = True,
        headroom: float = 2.0,
        spare: int = 4,
        minimum: int = 4,
    ) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be >= 1")
        self.ceiling = ceiling
        self.auto = auto
        self.headroom = headroom
        self.spare = spare
        self.minimum = min(minimum, ceiling)
        self.limit = self.minimum if auto else ceiling
        self.bound_since = math.nan  # when the ceiling started holding requests back
        self.bound_s = 0.0  # total time it did

    def update(self, rate: float, latency: float) -> int:
        """Size for ``rate`` requests/s at ``latency`` seconds (a high percentile)."""
        if self.auto and not math.isnan(latency):
            need = math.ceil(self.headroom * rate * latency) + self.spare
            self.limit = max(self.minimum, min(self.ceiling, need))
        return self.limit

    def blocked(self, now: float) -> None:
        """A request was ready to leave but the limit was reached."""
        if self.limit >= self.ceiling and math.isnan(self.bound_since):
            self.bound_since = now

    def unblocked(self, now: float) -> None:
        if not math.isnan(self.bound_since):
            self.bound_s += now - self.bound_since
            self.bound_since = math.nan

    @property
    def at_ceiling(self) -> bool:
        return not math.isnan(self.bound_since)
