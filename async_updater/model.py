"""Values passed between the stages of the pipeline: frozen, slotted, cheap to build."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

__all__ = [
    "REPORT_COLUMNS",
    "Plan",
    "Record",
    "Result",
    "RowRecord",
    "RunSummary",
    "Status",
    "UserRecord",
]

REPORT_COLUMNS: tuple[str, ...] = (
    "account_id",
    "user_id",
    "status",
    "http_status",
    "error_code",
    "message",
    "attempts",
    "latency_ms",
    "request_id",
    "before",
)
"""The report's columns. ``before`` came last, so reports written before it existed (the first
nine columns only) are still read; see ``report.read_report``."""


class Status(str, Enum):
    """Final status of one input row in the report. ``UNCHANGED``: the user's state, read before
    writing, already was what the row asks for, so nothing was written (``--skip-unchanged``, or
    a dry run with ``--read-before``). ``UPDATED`` and ``UNCHANGED`` are both success."""

    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    INVALID = "invalid"
    PLANNED = "planned"

    def __str__(self) -> str:
        return self.value


class Record(Protocol):
    """What the pipeline needs of any record: who it is for and where it came from."""

    @property
    def account_id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def line(self) -> int: ...


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user's telephony settings, as Chime ``UpdateUserSettings`` takes them.

    ``line`` is the 1-based line of the input file the row started on (0 when built in code).
    """

    account_id: str
    user_id: str
    inbound_calling: bool
    outbound_calling: bool
    sms: bool
    line: int = 0


@dataclass(frozen=True, slots=True)
class RowRecord:
    """A record for a generic operation: the row's typed values by column name."""

    account_id: str
    user_id: str
    values: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one input row: exactly one per row ends up in the report."""

    account_id: str
    user_id: str
    status: Status
    http_status: int | None = None
    error_code: str = ""
    message: str = ""
    attempts: int = 0
    latency_ms: float | None = None
    request_id: str = ""
    line: int = 0
    before: str = ""
    """The user's state as read before writing: JSON of the row's fields (``state.state_json``),
    or empty when nothing was read (no ``--read-before``, or the read failed)."""
    changes: tuple[str, ...] = ()
    """The fields whose value the row changes (or would change, in a plan), known only when the
    state was read; not a report column: the run's summary counts them (``state.Plan``)."""

    def row(self) -> tuple[str, ...]:
        """The result as report cells, in ``REPORT_COLUMNS`` order."""
        return (
            self.account_id,
            self.user_id,
            self.status.value,
            "" if self.http_status is None else str(self.http_status),
            self.error_code,
            self.message,
            str(self.attempts),
            "" if self.latency_ms is None else f"{self.latency_ms:.1f}",
            self.request_id,
            self.before,
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """What reading before writing found: of ``compared`` users whose state was read and
    compared with their row, ``changing`` differ from it; ``fields`` counts, per field, the users
    it differs for (most first). Built by ``state.plan_of`` / ``state.PlanTally``."""

    changing: int
    compared: int
    fields: tuple[tuple[str, int], ...] = ()

    def text(self, *, dry_run: bool) -> str:
        """``812 of 3000 users would change (sms: 812 users, inbound_calling: 40 users)``."""
        verb = "would change" if dry_run else "changed"
        head = f"{self.changing} of {self.compared} users {verb}"
        if not self.fields:
            return head
        per_field = ", ".join(f"{name}: {n} user{'s' * (n != 1)}" for name, n in self.fields)
        return f"{head} ({per_field})"

    def as_dict(self) -> dict[str, Any]:
        return {"changing": self.changing, "compared": self.compared, "fields": dict(self.fields)}


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run did, for people (``format``) and machines (``as_dict``)."""

    counts: Mapping[str, int]
    rows: int
    elapsed_s: float
    requests: int
    retries: int
    throttles: int
    server_errors: int
    cuts: int
    cooldowns: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    final_rate: float | None
    average_rate: float | None
    top_errors: tuple[tuple[str, int, str], ...] = ()
    interrupted: bool = False
    report_path: str | None = None
    skipped: int = 0  # users already updated by an earlier run (``--resume``), not sent again
    bound_by: str = ""  # the option that held the run back at the end, if not the server
    # The one-line cause when a safety stop ended the run early (then ``interrupted`` too).
    safety_stop: str | None = None
    # Server time minus local time, when the server's Date corrected our clock (None: never).
    clock_offset_s: float | None = None
    plan: Plan | None = None  # None unless some user's state was read and compared (--read-before)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def updates_per_s(self) -> float:
        done = self.counts.get(Status.UPDATED.value, 0)
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "rows": self.rows,
            "elapsed_s": round(self.elapsed_s, 3),
            "requests": self.requests,
            "requests_per_s": round(self.requests_per_s, 1),
            "updates_per_s": round(self.updates_per_s, 1),
            "retries": self.retries,
            "throttles": self.throttles,
            "server_errors": self.server_errors,
            "rate_cuts": self.cuts,
            "cooldowns": self.cooldowns,
            "latency_ms": {
                "p50": self.latency_p50_ms,
                "p95": self.latency_p95_ms,
                "p99": self.latency_p99_ms,
            },
            "final_rate": self.final_rate,
            "average_rate": self.average_rate,
            "top_errors": [
                {"code": code, "count": n, "example": msg} for code, n, msg in self.top_errors
            ],
            "skipped_already_updated": self.skipped,
            "bound_by": self.bound_by or None,
            "plan": None if self.plan is None else self.plan.as_dict(),
            "interrupted": self.interrupted,
            "safety_stop": self.safety_stop,
            "clock_offset_s": None
            if self.clock_offset_s is None
            else round(self.clock_offset_s, 3),
            "report_path": self.report_path,
        }
