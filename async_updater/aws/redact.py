"""Credentials out of server text: what an error answer says goes to the report, the summary and
the operator, and a server may echo what it was sent (AWS words a signature mismatch by quoting
the canonical request, ``x-amz-security-token:<token>`` included).

``Redactor`` remembers the credentials an updater signed with (so a token replaced by a refresh
stays known) and replaces them, the request's signature, and generic
``Authorization``/``Signature=``/``Credential=``/``security-token`` echoes with ``[redacted]``.
It is applied to error answers only: a success carries no server text but its request id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import quote

from ..transport.base import Response
from .credentials import Credentials

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[redacted]"

# Shorter values are no credentials AWS issues (key ids are 16+ characters, secrets 40), and
# replacing them would mangle ordinary words in messages (test fakes use keys like "secret").
_MIN_SECRET = 8
# A message cut short (ours end in "...") may end inside a secret: a trailing piece this long
# of a secret's start goes too.
_MIN_PIECE = 6
_KEEP = 16

# The whole echo goes, names included: "Authorization" and "Signature=" are what log scanners
# look for. An Authorization value runs to the end of its line or its quote (a dict's repr).
_AUTHORIZATION = re.compile(r"authorization['\"]?[ \t]*[:=][ \t]*['\"]?[^\r\n'\"]*", re.IGNORECASE)
_SIGNATURE = re.compile(r"signature[ \t]*=[ \t]*[0-9a-f]*", re.IGNORECASE)
_VALUE_AFTER = re.compile(
    r"((?:credential|security-token)[ \t]*[:=][ \t]*)(?!\[redacted\])[^\s,&'\"]+",
    re.IGNORECASE,
)


class Redactor:
    """Replaces remembered credentials (and what a signed request carries) in server text.

    ``remember`` is called for every request and costs an identity check unless the provider
    hands out a different ``Credentials`` object; the last ``keep`` distinct sets are kept.
    """

    __slots__ = ("_keep", "_last", "_seen", "_values")

    def __init__(self, *, keep: int = _KEEP) -> None:
        self._keep = max(1, keep)
        self._last: Credentials | None = None
        self._seen: list[Credentials] = []
        self._values: tuple[str, ...] = ()

    def remember(self, credentials: Credentials) -> None:
        if credentials is self._last:
            return
        self._last = credentials
        if credentials in self._seen:
            return
        self._seen.append(credentials)
        del self._seen[: -self._keep]
        values: set[str] = set()
        for c in self._seen:
            for value in (c.token, c.secret_key, c.access_key):
                if value and len(value) >= _MIN_SECRET:
                    values.add(value)
                    values.add(quote(value, safe=""))  # as a query string would carry it
        # Longest first, so a secret containing another is replaced whole.
        self._values = tuple(sorted(values, key=len, reverse=True))

    def redact(self, text: str, *also: str) -> str:
        """``text`` without remembered credentials, the values in ``also`` (e.g. this request's
        signature) or generic credential echoes."""
        if not text:
            return text
        values = (*also, *self._values) if also else self._values
        for value in values:
            if value and len(value) >= _MIN_SECRET:
                if value in text:
                    text = text.replace(value, REDACTED)
                text = _cut_piece(text, value)
        text = _AUTHORIZATION.sub(REDACTED, text)
        text = _SIGNATURE.sub(REDACTED, text)
        return _VALUE_AFTER.sub(r"\1" + REDACTED, text)

    def response(self, response: Response, sent: Mapping[str, str]) -> Response:
        """``response`` with its request id, error code and message redacted; ``sent`` are the
        headers of the request it answers (their signature is redacted too)."""
        signature = sent.get("Authorization", "").rpartition("Signature=")[2]
        return replace(
            response,
            request_id=self.redact(response.request_id, signature),
            error_code=self.redact(response.error_code, signature),
            message=self.redact(response.message, signature),
        )


def _cut_piece(text: str, secret: str) -> str:
    """``text`` without a start of ``secret`` at its end (before a trailing "...")."""
    end = len(text) - 3 if text.endswith("...") else len(text)
    head = secret[:_MIN_PIECE]
    i = text.find(head, max(0, end - len(secret) + 1), end)
    while i != -1:
        if secret.startswith(text[i:end]):
            return text[:i] + REDACTED + text[end:]
        i = text.find(head, i + 1, end)
    return text
