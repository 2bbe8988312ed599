"""AWS Signature Version 4 for one service and region, and credentials from the AWS chain.

Credentials come from botocore's standard chain through aiobotocore (environment, shared
config and credentials files, profiles, SSO, container and instance roles), refreshed when
they near expiry. The signer itself is a lean re-implementation of botocore's ``SigV4Auth`` for
the one request shape this tool sends: it derives the signing key once per day and builds the
canonical request directly. ``tests/test_signing.py`` proves it byte-identical to ``SigV4Auth``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from ..errors import ConfigError, CredentialsError

__all__ = [
    "BotocoreCredentials",
    "CredentialProvider",
    "Credentials",
    "SigV4Signer",
    "StaticCredentials",
    "canonical_query",
    "resolve_credentials",
]

_PATH_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/%")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Headers the signer itself sets, and those botocore sends without signing (``SigV4Auth``'s
# SIGNED_HEADERS_BLACKLIST: proxies and HTTP clients may change them on the way).
_RESERVED_HEADERS = frozenset(
    {"host", "content-type", "x-amz-date", "x-amz-security-token", "authorization"}
)
_UNSIGNED_HEADERS = frozenset({"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})


@dataclass(frozen=True, slots=True)
class Credentials:
    """One set of AWS credentials. The secret and token never appear in ``repr``."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


class CredentialProvider(Protocol):
    """Where the signer gets credentials; ``current`` is called for every signature."""

    async def current(self) -> Credentials: ...

    async def refresh(self) -> Credentials:
        """Called after the server said the credentials expired: get fresh ones or raise."""
        ...


class StaticCredentials:
    """Fixed credentials, e.g. for the embedded mock server or a library caller's own."""

    __slots__ = ("_credentials",)

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self._credentials = Credentials(access_key, secret_key, token)

    async def current(self) -> Credentials:
        return self._credentials

    async def refresh(self) -> Credentials:
        return self._credentials


class BotocoreCredentials:
    """Credentials from botocore's chain via an aiobotocore session, refreshed as they expire.

    Refreshable credentials are re-checked at most once a second (botocore refreshes them 15
    minutes before expiry), so the per-request cost is a clock read.
    """

    __slots__ = ("_check_every", "_checked_at", "_frozen", "_profile", "_source")

    def __init__(
        self, source: Any, frozen: Credentials, profile: str | None, *, check_every: float = 1.0
    ) -> None:
        self._source = source
        self._frozen = frozen
        self._profile = profile
        self._check_every = check_every
        self._checked_at = time.monotonic()

    @classmethod
    async def resolve(cls, profile: str | None = None) -> BotocoreCredentials:
        source = await _load_chain(profile)
        return cls(source, await _freeze(source), profile)

    async def current(self) -> Credentials:
        now = time.monotonic()
        if now - self._checked_at >= self._check_every and hasattr(self._source, "refresh_needed"):
            self._checked_at = now
            self._frozen = await _freeze(self._source)
        return self._frozen

    async def refresh(self) -> Credentials:
        # The server rejected our token: ask the whole chain again (a new SSO login or a
        # rotated profile is picked up), not just the cached provider.
        self._source = await _load_chain(self._profile)
        self._frozen = await _freeze(self._source)
        self._checked_at = time.monotonic()
        return self._frozen


async def resolve_credentials(profile: str | None = None) -> BotocoreCredentials:
    """Resolve credentials from the AWS chain or raise ``CredentialsError`` (one line)."""
    return await BotocoreCredentials.resolve(profile)


async def _load_chain(profile: str | None) -> Any:
    from aiobotocore.session import AioSession
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        source = await AioSession(profile=profile).get_credentials()
    except ProfileNotFound as exc:
        raise ConfigError(f"--profile: {exc}") from None
    except BotoCoreError as exc:
        raise CredentialsError(f"could not load AWS credentials: {exc}") from None
    if source is None:
        raise CredentialsError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "use --profile, or configure the AWS CLI"
        )
    return source


async def _freeze(source: Any) -> Credentials:
    try:
        frozen = await source.get_frozen_credentials()
    except Exception as exc:  # any provider failure is "no usable credentials" to the user
        raise CredentialsError(
            f"could not refresh AWS credentials ({type(exc).__name__})"
        ) from None
    if not frozen.access_key or not frozen.secret_key:
        raise CredentialsError("the AWS credentials found are incomplete")
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)


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
        scope = self._scope
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
        mac = self._signing_mac(credentials.secret_key)
        mac.update(
            (self._to_sign + hashlib.sha256(canonical_request.encode()).hexdigest()).encode()
        )
        signature = mac.hexdigest()
        out = {
            "Host": self.host,
            "Content-Type": content_type,
            "X-Amz-Date": amz_date,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                f"SignedHeaders={signed}, Signature={signature}"
            ),
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
        mac = self._signing_mac(credentials.secret_key)
        mac.update(
            (self._to_sign + hashlib.sha256(canonical_request.encode()).hexdigest()).encode()
        )
        out["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{self._scope}, "
            f"SignedHeaders={signed}, Signature={mac.hexdigest()}"
        )
        return out

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
