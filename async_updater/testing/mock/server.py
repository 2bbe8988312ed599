"""A local stand-in for Amazon Chime ``UpdateUserSettings`` and ``GetUserSettings``, strict
enough to catch client bugs.

It verifies AWS SigV4 with its own implementation (written from the AWS specification, sharing
no code with the client's signer, so a bug in one is not mirrored by the other), throttles with
a token bucket whose rate can change at run time, injects latency and 5xx faults, and records
exactly what it applied to which user. Benchmarks and end-to-end tests read that record to prove
that nothing was lost or applied twice.

Every request to ``PUT /accounts/{accountId}/users/{userId}/settings`` is handled in this order:
authentication (401/403), route (404/405), token bucket (429), injected fault (500/503), unknown
user (404), body validation (400), apply (204). A ``GET`` on the same path (``GetUserSettings``)
goes through the same steps, the same bucket and the same faults, and is answered 200 with the
user's settings. A user never written holds ``initial_settings(account, user)``, a state derived
from the ids, so a test can predict it and check a round trip. The injected latency is spent
after the decision and before the response is sent, whatever the response is. ``/_mock/...``
admin endpoints need no signature and are not counted.

The server keeps its own clock, ``clock_offset_s`` ahead of the wall clock (behind if negative),
as a real server's clock is ahead of a laptop that slept: X-Amz-Date is judged against it, and
every response carries an RFC 7231 ``Date`` header read from it (or, with ``send_date=False``,
no ``Date`` at all).

With ``api=MockApi.COGNITO`` (``--api cognito``) it answers Cognito ``AdminUpdateUserAttributes``
instead, in the awsJson1.1 protocol: ``POST /`` with ``X-Amz-Target:
AWSCognitoIdentityProviderService.AdminUpdateUserAttributes``, signed for ``cognito-idp``. The
same order applies (the ids come from the body); throttling is a 400 ``TooManyRequestsException``
(``__type`` in a JSON body), as Cognito answers; the attributes applied are recorded per
(UserPoolId, Username) in ``attributes``, and the pool is the account of ``limit_scope="account"``.

Run standalone with ``python -m async_updater.testing.mock --port 8080``; it binds loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import math
import random
import signal
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from enum import Enum
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote, unquote

from aiohttp import hdrs, web
from aiohttp.web_response import StreamResponse
from multidict import MultiMapping

from ...errors import ConfigError

__all__ = [
    "AuthFailure",
    "Event",
    "MockApi",
    "MockChimeServer",
    "MockConfig",
    "SigV4Verifier",
    "canonical_query",
    "canonical_uri",
    "initial_settings",
    "main",
    "verify_sigv4",
]

ALGORITHM: Final = "AWS4-HMAC-SHA256"
SIGNATURE_MISMATCH: Final = (
    "The request signature we calculated does not match the signature you provided."
)
_INVALID_SIGNATURE: Final = "InvalidSignatureException"
_UNAUTHORIZED: Final = "UnauthorizedClientException"
_FORBIDDEN: Final = "ForbiddenException"
_EXPIRED_TOKEN: Final = "ExpiredTokenException"
_ADMIN_PREFIX: Final = "/_mock/"
_SETTINGS_KEYS: Final = ("InboundCalling", "OutboundCalling", "SMS")
_LIMIT_KEYS: Final = frozenset(
    {"rate_limit", "burst", "fault_rate", "retry_after", "clock_offset_s", "send_date"}
)
# Derived keys and parsed dates repeat for almost every request; the bound only guards against a
# client that sends endless distinct values.
_CACHE_LIMIT: Final = 1024


class MockApi(str, Enum):
    """Which API the mock answers."""

    CHIME = "chime"  # restJson1 Chime UpdateUserSettings
    COGNITO = "cognito"  # awsJson1.1 Cognito AdminUpdateUserAttributes

    def __str__(self) -> str:
        return self.value


_COGNITO_TARGET: Final = "AWSCognitoIdentityProviderService.AdminUpdateUserAttributes"
_AMZ_JSON_11: Final = "application/x-amz-json-1.1"


def _default_credentials() -> Mapping[str, str]:
    return MappingProxyType({"AKIDMOCK": "mock-secret"})


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


def _finite(value: float) -> bool:
    # bool is an int; a True rate limit is a typo, not a number.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How the mock behaves. Validated on construction: a bad value raises ``ConfigError``
    (a ``ValueError``) naming the field. Mappings are copied into read-only views.

    ``burst`` defaults to ``max(1, rate_limit / 10)``. ``fault_rate`` is the share of requests
    that passed authentication and the bucket which are answered 500 or 503 (half each).
    ``verify_fraction`` is the share whose signature is recomputed; every request still goes
    through the cheap checks (key, scope, date, token). All randomness comes from ``seed``.
    ``clock_offset_s``: how far the server's clock is ahead of the wall clock (negative:
    behind); X-Amz-Date is judged against it and every ``Date`` header read from it.
    ``send_date=False`` sends no ``Date`` header at all (a server that gives no way to correct
    a client's clock).
    """

    credentials: Mapping[str, str] = field(default_factory=_default_credentials)
    session_tokens: Mapping[str, str] = field(default_factory=_empty_mapping)
    expired_tokens: frozenset[str] = frozenset()
    region: str = "us-east-1"
    service: str = "chime"
    rate_limit: float | None = None
    burst: float | None = None
    limit_scope: str = "global"
    retry_after: float | None = None
    retry_after_ms_header: bool = False
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    fault_rate: float = 0.0
    not_found: frozenset[str] = frozenset()
    max_clock_skew_s: float = 300.0
    clock_offset_s: float = 0.0
    send_date: bool = True
    verify_fraction: float = 1.0
    record_events: bool = False
    seed: int = 0
    api: MockApi = MockApi.CHIME

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "api", MockApi(self.api))
        except ValueError:
            raise ConfigError(
                f"api must be one of {', '.join(a.value for a in MockApi)}, got {self.api!r}"
            ) from None
        if self.api is MockApi.COGNITO and self.service == "chime":
            # The default signing name is Chime's; a Cognito API is signed for cognito-idp.
            object.__setattr__(self, "service", "cognito-idp")
        # Freeze what callers passed so a config shared between servers cannot change under them.
        object.__setattr__(self, "credentials", MappingProxyType(dict(self.credentials)))
        object.__setattr__(self, "session_tokens", MappingProxyType(dict(self.session_tokens)))
        object.__setattr__(self, "expired_tokens", frozenset(self.expired_tokens))
        object.__setattr__(self, "not_found", frozenset(self.not_found))
        for key, secret in self.credentials.items():
            if not isinstance(key, str) or not key or "/" in key:
                raise ConfigError(f"credentials: {key!r} is not a usable access key id")
            if not isinstance(secret, str) or not secret:
                raise ConfigError(f"credentials: the secret for {key!r} must be a non-empty str")
        for key, token in self.session_tokens.items():
            if key not in self.credentials:
                raise ConfigError(f"session_tokens: access key {key!r} is not in credentials")
            if not isinstance(token, str) or not token:
                raise ConfigError(f"session_tokens: the token for {key!r} must be a non-empty str")
        if not self.region or not isinstance(self.region, str):
            raise ConfigError("region must be a non-empty string")
        if not self.service or not isinstance(self.service, str):
            raise ConfigError("service must be a non-empty string")
        if self.rate_limit is not None and not (_finite(self.rate_limit) and self.rate_limit > 0):
            raise ConfigError(f"rate_limit must be > 0 requests/s or None, got {self.rate_limit!r}")
        if self.burst is not None and not (_finite(self.burst) and self.burst >= 1):
            raise ConfigError(f"burst must be >= 1 or None, got {self.burst!r}")
        if self.limit_scope not in ("global", "account"):
            raise ConfigError(
                f"limit_scope must be 'global' or 'account', got {self.limit_scope!r}"
            )
        if self.retry_after is not None and not (
            _finite(self.retry_after) and self.retry_after >= 0
        ):
            raise ConfigError(f"retry_after must be >= 0 seconds or None, got {self.retry_after!r}")
        if not (_finite(self.latency_ms) and self.latency_ms >= 0):
            raise ConfigError(f"latency_ms must be >= 0, got {self.latency_ms!r}")
        if not (_finite(self.latency_jitter_ms) and self.latency_jitter_ms >= 0):
            raise ConfigError(f"latency_jitter_ms must be >= 0, got {self.latency_jitter_ms!r}")
        if not (_finite(self.fault_rate) and 0 <= self.fault_rate <= 1):
            raise ConfigError(f"fault_rate must be between 0 and 1, got {self.fault_rate!r}")
        if not (_finite(self.max_clock_skew_s) and self.max_clock_skew_s > 0):
            raise ConfigError(f"max_clock_skew_s must be > 0, got {self.max_clock_skew_s!r}")
        if not _finite(self.clock_offset_s):
            raise ConfigError(
                f"clock_offset_s must be a number of seconds, got {self.clock_offset_s!r}"
            )
        if not isinstance(self.send_date, bool):
            raise ConfigError(f"send_date must be true or false, got {self.send_date!r}")
        if not (_finite(self.verify_fraction) and 0 <= self.verify_fraction <= 1):
            raise ConfigError(
                f"verify_fraction must be between 0 and 1, got {self.verify_fraction!r}"
            )

    @property
    def effective_burst(self) -> float | None:
        """The bucket size in force, or None when there is no rate limit."""
        if self.rate_limit is None:
            return None
        return self.burst if self.burst is not None else max(1.0, self.rate_limit / 10)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request was refused before anything else looked at it."""

    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Event:
    """One handled request; times are the event loop's monotonic clock. Ids are empty when the
    request never got as far as the route (failed authentication)."""

    arrived: float
    responded: float
    account_id: str
    user_id: str
    status: int


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
    403, _EXPIRED_TOKEN, "The security token included in the request is expired"
)
_MISMATCH: Final = AuthFailure(403, _INVALID_SIGNATURE, SIGNATURE_MISMATCH)
_SKEW_MESSAGES: Final = ("Signature expired:", "Signature not yet current:")


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
        authorization = headers.get("Authorization")
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
        access_key, scope_date, region, service, _ = scope
        secret = self._credentials.get(access_key)
        if secret is None:
            return AuthFailure(401, _UNAUTHORIZED, f"Unknown access key id {access_key!r}.")

        amz_date = headers.get("X-Amz-Date")
        if amz_date is None:
            return AuthFailure(403, _INVALID_SIGNATURE, "Missing X-Amz-Date header.")
        sent_at = self._amz_epoch(amz_date)
        if sent_at is None:
            return AuthFailure(
                403, _INVALID_SIGNATURE, f"X-Amz-Date {amz_date!r} is not YYYYMMDDTHHMMSSZ."
            )
        if scope_date != amz_date[:8]:
            return AuthFailure(
                403,
                _INVALID_SIGNATURE,
                f"Date in Credential scope does not match YYYYMMDD from X-Amz-Date: "
                f"{scope_date!r} != {amz_date[:8]!r}.",
            )
        if region != self._region:
            return AuthFailure(
                403,
                _INVALID_SIGNATURE,
                f"Credential should be scoped to a valid region, not {region!r}; "
                f"expected {self._region!r}.",
            )
        if service != self._service:
            return AuthFailure(
                403,
                _INVALID_SIGNATURE,
                f"Credential should be scoped to correct service: {self._service!r}.",
            )
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
        names = signed_headers.split(";")
        if "host" not in names or "x-amz-date" not in names:
            return AuthFailure(
                403, _INVALID_SIGNATURE, "SignedHeaders must include 'host' and 'x-amz-date'."
            )

        token = headers.get("X-Amz-Security-Token")
        if token is not None and token in self._expired_tokens:
            return _EXPIRED
        required = self._session_tokens.get(access_key)
        if required is None:
            # A long-term key never comes with a token; a client that sends one is confused.
            if token is not None:
                return _BAD_TOKEN
        elif token is None or not hmac.compare_digest(
            token.encode("utf-8", "surrogateescape"), required.encode()
        ):
            return _BAD_TOKEN
        elif "x-amz-security-token" not in names:
            return AuthFailure(
                403, _INVALID_SIGNATURE, "X-Amz-Security-Token must be a signed header."
            )

        if not full:
            return None
        lines: list[str] = []
        for name in sorted(names):
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
                signed_headers,
                hashlib.sha256(body).hexdigest(),
            )
        )
        string_to_sign = "\n".join(
            (
                ALGORITHM,
                amz_date,
                f"{scope_date}/{region}/{service}/aws4_request",
                hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest(),
            )
        )
        expected = hmac.new(
            self.signing_key(secret, scope_date), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape")):
            return _MISMATCH
        return None


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


class _TokenBucket:
    """Continuous refill at ``rate`` up to ``capacity``, computed lazily from the times passed."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def take(self, now: float) -> bool:
        tokens = self.tokens + (now - self.updated) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False

    def retune(self, rate: float, capacity: float, now: float) -> None:
        # Tokens earned so far were earned at the old rate; only the future uses the new one.
        self.refill(now)
        self.rate = rate
        self.capacity = capacity
        self.tokens = min(self.tokens, capacity)

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now


class _Unset(Enum):
    UNSET = "unset"


_UNSET: Final = _Unset.UNSET


def _parse_settings(body: bytes) -> dict[str, bool] | str:
    """The three telephony flags, or why the body is not exactly the documented shape."""
    try:
        document = json.loads(body)
    except ValueError:
        return "The request body is not valid JSON."
    if not isinstance(document, dict) or set(document) != {"UserSettings"}:
        return "The request body must be an object with exactly the key 'UserSettings'."
    user_settings = document["UserSettings"]
    if not isinstance(user_settings, dict) or set(user_settings) != {"Telephony"}:
        return "UserSettings must be an object with exactly the key 'Telephony'."
    telephony = user_settings["Telephony"]
    if not isinstance(telephony, dict) or set(telephony) != set(_SETTINGS_KEYS):
        return "Telephony must be an object with exactly InboundCalling, OutboundCalling, SMS."
    for key in _SETTINGS_KEYS:
        # type() rather than isinstance: JSON 1 and 0 are not booleans.
        if type(telephony[key]) is not bool:
            return f"Telephony.{key} must be a JSON boolean."
    return {key: telephony[key] for key in _SETTINGS_KEYS}


def initial_settings(account_id: str, user_id: str) -> dict[str, bool]:
    """The settings of a user the server has never written: three bits of a SHA-256 of the ids,
    the same in every run, so tests and the demo know each user's state before a run."""
    key = f"{len(account_id)}:{account_id}\x00{user_id}".encode("utf-8", "surrogatepass")
    bits = hashlib.sha256(key).digest()[0]
    return {
        "InboundCalling": bool(bits & 1),
        "OutboundCalling": bool(bits & 2),
        "SMS": bool(bits & 4),
    }


def _parse_route(raw_path: str) -> tuple[str, str] | None:
    """(account id, user id) from ``/accounts/{a}/users/{u}/settings``, each segment decoded on
    its own so an encoded ``/`` stays inside its id; None for any other path.
    Raises UnicodeDecodeError if a segment is not percent-encoded UTF-8."""
    parts = raw_path.partition("?")[0].split("/")
    if (
        len(parts) != 6
        or parts[0]
        or parts[1] != "accounts"
        or parts[3] != "users"
        or parts[5] != "settings"
        or not parts[2]
        or not parts[4]
    ):
        return None
    return (
        unquote(parts[2], encoding="utf-8", errors="strict"),
        unquote(parts[4], encoding="utf-8", errors="strict"),
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MockChimeServer:
    """An aiohttp server answering Chime ``UpdateUserSettings`` as configured (see module doc).

    The public attributes are the record of what happened; ``reset`` clears them. ``wall_clock``
    plus ``clock_offset_s`` is the server's time (``server_time``): it judges X-Amz-Date and
    stamps the ``Date`` header; all rate and latency timing uses the loop clock.
    """

    def __init__(
        self,
        config: MockConfig | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config if config is not None else MockConfig()
        cfg = self._config
        self._wall_clock = wall_clock
        self._verifier = SigV4Verifier(
            cfg.credentials,
            session_tokens=cfg.session_tokens,
            expired_tokens=cfg.expired_tokens,
            region=cfg.region,
            service=cfg.service,
            max_clock_skew_s=cfg.max_clock_skew_s,
        )
        # Separate streams so that, say, sampling fewer signatures does not change which
        # requests get faults.
        self._fault_rng = random.Random(f"{cfg.seed}:fault")
        self._verify_rng = random.Random(f"{cfg.seed}:verify")
        self._latency_rng = random.Random(f"{cfg.seed}:latency")
        self._verify_all = cfg.verify_fraction >= 1.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.ServerRunner | None = None
        self._t0 = 0.0
        self._global_bucket: _TokenBucket | None = None
        self._account_buckets: dict[str, _TokenBucket] = {}
        self._throttle_headers: dict[str, str] = {}
        self.url = ""
        self.applied: dict[tuple[str, str], dict[str, bool]] = {}
        # Cognito mode: (UserPoolId, Username) -> attributes, as applied so far.
        self.attributes: dict[tuple[str, str], dict[str, str]] = {}
        self.apply_counts: collections.Counter[tuple[str, str]] = collections.Counter()
        # Reads answered 200, per user: "each user was read exactly once" is checked on this
        # (throttled or faulted reads count in counters["reads_throttled"/"reads_faulted"]).
        self.read_counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.counters: collections.Counter[str] = collections.Counter()
        self.timeline: dict[int, dict[str, float]] = {}
        self.events: list[Event] = []
        self._date_second = -1
        self._date_text = ""
        self._limits_changed()

    @property
    def config(self) -> MockConfig:
        """The configuration in force, ``set_limits`` changes included."""
        return self._config

    def settings(self, account_id: str, user_id: str) -> dict[str, bool]:
        """The user's settings now: the last ones written, else ``initial_settings``."""
        found = self.applied.get((account_id, user_id))
        return dict(found) if found is not None else initial_settings(account_id, user_id)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind ``host:port`` (port 0 picks a free one) and return the base URL.
        Raises ValueError for a non-loopback host: this server accepts a fixed test secret."""
        if self._runner is not None:
            raise RuntimeError("the mock server is already started")
        if not _is_loopback(host):
            raise ValueError(f"host {host!r} is not a loopback address")
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._rebuild_buckets()
        server = web.Server(
            self._handle, access_log=None, request_factory=self._request_factory(self._loop)
        )
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening and close connections; the record stays readable. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MockChimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def server_time(self) -> float:
        """The server's clock (epoch seconds): the wall clock plus ``clock_offset_s``."""
        return self._wall_clock() + self._config.clock_offset_s

    def http_date(self) -> str | None:
        """The ``Date`` header to send now (RFC 7231 IMF-fixdate from the server's clock), or
        None when the config says to send none."""
        if not self._config.send_date:
            return None
        now = self.server_time()
        second = int(now)
        if second != self._date_second:  # formatted once a second, not once a response
            self._date_second = second
            self._date_text = formatdate(second, usegmt=True)
        return self._date_text

    def _request_factory(self, loop: asyncio.AbstractEventLoop) -> Any:
        """Requests whose responses carry the server's ``Date`` (aiohttp would stamp its own,
        from the unskewed wall clock, on every response, admin ones included)."""
        mock = self

        class _Request(web.BaseRequest):
            async def _prepare_hook(self, response: StreamResponse) -> None:
                # Called after aiohttp set its headers and before they are written.
                date = mock.http_date()
                if date is None:
                    response.headers.popall(hdrs.DATE, None)
                else:
                    response.headers[hdrs.DATE] = date

        def factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
            return _Request(message, payload, protocol, writer, task, loop)

        return factory

    def set_limits(
        self,
        *,
        rate_limit: float | _Unset | None = _UNSET,
        burst: float | _Unset | None = _UNSET,
        fault_rate: float | _Unset = _UNSET,
        retry_after: float | _Unset | None = _UNSET,
        clock_offset_s: float | _Unset = _UNSET,
        send_date: bool | _Unset = _UNSET,
    ) -> None:
        """Change limits at run time; omitted arguments keep their value. A rate change applies
        from now on (tokens already earned are kept, up to the new burst); going from unlimited
        to limited starts with full buckets. Raises ``ConfigError`` like ``MockConfig``."""
        changes: dict[str, Any] = {}
        if not isinstance(rate_limit, _Unset):
            changes["rate_limit"] = rate_limit
        if not isinstance(burst, _Unset):
            changes["burst"] = burst
        if not isinstance(fault_rate, _Unset):
            changes["fault_rate"] = fault_rate
        if not isinstance(retry_after, _Unset):
            changes["retry_after"] = retry_after
        if not isinstance(clock_offset_s, _Unset):
            changes["clock_offset_s"] = clock_offset_s
        if not isinstance(send_date, _Unset):
            changes["send_date"] = send_date
        if not changes:
            return
        old_rate = self._config.rate_limit
        self._config = replace(self._config, **changes)
        self._limits_changed()
        if self._loop is None:
            return
        rate, capacity = self._config.rate_limit, self._config.effective_burst
        if rate is None or capacity is None or old_rate is None:
            self._rebuild_buckets()
            return
        now = self._loop.time()
        for bucket in self._account_buckets.values():
            bucket.retune(rate, capacity, now)
        if self._global_bucket is not None:
            self._global_bucket.retune(rate, capacity, now)

    def reset(self) -> None:
        """Forget what happened: clear applied users, counters, timeline and events, restart the
        timeline at second 0 and refill the buckets. Limits stay as they are."""
        self.applied.clear()
        self.attributes.clear()
        self.apply_counts.clear()
        self.read_counts.clear()
        self.counters.clear()
        self.timeline.clear()
        self.events.clear()
        if self._loop is not None:
            self._t0 = self._loop.time()
            self._rebuild_buckets()

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot: counters, applied users, read users, timeline (keys are seconds
        as strings) and the limits in force."""
        counts = self.apply_counts.values()
        reads = self.read_counts.values()
        cfg = self._config
        return {
            "counters": dict(self.counters),
            "applied_users": len(self.applied) + len(self.attributes),
            "max_apply_count": max(counts, default=0),
            "reapplied_users": sum(1 for n in counts if n > 1),
            "read_users": len(self.read_counts),
            "max_read_count": max(reads, default=0),
            "timeline": {str(s): dict(v) for s, v in sorted(self.timeline.items())},
            "limits": {
                "rate_limit": cfg.rate_limit,
                "burst": cfg.effective_burst,
                "limit_scope": cfg.limit_scope,
                "fault_rate": cfg.fault_rate,
                "retry_after": cfg.retry_after,
                "clock_offset_s": cfg.clock_offset_s,
                "send_date": cfg.send_date,
            },
        }

    def _limits_changed(self) -> None:
        cfg = self._config
        headers: dict[str, str] = {}
        if cfg.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(cfg.retry_after))
            if cfg.retry_after_ms_header:
                headers["x-amz-retry-after"] = str(math.ceil(cfg.retry_after * 1000))
        self._throttle_headers = headers

    def _rebuild_buckets(self) -> None:
        self._account_buckets.clear()
        self._global_bucket = None
        cfg = self._config
        if cfg.rate_limit is None or cfg.effective_burst is None or self._loop is None:
            return
        if cfg.limit_scope == "global":
            self._global_bucket = _TokenBucket(
                cfg.rate_limit, cfg.effective_burst, self._loop.time()
            )

    def _bucket_for(self, account_id: str, now: float) -> _TokenBucket | None:
        cfg = self._config
        if cfg.rate_limit is None or cfg.effective_burst is None:
            return None
        if cfg.limit_scope == "global":
            return self._global_bucket
        bucket = self._account_buckets.get(account_id)
        if bucket is None:
            bucket = _TokenBucket(cfg.rate_limit, cfg.effective_burst, now)
            self._account_buckets[account_id] = bucket
        return bucket

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        loop = self._loop
        assert loop is not None  # set in start() before the server accepts anything
        arrived = loop.time()
        raw_path = request.raw_path
        if raw_path.startswith(_ADMIN_PREFIX):
            return await self._admin(request, raw_path)
        counters = self.counters
        counters["requests"] += 1
        body = await request.read()
        cfg = self._config
        full = self._verify_all or self._verify_rng.random() < cfg.verify_fraction
        failure = self._verifier.verify(
            request.method, raw_path, request.headers, body, now=self.server_time(), full=full
        )
        if failure is not None:
            counters["expired_token" if failure.code == _EXPIRED_TOKEN else "auth_failed"] += 1
            if failure.message.startswith(_SKEW_MESSAGES):
                counters["clock_skew"] += 1
            return await self._respond(
                _error(failure.status, failure.code, failure.message), arrived, "", ""
            )
        if cfg.api is MockApi.COGNITO:
            return await self._handle_cognito(request, raw_path, body, arrived)
        try:
            ids = _parse_route(raw_path)
        except UnicodeDecodeError:
            counters["bad_request"] += 1
            response = _error(
                400, "BadRequestException", "Ids in the path must be percent-encoded UTF-8."
            )
            return await self._respond(response, arrived, "", "")
        if ids is None:
            counters["no_route"] += 1
            return await self._respond(
                _error(404, "NotFoundException", "no such route"), arrived, "", ""
            )
        account_id, user_id = ids
        reading = request.method == "GET"
        if request.method != "PUT" and not reading:
            counters["bad_method"] += 1
            response = _error(
                405, "MethodNotAllowedException", f"{request.method} is not allowed here."
            )
            response.headers["Allow"] = "GET, PUT"
            return await self._respond(response, arrived, account_id, user_id)
        if reading:
            counters["reads"] += 1

        second = int(arrived - self._t0)
        slot = self.timeline.get(second)
        if slot is None:
            slot = self.timeline[second] = {
                "accepted": 0.0,
                "throttled": 0.0,
                "faults": 0.0,
                "admitted": 0.0,
                "allowed_rate": 0.0,
                "reads": 0.0,
            }
        slot["allowed_rate"] = cfg.rate_limit or 0.0
        bucket = self._bucket_for(account_id, arrived)
        if bucket is not None and not bucket.take(arrived):
            counters["throttled"] += 1
            if reading:
                counters["reads_throttled"] += 1
            slot["throttled"] += 1
            response = _error(429, "ThrottledClientException", "Rate exceeded")
            if self._throttle_headers:
                response.headers.update(self._throttle_headers)
            return await self._respond(response, arrived, account_id, user_id)
        counters["admitted"] += 1
        slot["admitted"] += 1

        if cfg.fault_rate and self._fault_rng.random() < cfg.fault_rate:
            counters["faults"] += 1
            if reading:
                counters["reads_faulted"] += 1
            slot["faults"] += 1
            if self._fault_rng.random() < 0.5:
                response = _error(
                    500, "ServiceFailureException", "The service encountered an internal error."
                )
            else:
                response = _error(
                    503, "ServiceUnavailableException", "The service is currently unavailable."
                )
            return await self._respond(response, arrived, account_id, user_id)
        if user_id in cfg.not_found:
            counters["not_found"] += 1
            response = _error(404, "NotFoundException", f"User {user_id!r} was not found.")
            return await self._respond(response, arrived, account_id, user_id)
        if reading:
            # GetUserSettings: a body sent with it is ignored, as a real API would.
            self.read_counts[(account_id, user_id)] += 1
            counters["reads_served"] += 1
            slot["reads"] += 1
            document = {"UserSettings": {"Telephony": self.settings(account_id, user_id)}}
            response = web.Response(
                status=200,
                body=json.dumps(document).encode(),
                headers={"x-amzn-RequestId": str(uuid.uuid4()), "Content-Type": "application/json"},
            )
            return await self._respond(response, arrived, account_id, user_id)
        settings = _parse_settings(body)
        if isinstance(settings, str):
            counters["bad_request"] += 1
            response = _error(400, "BadRequestException", settings)
            return await self._respond(response, arrived, account_id, user_id)

        key = (account_id, user_id)
        self.applied[key] = settings
        self.apply_counts[key] += 1
        counters["accepted"] += 1
        slot["accepted"] += 1
        response = web.Response(status=204, headers={"x-amzn-RequestId": str(uuid.uuid4())})
        return await self._respond(response, arrived, account_id, user_id)

    async def _handle_cognito(
        self, request: web.BaseRequest, raw_path: str, body: bytes, arrived: float
    ) -> web.StreamResponse:
        """Cognito ``AdminUpdateUserAttributes`` (awsJson1.1), after authentication."""
        counters = self.counters
        cfg = self._config
        if request.method != "POST" or raw_path.partition("?")[0] != "/":
            counters["no_route"] += 1
            return await self._respond(
                _json_error(404, "UnknownOperationException", "no such route"), arrived, "", ""
            )
        if request.headers.get("X-Amz-Target") != _COGNITO_TARGET:
            counters["no_route"] += 1
            response = _json_error(
                400, "UnknownOperationException", f"this mock answers only {_COGNITO_TARGET}"
            )
            return await self._respond(response, arrived, "", "")
        if request.headers.get("Content-Type") != _AMZ_JSON_11:
            counters["bad_request"] += 1
            response = _json_error(
                400, "SerializationException", f"Content-Type must be {_AMZ_JSON_11}"
            )
            return await self._respond(response, arrived, "", "")
        parsed = _parse_cognito_update(body)
        if isinstance(parsed, str):
            counters["bad_request"] += 1
            response = _json_error(400, "InvalidParameterException", parsed)
            return await self._respond(response, arrived, "", "")
        pool, username, attributes = parsed
        second = int(arrived - self._t0)
        slot = self.timeline.setdefault(
            second,
            {"accepted": 0.0, "throttled": 0.0, "faults": 0.0, "admitted": 0.0},
        )
        slot["allowed_rate"] = cfg.rate_limit or 0.0
        bucket = self._bucket_for(pool, arrived)
        if bucket is not None and not bucket.take(arrived):
            counters["throttled"] += 1
            slot["throttled"] += 1
            # Cognito throttles with a 400, not a 429: the code alone says what happened.
            response = _json_error(400, "TooManyRequestsException", "Rate exceeded")
            if self._throttle_headers:
                response.headers.update(self._throttle_headers)
            return await self._respond(response, arrived, pool, username)
        counters["admitted"] += 1
        slot["admitted"] += 1
        if cfg.fault_rate and self._fault_rng.random() < cfg.fault_rate:
            counters["faults"] += 1
            slot["faults"] += 1
            if self._fault_rng.random() < 0.5:
                response = _json_error(500, "InternalErrorException", "Internal error.")
            else:
                response = _json_error(503, "ServiceUnavailableException", "Unavailable.")
            return await self._respond(response, arrived, pool, username)
        if username in cfg.not_found:
            counters["not_found"] += 1
            response = _json_error(400, "UserNotFoundException", "User does not exist.")
            return await self._respond(response, arrived, pool, username)
        key = (pool, username)
        self.attributes[key] = {**self.attributes.get(key, {}), **attributes}
        self.apply_counts[key] += 1
        counters["accepted"] += 1
        slot["accepted"] += 1
        response = web.Response(
            status=200,
            body=b"{}",
            headers={"x-amzn-RequestId": str(uuid.uuid4()), "Content-Type": _AMZ_JSON_11},
        )
        return await self._respond(response, arrived, pool, username)

    async def _respond(
        self, response: web.Response, arrived: float, account_id: str, user_id: str
    ) -> web.Response:
        cfg = self._config
        if cfg.latency_ms or cfg.latency_jitter_ms:
            jitter = cfg.latency_jitter_ms
            delay_ms = cfg.latency_ms + (
                self._latency_rng.uniform(-jitter, jitter) if jitter else 0.0
            )
            if delay_ms > 0:
                await asyncio.sleep(delay_ms / 1000)
        if cfg.record_events:
            assert self._loop is not None
            self.events.append(
                Event(arrived, self._loop.time(), account_id, user_id, response.status)
            )
        return response

    async def _admin(self, request: web.BaseRequest, raw_path: str) -> web.Response:
        path = raw_path.partition("?")[0]
        method = request.method
        if path == "/_mock/state":
            if method != "GET":
                return _admin_error(405, f"{path} takes GET")
            return web.json_response(self.state())
        if path == "/_mock/applied":
            if method != "GET":
                return _admin_error(405, f"{path} takes GET")
            applied: Mapping[tuple[str, str], Any] = (
                self.attributes if self._config.api is MockApi.COGNITO else self.applied
            )
            return web.json_response(
                [
                    [account_id, user_id, settings, self.apply_counts[(account_id, user_id)]]
                    for (account_id, user_id), settings in applied.items()
                ]
            )
        if path == "/_mock/user":
            if method != "GET":
                return _admin_error(405, f"{path} takes GET")
            query = request.rel_url.query
            account_id, user_id = query.get("account_id"), query.get("user_id")
            if account_id is None or user_id is None:
                return _admin_error(400, f"{path} needs ?account_id=...&user_id=...")
            key = (account_id, user_id)
            return web.json_response(
                {
                    "account_id": account_id,
                    "user_id": user_id,
                    "settings": self.settings(account_id, user_id),
                    "initial": initial_settings(account_id, user_id),
                    "writes": self.apply_counts.get(key, 0),
                    "reads": self.read_counts.get(key, 0),
                }
            )
        if path == "/_mock/events":
            if method != "GET":
                return _admin_error(405, f"{path} takes GET")
            # Seconds since the timeline's second 0, so they line up with /_mock/state.
            t0 = self._t0
            return web.json_response(
                {
                    "recording": self._config.record_events,
                    "events": [
                        [e.arrived - t0, e.responded - t0, e.account_id, e.user_id, e.status]
                        for e in self.events
                    ],
                }
            )
        if path == "/_mock/reset":
            if method != "POST":
                return _admin_error(405, f"{path} takes POST")
            self.reset()
            return web.json_response(self.state())
        if path == "/_mock/limits":
            if method != "POST":
                return _admin_error(405, f"{path} takes POST")
            try:
                changes = json.loads(await request.read())
            except ValueError:
                return _admin_error(400, "the body is not JSON")
            if not isinstance(changes, dict) or not set(changes) <= _LIMIT_KEYS:
                return _admin_error(
                    400, "the body must be an object with keys among " + ", ".join(_LIMIT_KEYS)
                )
            try:
                self.set_limits(**changes)
            except ValueError as exc:
                return _admin_error(400, str(exc))
            return web.json_response(self.state()["limits"])
        return _admin_error(404, "no such admin endpoint")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"Code": code, "Message": message}).encode(),
        headers={
            "x-amzn-RequestId": str(uuid.uuid4()),
            "x-amzn-ErrorType": code,
            "Content-Type": "application/json",
        },
    )


def _json_error(status: int, code: str, message: str) -> web.Response:
    """An awsJson1.1 error: the code in the body's ``__type``, as Cognito answers."""
    return web.Response(
        status=status,
        body=json.dumps({"__type": code, "message": message}).encode(),
        headers={"x-amzn-RequestId": str(uuid.uuid4()), "Content-Type": _AMZ_JSON_11},
    )


def _parse_cognito_update(body: bytes) -> tuple[str, str, dict[str, str]] | str:
    """(UserPoolId, Username, {Name: Value}) from an AdminUpdateUserAttributes body, or why the
    body is not that."""
    try:
        document = json.loads(body)
    except ValueError:
        return "The request body is not valid JSON."
    if not isinstance(document, dict):
        return "The request body must be a JSON object."
    unknown = set(document) - {"UserPoolId", "Username", "UserAttributes", "ClientMetadata"}
    if unknown:
        return f"Unknown member(s): {', '.join(sorted(unknown))}."
    pool, username = document.get("UserPoolId"), document.get("Username")
    if not isinstance(pool, str) or not pool or not isinstance(username, str) or not username:
        return "UserPoolId and Username must be non-empty strings."
    items = document.get("UserAttributes")
    if not isinstance(items, list):
        return "UserAttributes must be a list."
    attributes: dict[str, str] = {}
    for item in items:
        if (
            not isinstance(item, dict)
            or not set(item) <= {"Name", "Value"}
            or not isinstance(item.get("Name"), str)
            or not isinstance(item.get("Value", ""), str)
        ):
            return "Each of UserAttributes must be {Name: string, Value: string}."
        attributes[item["Name"]] = item.get("Value", "")
    return pool, username, attributes


def _admin_error(status: int, message: str) -> web.Response:
    code = {400: "BadRequestException", 405: "MethodNotAllowedException"}.get(
        status, "NotFoundException"
    )
    return _error(status, code, message)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m async_updater.testing.mock",
        description="Serve a mock Amazon Chime UpdateUserSettings and GetUserSettings API on a "
        "loopback address.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    parser.add_argument("--rate-limit", type=float, help="requests/s allowed (default unlimited)")
    parser.add_argument("--burst", type=float, help="bucket size (default rate/10, at least 1)")
    parser.add_argument("--limit-scope", choices=("global", "account"), default="global")
    parser.add_argument("--retry-after", type=float, help="seconds to send in 429 Retry-After")
    parser.add_argument(
        "--retry-after-ms-header",
        action="store_true",
        help="also send x-amz-retry-after (milliseconds) on 429s",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share answered 500/503")
    parser.add_argument(
        "--not-found",
        nargs="+",
        action="extend",
        default=[],
        metavar="USER_ID",
        help="user ids answered 404",
    )
    parser.add_argument("--access-key", default="AKIDMOCK")
    parser.add_argument("--secret-key", default="mock-secret")
    parser.add_argument("--verify-fraction", type=float, default=1.0)
    parser.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run the server's clock this far ahead of the wall clock (negative: behind)",
    )
    parser.add_argument(
        "--no-date", action="store_true", help="send no Date header (nothing to correct a clock by)"
    )
    parser.add_argument(
        "--record-events",
        action="store_true",
        help="record every handled request (GET /_mock/events returns them)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--api",
        choices=[a.value for a in MockApi],
        default=MockApi.CHIME.value,
        help="chime: Chime UpdateUserSettings (default); cognito: Cognito "
        "AdminUpdateUserAttributes in awsJson1.1, throttling with 400 TooManyRequestsException",
    )
    parser.add_argument("--duration", type=float, help="exit after this many seconds")
    return parser


async def _serve(config: MockConfig, host: str, port: int, duration: float | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Some platforms have no loop signal handlers; Ctrl-C then raises KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    server = MockChimeServer(config)
    url = await server.start(host, port)
    try:
        print(f"mock chime server listening on {url}", flush=True)
        await stop.wait()
    finally:
        await server.stop()
    return 0


def _run(main_coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_coro)
    result: int = uvloop.run(main_coro)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a usage error)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not _is_loopback(args.host):
        parser.error(f"--host {args.host!r} is not a loopback address; the mock only binds those")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port number")
    if args.duration is not None and not args.duration > 0:
        parser.error("--duration must be > 0")
    try:
        config = MockConfig(
            credentials={args.access_key: args.secret_key},
            rate_limit=args.rate_limit,
            burst=args.burst,
            limit_scope=args.limit_scope,
            retry_after=args.retry_after,
            retry_after_ms_header=args.retry_after_ms_header,
            latency_ms=args.latency_ms,
            latency_jitter_ms=args.jitter_ms,
            fault_rate=args.fault_rate,
            not_found=frozenset(args.not_found),
            verify_fraction=args.verify_fraction,
            clock_offset_s=args.clock_offset,
            send_date=not args.no_date,
            record_events=args.record_events,
            seed=args.seed,
            api=MockApi(args.api),
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return _run(_serve(config, args.host, args.port, args.duration))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
