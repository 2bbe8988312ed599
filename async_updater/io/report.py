"""The report: one row per input row, appended and flushed as results arrive, so it is also the
journal that ``--resume`` reads back. CSV (default) or JSON Lines, same columns either way.

Next to the report sits ``<report>.meta.json``: a fingerprint of the input the report was made
from, so a resume against a different file is refused instead of silently skipping users. A run
that reads before writing also keeps ``<report>.before.jsonl`` while it runs (``before.py``).

Reports written before the ``before`` column existed (its first nine columns only) are read as
if that column were empty, and rows read from them come back in the current layout.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import ReportError
from ..model import REPORT_COLUMNS, Result, Status
from .before import BeforeJournal, compact
from .keyindex import KeyIndex

__all__ = [
    "CsvReport",
    "JsonlReport",
    "MemoryReport",
    "ReportRow",
    "ReportSink",
    "ResumeState",
    "input_fingerprint",
    "open_report",
    "read_report",
    "recorded_split",
    "report_has_before",
    "split_text",
]

FORMATS = ("csv", "jsonl")
# The columns of reports written before ``before`` was added.
LEGACY_COLUMNS = REPORT_COLUMNS[: REPORT_COLUMNS.index("before")]
# A user whose latest row says one of these is done: a resume does not send it again.
DONE_STATUSES = frozenset({Status.UPDATED.value, Status.UNCHANGED.value})


class ReportSink(Protocol):
    """Where results go. ``flush`` makes everything written so far survive a crash."""

    def write(self, result: Result) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class MemoryReport:
    """Keeps results in a list: for tests and small library jobs."""

    __slots__ = ("results",)

    def __init__(self) -> None:
        self.results: list[Result] = []

    def write(self, result: Result) -> None:
        self.results.append(result)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _FileReport:
    """A report file. Any write that fails (a full disk: ENOSPC) raises ``ReportError`` naming
    the file and the OS error, and so does every later ``write`` or ``flush``: what is in the
    file is then all the run can prove. ``close`` never raises for an error already raised."""

    __slots__ = ("_file", "error", "path")

    def __init__(self, path: str | os.PathLike[str], *, append: bool) -> None:
        self.path = Path(path)
        self.error: ReportError | None = None
        try:
            existing = append and self.path.exists() and self.path.stat().st_size > 0
            self._file: IO[str] = open(  # noqa: SIM115 - closed by close()
                self.path, "a" if append else "w", encoding="utf-8", newline=""
            )
        except OSError as exc:
            raise ReportError(f"cannot write the report {self.path}: {exc.strerror}") from None
        if not existing:
            try:
                self._start()
                # Written through now: a disk that is already full must stop the run before
                # it sends anything, not after the first answers are lost.
                self.flush()
            except ReportError:
                self._close_quietly()
                raise

    def _start(self) -> None:
        pass

    def _failed(self, exc: OSError) -> ReportError:
        if self.error is None:
            self.error = ReportError(f"cannot write the report {self.path}: {exc.strerror or exc}")
        return self.error

    def flush(self) -> None:
        if self.error is not None:
            raise self.error
        try:
            self._file.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def close(self) -> None:
        if self._file.closed:
            return
        if self.error is None:
            try:
                self._file.flush()
            except OSError as exc:
                self._close_quietly()
                raise self._failed(exc) from None
        self._close_quietly()

    def _close_quietly(self) -> None:
        # Closing flushes what is left, which fails again on a full disk; the descriptor is
        # closed all the same, and the error was already raised once.
        with contextlib.suppress(OSError):
            self._file.close()


class CsvReport(_FileReport):
    """CSV with the header ``REPORT_COLUMNS``."""

    __slots__ = ("_writer",)

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        self._writer: Any = None
        super().__init__(path, append=append)
        self._writer = csv.writer(self._file, lineterminator="\n")

    def _start(self) -> None:
        try:
            csv.writer(self._file, lineterminator="\n").writerow(REPORT_COLUMNS)
        except OSError as exc:
            raise self._failed(exc) from None

    def write(self, result: Result) -> None:
        if self.error is not None:
            raise self.error
        try:
            self._writer.writerow(result.row())
        except OSError as exc:  # the buffer was full and the disk is too
            raise self._failed(exc) from None


class JsonlReport(_FileReport):
    """One JSON object per line, keys ``REPORT_COLUMNS``; numbers as numbers, absent as null,
    ``before`` as an object."""

    __slots__ = ()

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        super().__init__(path, append=append)

    def write(self, result: Result) -> None:
        if self.error is not None:
            raise self.error
        line = (
            json.dumps(
                {
                    "account_id": result.account_id,
                    "user_id": result.user_id,
                    "status": result.status.value,
                    "http_status": result.http_status,
                    "error_code": result.error_code,
                    "message": result.message,
                    "attempts": result.attempts,
                    "latency_ms": None
                    if result.latency_ms is None
                    else round(result.latency_ms, 1),
                    "request_id": result.request_id,
                    "before": json.loads(result.before) if result.before else None,
                },
                ensure_ascii=False,
            )
            + "\n"
        )
        try:
            self._file.write(line)
        except OSError as exc:
            raise self._failed(exc) from None


def open_report(
    path: str | os.PathLike[str], fmt: str = "csv", *, append: bool = False
) -> CsvReport | JsonlReport:
    if fmt == "csv":
        return CsvReport(path, append=append)
    if fmt == "jsonl":
        return JsonlReport(path, append=append)
    raise ReportError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")


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


def input_fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the input file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def meta_path(report: str | os.PathLike[str]) -> Path:
    p = Path(report)
    return p.with_name(p.name + ".meta.json")


def write_meta(report: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    target = meta_path(report)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc.strerror}") from None


def recorded_split(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """How the run behind ``meta`` was split: ``("K/N", basis)``, or None for a whole run.

    ``shard_basis`` is ``user`` or ``account`` (``ShardBasis``). A meta file written before
    the basis was recorded has a shard but no basis: those runs always split by account.
    """
    shard = meta.get("shard")
    if not shard:
        return None
    return str(shard), str(meta.get("shard_basis") or "account")


def split_text(meta: Mapping[str, Any]) -> str:
    """The split of ``meta`` in words, for messages: ``--shard 0/4 split by user``."""
    split = recorded_split(meta)
    return f"--shard {split[0]} split by {split[1]}" if split else "no --shard"


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
        _check_same_run(report, old, meta)
        if detect_format(report) != fmt:
            raise ReportError(f"cannot resume: {report} is not in {fmt} format (see --format)")
        # Pass 1: where each user's latest outcome is (invalid rows belong to input lines, not
        # to users). Pass 2: keep the rows that are a user's latest and say it is done.
        latest = KeyIndex()
        for n, row in enumerate(read_report(report)):
            if row.status != Status.INVALID.value:
                latest.set(row.account_id, row.user_id, n)
        updated = KeyIndex()
        tmp = report.with_name(report.name + ".resume.tmp")
        kept = 0
        befores = None
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                if fmt == "csv":
                    csv.writer(out, lineterminator="\n").writerow(REPORT_COLUMNS)
                for n, row in enumerate(read_report(report)):
                    if row.status not in DONE_STATUSES:
                        continue
                    if latest.get(row.account_id, row.user_id) == n:
                        updated.add(row.account_id, row.user_id, 1)
                        out.write(row.text)
                        kept += 1
                out.flush()
                os.fsync(out.fileno())
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
