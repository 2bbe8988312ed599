"""The production transport: one shared aiohttp session, one request at a time per call.

``Transport`` (``base.py``) is a Protocol so tests and benchmarks can put anything behind it;
``AiohttpTransport`` keeps connections alive, caps them at ``--concurrency``, bounds every wait
with timeouts, and turns an answer into a ``Response`` (status, request id, error code/message,
Retry-After) without raising for HTTP errors. How an error body is read is an ``ErrorParser``:
by default the JSON shapes Chime and most REST APIs answer with; an operation built from a
botocore model supplies its protocol's parser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp
from yarl import URL

from ..pipeline.retry import THROTTLING_CODES, parse_retry_after
from .base import (
    MAX_READ_BODY,
    ErrorParser,
    Response,
    TransportError,
    json_error_details,
    short_text,
)

__all__ = ["AiohttpTransport"]

_MAX_ERROR_BODY = 64 * 1024


class AiohttpTransport:
    """Sends to ``endpoint_url`` over one ``aiohttp.ClientSession`` with keep-alive."""

    __slots__ = ("_error_parser", "_limit", "_prefix", "_root", "_session", "_timeout")

    def __init__(
        self,
        endpoint_url: str,
        *,
        concurrency: int,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        error_parser: ErrorParser | None = None,
    ) -> None:
        self._error_parser = error_parser or json_error_details
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
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        session = self._session or self._open()
        if "?" in target:
            path, _, query = target.partition("?")
            root = self._root
            url = URL.build(
                scheme=root.scheme,
                authority=root.raw_authority,
                path=self._prefix + path,
                query_string=query,
                encoded=True,
            )
        else:
            url = self._root.with_path(self._prefix + target, encoded=True)
        try:
            async with session.request(
                method, url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                # restXml services (and S3-style APIs) name it x-amz-request-id.
                answer = resp.headers
                request_id = answer.get("x-amzn-RequestId", "") or answer.get(
                    "x-amz-request-id", ""
                )
                if status < 300:
                    if method == "GET":
                        return await _read_body(resp.content, status, request_id)
                    await resp.read()
                    return Response(status, request_id)
                raw = await resp.content.read(_MAX_ERROR_BODY)
                code, message = self._error_parser(status, answer, raw)
                retry_after = None
                if status == 429 or status == 503 or code in THROTTLING_CODES:
                    retry_after = parse_retry_after(answer, time.time())
                date = answer.get("Date")
                return Response(status, request_id, code, message, retry_after, date)
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
                "ConnectionError", short_text(f"{type(exc).__name__}: {exc}")
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
