"""Reading a report back, row by row, in either format. Reports written before the ``before``
column existed (its first nine columns only) are read as if that column were empty, and rows
read from them come back in the current layout."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import ReportError
from ..model import REPORT_COLUMNS

__all__ = [
    "LEGACY_COLUMNS",
    "ReportRow",
    "detect_format",
    "read_report",
    "report_has_before",
]

# The columns of reports written before ``before`` was added.
LEGACY_COLUMNS = REPORT_COLUMNS[: REPORT_COLUMNS.index("before")]


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One row read back from a report; values as written (strings), ``line`` in the report."""

    account_id: str
    user_id: str
    status: str
    http_status: str
    error_code: str
    message: str
    attempts: str
    latency_ms: str
    request_id: str
    text: str  # the row as the current layout writes it (as in the file), newline included
    before: str = ""  # JSON text of the state read before writing, or empty

    @classmethod
    def from_cells(cls, cells: list[str], text: str) -> ReportRow:
        """From the cells of either layout (``LEGACY_COLUMNS`` has no ``before``)."""
        a, u, status, http_status, code, message, attempts, latency, request_id = cells[:9]
        before = cells[9] if len(cells) > 9 else ""
        return cls(
            a, u, status, http_status, code, message, attempts, latency, request_id, text, before
        )


def detect_format(path: str | os.PathLike[str]) -> str:
    """``jsonl`` if the file starts with ``{`` or is named ``*.jsonl``/``*.json``, else ``csv``."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(1)
    except OSError:
        head = b""
    if head == b"{" or (not head and p.suffix in (".jsonl", ".json")):
        return "jsonl"
    return "csv"


def read_report(path: str | os.PathLike[str]) -> Iterator[ReportRow]:
    """Stream the rows of a report (either format). A last line cut short by a crash is skipped;
    anything else unreadable raises ``ReportError`` naming the line."""
    p = Path(path)
    fmt = detect_format(p)
    try:
        f = open(p, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ReportError(f"cannot read the report {p}: {exc.strerror}") from None
    with f:
        if fmt == "jsonl":
            yield from _read_jsonl(f, p)
        else:
            yield from _read_csv(f, p)


def _read_jsonl(f: IO[str], p: Path) -> Iterator[ReportRow]:
    for n, line in enumerate(f, 1):
        if not line.endswith("\n"):
            return  # a write cut short by a crash
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            cells = [_cell(data[c]) for c in LEGACY_COLUMNS]
            before = data.get("before")
            cells.append(_before_cell(before))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ReportError(f"{p}: line {n} is not a report row") from None
        if "before" not in data:
            # An older report's line: given back as the current writer would write it.
            data["before"] = None
            line = json.dumps(data, ensure_ascii=False) + "\n"
        yield ReportRow.from_cells(cells, line)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _before_cell(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, dict):
        return json.dumps(value)  # as state.state_json writes it
    raise TypeError("before must be an object or null")


def _read_csv(f: IO[str], p: Path) -> Iterator[ReportRow]:
    reader = csv.reader(f)
    try:
        header = next(reader, None)
        if header is None:
            return
        if header != list(REPORT_COLUMNS) and header != list(LEGACY_COLUMNS):
            raise ReportError(f"{p} is not an async-updater report (unexpected header)")
        width = len(header)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        # A row is only known to be complete once the next one starts (see below), so each is
        # yielded one step late, with the line it started on.
        pending: list[str] | None = None
        pending_line = start = reader.line_num + 1
        for cells in reader:
            if cells:
                if pending is not None:
                    yield _csv_row(pending, width, writer, out, p, pending_line)
                pending, pending_line = cells, start
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ReportError(f"{p}: line {reader.line_num}: {exc}") from None
    # A last record without its newline was cut short by a crash: it never counted. So was one
    # short of fields: the cut fell just after a line break inside a quoted message.
    if pending is not None and _ends_with_newline(p) and len(pending) == width:
        yield _csv_row(pending, width, writer, out, p, pending_line)


def _csv_row(
    cells: list[str], width: int, writer: Any, out: io.StringIO, p: Path, line: int
) -> ReportRow:
    if len(cells) != width:
        raise ReportError(f"{p}: line {line} has {len(cells)} fields, not {width}")
    if width < len(REPORT_COLUMNS):
        cells = [*cells, ""]  # an older report: no before-state
    out.seek(0)
    out.truncate()
    writer.writerow(cells)  # our own writer wrote it: re-serialising gives the same text
    return ReportRow.from_cells(cells, out.getvalue())


def report_has_before(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a report with a ``before`` column (one written since it exists).
    A JSON Lines report is judged by its first row; an empty report has the column."""
    p = Path(path)
    try:
        with open(p, encoding="utf-8", newline="") as f:
            if detect_format(p) == "csv":
                header = next(csv.reader(f), None)
                return header is None or header == list(REPORT_COLUMNS)
            for line in f:
                if line.strip():
                    try:
                        data = json.loads(line)
                    except ValueError:
                        raise ReportError(f"{p}: line 1 is not a report row") from None
                    return isinstance(data, dict) and "before" in data
            return True
    except OSError as exc:
        raise ReportError(f"cannot read the report {p}: {exc.strerror}") from None
    except csv.Error as exc:
        raise ReportError(f"{p}: {exc}") from None


def _ends_with_newline(p: Path) -> bool:
    with open(p, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
