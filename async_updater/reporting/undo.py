"""``async-updater undo``: from a report's ``before`` column, the input file that puts every
``updated`` user back the way it was. Running that file is a normal run."""

from __future__ import annotations

import contextlib
import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ReportError, StateError
from ..io.keyindex import KeyIndex
from ..io.meta import meta_path
from ..io.reader import read_report, report_has_before
from ..model import Status
from ..operations.base import Operation
from ..pipeline.state import parse_state_json

__all__ = ["UndoOutcome", "write_undo"]

SHOWN = 5  # users named by a warning; the rest are counted


@dataclass(frozen=True, slots=True)
class UndoOutcome:
    """What ``write_undo`` did: ``written`` users restored by the file; ``missing`` counts the
    ``updated`` users with no before-state and ``unusable`` those whose before-state cannot be
    made into a row (``*_shown``: the first few, ``account/user`` with a reason)."""

    written: int
    missing: int = 0
    missing_shown: tuple[str, ...] = ()
    unusable: int = 0
    unusable_shown: tuple[str, ...] = ()

    @property
    def left_out(self) -> int:
        return self.missing + self.unusable

    def warnings(self) -> list[str]:
        """One line per kind of user left out, naming the first few."""
        out = []
        if self.missing:
            out.append(
                f"{self.missing} updated users have no before-state and are left out (was the "
                f"run made without --read-before?): {_named(self.missing_shown, self.missing)}"
            )
        if self.unusable:
            out.append(
                f"{self.unusable} updated users have a before-state that cannot be restored "
                f"and are left out: {_named(self.unusable_shown, self.unusable)}"
            )
        return out


def _named(shown: tuple[str, ...], count: int) -> str:
    more = count - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def write_undo(
    report: str | os.PathLike[str],
    out: str | os.PathLike[str],
    operation: Operation,
    *,
    overwrite: bool = False,
) -> UndoOutcome:
    """Write to ``out`` an input file for ``operation`` (CSV with its reader's
    ``restore_columns``) that restores the ``before`` state of every ``updated`` user in
    ``report``, each user once. Raises ``ReportError`` (nothing written) if ``report`` has no
    ``before`` column, was made by another operation, or ``out`` exists and not ``overwrite``."""
    report, out = Path(report), Path(out)
    reader = operation.reader
    if reader is None:
        raise ReportError(
            f"undo: operation {operation.name!r} cannot read a user's state, so its reports "
            "hold no before-state to restore"
        )
    if not report.is_file():
        what = "is a directory" if report.is_dir() else "no such file"
        raise ReportError(f"undo: {report}: {what}")
    if not report_has_before(report):
        raise ReportError(
            f"undo: {report} has no 'before' column (it was written by a version that did not "
            "record before-states): there is nothing to restore from"
        )
    _check_operation(report, operation)
    _check_out(report, out, overwrite)
    seen = KeyIndex()
    written = missing = unusable = 0
    missing_shown: list[str] = []
    unusable_shown: list[str] = []
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(reader.restore_columns)
            for row in read_report(report):
                if row.status != Status.UPDATED.value:
                    continue
                if seen.add(row.account_id, row.user_id, 1) is not None:
                    continue  # only an edited report repeats a user; its first row is oldest
                who = f"{row.account_id}/{row.user_id}"
                if not row.before:
                    missing += 1
                    if len(missing_shown) < SHOWN:
                        missing_shown.append(who)
                    continue
                try:
                    cells = reader.restore_row(
                        row.account_id, row.user_id, parse_state_json(row.before)
                    )
                except StateError as exc:
                    unusable += 1
                    if len(unusable_shown) < SHOWN:
                        unusable_shown.append(f"{who} ({exc})")
                    continue
                writer.writerow(cells)
                written += 1
        os.replace(tmp, out)
    except OSError as exc:
        raise ReportError(f"undo: cannot write {out}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return UndoOutcome(written, missing, tuple(missing_shown), unusable, tuple(unusable_shown))


def _check_operation(report: Path, operation: Operation) -> None:
    """A report's meta file names the operation that made it; restoring with another one's
    columns would write a file that run refuses (or, worse, means something else)."""
    try:
        meta = json.loads(meta_path(report).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # e.g. a merged report: it has no meta file
    made_by = meta.get("operation") if isinstance(meta, dict) else None
    if made_by and made_by != operation.name:
        raise ReportError(
            f"undo: {report} was made by operation {made_by!r}, not {operation.name!r}; give "
            "undo the same operation options as the run"
        )


def _check_out(report: Path, out: Path, overwrite: bool) -> None:
    if out.resolve() == report.resolve():
        raise ReportError("undo: --out must not be the report")
    if out.is_dir():
        raise ReportError(f"undo: --out {out} is a directory")
    if out.exists() and not overwrite:
        raise ReportError(f"undo: {out} already exists: add --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ReportError(f"undo: --out: folder {parent} does not exist")
