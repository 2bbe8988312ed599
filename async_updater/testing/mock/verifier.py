"""AWS SigV4 verification written from the AWS specification, sharing no code with the client's
signer, so a bug in one is not mirrored by the other."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from multidict import MultiMapping

__all__ = [
    "ALGORITHM",
    "EXPIRED_TOKEN",
    "SIGNATURE_MISMATCH",
    "SKEW_MESSAGES",
    "AuthFailure",
    "SigV4Verifier",
    "canonical_query",
    "canonical_uri",
    "verify_sigv4",
]

ALGORITHM: Final = "AWS4-HMAC-SHA256"


SIGNATURE_MISMATCH: Final = (
    "The request signature we calculated does not match the signature you provided."
)


_INVALID_SIGNATURE: Final = "InvalidSignatureException"


_UNAUTHORIZED: Final = "UnauthorizedClientException"


_FORBIDDEN: Final = "ForbiddenException"


EXPIRED_TOKEN: Final = "ExpiredTokenException"


# Derived keys and parsed dates repeat for almost every request; the bound only guards against a
# client that sends endless distinct values.
_CACHE_LIMIT: Final = 1024


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request was refused before anything else looked at it."""

    status: int
    code: str
    message: str


_NO_AUTH: Final = AuthFailure(401, _UNAUTHORIZED, "Missing Authorization header.")


_MALFORMED_AUTH: Final = AuthFailure(
    401,
    _UNAUTHORIZED,
    "Malformed Authorization header: expected 'AWS4-HMAC-SHA256 "
    "Credential=AKID/YYYYMMDD/region/service/aws4_request, SignedHeaders=..., Signature=...'.",
)


_BAD_TOKEN: Final = AuthFailure(
    403, _FORBIDDEN, "The security token included in the request is invalid."
)


_EXPIRED: Final = AuthFailure(
    403, EXPIRED_TOKEN, "The security token included in the request is expired"
)


_MISMATCH: Final = AuthFailure(403, _INVALID_SIGNATURE, SIGNATURE_MISMATCH)


SKEW_MESSAGES: Final = ("Signature expired:", "Signature not yet current:")


def canonical_uri(path: str) -> str:
    """The SigV4 canonical URI of a raw (already percent-encoded) path, for non-S3 services:
    dot and empty segments removed as botocore does, then every segment URI-encoded again."""
    # The client never sends dot or empty segments; skip the walk for the usual path.
    if "/." in path or "//" in path or not path.startswith("/"):
        if not path:
            return "/"
        kept: list[str] = []
        for segment in path.split("/"):
            if not segment or segment == ".":
                continue
            if segment == "..":
                if kept:
                    kept.pop()
            else:
                kept.append(segment)
        lead = "/" if path[0] == "/" else ""
        trail = "/" if path[-1] == "/" and kept else ""
        path = lead + "/".join(kept) + trail
    # surrogateescape gives back the exact bytes of a request line that was not valid UTF-8.
    return quote(path, safe="/~", errors="surrogateescape")


def canonical_query(query: str) -> str:
    """The SigV4 canonical query string of a raw query: pairs kept as sent, sorted by key then
    value, a missing ``=`` treated as an empty value."""
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{key}={value}" for key, value in pairs)


def _parse_amz_date(value: str) -> float | None:
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        return None
    digits = value[:8] + value[9:15]
    if not (digits.isascii() and digits.isdigit()):
        return None
    try:
        moment = dt.datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=dt.timezone.utc,
        )
    except ValueError:
        return None
    return moment.timestamp()


def _format_amz_date(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class SigV4Verifier:
    """Checks AWS SigV4 ``Authorization`` headers; pure apart from its caches.

    ``verify`` returns None for a good request, else the ``AuthFailure`` to answer with:
    401 for a missing or malformed header or an unknown access key; 403 for a scope, date,
    token or signature problem (403 ``ExpiredTokenException`` for a token in ``expired_tokens``).
    If ``session_tokens`` names a key, that key's requests must carry that token, signed.
    """

    __slots__ = (
        "_credentials",
        "_dates",
        "_expired_tokens",
        "_keys",
        "_max_skew",
        "_region",
        "_service",
        "_session_tokens",
    )

    def __init__(
        self,
        credentials: Mapping[str, str],
        *,
        session_tokens: Mapping[str, str] | None = None,
        expired_tokens: frozenset[str] = frozenset(),
        region: str = "us-east-1",
        service: str = "chime",
        max_clock_skew_s: float = 300.0,
    ) -> None:
        self._credentials = dict(credentials)
        self._session_tokens = dict(session_tokens or {})
        self._expired_tokens = expired_tokens
        self._region = region
        self._service = service
        self._max_skew = max_clock_skew_s
        self._keys: dict[tuple[str, str, str, str], bytes] = {}
        self._dates: dict[str, float | None] = {}

    def signing_key(self, secret: str, date: str) -> bytes:
        """The derived key for ``date`` (YYYYMMDD) in this verifier's region and service."""
        cache_key = (secret, date, self._region, self._service)
        key = self._keys.get(cache_key)
        if key is None:
            key = ("AWS4" + secret).encode()
            for part in (date, self._region, self._service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys.clear()
            self._keys[cache_key] = key
        return key

    def _amz_epoch(self, value: str) -> float | None:
        if value in self._dates:
            return self._dates[value]
        epoch = _parse_amz_date(value)
        if len(self._dates) >= _CACHE_LIMIT:
            self._dates.clear()
        self._dates[value] = epoch
        return epoch

    def verify(
        self,
        method: str,
        raw_path: str,
        headers: MultiMapping[str],
        body: bytes,
        *,
        now: float,
        full: bool = True,
    ) -> AuthFailure | None:
        """Check one request. ``raw_path`` is the request target as sent (query included),
        ``headers`` a case-insensitive multi-mapping, ``now`` the wall clock (epoch seconds).
        With ``full=False`` every check but the signature itself is made."""
        parsed = _parse_authorization(headers.get("Authorization"))
        if isinstance(parsed, AuthFailure):
            return parsed
        secret = self._credentials.get(parsed.access_key)
        if secret is None:
            return AuthFailure(401, _UNAUTHORIZED, f"Unknown access key id {parsed.access_key!r}.")
        amz_date = headers.get("X-Amz-Date")
        failure = self._check_scope(parsed, amz_date, now) or self._check_token(
            parsed, headers.get("X-Amz-Security-Token")
        )
        if failure is not None or not full:
            return failure
        assert amz_date is not None  # _check_scope refuses a request without one
        return self._check_signature(parsed, secret, amz_date, method, raw_path, headers, body)

    def _check_scope(
        self, auth: _Authorization, amz_date: str | None, now: float
    ) -> AuthFailure | None:
        """The request time, the credential scope and the signed headers."""
        if amz_date is None:
            return AuthFailure(403, _INVALID_SIGNATURE, "Missing X-Amz-Date header.")
        sent_at = self._amz_epoch(amz_date)
        if sent_at is None:
            return AuthFailure(
                403, _INVALID_SIGNATURE, f"X-Amz-Date {amz_date!r} is not YYYYMMDDTHHMMSSZ."
            )
        if auth.date != amz_date[:8]:
            return AuthFailure(
                403,
                _INVALID_SIGNATURE,
                f"Date in Credential scope does not match YYYYMMDD from X-Amz-Date: "
                f"{auth.date!r} != {amz_date[:8]!r}.",
            )
        if auth.region != self._region:
            return AuthFailure(
                403,
                _INVALID_SIGNATURE,
                f"Credential should be scoped to a valid region, not {auth.region!r}; "
                f"expected {self._region!r}.",
            )
        if auth.service != self._service:
            return AuthFailure(
                403,
                _INVALID_SIGNATURE,
                f"Credential should be scoped to correct service: {self._service!r}.",
            )
        skew = self._skew_failure(amz_date, sent_at, now)
        if skew is not None:
            return skew
        if "host" not in auth.names or "x-amz-date" not in auth.names:
            return AuthFailure(
                403, _INVALID_SIGNATURE, "SignedHeaders must include 'host' and 'x-amz-date'."
            )
        return None

    def _skew_failure(self, amz_date: str, sent_at: float, now: float) -> AuthFailure | None:
        # Worded as AWS's JSON services word it: "Signature expired" for a request time too
        # far in the past, "Signature not yet current" for one too far in the future.
        if now - sent_at > self._max_skew:
            return AuthFailure(
                403,
                _INVALID_SIGNATURE,
                f"Signature expired: {amz_date} is more than {self._max_skew:g} s away from "
                f"the server time {_format_amz_date(now)}.",
            )
        if sent_at - now > self._max_skew:
            return AuthFailure(
                403,
                _INVALID_SIGNATURE,
                f"Signature not yet current: {amz_date} is more than {self._max_skew:g} s "
                f"away from the server time {_format_amz_date(now)}.",
            )
        return None

    def _check_token(self, auth: _Authorization, token: str | None) -> AuthFailure | None:
        if token is not None and token in self._expired_tokens:
            return _EXPIRED
        required = self._session_tokens.get(auth.access_key)
        if required is None:
            # A long-term key never comes with a token; a client that sends one is confused.
            return _BAD_TOKEN if token is not None else None
        if token is None or not hmac.compare_digest(
            token.encode("utf-8", "surrogateescape"), required.encode()
        ):
            return _BAD_TOKEN
        if "x-amz-security-token" not in auth.names:
            return AuthFailure(
                403, _INVALID_SIGNATURE, "X-Amz-Security-Token must be a signed header."
            )
        return None

    def _check_signature(
        self,
        auth: _Authorization,
        secret: str,
        amz_date: str,
        method: str,
        raw_path: str,
        headers: MultiMapping[str],
        body: bytes,
    ) -> AuthFailure | None:
        lines: list[str] = []
        for name in sorted(auth.names):
            values = headers.getall(name, None)
            if values is None:
                return AuthFailure(
                    403,
                    _INVALID_SIGNATURE,
                    f"{SIGNATURE_MISMATCH} (signed header {name!r} is not in the request)",
                )
            lines.append(name + ":" + ",".join(" ".join(v.split()) for v in values))
        path, _, query = raw_path.partition("?")
        canonical_request = "\n".join(
            (
                method,
                canonical_uri(path),
                canonical_query(query),
                "\n".join(lines) + "\n",
                auth.signed_headers,
                hashlib.sha256(body).hexdigest(),
            )
        )
        string_to_sign = "\n".join(
            (
                ALGORITHM,
                amz_date,
                f"{auth.date}/{auth.region}/{auth.service}/aws4_request",
                hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest(),
            )
        )
        expected = hmac.new(
            self.signing_key(secret, auth.date), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        signature = auth.signature.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(expected.encode(), signature):
            return _MISMATCH
        return None


@dataclass(frozen=True, slots=True)
class _Authorization:
    """The parts of an ``Authorization`` header."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: str
    names: list[str]
    signature: str


def _parse_authorization(authorization: str | None) -> _Authorization | AuthFailure:
    if authorization is None:
        return _NO_AUTH
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != ALGORITHM:
        return AuthFailure(
            401, _UNAUTHORIZED, f"Unsupported Authorization algorithm; expected {ALGORITHM}."
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            return _MALFORMED_AUTH
        parts[name] = value
    credential = parts.get("Credential")
    signed_headers = parts.get("SignedHeaders")
    signature = parts.get("Signature")
    if credential is None or signed_headers is None or signature is None:
        return _MALFORMED_AUTH
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return _MALFORMED_AUTH
    access_key, date, region, service, _ = scope
    names = signed_headers.split(";")
    return _Authorization(access_key, date, region, service, signed_headers, names, signature)


def verify_sigv4(
    method: str,
    raw_path: str,
    headers: MultiMapping[str],
    body: bytes,
    *,
    credentials: Mapping[str, str],
    now: float,
    session_tokens: Mapping[str, str] | None = None,
    expired_tokens: frozenset[str] = frozenset(),
    region: str = "us-east-1",
    service: str = "chime",
    max_clock_skew_s: float = 300.0,
) -> AuthFailure | None:
    """One-shot ``SigV4Verifier.verify``: None if the request is correctly signed."""
    verifier = SigV4Verifier(
        credentials,
        session_tokens=session_tokens,
        expired_tokens=expired_tokens,
        region=region,
        service=service,
        max_clock_skew_s=max_clock_skew_s,
    )
    return verifier.verify(method, raw_path, headers, body, now=now)
