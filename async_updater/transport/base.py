"""What a transport is: the ``Transport`` seam, the ``Response`` it returns, ``TransportError``
for no answer, and how an error answer is read (``ErrorParser``; ``json_error_details`` by
default)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "MAX_READ_BODY",
    "ErrorParser",
    "Response",
    "Transport",
    "TransportError",
    "json_error_details",
    "short_text",
]

# A read's answer is one user's state: a few hundred bytes. The bound keeps a misdirected
# endpoint (a web page, a listing) from costing memory per request in flight.
MAX_READ_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    """What came back: ``error_code``/``message`` are empty for a success. ``date`` is the
    answer's ``Date`` header, kept for errors only (a clock-skew rejection is corrected by it).

    ``body`` is the answer's body for a 2xx answer to a GET (a read), empty otherwise: no other
    answer's body is kept. A 2xx read whose body is over ``MAX_READ_BODY`` bytes comes back
    with an empty body and ``error_code`` ``ResponseTooLarge``."""

    status: int
    request_id: str = ""
    error_code: str = ""
    message: str = ""
    retry_after: float | None = None
    date: str | None = None
    body: bytes = b""


class TransportError(Exception):
    """No HTTP answer: connection refused or reset, DNS failure, timeout. Always retryable."""

    __slots__ = ("code",)

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


ErrorParser = Callable[[int, Mapping[str, str], bytes], tuple[str, str]]
"""Reads an error answer (status, case-insensitive headers, body) into (error code, message)."""


class Transport(Protocol):
    async def send(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        """Send one request; ``target`` is the encoded path, then ``?query`` if any."""
        ...

    async def close(self) -> None: ...


def json_error_details(status: int, headers: Mapping[str, str], raw: bytes) -> tuple[str, str]:
    """The default ``ErrorParser``: the code from ``x-amzn-ErrorType`` or the body's
    ``Code``/``__type``, the body's ``Message``; ``HTTP<status>`` when there is no code."""
    code = headers.get("x-amzn-ErrorType", "")
    message = ""
    if raw:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            body_code = data.get("Code") or data.get("code") or data.get("__type") or ""
            if not code and isinstance(body_code, str):
                code = body_code
            msg = data.get("Message") or data.get("message") or ""
            if isinstance(msg, str):
                message = msg
        else:
            message = raw.decode("utf-8", "replace")
    # "Code:http://internal.amazon.com/..." and "ns#Code" forms both name the code first/last.
    code = code.partition(":")[0].rpartition("#")[2].strip()
    return code or f"HTTP{status}", short_text(message) or f"HTTP {status} with no message"


def short_text(text: str, limit: int = 300) -> str:
    """``text`` on one line, whitespace collapsed, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
