"""Before-states across the runs of one report: the journal a run appends each state to before
it writes, and the states captured by earlier runs, which a ``--resume`` keeps.

Why a journal: the report gets a user's row only once the write is answered. A run killed (or a
stop that abandons requests in flight) can leave a write applied with no row; a resume that read
that user again would take the run's own write for the user's original state, and ``undo`` would
"restore" it. So each state read is appended to ``REPORT.before.jsonl`` and flushed before its
write is sent, and a resume keeps, for each user not yet done, the first state captured: from
the journal, else from the user's ``failed`` row in the report (``ResumeState.prepare``).

Journal lines: ``{"account_id": ..., "user_id": ..., "before": {...}}``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from ..errors import ReportError
from ..pipeline.state import state_json
from .keyindex import KeyIndex

__all__ = ["BeforeJournal", "BeforeStore", "MemoryBeforeStore", "journal_path"]


class BeforeStore(Protocol):
    """Where a run keeps before-states (``--read-before``).

    The pipeline, for each row: ``captured(a, u)`` before reading (pass it to
    ``state.after_read``); after a read that decides ``WRITE``, ``record(a, u, before)`` and then
    ``flush()`` before the write is sent (one flush may cover several writes sent together)."""

    def captured(self, account_id: str, user_id: str) -> str | None:
        """The before-state an earlier run captured for this user, or None."""
        ...

    def record(self, account_id: str, user_id: str, before: str) -> None:
        """Keep ``before`` (a ``state.state_json`` text) for a user about to be written."""
        ...

    def flush(self) -> None:
        """Make everything recorded so far survive the process being killed."""
        ...

    def close(self) -> None: ...


class MemoryBeforeStore:
    """A ``BeforeStore`` in a dict: for library jobs that keep no report file, and tests."""

    __slots__ = ("states",)

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], str] = {}

    def captured(self, account_id: str, user_id: str) -> str | None:
        return self.states.get((account_id, user_id))

    def record(self, account_id: str, user_id: str, before: str) -> None:
        self.states.setdefault((account_id, user_id), before)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def journal_path(report: str | os.PathLike[str]) -> Path:
    p = Path(report)
    return p.with_name(p.name + ".before.jsonl")


def read_journal(path: Path) -> Iterator[tuple[str, str, str, int]]:
    """(account_id, user_id, before, offset) of each line; a last line cut short by a crash is
    skipped, any other unreadable line raises ``ReportError``."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        offset = 0
        for n, raw in enumerate(f, 1):
            start, offset = offset, offset + len(raw)
            if not raw.endswith(b"\n"):
                return
            try:
                data = json.loads(raw)
                account, user, before = data["account_id"], data["user_id"], data["before"]
                if not (isinstance(account, str) and isinstance(user, str)):
                    raise TypeError
                if not isinstance(before, dict):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise ReportError(f"{path}: line {n} is not a before-state") from None
            yield account, user, state_json(before), start


def _line(account_id: str, user_id: str, before: str) -> str:
    # ``before`` is a state_json text: embedded as it is, it stays an object in the journal.
    # All ASCII (state_json is too), so a line's length in characters is its length in bytes.
    return (
        '{"account_id": '
        + json.dumps(account_id)
        + ', "user_id": '
        + json.dumps(user_id)
        + ', "before": '
        + before
        + "}\n"
    )


class BeforeJournal:
    """The file ``BeforeStore``: appends to ``REPORT.before.jsonl``; ``captured`` answers from
    the lines an earlier run left (indexed by ``ResumeState.prepare``: 16 bytes per user)."""

    __slots__ = ("_append", "_index", "_reader", "path")

    def __init__(self, path: str | os.PathLike[str], index: KeyIndex | None = None) -> None:
        """Open ``path`` for appending (created if missing); ``index`` maps users to the offsets
        of their captured lines in it."""
        self.path = Path(path)
        self._index = index
        try:
            self._append: IO[str] = open(  # noqa: SIM115 - closed by close()
                self.path, "a", encoding="ascii", newline=""
            )
            self._reader: IO[bytes] | None = (
                open(self.path, "rb") if index is not None and len(index) else None  # noqa: SIM115
            )
        except OSError as exc:
            raise ReportError(f"cannot write {self.path}: {exc.strerror}") from None

    @classmethod
    def start(cls, report: str | os.PathLike[str]) -> BeforeJournal:
        """A new, empty journal for a fresh run of ``report`` (any earlier one is replaced: its
        states belong to another run)."""
        path = journal_path(report)
        discard(report)
        return cls(path)

    def captured(self, account_id: str, user_id: str) -> str | None:
        if self._index is None or self._reader is None:
            return None
        offset = self._index.get(account_id, user_id)
        if offset is None:
            return None
        self._reader.seek(offset)
        data = json.loads(self._reader.readline())
        return state_json(data["before"])

    def record(self, account_id: str, user_id: str, before: str) -> None:
        try:
            self._append.write(_line(account_id, user_id, before))
        except OSError as exc:
            raise ReportError(f"cannot write {self.path}: {exc.strerror}") from None

    def flush(self) -> None:
        try:
            self._append.flush()
        except OSError as exc:
            raise ReportError(f"cannot write {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        if not self._append.closed:
            self.flush()
            self._append.close()
        if self._reader is not None:
            self._reader.close()


def discard(report: str | os.PathLike[str]) -> None:
    """Remove the journal of ``report``: at a fresh start (its states belong to another run),
    and after a run that finished every row (each captured state is then in the report)."""
    path = journal_path(report)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ReportError(f"cannot remove {path}: {exc.strerror}") from None


def compact(
    report: Path, done: KeyIndex, failed_rows: Iterator[tuple[str, str, str]]
) -> BeforeJournal:
    """Rewrite the journal of ``report`` for a resume: for each user not in ``done``, the first
    state captured, from the old journal's lines (in order), else from ``failed_rows``
    ((account, user, before) of the report's failed rows that have one). Atomic: on an error the
    old journal is left as it was. Returns the journal, open, with those states indexed."""
    path = journal_path(report)
    tmp = path.with_name(path.name + ".tmp")
    index = KeyIndex()
    try:
        with open(tmp, "w", encoding="ascii", newline="") as out:
            offset = 0

            def keep(account: str, user: str, before: str) -> None:
                nonlocal offset
                if (account, user) in done or index.add(account, user, offset) is not None:
                    return
                line = _line(account, user, before)
                out.write(line)
                offset += len(line)

            for account, user, before, _ in read_journal(path):
                keep(account, user, before)
            for account, user, before in failed_rows:
                keep(account, user, before)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ReportError(f"cannot rewrite {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return BeforeJournal(path, index)
