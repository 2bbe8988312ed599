"""A rate-limited API in-process: a ``Transport`` that decides each request with a token
bucket at the moment it arrives, answers after a latency, and records what it accepted.

Meant for the virtual-time loop (benchmarks of the controller over many server shapes, and
tests of scheduling and fairness). The real mock server (``async_updater.testing.mock``) is
the one that checks signatures over real sockets.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..transport import Response

__all__ = ["ServerShape", "SimulatedServer"]

_OK = Response(204, "sim")


@dataclass(frozen=True, slots=True)
class ServerShape:
    """How the simulated server behaves. ``burst`` is its bucket size in requests (at least
    one); ``per_account`` gives every account its own bucket; ``retry_after`` is sent with
    every 429 (seconds) when set; latency is uniform in ``latency_s`` +- ``jitter_s``.

    ``stall_s``: the server now and then stops deciding for up to this long (on average every
    ``stall_every_s``), then decides everything that arrived meanwhile at once, as a real
    server (or the client's own loop) does under CPU contention: the timing noise that makes
    throttles come in clumps."""

    limit: float
    burst: float = 1.0
    per_account: bool = False
    retry_after: float | None = None
    latency_s: float = 0.02
    jitter_s: float = 0.0
    seed: int = 0
    stall_s: float = 0.0
    stall_every_s: float = 1.0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class SimulatedServer:
    """``send`` answers 204 or 429 (``ThrottledClientException``) from the shape's buckets."""

    shape: ServerShape
    applied: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    throttled: int = 0
    # (bucket, arrival time, status) of every request, and (bucket, time) of every 429 answered
    # with a Retry-After, for the cool-down check.
    arrivals: list[tuple[str, float, int]] = field(default_factory=list)
    cooldown_answers: list[tuple[str, float]] = field(default_factory=list)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=random.Random)
    record: bool = True
    _stall: tuple[float, float] = (math.inf, math.inf)  # the next stall: (start, end)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.shape.seed)
        if self.shape.stall_s > 0:
            self._stall = self._next_stall(0.0)

    def _next_stall(self, after: float) -> tuple[float, float]:
        start = after + self._rng.expovariate(1.0 / self.shape.stall_every_s)
        return start, start + self._rng.uniform(0.0, self.shape.stall_s)

    def _resume_at(self, now: float) -> float:
        """When a request arriving at ``now`` is decided (later only inside a stall)."""
        start, end = self._stall
        while end <= now:
            start, end = self._stall = self._next_stall(end)
        return end if now >= start else now

    async def send(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        loop = asyncio.get_running_loop()
        now = loop.time()
        shape = self.shape
        if shape.stall_s > 0:
            resume = self._resume_at(now)
            if resume > now:
                await asyncio.sleep(resume - now)
                now = loop.time()
        parts = path.split("/")
        account = parts[2] if len(parts) > 2 else ""
        key = account if shape.per_account else ""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(shape.burst, now)
        tokens = min(shape.burst, bucket.tokens + (now - bucket.updated) * shape.limit)
        bucket.updated = now
        self.requests += 1
        accepted = tokens >= 1.0
        bucket.tokens = tokens - 1.0 if accepted else tokens
        if self.record:
            self.arrivals.append((key, now, 204 if accepted else 429))
        latency = shape.latency_s
        if shape.jitter_s:
            latency += self._rng.uniform(-shape.jitter_s, shape.jitter_s)
        await asyncio.sleep(max(0.0, latency))
        if accepted:
            self.applied[path] += 1
            return _OK
        self.throttled += 1
        retry_after = shape.retry_after
        if retry_after is not None and self.record:
            self.cooldown_answers.append((key, loop.time()))
        return Response(429, "sim", "ThrottledClientException", "Rate exceeded", retry_after)

    async def close(self) -> None:
        return None

    def violations(self, tolerance: float = 0.0) -> int:
        """Requests that arrived inside a cool-down announced more than ``tolerance`` before."""
        pause = self.shape.retry_after
        if not pause:
            return 0
        answers: dict[str, list[float]] = {}
        for key, at in self.cooldown_answers:
            answers.setdefault(key, []).append(at)
        for times in answers.values():
            times.sort()
        count = 0
        for key, arrived, _ in self.arrivals:
            times = answers.get(key, [])
            if times:
                i = bisect.bisect_right(times, arrived - tolerance)
                if i and arrived - times[i - 1] < pause:
                    count += 1
        return count

    @property
    def capacity_s(self) -> float:
        return math.inf
