"""Live figures of a run: counters the progress display reads, a per-second timeline, and the
final ``RunSummary``. Updated from the hot path, so every update is a few integer operations."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..model import Result, RunSummary, Status
from .state import PlanTally

__all__ = [
    "LatencyHistogram",
    "RunStats",
    "Timeline",
    "TimelinePoint",
    "count_error",
    "percentile",
    "top_errors",
]


@dataclass(slots=True)
class TimelinePoint:
    """Figures for one whole second of a run (``second`` counts from the start)."""

    second: int
    sent: int = 0
    accepted: int = 0
    throttled: int = 0
    errors: int = 0
    allowed_rate: float = 0.0
    in_flight: int = 0


class Timeline:
    """Per-second figures; memory grows with the run's duration, not its size."""

    __slots__ = ("points", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.points: list[TimelinePoint] = []

    def at(self, now: float) -> TimelinePoint:
        second = int(now - self.start)
        points = self.points
        if points and points[-1].second == second:
            return points[-1]
        last = points[-1] if points else None
        while len(points) <= second:
            # Seconds with no event still get a row: the plot should show the pauses.
            point = TimelinePoint(len(points))
            if last is not None:
                point.allowed_rate = last.allowed_rate
                point.in_flight = last.in_flight
            points.append(point)
        return points[second] if second >= 0 else points[0]

    def write(self, path: str | os.PathLike[str]) -> None:
        """JSON Lines, one object per second."""
        with open(path, "w", encoding="utf-8") as f:
            for p in self.points:
                f.write(
                    json.dumps(
                        {
                            "second": p.second,
                            "sent": p.sent,
                            "accepted": p.accepted,
                            "throttled": p.throttled,
                            "errors": p.errors,
                            "allowed_rate": round(p.allowed_rate, 2),
                            "in_flight": p.in_flight,
                        }
                    )
                    + "\n"
                )


def percentile(sorted_values: Any, q: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence; None when empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, min(n, int(-(-q * n // 100))))
    return float(sorted_values[rank - 1])


class LatencyHistogram:
    """Latencies in milliseconds, counted in buckets 1% wide on a log scale: memory stays a few
    kB however many requests a run makes (a list of a million floats, sorted at the end, took
    40 MB), and a percentile is within 0.5% of the exact nearest-rank value."""

    __slots__ = ("_counts", "count")

    _LOW = 0.001  # ms: anything faster counts as this
    _STEP = math.log(1.01)

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0

    def add(self, ms: float) -> None:
        i = int(math.log(ms / self._LOW) / self._STEP) if ms > self._LOW else 0
        counts = self._counts
        counts[i] = counts.get(i, 0) + 1
        self.count += 1

    def __len__(self) -> int:
        return self.count

    @property
    def buckets(self) -> int:
        return len(self._counts)

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile (the middle of its bucket); None when empty."""
        if not self.count:
            return None
        rank = max(1, min(self.count, int(-(-q * self.count // 100))))
        seen = 0
        for i in sorted(self._counts):
            seen += self._counts[i]
            if seen >= rank:
                return self._LOW if i == 0 else self._LOW * math.exp((i + 0.5) * self._STEP)
        raise AssertionError("unreachable: the counts add up to count")


def count_error(errors: dict[str, list[Any]], code: str, message: str) -> None:
    """Count a failure under ``code`` in ``errors`` (code -> [count, first message])."""
    entry = errors.get(code)
    if entry is None:
        errors[code] = [1, message]
    else:
        entry[0] += 1


def top_errors(errors: dict[str, list[Any]], n: int = 10) -> tuple[tuple[str, int, str], ...]:
    """The ``n`` most frequent codes of ``errors`` as (code, count, example), ties by code."""
    ranked = sorted(errors.items(), key=lambda kv: (-kv[1][0], kv[0]))[:n]
    return tuple((code, count, example) for code, (count, example) in ranked)


class RunStats:
    """Counters of a run in progress. ``summary()`` freezes them into a ``RunSummary``."""

    __slots__ = (
        "clock_offset_s",
        "cooldowns",
        "counts",
        "errors",
        "in_flight",
        "latencies",
        "plan",
        "requests",
        "retries",
        "server_errors",
        "skipped",
        "started",
        "throttles",
        "timeline",
    )

    def __init__(self, started: float) -> None:
        self.started = started
        self.counts: Counter[str] = Counter()
        self.requests = 0
        self.retries = 0
        self.throttles = 0
        self.server_errors = 0
        self.cooldowns = 0
        self.in_flight = 0
        self.skipped = 0
        self.latencies = LatencyHistogram()
        self.errors: dict[str, list[Any]] = {}  # code -> [count, first message]
        self.timeline = Timeline(started)
        # Set by the pipeline when the server's Date corrects the signing clock.
        self.clock_offset_s: float | None = None
        self.plan = PlanTally()

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def record_result(self, result: Result) -> None:
        self.counts[result.status.value] += 1
        if result.status is Status.FAILED or result.status is Status.INVALID:
            count_error(self.errors, result.error_code or result.status.value, result.message)
        elif result.before:
            self.plan.add(result)

    def summary(
        self,
        now: float,
        *,
        cuts: int,
        final_rate: float | None,
        interrupted: bool = False,
        report_path: str | None = None,
        bound_by: str = "",
    ) -> RunSummary:
        elapsed = max(0.0, now - self.started)
        lat = self.latencies
        rates = [p.allowed_rate for p in self.timeline.points if p.allowed_rate > 0]
        return RunSummary(
            counts={s.value: self.counts.get(s.value, 0) for s in Status},
            rows=self.done,
            elapsed_s=elapsed,
            requests=self.requests,
            retries=self.retries,
            throttles=self.throttles,
            server_errors=self.server_errors,
            cuts=cuts,
            cooldowns=self.cooldowns,
            latency_p50_ms=lat.percentile(50),
            latency_p95_ms=lat.percentile(95),
            latency_p99_ms=lat.percentile(99),
            final_rate=final_rate,
            average_rate=sum(rates) / len(rates) if rates else final_rate,
            top_errors=top_errors(self.errors),
            interrupted=interrupted,
            report_path=report_path,
            skipped=self.skipped,
            bound_by=bound_by,
            clock_offset_s=self.clock_offset_s,
            plan=self.plan.plan(),
        )
