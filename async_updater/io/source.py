"""The CSV source: streams rows, validates each, yields a record or an ``invalid`` result.

Never loads the file: one row at a time through the stdlib csv reader, with a compact digest
index for the duplicate check, so memory is flat in the file's size. File-level problems
(missing, unreadable, empty, wrong header) raise ``InputError`` when the source is built, before
anything is sent; row-level problems become ``invalid`` results naming the line and the field.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from hashlib import blake2b
from pathlib import Path
from typing import IO

from ..config import LimitScope
from ..errors import ConfigError, InputError, RowError
from ..model import Record, Result, Status
from ..operations.base import Operation, RowParser
from ..operations.chime import ChimeUpdateUserSettings
from .keyindex import KeyIndex

__all__ = ["CsvSource", "Shard", "ShardBasis", "count_data_lines", "read_records"]

MAX_FIELD = 1 << 20
MAX_ROW = MAX_FIELD  # characters in one row, quoted newlines included
_CHUNK = MAX_ROW + 1  # the most read at once
MAX_REPORTED_CELL = 256
# The csv module's limit is process-wide; raise it once so long-but-sane fields parse. Rows are
# bounded by ``_Lines`` instead, which knows where the oversized row started and can skip it whole.
csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD + 1))


class ShardBasis(str, Enum):
    """What ``--shard`` hashes to give a row its shard.

    ``USER`` (account id and user id) spreads the rows evenly over the shards whatever the number
    of accounts: right when one limit covers everything (``--limit-scope global``). ``ACCOUNT``
    keeps each account's rows in one shard, so an account's own limit (``--limit-scope
    account``) is never split between processes that do not know of each other. Either way a
    user's rows, duplicates included, land in one shard.
    """

    USER = "user"
    ACCOUNT = "account"

    @classmethod
    def for_scope(cls, scope: LimitScope | str) -> ShardBasis:
        """The basis that fits a limit scope: by account for ``account``, else by user."""
        return cls.ACCOUNT if LimitScope(scope) is LimitScope.ACCOUNT else cls.USER

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count``: the rows whose key hashes to ``index``.

    The key is the account id and the user id (``basis=USER``, the default) or the account id
    alone (``ACCOUNT``), hashed with BLAKE2b, so every process and Python version agrees.
    """

    index: int
    count: int
    basis: ShardBasis = ShardBasis.USER

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard: need 0 <= K < N, got {self.index}/{self.count}")
        object.__setattr__(self, "basis", ShardBasis(self.basis))

    @classmethod
    def parse(cls, text: str, basis: ShardBasis = ShardBasis.USER) -> Shard:
        k, sep, n = text.partition("/")
        try:
            if not sep:
                raise ValueError
            index, count = int(k), int(n)
        except ValueError:
            raise ConfigError(f"--shard: {text!r} is not K/N, e.g. 0/4 (K counts from 0)") from None
        return cls(index, count, basis)  # ConfigError (a ValueError) names what is out of range

    def owns(self, account_id: str, user_id: str) -> bool:
        """Whether the row of this account and user (as the report names them) is this shard's."""
        key = account_id.encode("utf-8", "surrogateescape")
        if self.basis is ShardBasis.USER:
            # A NUL cannot be in an id (control characters are refused), so the pair is
            # unambiguous; an invalid row that has one still lands in exactly one shard.
            key += b"\0" + user_id.encode("utf-8", "surrogateescape")
        digest = blake2b(key, digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class CsvSource:
    """Iterate ``Record | Result`` from a CSV file: a record per valid row, an ``invalid``
    ``Result`` per bad row (line and field in the message). Iterable more than once."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        operation: Operation | None = None,
        *,
        shard: Shard | None = None,
    ) -> None:
        self.path = Path(path)
        self.operation: Operation = operation or ChimeUpdateUserSettings()
        self.shard = shard
        self.rows = 0
        self.invalid = 0
        with self._open() as f:
            header, self._header_line = _read_header(_Lines(f), self.path)
        self.header = header
        try:
            self.operation.row_parser(header)
        except InputError as exc:
            expected = ",".join(self.operation.columns)
            names = {h.strip().lower() for h in header}
            if not names & set(self.operation.columns):
                raise InputError(
                    f"{self.path}: the first line is not a header; it must be: {expected}"
                ) from None
            raise InputError(f"{self.path}: {exc}") from None
        self._index = {h.strip().lower(): i for i, h in enumerate(header)}
        self._lines: int | None = None

    def expected_rows(self) -> int | None:
        """The rows the file holds, counted cheaply (its lines, once: a row with a quoted
        line break counts twice), or None for a shard, whose share is not known up front."""
        if self.shard is not None:
            return None
        return self._count()

    def rows_expected(self) -> float | None:
        """How many rows this source will yield, as near as can be told before reading them:
        the file's count (``expected_rows``), or a shard by user's even share of it (each row's
        shard is a hash of its ids, so a shard of N holds about 1/N of the rows whatever
        their order). None for a shard by account, whose share depends on how many rows each
        account has."""
        shard = self.shard
        if shard is None:
            return self._count()
        if shard.basis is ShardBasis.USER:
            return self._count() / shard.count
        return None

    def _count(self) -> int:
        if self._lines is None:
            self._lines = count_data_lines(self.path)
        return self._lines

    def _open(self) -> IO[str]:
        try:
            return open(self.path, encoding="utf-8-sig", errors="surrogateescape", newline="")
        except FileNotFoundError:
            raise InputError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"{self.path}: is a directory, not a CSV file") from None
        except PermissionError:
            raise InputError(f"{self.path}: cannot read it (permission denied)") from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read it ({exc.strerror})") from None

    def __iter__(self) -> Iterator[Record | Result]:
        self.rows = 0
        self.invalid = 0
        parse = self.operation.row_parser(self.header)
        seen = KeyIndex()
        shard = self.shard
        # Which columns name the row in the report (and pick its shard).
        ia = self._index.get((self.operation.scope_column or "account_id").lower(), -1)
        iu = self._index.get(self.operation.id_column.lower(), -1)
        with self._open() as f:
            lines = _Lines(f)
            reader = csv.reader(lines)
            while True:
                line = lines.line + 1  # the physical line the next row starts on
                lines.start_row()
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except (_RowTooLong, csv.Error) as exc:
                    # The account and user are unknown: the row goes to the shard of empty
                    # ones, so that exactly one shard reports it.
                    reason = _unparsable(exc, lines, line)
                    if line <= self._header_line or (shard is not None and not shard.owns("", "")):
                        continue
                    self.rows += 1
                    self.invalid += 1
                    yield _invalid("", "", line, f"line {line}: {reason}")
                    continue
                if line <= self._header_line:
                    continue
                if not cells or not (cells[0].strip() or any(c.strip() for c in cells)):
                    continue  # a blank line (or one of only commas, as spreadsheets export)
                account = _cell(cells, ia)
                # Both cells are stripped, as the ids are, so a duplicate row (same account and
                # user) goes to the shard of the row it duplicates and is caught there.
                if shard is not None and not shard.owns(account, _cell(cells, iu)):
                    continue
                self.rows += 1
                item = self._parse(parse, cells, line, lines.line, account, _cell(cells, iu))
                if isinstance(item, Result):
                    self.invalid += 1
                    yield item
                    continue
                earlier = seen.add(item.account_id, item.user_id, line)
                if earlier is not None:
                    self.invalid += 1
                    yield _duplicate(item, line, earlier)
                    continue
                yield item

    def _parse(
        self, parse: RowParser, cells: list[str], line: int, last: int, account: str, user: str
    ) -> Record | Result:
        """The record of the row that starts on ``line`` (and ends on ``last``), or its
        ``invalid`` result."""
        try:
            for i, cell in enumerate(cells):
                if not cell.isascii():
                    _check_utf8(cell, self.header, i)
            return parse(cells, line)
        except RowError as exc:
            message = f"line {line}: {exc}"
            if len(cells) != len(self.header) and last > line:
                message += (
                    f" (a quoted field runs from line {line} to line {last}; "
                    "is a closing quote missing?)"
                )
            return _invalid(account, user, line, message)


def _unparsable(exc: Exception, lines: _Lines, line: int) -> str:
    """Why the row starting on ``line`` could not be read; skips the rest of an overlong row."""
    if not isinstance(exc, _RowTooLong):
        return f"cannot parse the row ({exc})"
    quoted = lines.row_quotes % 2 == 1
    lines.skip_quoted()
    reason = f"the row is longer than {MAX_ROW} characters"
    if quoted:
        reason += (
            f" (a quoted field runs from line {line} to line {lines.line}; "
            "is a closing quote missing?)"
        )
    return reason


def _duplicate(record: Record, line: int, earlier: int) -> Result:
    return Result(
        _report_cell(record.account_id),
        _report_cell(record.user_id),
        Status.INVALID,
        error_code="DuplicateRow",
        message=(
            f"line {line}: user_id: duplicate of line {earlier} (same account_id "
            f"and user_id); only line {earlier} is applied"
        ),
        line=line,
    )


def read_records(
    path: str | os.PathLike[str],
    operation: Operation | None = None,
    *,
    shard: Shard | None = None,
) -> Iterator[Record | Result]:
    """Stream the records (and invalid-row results) of a CSV file."""
    return iter(CsvSource(path, operation, shard=shard))


def count_data_lines(path: str | os.PathLike[str]) -> int:
    """A cheap upper bound on the data rows, for a progress bar: newlines minus the header."""
    lines = 0
    last = b"\n"
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return 0
    if last != b"\n":
        lines += 1
    return max(0, lines - 1)


class _RowTooLong(Exception):
    """A row ran past ``MAX_ROW`` characters (raised through the csv reader by ``_Lines``)."""


class _Lines:
    """The file's lines for the csv reader, counted as they pass: the physical line number, and
    the characters and double quotes of the row being read. A row longer than ``MAX_ROW`` is
    cut off there, and the rest of it skipped (``skip_quoted``), so its tail is never read as
    rows. Lines are read at most ``MAX_ROW + 1`` characters at a time: memory stays bounded even
    for a file that is one endless line, or an unclosed quote swallowing the rest of the file."""

    __slots__ = ("_readline", "line", "row_chars", "row_quotes")

    def __init__(self, file: IO[str]) -> None:
        self._readline = file.readline
        self.line = 0
        self.row_chars = 0
        self.row_quotes = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        text = self._readline(_CHUNK)
        if not text:
            raise StopIteration
        self.line += 1
        self.row_chars += len(text)
        if '"' in text:
            self.row_quotes += text.count('"')
        if self.row_chars > MAX_ROW:
            if len(text) == _CHUNK and text[-1] not in "\r\n":
                self._skip_rest_of_line()
            raise _RowTooLong
        return text

    def start_row(self) -> None:
        self.row_chars = 0
        self.row_quotes = 0

    def _skip_rest_of_line(self) -> None:
        while text := self._readline(_CHUNK):
            self.row_quotes += text.count('"')
            if len(text) < _CHUNK or text[-1] in "\r\n":
                return

    def skip_quoted(self) -> None:
        """Consume lines until an odd number of quotes is evened out: the end of the open
        quoted field, or of the file. (A stray quote inside an unquoted field can fool this;
        it only runs for a row that is already invalid.)"""
        while self.row_quotes % 2:
            text = self._readline(_CHUNK)
            if not text:
                return
            self.row_quotes += text.count('"')
            if len(text) == _CHUNK and text[-1] not in "\r\n":
                self._skip_rest_of_line()
            self.line += 1


def _read_header(lines: _Lines, path: Path) -> tuple[list[str], int]:
    reader = csv.reader(lines)
    try:
        for cells in reader:
            if cells and any(c.strip() for c in cells):
                if cells[0][:2] in ("\udcff\udcfe", "\udcfe\udcff"):
                    raise InputError(f"{path}: is UTF-16; save it as UTF-8 (a BOM is fine)")
                for c in cells:
                    if not c.isascii():
                        try:
                            c.encode("utf-8")
                        except UnicodeEncodeError:
                            raise InputError(
                                f"{path}: the header line is not valid UTF-8"
                            ) from None
                return cells, lines.line
    except _RowTooLong:
        raise InputError(
            f"{path}: the first line is longer than {MAX_ROW} characters; is it a CSV file?"
        ) from None
    except csv.Error as exc:
        raise InputError(f"{path}: cannot parse the header line ({exc})") from None
    raise InputError(f"{path}: is empty; the first line must be the header")


def _check_utf8(cell: str, header: Sequence[str], i: int) -> None:
    try:
        cell.encode("utf-8")
    except UnicodeEncodeError:
        field = header[i].strip() if i < len(header) else f"field {i + 1}"
        raise RowError(field, "is not valid UTF-8") from None


def _cell(cells: Sequence[str], i: int) -> str:
    return cells[i].strip() if 0 <= i < len(cells) else ""


def _report_cell(value: str) -> str:
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    value = value.replace("\x00", "\\0")
    return value if len(value) <= MAX_REPORTED_CELL else value[: MAX_REPORTED_CELL - 3] + "..."


def _invalid(account: str, user: str, line: int, message: str) -> Result:
    return Result(
        _report_cell(account),
        _report_cell(user),
        Status.INVALID,
        error_code="InvalidRow",
        message=_report_cell_message(message),
        line=line,
    )


def _report_cell_message(message: str) -> str:
    if not message.isascii():
        message = message.encode("utf-8", "replace").decode("utf-8")
    return message
