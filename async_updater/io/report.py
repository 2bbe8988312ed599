"""The report: one row per input row, appended and flushed as results arrive, so it is also the
journal that ``--resume`` reads back (``reader.py``, ``resume.py``). CSV (default) or JSON
Lines, same columns either way. Beside it: ``<report>.meta.json`` (``meta.py``) and, while a run
that reads before writing goes on, ``<report>.before.jsonl`` (``before.py``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import ReportError
from ..model import REPORT_COLUMNS, Result

__all__ = [
    "CsvReport",
    "JsonlReport",
    "MemoryReport",
    "ReportSink",
    "open_report",
]

FORMATS = ("csv", "jsonl")


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
