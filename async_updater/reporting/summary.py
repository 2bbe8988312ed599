"""Summaries for people: the end-of-run table, the same from a report file, and what to do next."""

from __future__ import annotations

import contextlib
import os
import shlex
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..io.reader import read_report
from ..model import RunSummary, Status
from ..pipeline.stats import LatencyHistogram, count_error, top_errors

__all__ = ["ReportSummary", "format_report_summary", "format_summary", "summarize_report"]


# Shown in the counts only when some row has them (a run without --read-before or --dry-run
# has none, and its summary reads as it always did).
_SHOWN_IF_ANY = frozenset({Status.PLANNED.value, Status.UNCHANGED.value})


def format_summary(
    s: RunSummary, *, next_command: list[str] | str | None = None, dry_run: bool = False
) -> str:
    """The end-of-run table as plain text (it reads the same in a log file as on a terminal).
    With a plan (``--read-before``), a ``plan`` line says how many users change (``dry_run``:
    would change) and which fields for how many. ``next_command``, the command that finishes
    the run: an argument list (shell-quoted here) or shell text as it is to be printed."""
    counts = "  ".join(f"{k} {v}" for k, v in s.counts.items() if v or k not in _SHOWN_IF_ANY)
    rows = [
        (
            "rows",
            f"{s.rows}   {counts}" + (f"   (+{s.skipped} already updated)" if s.skipped else ""),
        ),
        *([("plan", s.plan.text(dry_run=dry_run))] if s.plan is not None else []),
        ("elapsed", f"{s.elapsed_s:.2f} s"),
        (
            "requests",
            f"{s.requests}   {s.requests_per_s:.1f}/s   ({s.updates_per_s:.1f} updates/s)",
        ),
        ("retries", f"{s.retries}   throttled {s.throttles}   server errors {s.server_errors}"),
        (
            "rate",
            f"final {_rate(s.final_rate)}   average {_rate(s.average_rate)}   "
            f"{s.cuts} cuts   {s.cooldowns} cool-downs",
        ),
        ("latency", _latency(s.latency_p50_ms, s.latency_p95_ms, s.latency_p99_ms)),
    ]
    if s.bound_by:
        rows.append(
            ("held back", f"by {s.bound_by}, not by the server: it could take more; raise it")
        )
    if s.clock_offset_s is not None:
        rows.append(("clock", f"offset {s.clock_offset_s:+.1f} s (from the server's Date)"))
    rows += [("error", f"{code} x{n}: {example}") for code, n, example in s.top_errors]
    if s.report_path:
        rows.append(("report", s.report_path))
    state = " (safety stop)" if s.safety_stop else " (interrupted)" if s.interrupted else ""
    lines = ["== summary" + state]
    lines += [f"{name:<10} {value}" for name, value in rows]
    if s.safety_stop:
        lines.append(f"{'stopped':<10} {s.safety_stop}")
    failed = s.counts.get(Status.FAILED.value, 0)
    unfinished = s.interrupted or bool(s.safety_stop)
    if next_command and (unfinished or failed):
        what = "finish the run" if unfinished else f"retry the {failed} failed rows"
        lines.append(f"next       to {what} (users already done are skipped):")
        text = next_command if isinstance(next_command, str) else shlex.join(next_command)
        lines.extend("           " + line for line in text.splitlines())
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}/s"


def _latency(p50: float | None, p95: float | None, p99: float | None) -> str:
    if p50 is None:
        return "n/a"
    return f"p50 {p50:.1f} ms   p95 {p95 or 0:.1f} ms   p99 {p99 or 0:.1f} ms"


@dataclass(slots=True)
class ReportSummary:
    """What a (finished or partial) report says, read without sending anything."""

    path: str
    rows: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    errors: dict[str, list[Any]] = field(default_factory=dict)  # code -> [count, example]
    attempts: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    with_before: int = 0  # rows that hold the state read before writing
    updated_with_before: int = 0  # of them, ``updated``: what ``undo`` restores

    def as_dict(self) -> dict[str, Any]:
        return {
            "report_path": self.path,
            "rows": self.rows,
            "counts": {s.value: self.counts.get(s.value, 0) for s in Status},
            "before_states": {"rows": self.with_before, "updated": self.updated_with_before},
            "requests": self.attempts,
            "latency_ms": {
                "p50": self.latency_p50_ms,
                "p95": self.latency_p95_ms,
                "p99": self.latency_p99_ms,
            },
            "top_errors": [
                {"code": code, "count": n, "example": msg}
                for code, n, msg in top_errors(self.errors)
            ],
        }


def summarize_report(path: str | os.PathLike[str]) -> ReportSummary:
    """Stream a report and count what it holds (``ReportError`` if it is not a report)."""
    out = ReportSummary(str(path))
    latencies = LatencyHistogram()
    for row in read_report(path):
        out.rows += 1
        out.counts[row.status] += 1
        if row.attempts.isdigit():
            out.attempts += int(row.attempts)
        if row.latency_ms:
            with contextlib.suppress(ValueError):
                latencies.add(float(row.latency_ms))
        if row.status in (Status.FAILED.value, Status.INVALID.value):
            count_error(out.errors, row.error_code or row.status, row.message)
        if row.before:
            out.with_before += 1
            out.updated_with_before += row.status == Status.UPDATED.value
    out.latency_p50_ms = latencies.percentile(50)
    out.latency_p95_ms = latencies.percentile(95)
    out.latency_p99_ms = latencies.percentile(99)
    return out


def format_report_summary(r: ReportSummary) -> str:
    counts = "  ".join(
        f"{s.value} {r.counts.get(s.value, 0)}"
        for s in Status
        if s.value in r.counts or s.value not in _SHOWN_IF_ANY
    )
    latency = _latency(r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms)
    lines = [
        f"== report {r.path}",
        f"{'rows':<10} {r.rows}   {counts}",
        f"{'requests':<10} {r.attempts} (sum of attempts)",
        f"{'latency':<10} {latency} (last attempt of each row)",
    ]
    if r.with_before:
        lines.append(
            f"{'before':<10} {r.with_before} rows hold the state read before writing; "
            f"undo restores {r.updated_with_before} updated users"
        )
    lines += [f"{'error':<10} {code} x{n}: {example}" for code, n, example in top_errors(r.errors)]
    return "\n".join(lines)
