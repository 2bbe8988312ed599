"""Operations: how a CSV row becomes a record, and a record becomes one HTTP request.

The pipeline only knows the ``Operation`` protocol; Chime ``UpdateUserSettings`` is the default
implementation. Other operations plug in through the same protocol (see ``generic.py``) or the
``async_updater.operations`` entry-point group.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from ..errors import InputError, RowError, StateError
from ..model import Record, UserRecord

__all__ = [
    "ChimeGetUserSettings",
    "ChimeUpdateUserSettings",
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


_CHIME_COLUMNS = ("account_id", "user_id", "inbound_calling", "outbound_calling", "sms")
# State field -> key in Telephony, in the order ``before`` shows them.
_CHIME_FIELDS = (
    ("inbound_calling", "InboundCalling"),
    ("outbound_calling", "OutboundCalling"),
    ("sms", "SMS"),
)


def _chime_path(account_id: str, user_id: str) -> str:
    return f"/accounts/{encode_segment(account_id)}/users/{encode_segment(user_id)}/settings"


class ChimeGetUserSettings:
    """Amazon Chime ``GetUserSettings``: GET /accounts/{accountId}/users/{userId}/settings,
    answered ``{"UserSettings": {"Telephony": {"InboundCalling": bool, ...}}}``. Keys the
    state does not use (other settings a newer API may add) are ignored."""

    fields = tuple(f for f, _ in _CHIME_FIELDS)
    restore_columns = _CHIME_COLUMNS

    __slots__ = ()

    def request(self, record: UserRecord) -> HttpRequest:
        return HttpRequest("GET", _chime_path(record.account_id, record.user_id), b"")

    def parse(self, body: bytes) -> dict[str, Any]:
        try:
            document = json.loads(body)
        except ValueError:
            raise StateError(f"the answer is not JSON: {_shown(body)}") from None
        settings = document.get("UserSettings") if isinstance(document, dict) else None
        telephony = settings.get("Telephony") if isinstance(settings, dict) else None
        if not isinstance(telephony, dict):
            raise StateError("the answer has no UserSettings.Telephony object: " + _shown(body))
        state: dict[str, Any] = {}
        for field, key in _CHIME_FIELDS:
            value = telephony.get(key)
            # type() rather than isinstance: a JSON 1 is not a boolean.
            if type(value) is not bool:
                what = "is missing" if key not in telephony else f"is {json.dumps(value)}"
                raise StateError(f"UserSettings.Telephony.{key} {what}, not a boolean")
            state[field] = value
        return state

    def desired(self, record: UserRecord) -> dict[str, Any]:
        return {
            "inbound_calling": record.inbound_calling,
            "outbound_calling": record.outbound_calling,
            "sms": record.sms,
        }

    def restore_row(self, account_id: str, user_id: str, state: Mapping[str, Any]) -> list[str]:
        cells = [account_id, user_id]
        for field in self.fields:
            value = state.get(field)
            if type(value) is not bool:
                what = "is missing" if field not in state else f"is {json.dumps(value)}"
                raise StateError(f"{field} {what}, not a boolean")
            cells.append(bool_cell(value))
        return cells


_CHIME_READER = ChimeGetUserSettings()


def _shown(body: bytes, limit: int = 120) -> str:
    text = body.decode("utf-8", "replace")
    text = " ".join(text.split()) or "(empty)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ChimeUpdateUserSettings:
    """Amazon Chime ``UpdateUserSettings``: PUT /accounts/{accountId}/users/{userId}/settings.
    Reads with ``GetUserSettings`` (``ChimeGetUserSettings``)."""

    name = "chime-update-user-settings"
    service = "chime"
    columns = _CHIME_COLUMNS
    reader = _CHIME_READER

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
            _chime_path(record.account_id, record.user_id),
            self._BODIES[(record.inbound_calling, record.outbound_calling, record.sms)],
        )
