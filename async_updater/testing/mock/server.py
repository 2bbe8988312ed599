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

Run standalone with ``python -m async_updater.testing.mock --port 8080`` (``cli.py``); it binds
loopback only. The signature check is ``verifier.py``, the configuration ``config.py``, the
``/_mock/`` admin endpoints ``admin.py``.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from email.utils import formatdate
from enum import Enum
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote

from aiohttp import hdrs, web
from aiohttp.web_response import StreamResponse

from .admin import handle_admin
from .config import MockApi, MockConfig, initial_settings
from .responses import AMZ_JSON_11, error_response, json_error_response
from .verifier import (
    EXPIRED_TOKEN,
    SKEW_MESSAGES,
    SigV4Verifier,
)

__all__ = [
    "Event",
    "MockChimeServer",
]

_ADMIN_PREFIX: Final = "/_mock/"
_SETTINGS_KEYS: Final = ("InboundCalling", "OutboundCalling", "SMS")
# A new second's counts in the timeline.
_CHIME_SLOT: Final = MappingProxyType(
    dict.fromkeys(("accepted", "throttled", "faults", "admitted", "allowed_rate", "reads"), 0.0)
)
_COGNITO_SLOT: Final = MappingProxyType(
    dict.fromkeys(("accepted", "throttled", "faults", "admitted"), 0.0)
)


_COGNITO_TARGET: Final = "AWSCognitoIdentityProviderService.AdminUpdateUserAttributes"


@dataclass(frozen=True, slots=True)
class Event:
    """One handled request; times are the server's ``clock`` (the event loop's unless given).
    Ids are empty when the request never got as far as the route (failed authentication)."""

    arrived: float
    responded: float
    account_id: str
    user_id: str
    status: int


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


def is_loopback(host: str) -> bool:
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
    stamps the ``Date`` header. ``clock`` (monotonic seconds; default the event loop's) drives
    the buckets, the timeline and the events; latency is slept on the loop.
    ``in_flight`` counts the API requests being handled now.
    """

    def __init__(
        self,
        config: MockConfig | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._config = config if config is not None else MockConfig()
        cfg = self._config
        self._wall_clock = wall_clock
        self._clock = clock
        self.in_flight = 0
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
        self._server: web.Server | None = None
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
        if not is_loopback(host):
            raise ValueError(f"host {host!r} is not a loopback address")
        self._loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = self._loop.time
        self._t0 = self._clock()
        self._rebuild_buckets()
        server = web.Server(
            self._counted, access_log=None, request_factory=self._request_factory(self._loop)
        )
        self._server = server
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

    @property
    def timeline_start(self) -> float:
        """The loop time of the timeline's second 0 (``start`` or the last ``reset``)."""
        return self._t0

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
        latency_ms: float | _Unset = _UNSET,
        latency_jitter_ms: float | _Unset = _UNSET,
    ) -> None:
        """Change limits at run time; omitted arguments keep their value. A rate change applies
        from now on (tokens already earned are kept, up to the new burst); going from unlimited
        to limited starts with full buckets; a latency change, from the next answer. Raises
        ``ConfigError`` like ``MockConfig``."""
        given: dict[str, Any] = {
            "rate_limit": rate_limit,
            "burst": burst,
            "fault_rate": fault_rate,
            "retry_after": retry_after,
            "clock_offset_s": clock_offset_s,
            "send_date": send_date,
            "latency_ms": latency_ms,
            "latency_jitter_ms": latency_jitter_ms,
        }
        changes = {name: value for name, value in given.items() if not isinstance(value, _Unset)}
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
        now = self._now()
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
            self._t0 = self._now()
            self._rebuild_buckets()

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot: counters, applied users, read users, timeline (keys are seconds
        as strings) and the limits in force."""
        counts = self.apply_counts.values()
        reads = self.read_counts.values()
        cfg = self._config
        return {
            "counters": dict(self.counters),
            # Live, not reset: API requests being handled, and open client connections (an
            # admin request's own included). Both 0 and 1 once every client has gone.
            "in_flight": self.in_flight,
            "connections": len(self._server.connections) if self._server is not None else 0,
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
                "latency_ms": cfg.latency_ms,
                "latency_jitter_ms": cfg.latency_jitter_ms,
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
            self._global_bucket = _TokenBucket(cfg.rate_limit, cfg.effective_burst, self._now())

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

    def _now(self) -> float:
        assert self._clock is not None  # set in start() before the server accepts anything
        return self._clock()

    async def _counted(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.raw_path.startswith(_ADMIN_PREFIX):
            return await self._handle(request)
        self.in_flight += 1
        try:
            return await self._handle(request)
        finally:
            self.in_flight -= 1

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        arrived = self._now()
        raw_path = request.raw_path
        if raw_path.startswith(_ADMIN_PREFIX):
            return await handle_admin(self, request, raw_path)
        self.counters["requests"] += 1
        body = await request.read()
        refusal = self._authenticate(request, raw_path, body)
        if refusal is not None:
            return await self._respond(refusal, arrived, "", "")
        if self._config.api is MockApi.COGNITO:
            return await self._handle_cognito(request, raw_path, body, arrived)
        routed = self._route(raw_path)
        if isinstance(routed, web.Response):
            return await self._respond(routed, arrived, "", "")
        account_id, user_id = routed
        response = self._answer(request.method, account_id, user_id, body, arrived)
        return await self._respond(response, arrived, account_id, user_id)

    def _authenticate(
        self, request: web.BaseRequest, raw_path: str, body: bytes
    ) -> web.Response | None:
        """None if the signature is good (or only its cheap checks were due), else the answer."""
        cfg = self._config
        full = self._verify_all or self._verify_rng.random() < cfg.verify_fraction
        failure = self._verifier.verify(
            request.method, raw_path, request.headers, body, now=self.server_time(), full=full
        )
        if failure is None:
            return None
        self.counters["expired_token" if failure.code == EXPIRED_TOKEN else "auth_failed"] += 1
        if failure.message.startswith(SKEW_MESSAGES):
            self.counters["clock_skew"] += 1
        return error_response(failure.status, failure.code, failure.message)

    def _route(self, raw_path: str) -> tuple[str, str] | web.Response:
        try:
            ids = _parse_route(raw_path)
        except UnicodeDecodeError:
            self.counters["bad_request"] += 1
            return error_response(
                400, "BadRequestException", "Ids in the path must be percent-encoded UTF-8."
            )
        if ids is None:
            self.counters["no_route"] += 1
            return error_response(404, "NotFoundException", "no such route")
        return ids

    def _answer(
        self, method: str, account_id: str, user_id: str, body: bytes, arrived: float
    ) -> web.Response:
        """A routed Chime request: the bucket, faults, an unknown user, then read or write."""
        counters = self.counters
        reading = method == "GET"
        if method != "PUT" and not reading:
            counters["bad_method"] += 1
            response = error_response(
                405, "MethodNotAllowedException", f"{method} is not allowed here."
            )
            response.headers["Allow"] = "GET, PUT"
            return response
        if reading:
            counters["reads"] += 1
        slot = self._slot(arrived, _CHIME_SLOT)
        refused = self._admit(account_id, arrived, slot)
        if refused:
            if reading:
                counters["reads_throttled" if refused == 429 else "reads_faulted"] += 1
            return self._chime_refusal(refused)
        if user_id in self._config.not_found:
            counters["not_found"] += 1
            return error_response(404, "NotFoundException", f"User {user_id!r} was not found.")
        if reading:
            return self._read(account_id, user_id, slot)
        return self._write(account_id, user_id, body, slot)

    def _slot(self, arrived: float, empty: Mapping[str, float]) -> dict[str, float]:
        """The timeline's counts for the second of ``arrived`` (``empty`` for a new second)."""
        second = int(arrived - self._t0)
        slot = self.timeline.get(second)
        if slot is None:
            slot = self.timeline[second] = dict(empty)
        slot["allowed_rate"] = self._config.rate_limit or 0.0
        return slot

    def _admit(self, scope: str, arrived: float, slot: dict[str, float]) -> int:
        """0 if the request goes on; else the status that refuses it, counted: 429 (its bucket
        is empty), 500 or 503 (an injected fault)."""
        bucket = self._bucket_for(scope, arrived)
        if bucket is not None and not bucket.take(arrived):
            self.counters["throttled"] += 1
            slot["throttled"] += 1
            return 429
        self.counters["admitted"] += 1
        slot["admitted"] += 1
        cfg = self._config
        if cfg.fault_rate and self._fault_rng.random() < cfg.fault_rate:
            self.counters["faults"] += 1
            slot["faults"] += 1
            return 500 if self._fault_rng.random() < 0.5 else 503
        return 0

    def _chime_refusal(self, status: int) -> web.Response:
        if status == 429:
            response = error_response(429, "ThrottledClientException", "Rate exceeded")
            response.headers.update(self._throttle_headers)
            return response
        if status == 500:
            return error_response(
                500, "ServiceFailureException", "The service encountered an internal error."
            )
        return error_response(
            503, "ServiceUnavailableException", "The service is currently unavailable."
        )

    def _read(self, account_id: str, user_id: str, slot: dict[str, float]) -> web.Response:
        """GetUserSettings: a body sent with it is ignored, as a real API would."""
        self.read_counts[(account_id, user_id)] += 1
        self.counters["reads_served"] += 1
        slot["reads"] += 1
        document = {"UserSettings": {"Telephony": self.settings(account_id, user_id)}}
        return web.Response(
            status=200,
            body=json.dumps(document).encode(),
            headers={"x-amzn-RequestId": str(uuid.uuid4()), "Content-Type": "application/json"},
        )

    def _write(
        self, account_id: str, user_id: str, body: bytes, slot: dict[str, float]
    ) -> web.Response:
        settings = _parse_settings(body)
        if isinstance(settings, str):
            self.counters["bad_request"] += 1
            return error_response(400, "BadRequestException", settings)
        key = (account_id, user_id)
        self.applied[key] = settings
        self.apply_counts[key] += 1
        self.counters["accepted"] += 1
        slot["accepted"] += 1
        return web.Response(status=204, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def _handle_cognito(
        self, request: web.BaseRequest, raw_path: str, body: bytes, arrived: float
    ) -> web.StreamResponse:
        """Cognito ``AdminUpdateUserAttributes`` (awsJson1.1), after authentication."""
        counters = self.counters
        cfg = self._config
        if request.method != "POST" or raw_path.partition("?")[0] != "/":
            counters["no_route"] += 1
            return await self._respond(
                json_error_response(404, "UnknownOperationException", "no such route"),
                arrived,
                "",
                "",
            )
        if request.headers.get("X-Amz-Target") != _COGNITO_TARGET:
            counters["no_route"] += 1
            response = json_error_response(
                400, "UnknownOperationException", f"this mock answers only {_COGNITO_TARGET}"
            )
            return await self._respond(response, arrived, "", "")
        if request.headers.get("Content-Type") != AMZ_JSON_11:
            counters["bad_request"] += 1
            response = json_error_response(
                400, "SerializationException", f"Content-Type must be {AMZ_JSON_11}"
            )
            return await self._respond(response, arrived, "", "")
        parsed = _parse_cognito_update(body)
        if isinstance(parsed, str):
            counters["bad_request"] += 1
            response = json_error_response(400, "InvalidParameterException", parsed)
            return await self._respond(response, arrived, "", "")
        pool, username, attributes = parsed
        slot = self._slot(arrived, _COGNITO_SLOT)
        refused = self._admit(pool, arrived, slot)
        if refused == 429:
            # Cognito throttles with a 400, not a 429: the code alone says what happened.
            response = json_error_response(400, "TooManyRequestsException", "Rate exceeded")
            response.headers.update(self._throttle_headers)
            return await self._respond(response, arrived, pool, username)
        if refused:
            if refused == 500:
                response = json_error_response(500, "InternalErrorException", "Internal error.")
            else:
                response = json_error_response(503, "ServiceUnavailableException", "Unavailable.")
            return await self._respond(response, arrived, pool, username)
        if username in cfg.not_found:
            counters["not_found"] += 1
            response = json_error_response(400, "UserNotFoundException", "User does not exist.")
            return await self._respond(response, arrived, pool, username)
        key = (pool, username)
        self.attributes[key] = {**self.attributes.get(key, {}), **attributes}
        self.apply_counts[key] += 1
        counters["accepted"] += 1
        slot["accepted"] += 1
        response = web.Response(
            status=200,
            body=b"{}",
            headers={"x-amzn-RequestId": str(uuid.uuid4()), "Content-Type": AMZ_JSON_11},
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
            self.events.append(Event(arrived, self._now(), account_id, user_id, response.status))
        return response


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
