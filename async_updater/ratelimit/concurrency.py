"""How many requests may be in flight: Little's law from the allowed rate and the latency.

A rate-limited API rejects rather than queues, so its latency barely moves near the limit and
a latency-gradient limiter cannot see the limit; the rate controller finds it. The in-flight
cap only has to let that rate through (rate x latency, with headroom for the latency's tail and
for a rate that doubles each round trip in slow start) while bounding connections, and to say
so when the user's ceiling, not the server, is what holds the run back.
"""

from __future__ import annotations

import functools
import math

try:
    import resource
except ImportError:  # not on Windows: no limit to read or raise there
    resource = None  # type: ignore[assignment]

__all__ = ["DEFAULT_MAX_CONCURRENCY", "InFlightLimit", "connections_allowed"]

# Enough for 2,000 requests/s at a one-second round trip, twice over (the headroom below). Each
# request in flight holds a connection, and so a file descriptor: see ``connections_allowed``.
DEFAULT_MAX_CONCURRENCY = 4096
# Descriptors kept for everything else a run opens: the input, the report, logs, Redis.
FILES_RESERVED = 64


@functools.cache
def connections_allowed(wanted: int) -> int:
    """How many connections this process can hold open, up to ``wanted``: the soft limit on open
    files (``ulimit -n``, often 1,024) less ``FILES_RESERVED``. The soft limit is first raised
    as far as needed, when the hard limit allows (any process may do so): past the soft limit a
    connection fails with "too many open files", which reads as the server failing."""
    if resource is None:
        return wanted
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = wanted + FILES_RESERVED
        if soft != resource.RLIM_INFINITY and soft < need:
            raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
            if raised > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
    except (OSError, ValueError):
        return wanted  # cannot tell: trust the number asked for
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FILES_RESERVED))


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
