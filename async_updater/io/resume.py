"""Resuming a run: check a report belongs to this input, then keep each user's latest row that
says it is done, so the resumed run sends only the rest."""

from __future__ import annotations

import contextlib
import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ReportError
from ..model import REPORT_COLUMNS, Status
from .before import BeforeJournal, compact
from .keyindex import KeyIndex
from .meta import meta_path, recorded_split, split_text, write_meta
from .reader import detect_format, read_report

# A user whose latest row says one of these is done: a resume does not send it again.
DONE_STATUSES = frozenset({Status.UPDATED.value, Status.UNCHANGED.value})


@dataclass(slots=True)
class ResumeState:
    """What a previous run of the same input achieved: ``updated`` holds the users done (their
    latest row says ``updated`` or ``unchanged``), not to be sent again; ``befores`` (with
    ``read_before``) the before-states captured for the users still to do."""

    updated: KeyIndex
    carried_rows: int
    befores: BeforeJournal | None = None

    @classmethod
    def prepare(
        cls,
        report: str | os.PathLike[str],
        fmt: str,
        meta: dict[str, Any],
        *,
        read_before: bool = False,
    ) -> ResumeState:
        """Check the report belongs to this input, then rewrite it atomically keeping, for each
        user whose latest row says ``updated`` or ``unchanged``, that row (every other outcome
        will be written again by this run). On any error the report is left as it was.

        With ``read_before``, also rewrite ``REPORT.before.jsonl`` to the first before-state
        captured for each user not done (from the journal, else from the user's ``failed``
        row) and return it open in ``befores``: the resumed run keeps those states as the
        users' ``before``, never one read after an earlier run may have written."""
        report = Path(report)
        if not report.exists() or report.stat().st_size == 0:
            write_meta(report, meta)
            befores = BeforeJournal.start(report) if read_before else None
            return cls(KeyIndex(), 0, befores)
        _check_same_run(report, _recorded_meta(report), meta)
        if detect_format(report) != fmt:
            raise ReportError(f"cannot resume: {report} is not in {fmt} format (see --format)")
        updated = KeyIndex()
        tmp = report.with_name(report.name + ".resume.tmp")
        befores = None
        try:
            kept = _write_done_rows(report, fmt, tmp, updated)
            if read_before:
                # Pass 3, before the report is replaced: a failed row's before-state is the
                # first captured for its user unless the journal has an earlier one.
                befores = compact(
                    report,
                    updated,
                    (
                        (row.account_id, row.user_id, row.before)
                        for row in read_report(report)
                        if row.before and row.status == Status.FAILED.value
                    ),
                )
            os.replace(tmp, report)
        except OSError as exc:
            if befores is not None:
                befores.close()
            raise ReportError(f"cannot rewrite the report {report}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return cls(updated, kept, befores)


def _recorded_meta(report: Path) -> dict[str, Any]:
    mp = meta_path(report)
    try:
        old = json.loads(mp.read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            raise ValueError
    except (OSError, ValueError):
        raise ReportError(
            f"cannot resume: {mp} is missing or unreadable, so there is no proof that "
            f"{report} was made from this input; choose a new --report to start over"
        ) from None
    return old


def _write_done_rows(report: Path, fmt: str, tmp: Path, updated: KeyIndex) -> int:
    """Write to ``tmp`` each user's latest row of ``report`` if it says the user is done, add
    those users to ``updated``, and return how many rows were kept."""
    # Pass 1: where each user's latest outcome is (invalid rows belong to input lines, not to
    # users). Pass 2: keep the rows that are a user's latest and say it is done.
    latest = KeyIndex()
    for n, row in enumerate(read_report(report)):
        if row.status != Status.INVALID.value:
            latest.set(row.account_id, row.user_id, n)
    kept = 0
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        if fmt == "csv":
            csv.writer(out, lineterminator="\n").writerow(REPORT_COLUMNS)
        for n, row in enumerate(read_report(report)):
            if row.status in DONE_STATUSES and latest.get(row.account_id, row.user_id) == n:
                updated.add(row.account_id, row.user_id, 1)
                out.write(row.text)
                kept += 1
        out.flush()
        os.fsync(out.fileno())
    return kept


def _check_same_run(report: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    if old.get("input_sha256") != new.get("input_sha256"):
        before, now = old.get("input", "?"), new.get("input", "?")
        what = (
            f"{now} has changed since"
            if before == now
            else f"it was made from {before}, whose content differs from {now}"
        )
        raise ReportError(
            f"cannot resume: {report} was made from a different input file ({what}); "
            "choose a new --report to start over"
        )
    if old.get("operation") != new.get("operation"):
        raise ReportError(
            f"cannot resume: {report} was made by operation {old.get('operation')!r}, not "
            f"{new.get('operation')!r}; choose a new --report to start over"
        )
    if recorded_split(old) != recorded_split(new):
        raise ReportError(
            f"cannot resume: {report} was made with {split_text(old)}, not {split_text(new)}; "
            "resume with the same --shard and --limit-scope (--limit-scope account splits by "
            "account, global by user)"
        )
