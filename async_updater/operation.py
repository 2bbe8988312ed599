"""Operations: how a CSV row becomes a record, and a record becomes one HTTP request.

The pipeline only knows the ``Operation`` protocol; Chime ``UpdateUserSettings`` is the default
implementation. Other operations plug in through the same protocol (see ``generic.py``) or the
``async_updater.operations`` entry-point group.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from .errors import InputError, RowError
from .model import Record, UserRecord

__all__ = [
    "ChimeUpdateUserSettings",
    "HttpRequest",
    "Operation",
    "RowParser",
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


class Operation(Protocol):
    """One SigV4-signed REST operation, applied once per record."""

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

    def row_parser(self, header: Sequence[str]) -> RowParser:
        """Check the CSV header (raise ``InputError`` if it does not fit) and return a parser."""
        ...

    def build(self, record: Any) -> HttpRequest:
        """The request that applies ``record``. Must be pure: it is rebuilt for every attempt."""
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


class ChimeUpdateUserSettings:
    """Amazon Chime ``UpdateUserSettings``: PUT /accounts/{accountId}/users/{userId}/settings."""

    name = "chime-update-user-settings"
    service = "chime"
    columns = ("account_id", "user_id", "inbound_calling", "outbound_calling", "sms")

    __slots__ = ()

    # The body depends on three booleans only: build the eight variants once, byte for byte as
    # botocore's rest-json serializer writes them (json.dumps with its default separators).
    _BODIES: dict[tuple[bool, bool, bool], bytes] = {
        (i, o, s): json.dumps(
            {"UserSettings": {"Telephony": {"InboundCalling": i, "OutboundCalling": o, "SMS": s}}}
        ).encode()
        for i in (False, True)
        for o in (False, True)
        for s in (False, True)
    }

    def row_parser(self, header: Sequence[str]) -> RowParser:
        index = check_header(header, self.columns)
        ia, iu, ii, io, isms = (index[c] for c in self.columns)
        width = len(header)

        def parse(cells: Sequence[str], line: int) -> UserRecord:
            if len(cells) != width:
                raise RowError("", f"has {len(cells)} fields; the header has {width}")
            return UserRecord(
                validate_id("account_id", cells[ia]),
                validate_id("user_id", cells[iu]),
                parse_bool("inbound_calling", cells[ii]),
                parse_bool("outbound_calling", cells[io]),
                parse_bool("sms", cells[isms]),
                line,
            )

        return parse

    def build(self, record: UserRecord) -> HttpRequest:
        return HttpRequest(
            "PUT",
            f"/accounts/{encode_segment(record.account_id)}"
            f"/users/{encode_segment(record.user_id)}/settings",
            self._BODIES[(record.inbound_calling, record.outbound_calling, record.sms)],
        )
