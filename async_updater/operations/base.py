"""Operations: how a CSV row becomes a record, and a record becomes one HTTP request.

The pipeline only knows the ``Operation`` protocol; Chime ``UpdateUserSettings`` (``chime.py``)
is the default implementation. Other operations plug in through the same protocol (see
``generic.py``, ``aws_model.py``) or the ``async_updater.operations`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from ..errors import InputError, RowError
from ..model import Record

__all__ = [
    "HttpRequest",
    "Operation",
    "RowParser",
    "StateReader",
    "bool_cell",
    "encode_segment",
    "parse_bool",
    "validate_id",
]

MAX_ID_LENGTH = 1024

_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})
# Characters that never need percent-encoding in a path segment (RFC 3986 unreserved).
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What to send: ``path`` and ``query`` are already percent-encoded, as sent (the query
    without its ``?``); ``body`` is the exact bytes; ``content_type`` empty sends none;
    ``headers`` are extra headers to send and sign (e.g. ``X-Amz-Target``)."""

    method: str
    path: str
    body: bytes
    content_type: str = "application/json"
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def target(self) -> str:
        """The request target: the path, then ``?query`` if there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path


RowParser = Callable[[Sequence[str], int], Record]
"""Turns one CSV row (cells in header order) and its line number into a record, or raises
``RowError`` naming the field."""


class StateReader(Protocol):
    """How an operation reads a user's current state, so that a run can preview (plan), skip
    users already as asked, record each user's ``before`` and undo.

    A state is a dict of the row's fields with JSON values (``fields`` are its keys, in order):
    ``parse`` makes one from a read's answer, ``desired`` from a record; two states compare
    with ``state.states_equal``. ``restore_row`` turns a state back into an input row, so a
    report's ``before`` column becomes an input file (``async-updater undo``).
    """

    @property
    def fields(self) -> tuple[str, ...]:
        """The keys of a state, in the order ``before`` shows them."""
        ...

    def request(self, record: Any) -> HttpRequest:
        """The read for ``record`` (a GET with an empty body). Pure, like ``Operation.build``."""
        ...

    def parse(self, body: bytes) -> dict[str, Any]:
        """The state in a successful (2xx) answer's body; ``StateError`` saying what is wrong
        when the body does not have the expected shape."""
        ...

    def desired(self, record: Any) -> dict[str, Any]:
        """The state ``record`` asks for (same keys as ``parse`` returns)."""
        ...

    @property
    def restore_columns(self) -> tuple[str, ...]:
        """The header of an input file whose rows ``restore_row`` makes."""
        ...

    def restore_row(self, account_id: str, user_id: str, state: Mapping[str, Any]) -> list[str]:
        """The input row (cells in ``restore_columns`` order) that sets user ``account_id`` /
        ``user_id`` (as the report names them) back to ``state``; ``StateError`` if ``state``
        lacks a field or holds a value of the wrong type."""
        ...


class Operation(Protocol):
    """One SigV4-signed REST operation, applied once per record.

    ``reader`` is how to read a user's current state before writing, or None for an operation
    that cannot (then ``--read-before``, ``--skip-unchanged`` and ``undo`` are refused for it).
    """

    @property
    def name(self) -> str: ...

    @property
    def service(self) -> str:
        """SigV4 signing name, e.g. ``chime`` or ``execute-api``."""
        ...

    @property
    def columns(self) -> tuple[str, ...]:
        """The CSV columns this operation needs."""
        ...

    @property
    def id_column(self) -> str:
        """The column that names the user in the report (``user_id`` for Chime)."""
        ...

    @property
    def scope_column(self) -> str | None:
        """The column that names the user's account: the report's ``account_id``, the key of
        ``--limit-scope account`` and of ``--shard``; None if rows have no account."""
        ...

    def row_parser(self, header: Sequence[str]) -> RowParser:
        """Check the CSV header (raise ``InputError`` if it does not fit) and return a parser."""
        ...

    def build(self, record: Any) -> HttpRequest:
        """The request that applies ``record``. Must be pure: it is rebuilt for every attempt."""
        ...

    @property
    def reader(self) -> StateReader | None:
        """How to read a user's current state; None if this operation cannot."""
        ...

    def error_parser(self, status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
        """The error code and message of an error answer (the transport calls it)."""
        ...


def parse_bool(field: str, text: str) -> bool:
    """Parse a CSV boolean: true/false, 1/0, yes/no (any case, surrounding spaces ignored)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    shown = text if len(text) <= 40 else text[:37] + "..."
    if not value:
        raise RowError(field, "is empty; expected true or false")
    raise RowError(field, f"{shown!r} is not a boolean; expected true or false (or 1/0, yes/no)")


def validate_id(field: str, text: str) -> str:
    """Return the id without surrounding spaces, or raise ``RowError`` if it cannot be one."""
    value = text.strip()
    if not value:
        raise RowError(field, "is empty")
    if len(value) > MAX_ID_LENGTH:
        raise RowError(field, f"is {len(value)} characters long; the limit is {MAX_ID_LENGTH}")
    if value in (".", ".."):
        raise RowError(field, f"{value!r} cannot be used as a path segment")
    if not value.isprintable():
        raise RowError(field, "contains a control character")
    return value


def encode_segment(value: str) -> str:
    """Percent-encode ``value`` as exactly one path segment (``/ ? # %`` and spaces included)."""
    if _UNRESERVED.issuperset(value):
        return value
    return quote(value, safe="-_.~")


def bool_cell(value: bool) -> str:
    """A boolean as an input file spells it (what ``parse_bool`` reads back)."""
    return "true" if value else "false"


def check_header(
    header: Sequence[str], columns: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, int]:
    """Map each needed column to its index, or raise ``InputError`` saying what is wrong."""
    names = [h.strip().lower() for h in header]
    if not any(names):
        raise InputError("the header line is empty; expected columns: " + ",".join(columns))
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise InputError(f"the header names column {name!r} twice")
        seen[name] = i
    missing = [c for c in columns if c not in seen]
    unknown = [n for n in names if n not in columns and n not in optional]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if unknown:
            parts.append("unexpected " + ", ".join(repr(n) for n in unknown))
        raise InputError(
            "the header does not fit: " + "; ".join(parts) + ". Expected: " + ",".join(columns)
        )
    return seen
