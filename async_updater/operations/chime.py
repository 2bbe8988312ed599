"""Amazon Chime ``UpdateUserSettings`` (the default operation) and ``GetUserSettings`` (its
reader)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import RowError, StateError
from ..model import UserRecord
from ..transport.base import json_error_details
from .base import (
    HttpRequest,
    RowParser,
    bool_cell,
    check_header,
    encode_segment,
    parse_bool,
    validate_id,
)

__all__ = ["ChimeGetUserSettings", "ChimeUpdateUserSettings"]

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
    id_column = "user_id"
    scope_column = "account_id"
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

    def error_parser(self, status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
        return json_error_details(status, headers, body)
