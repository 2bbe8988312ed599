"""AWS Signature Version 4 for one service and region.

The signer is a lean re-implementation of botocore's ``SigV4Auth`` for
the one request shape this tool sends: it derives the signing key once per day and builds the
canonical request directly. ``tests/test_signing.py`` proves it byte-identical to ``SigV4Auth``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from urllib.parse import quote

from .credentials import (
    Credentials,
)

__all__ = [
    "SigV4Signer",
    "canonical_query",
]

_PATH_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/%")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Headers the signer itself sets, and those botocore sends without signing (``SigV4Auth``'s
# SIGNED_HEADERS_BLACKLIST: proxies and HTTP clients may change them on the way).
_RESERVED_HEADERS = frozenset(
    {"host", "content-type", "x-amz-date", "x-amz-security-token", "authorization"}
)
_UNSIGNED_HEADERS = frozenset({"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})


class SigV4Signer:
    """Signs requests for one host, region and service; caches the day's signing key.

    ``sign`` returns the headers to send: Host, Content-Type, X-Amz-Date, X-Amz-Security-Token
    (with session credentials) and Authorization, exactly as botocore's ``SigV4Auth`` would.
    """

    __slots__ = (
        "_amz_date",
        "_body_hashes",
        "_content_type",
        "_date_second",
        "_datestamp",
        "_fixed_headers",
        "_macs",
        "_scope",
        "_to_sign",
        "host",
        "region",
        "service",
    )

    def __init__(self, *, host: str, region: str, service: str) -> None:
        self.host = host
        self.region = region
        self.service = service
        self._date_second = -1
        self._amz_date = ""
        self._datestamp = ""
        self._scope = ""
        self._to_sign = ""  # the string to sign up to the canonical request's hash
        self._content_type = ""
        self._fixed_headers = ""
        self._macs: dict[tuple[str, str], hmac.HMAC] = {}
        self._body_hashes: dict[bytes, str] = {}

    def sign(
        self,
        method: str,
        path: str,
        body: bytes,
        content_type: str,
        credentials: Credentials,
        now: float | None = None,
        *,
        query: str = "",
        headers: Sequence[tuple[str, str]] = (),
    ) -> dict[str, str]:
        """Headers for ``method path?query`` with ``body``, signed at wall time ``now`` (default:
        now). ``query`` is the query string as sent (percent-encoded, no ``?``); ``headers`` are
        extra headers to send and sign (e.g. ``X-Amz-Target``), returned with the others. An
        empty ``content_type`` sends and signs none, as botocore does for a bodiless request."""
        if query or headers or not content_type:
            return self._sign_general(
                method, path, body, content_type, credentials, now, query, headers
            )
        second = int(time.time() if now is None else now)
        if second != self._date_second:
            self._set_date(second)
        if content_type != self._content_type:
            self._set_content_type(content_type)
        amz_date = self._amz_date
        token = credentials.token
        if token:
            signed = "content-type;host;x-amz-date;x-amz-security-token"
            canonical_headers = f"{self._fixed_headers}x-amz-security-token:{_trim(token)}\n"
        else:
            signed = "content-type;host;x-amz-date"
            canonical_headers = self._fixed_headers
        canonical_request = (
            f"{method}\n{_canonical_path(path)}\n\n{canonical_headers}\n{signed}\n"
            f"{self._payload_hash(body)}"
        )
        out = {
            "Host": self.host,
            "Content-Type": content_type,
            "X-Amz-Date": amz_date,
            "Authorization": self._authorization(canonical_request, signed, credentials),
        }
        if token:
            out["X-Amz-Security-Token"] = token
        return out

    def _sign_general(
        self,
        method: str,
        path: str,
        body: bytes,
        content_type: str,
        credentials: Credentials,
        now: float | None,
        query: str,
        headers: Sequence[tuple[str, str]],
    ) -> dict[str, str]:
        """Any query string and extra headers: the canonical request as ``SigV4Auth`` builds
        it (query pairs sorted as sent; header names lower-cased and sorted, values trimmed; the
        headers botocore never signs are sent but not signed). A name given twice is refused."""
        second = int(time.time() if now is None else now)
        if second != self._date_second:
            self._set_date(second)
        amz_date = self._amz_date
        token = credentials.token
        out: dict[str, str] = {"Host": self.host}
        canonical = {"host": self.host, "x-amz-date": amz_date}
        if content_type:
            out["Content-Type"] = content_type
            canonical["content-type"] = _trim(content_type)
        out["X-Amz-Date"] = amz_date
        seen: set[str] = set()
        for name, value in headers:
            lower = name.lower()
            if lower in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the signer, not by the request")
            if lower in seen:
                raise ValueError(f"header {name!r} is given twice")
            seen.add(lower)
            out[name] = value
            if lower not in _UNSIGNED_HEADERS:
                # All Unicode whitespace, as botocore's ``str.split()`` does, not only spaces.
                canonical[lower] = " ".join(value.split())
        if token:
            out["X-Amz-Security-Token"] = token
            canonical["x-amz-security-token"] = _trim(token)
        names = sorted(canonical)
        signed = ";".join(names)
        canonical_headers = "".join(f"{n}:{canonical[n]}\n" for n in names)
        canonical_request = (
            f"{method}\n{_canonical_path(path)}\n{canonical_query(query)}\n"
            f"{canonical_headers}\n{signed}\n{self._payload_hash(body)}"
        )
        out["Authorization"] = self._authorization(canonical_request, signed, credentials)
        return out

    def _authorization(self, canonical_request: str, signed: str, credentials: Credentials) -> str:
        """The Authorization header for a canonical request (both paths end here)."""
        mac = self._signing_mac(credentials.secret_key)
        mac.update(
            (self._to_sign + hashlib.sha256(canonical_request.encode()).hexdigest()).encode()
        )
        return (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{self._scope}, "
            f"SignedHeaders={signed}, Signature={mac.hexdigest()}"
        )

    def _set_content_type(self, content_type: str) -> None:
        """The canonical headers before the token: the same for every request of one second
        and content type, so built once for them rather than for every signature."""
        self._content_type = content_type
        self._fixed_headers = (
            f"content-type:{_trim(content_type)}\nhost:{self.host}\nx-amz-date:{self._amz_date}\n"
        )

    def _set_date(self, second: int) -> None:
        self._date_second = second
        self._content_type = ""  # the fixed headers hold the date: build them again
        self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        self._datestamp = self._amz_date[:8]
        self._scope = f"{self._datestamp}/{self.region}/{self.service}/aws4_request"
        self._to_sign = f"AWS4-HMAC-SHA256\n{self._amz_date}\n{self._scope}\n"

    def _signing_mac(self, secret: str) -> hmac.HMAC:
        """A fresh HMAC keyed with the day's signing key: a copy of one keyed once, which is
        half the cost of keying a new one for every signature."""
        cache_key = (secret, self._datestamp)
        mac = self._macs.get(cache_key)
        if mac is None:
            if len(self._macs) > 8:
                self._macs.clear()
            key = ("AWS4" + secret).encode()
            for part in (self._datestamp, self.region, self.service, "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            mac = self._macs[cache_key] = hmac.new(key, digestmod=hashlib.sha256)
        return mac.copy()

    def _payload_hash(self, body: bytes) -> str:
        if not body:
            return _EMPTY_SHA256
        digest = self._body_hashes.get(body)
        if digest is None:
            digest = hashlib.sha256(body).hexdigest()
            # Chime bodies come in eight variants: remember a few, never grow unbounded.
            if len(self._body_hashes) < 64 and len(body) <= 4096:
                self._body_hashes[body] = digest
        return digest


def _trim(value: str) -> str:
    """SigV4 header value canonicalisation: trim and collapse runs of spaces."""
    return value if " " not in value and "\t" not in value else " ".join(value.split())


def canonical_query(query: str) -> str:
    """botocore's canonical query string for a query as sent: ``key=value`` pairs (a missing
    ``=`` is an empty value) sorted by key, then value, without decoding or re-encoding."""
    if not query:
        return ""
    if "&" not in query:
        return query if "=" in query else query + "="
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{key}={value}" for key, value in pairs)


def _canonical_path(path: str) -> str:
    """botocore's canonical URI for non-S3 services: dot segments removed, then URI-encoded
    again (so ``%2F`` becomes ``%252F``). Paths built by operations take the fast branch."""
    if _PATH_SAFE.issuperset(path) and "//" not in path and "/." not in path:
        return path.replace("%", "%25") if path else "/"
    from botocore.utils import normalize_url_path

    return quote(normalize_url_path(path), safe="/~")
