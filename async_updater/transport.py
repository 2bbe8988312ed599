"""The network seam: one shared aiohttp session, one request at a time per call.

``Transport`` is a Protocol so tests and benchmarks can put anything behind it; the production
``AiohttpTransport`` keeps connections alive, caps them at ``--concurrency``, bounds every wait
with timeouts, and turns an answer into a ``Response`` (status, request id, error code/message,
Retry-After) without raising for HTTP errors.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from yarl import URL

from .retry import parse_retry_after

__all__ = ["AiohttpTransport", "Response", "Transport", "TransportError"]

_MAX_ERROR_BODY = 64 * 1024
# A read's answer is one user's state: a few hundred bytes. The bound keeps a misdirected
# endpoint (a web page, a listing) from costing memory per request in flight.
MAX_READ_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    """What came back: ``error_code``/``message`` are empty for a success.

    ``body`` is the answer's body for a 2xx answer to a GET (a read), empty otherwise: no other
    answer's body is kept. A 2xx read whose body is over ``MAX_READ_BODY`` bytes comes back
    with an empty body and ``error_code`` ``ResponseTooLarge``."""

    status: int
    request_id: str = ""
    error_code: str = ""
    message: str = ""
    retry_after: float | None = None
    body: bytes = b""


class TransportError(Exception):
    """No HTTP answer: connection refused or reset, DNS failure, timeout. Always retryable."""

    __slots__ = ("code",)

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Transport(Protocol):
    async def send(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Response: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """Sends to ``endpoint_url`` over one ``aiohttp.ClientSession`` with keep-alive."""

    __slots__ = ("_limit", "_prefix", "_root", "_session", "_timeout")

    def __init__(
        self,
        endpoint_url: str,
        *,
        concurrency: int,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        # Request URLs are the root with its path replaced: ``with_path`` reuses the parsed
        # host, where parsing the whole URL string again for every request costs 3x as much.
        self._root = URL(endpoint_url.rstrip("/"), encoded=True)
        self._prefix = self._root.raw_path.rstrip("/")  # an endpoint may have a base path
        self._limit = concurrency
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, connect=connect_timeout, sock_connect=connect_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limit, limit_per_host=self._limit, keepalive_timeout=30.0
        )
        # No cookies, no redirects, no env proxies: a signed API call is exact or it is wrong.
        # The default User-Agent header keeps aiohttp's own out; ``skip_auto_headers`` would do
        # the same at the cost of a header table built and merged for every request.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": "async-updater"},
        )
        return self._session

    async def send(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        session = self._session or self._open()
        url = self._root.with_path(self._prefix + path, encoded=True)
        try:
            async with session.request(
                method, url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                request_id = resp.headers.get("x-amzn-RequestId", "")
                if status < 300:
                    if method == "GET":
                        return await _read_body(resp.content, status, request_id)
                    await resp.read()
                    return Response(status, request_id)
                raw = await resp.content.read(_MAX_ERROR_BODY)
                code, message = _error_details(resp.headers, raw, status)
                retry_after = None
                if status == 429 or status == 503:
                    retry_after = parse_retry_after(resp.headers, time.time())
                return Response(status, request_id, code, message, retry_after)
        except asyncio.TimeoutError:
            raise TransportError("Timeout", f"no answer within {self._timeout.total:g}s") from None
        except aiohttp.ClientConnectorDNSError as exc:
            raise TransportError("DNSError", f"cannot resolve host: {exc.host}") from None
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(
                "ConnectionError", f"cannot connect to {exc.host}:{exc.port} ({exc.strerror})"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(
                "ConnectionError", _short(f"{type(exc).__name__}: {exc}")
            ) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_body(content: aiohttp.StreamReader, status: int, request_id: str) -> Response:
    """A read's 2xx answer with its body, taken whole up to ``MAX_READ_BODY`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(MAX_READ_BODY + 1 - size)
        if not chunk:
            return Response(status, request_id, body=b"".join(chunks))
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_READ_BODY:
            return Response(
                status,
                request_id,
                "ResponseTooLarge",
                f"the answer to the read is larger than {MAX_READ_BODY} bytes",
            )


def _error_details(headers: Mapping[str, str], raw: bytes, status: int) -> tuple[str, str]:
    """Error code from ``x-amzn-ErrorType`` or the body's ``Code``/``__type``; the message."""
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
    return code or f"HTTP{status}", _short(message) or f"HTTP {status} with no message"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
