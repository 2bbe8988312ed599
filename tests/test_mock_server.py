"""The mock Chime server: its SigV4 check agrees with botocore's signer, and it throttles,
faults, rejects and records exactly as configured."""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yarl
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from async_updater.aws.credentials import Credentials as SigningCredentials
from async_updater.aws.sigv4 import SigV4Signer
from async_updater.testing.mock import MockChimeServer
from async_updater.testing.mock.cli import main
from async_updater.testing.mock.config import MockConfig
from async_updater.testing.mock.verifier import (
    SIGNATURE_MISMATCH,
    SigV4Verifier,
    canonical_query,
    canonical_uri,
    verify_sigv4,
)

from .processes import mock_process

AKID = "AKIDMOCK"
SECRET = "mock-secret"
GOOD_BODY = (
    b'{"UserSettings":{"Telephony":{"InboundCalling":true,"OutboundCalling":false,"SMS":true}}}'
)
GOOD_SETTINGS = {"InboundCalling": True, "OutboundCalling": False, "SMS": True}
ROOT = Path(__file__).resolve().parents[1]


def settings_path(account_id: str, user_id: str) -> str:
    return (
        f"/accounts/{quote(account_id, safe='-_.~')}/users/{quote(user_id, safe='-_.~')}/settings"
    )


def sign(
    url: str,
    body: bytes = GOOD_BODY,
    *,
    method: str = "PUT",
    access_key: str = AKID,
    secret: str = SECRET,
    token: str | None = None,
    region: str = "us-east-1",
    service: str = "chime",
) -> dict[str, str]:
    """Headers botocore's reference SigV4 signer produces for this request."""
    request = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(access_key, secret, token), service, region).add_auth(request)
    return dict(request.headers.items())


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def code(self) -> str:
        return str(json.loads(self.body)["Code"]) if self.body else ""

    @property
    def message(self) -> str:
        return str(json.loads(self.body)["Message"]) if self.body else ""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def send(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes = GOOD_BODY,
    headers: dict[str, str] | None = None,
    method: str = "PUT",
) -> Reply:
    """Send as given: the percent-encoded path goes out byte for byte."""
    async with http.request(
        method, yarl.URL(url, encoded=True), data=body, headers=headers or {}
    ) as response:
        found = {k.lower(): v for k, v in response.headers.items()}
        return Reply(response.status, found, await response.read())


async def put_signed(
    http: aiohttp.ClientSession,
    server: MockChimeServer,
    account_id: str = "acc-1",
    user_id: str = "user-1",
    body: bytes = GOOD_BODY,
    **sign_args: Any,
) -> Reply:
    url = server.url + settings_path(account_id, user_id)
    return await send(http, url, body, sign(url, body, **sign_args))


class ManualClock:
    """The mock's rate and timeline clock, moved only by ``advance``: a bucket refills and a
    timeline second ends when the test says so, however slow the machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def server(clock: ManualClock) -> AsyncIterator[MockChimeServer]:
    async with MockChimeServer(MockConfig(record_events=True), clock=clock) as started:
        yield started


# --- the happy path and what is recorded ---------------------------------------------------------


async def test_signed_put_is_applied_once_and_answered_204(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    reply = await put_signed(http, server)
    assert reply.status == 204
    assert reply.body == b""
    assert len(reply.headers["x-amzn-requestid"]) == 36
    assert server.applied == {("acc-1", "user-1"): GOOD_SETTINGS}
    assert server.apply_counts[("acc-1", "user-1")] == 1
    assert server.counters["requests"] == 1
    assert server.counters["accepted"] == 1
    [event] = server.events
    assert (event.account_id, event.user_id, event.status) == ("acc-1", "user-1", 204)
    assert event.responded >= event.arrived


async def test_second_put_of_same_user_counts_as_reapplied(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    other = GOOD_BODY.replace(b"true", b"false")
    assert (await put_signed(http, server)).status == 204
    assert (await put_signed(http, server, body=other)).status == 204
    assert server.applied[("acc-1", "user-1")] == {
        "InboundCalling": False,
        "OutboundCalling": False,
        "SMS": False,
    }
    state = server.state()
    assert state["max_apply_count"] == 2
    assert state["reapplied_users"] == 1
    assert state["applied_users"] == 1


TRICKY_IDS = [
    "plain-id_1.2~3",
    "with/slash",
    "with space",
    "100%",
    "%2F-already-encoded-looking",
    "what?x=1",
    "hash#tag",
    "ünïcødé-用户-😀",
    "a+b=c&d",
    "semi;colon,comma",
    "..",
    ".",
]


async def test_ids_with_reserved_characters_land_on_the_exact_decoded_key(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    # "." and ".." are normalised away by SigV4 path handling but still reach the route intact.
    for n, user_id in enumerate(TRICKY_IDS):
        account_id = TRICKY_IDS[-1 - n]
        reply = await put_signed(http, server, account_id, user_id)
        assert reply.status == 204, (user_id, reply.body)
        assert server.applied[(account_id, user_id)] == GOOD_SETTINGS
    assert len(server.applied) == len(TRICKY_IDS)


# --- authentication ------------------------------------------------------------------------------


async def test_wrong_secret_is_403_signature_mismatch(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    reply = await put_signed(http, server, secret="not-the-secret")
    assert reply.status == 403
    assert reply.code == "InvalidSignatureException"
    assert reply.headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.message == SIGNATURE_MISMATCH
    assert server.applied == {}
    assert server.counters["auth_failed"] == 1


async def test_body_changed_after_signing_is_403(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    url = server.url + settings_path("acc-1", "user-1")
    headers = sign(url, GOOD_BODY)
    tampered = GOOD_BODY.replace(b'"SMS":true', b'"SMS":false')
    reply = await send(http, url, tampered, headers)
    assert reply.status == 403
    assert reply.code == "InvalidSignatureException"
    assert server.applied == {}


async def test_path_changed_after_signing_is_403(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    headers = sign(server.url + settings_path("acc-1", "user-1"))
    reply = await send(http, server.url + settings_path("acc-1", "user-2"), GOOD_BODY, headers)
    assert reply.status == 403
    assert reply.message == SIGNATURE_MISMATCH


async def test_encoded_slash_signed_as_a_separator_is_rejected(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    # A client that signs the decoded path ("a/b") but sends "a%2Fb" must be caught.
    sent = server.url + "/accounts/acc/users/a%2Fb/settings"
    headers = sign(server.url + "/accounts/acc/users/a/b/settings")
    reply = await send(http, sent, GOOD_BODY, headers)
    assert reply.status == 403


@pytest.mark.parametrize(
    ("offset", "wording"),
    [(600.0, "Signature expired: "), (-600.0, "Signature not yet current: ")],
    ids=["stale", "future"],
)
async def test_stale_or_future_date_is_403_worded_as_aws_words_it(
    http: aiohttp.ClientSession, offset: float, wording: str
) -> None:
    async with MockChimeServer(wall_clock=lambda: time.time() + offset) as server:
        reply = await put_signed(http, server)
        assert server.counters["clock_skew"] == 1
    assert reply.status == 403
    assert reply.code == "InvalidSignatureException"
    assert reply.message.startswith(wording)
    assert "is more than 300 s away from the server time" in reply.message


async def test_unknown_access_key_is_401(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    reply = await put_signed(http, server, access_key="AKIDUNKNOWN")
    assert reply.status == 401
    assert reply.code == "UnauthorizedClientException"


async def test_missing_authorization_is_401_even_on_unknown_routes(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    for path in (settings_path("acc-1", "user-1"), "/nowhere"):
        reply = await send(http, server.url + path, GOOD_BODY, {"X-Amz-Date": "20240101T000000Z"})
        assert reply.status == 401
        assert reply.code == "UnauthorizedClientException"
    assert server.counters["auth_failed"] == 2


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("Bearer abc", 401),
        ("AWS4-HMAC-SHA256 Credential=AKIDMOCK/20240101/us-east-1/chime/aws4_request", 401),
        ("AWS4-HMAC-SHA256 garbage", 401),
    ],
)
async def test_malformed_authorization_is_401(
    http: aiohttp.ClientSession, server: MockChimeServer, authorization: str, status: int
) -> None:
    url = server.url + settings_path("acc-1", "user-1")
    headers = sign(url) | {"Authorization": authorization}
    assert (await send(http, url, GOOD_BODY, headers)).status == status


@pytest.mark.parametrize(("region", "service"), [("eu-west-1", "chime"), ("us-east-1", "s3")])
async def test_wrong_scope_is_403(
    http: aiohttp.ClientSession, server: MockChimeServer, region: str, service: str
) -> None:
    reply = await put_signed(http, server, region=region, service=service)
    assert reply.status == 403
    assert reply.code == "InvalidSignatureException"


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_required_session_token_missing_or_wrong_is_403(
    http: aiohttp.ClientSession, token: str | None
) -> None:
    config = MockConfig(session_tokens={AKID: "the-token"})
    async with MockChimeServer(config) as server:
        reply = await put_signed(http, server, token=token)
        assert reply.status == 403
        assert reply.code == "ForbiddenException"
        assert (await put_signed(http, server, token="the-token")).status == 204


async def test_session_token_added_after_signing_is_403(http: aiohttp.ClientSession) -> None:
    async with MockChimeServer(MockConfig(session_tokens={AKID: "the-token"})) as server:
        url = server.url + settings_path("acc-1", "user-1")
        headers = sign(url) | {"X-Amz-Security-Token": "the-token"}
        reply = await send(http, url, GOOD_BODY, headers)
    assert reply.status == 403
    assert reply.code == "InvalidSignatureException"


async def test_expired_token_is_403_expired_token_exception(
    http: aiohttp.ClientSession,
) -> None:
    async with MockChimeServer(MockConfig(expired_tokens=frozenset({"old-token"}))) as server:
        reply = await put_signed(http, server, token="old-token")
        assert server.counters["expired_token"] == 1
    assert reply.status == 403
    assert reply.code == "ExpiredTokenException"
    assert reply.headers["x-amzn-errortype"] == "ExpiredTokenException"
    assert reply.message == "The security token included in the request is expired"


async def test_verify_fraction_zero_skips_only_the_signature_itself(
    http: aiohttp.ClientSession,
) -> None:
    async with MockChimeServer(MockConfig(verify_fraction=0.0)) as server:
        assert (await put_signed(http, server, secret="wrong")).status == 204
        assert (await put_signed(http, server, access_key="AKIDOTHER")).status == 401


# --- routes --------------------------------------------------------------------------------------


async def test_other_paths_are_404_and_other_methods_405_after_auth(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    url = server.url + "/accounts/acc-1/users/user-1"
    reply = await send(http, url, GOOD_BODY, sign(url))
    assert (reply.status, reply.code, reply.message) == (404, "NotFoundException", "no such route")
    url = server.url + settings_path("acc-1", "user-1")
    reply = await send(http, url, b"", sign(url, b"", method="DELETE"), method="DELETE")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, PUT"
    assert server.applied == {}


async def test_id_that_is_not_percent_encoded_utf8_is_400(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    url = server.url + "/accounts/acc/users/%FF%FE/settings"
    reply = await send(http, url, GOOD_BODY, sign(url))
    assert (reply.status, reply.code) == (400, "BadRequestException")
    assert server.applied == {}


# --- throttling ----------------------------------------------------------------------------------


async def test_bucket_admits_its_burst_then_429s_with_retry_after(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    config = MockConfig(rate_limit=5, burst=2, retry_after=1.5, retry_after_ms_header=True)
    async with MockChimeServer(config, clock=clock) as server:
        replies = await asyncio.gather(
            *(put_signed(http, server, "acc", f"user-{i}") for i in range(10))
        )
        statuses = sorted(r.status for r in replies)
        assert statuses == [204] * 2 + [429] * 8
        for reply in replies:
            if reply.status == 429:
                assert reply.code == "ThrottledClientException"
                assert reply.headers["x-amzn-errortype"] == "ThrottledClientException"
                assert reply.message == "Rate exceeded"
                assert reply.headers["retry-after"] == "2"
                assert reply.headers["x-amz-retry-after"] == "1500"
        assert server.counters["throttled"] == 8
        assert len(server.applied) == 2
        [slot] = server.timeline.values()
        assert slot["throttled"] == 8
        assert slot["accepted"] == 2
        assert slot["allowed_rate"] == 5


async def test_429_has_no_retry_after_unless_configured(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with MockChimeServer(MockConfig(rate_limit=1), clock=clock) as server:
        replies = await asyncio.gather(*(put_signed(http, server) for _ in range(3)))
    throttled = [r for r in replies if r.status == 429]
    assert len(throttled) == 2
    assert all("retry-after" not in r.headers for r in throttled)
    assert all("x-amz-retry-after" not in r.headers for r in throttled)


async def test_account_scope_gives_each_account_its_own_bucket(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    config = MockConfig(rate_limit=1, limit_scope="account")
    async with MockChimeServer(config, clock=clock) as server:
        replies = await asyncio.gather(
            *(put_signed(http, server, account, f"u{i}") for account in "AB" for i in range(3))
        )
        assert sorted(r.status for r in replies) == [204] * 2 + [429] * 4
        assert {account for account, _ in server.applied} == {"A", "B"}


async def test_set_limits_changes_the_rate_mid_run(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with MockChimeServer(MockConfig(rate_limit=1, burst=1), clock=clock) as server:
        first = await asyncio.gather(*(put_signed(http, server) for _ in range(2)))
        assert sorted(r.status for r in first) == [204, 429]

        server.set_limits(rate_limit=None)
        unlimited = await asyncio.gather(*(put_signed(http, server) for _ in range(5)))
        assert [r.status for r in unlimited] == [204] * 5
        assert server.state()["limits"]["rate_limit"] is None

        server.set_limits(rate_limit=2, burst=3)
        again = await asyncio.gather(*(put_signed(http, server) for _ in range(5)))
        assert sorted(r.status for r in again) == [204] * 3 + [429] * 2
        assert server.state()["limits"] | {"fault_rate": 0.0} == {
            "rate_limit": 2,
            "burst": 3,
            "limit_scope": "global",
            "fault_rate": 0.0,
            "retry_after": None,
            "clock_offset_s": 0.0,
            "send_date": True,
            "latency_ms": 0.0,
            "latency_jitter_ms": 0.0,
        }
        assert max(slot["allowed_rate"] for slot in server.timeline.values()) == 2

        server.set_limits(rate_limit=1000, burst=3)
        clock.advance(0.01)  # at 1000/s the bucket is full again within 10 ms
        refilled = await asyncio.gather(*(put_signed(http, server) for _ in range(3)))
        assert [r.status for r in refilled] == [204] * 3


async def test_set_limits_rejects_bad_values_and_keeps_the_old_ones() -> None:
    server = MockChimeServer(MockConfig(rate_limit=10))
    with pytest.raises(ValueError, match="rate_limit"):
        server.set_limits(rate_limit=0)
    with pytest.raises(ValueError, match="fault_rate"):
        server.set_limits(fault_rate=1.5)
    assert server.config.rate_limit == 10
    assert server.config.fault_rate == 0.0


# --- faults, unknown users, bad bodies -----------------------------------------------------------


async def test_fault_rate_one_answers_500_or_503_and_applies_nothing(
    http: aiohttp.ClientSession,
) -> None:
    async with MockChimeServer(MockConfig(fault_rate=1.0, seed=7)) as server:
        replies = [await put_signed(http, server, "acc", f"u{i}") for i in range(20)]
        assert server.applied == {}
        assert server.counters["faults"] == 20
    codes = {r.status: r.code for r in replies}
    assert codes == {500: "ServiceFailureException", 503: "ServiceUnavailableException"}
    assert all(r.headers["x-amzn-errortype"] == r.code for r in replies)


async def test_faults_are_reproducible_with_the_same_seed(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        async with MockChimeServer(MockConfig(fault_rate=0.5, seed=3)) as server:
            runs.append([(await put_signed(http, server)).status for _ in range(12)])
    assert runs[0] == runs[1]
    assert set(runs[0]) > {204}


async def test_not_found_user_is_404(http: aiohttp.ClientSession) -> None:
    async with MockChimeServer(MockConfig(not_found=frozenset({"ghost"}))) as server:
        reply = await put_signed(http, server, "acc", "ghost")
        assert (reply.status, reply.code) == (404, "NotFoundException")
        assert (await put_signed(http, server, "acc", "alive")).status == 204
        assert set(server.applied) == {("acc", "alive")}
        assert server.counters["not_found"] == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"UserSettings":{"Telephony":{"InboundCalling":true,"OutboundCalling":true}}}',
        b'{"UserSettings":{"Telephony":{"InboundCalling":"true","OutboundCalling":true,"SMS":true}}}',
        b'{"UserSettings":{"Telephony":{"InboundCalling":1,"OutboundCalling":true,"SMS":true}}}',
        b'{"UserSettings":{"Telephony":{"InboundCalling":true,"OutboundCalling":true,"SMS":null}}}',
        b'{"UserSettings":{"Telephony":{"InboundCalling":true,"OutboundCalling":true,"SMS":true,'
        b'"Extra":true}}}',
        b'{"UserSettings":{"Telephony":[]}}',
        b'{"Telephony":{"InboundCalling":true,"OutboundCalling":true,"SMS":true}}',
    ],
)
async def test_bad_body_is_400_and_not_applied(
    http: aiohttp.ClientSession, server: MockChimeServer, body: bytes
) -> None:
    reply = await put_signed(http, server, body=body)
    assert (reply.status, reply.code) == (400, "BadRequestException")
    assert server.applied == {}
    assert server.counters["bad_request"] == 1


async def test_latency_is_spent_before_every_response(http: aiohttp.ClientSession) -> None:
    config = MockConfig(latency_ms=30, latency_jitter_ms=5, record_events=True)
    async with MockChimeServer(config) as server:
        await put_signed(http, server)
        await put_signed(http, server, secret="wrong")
    assert [e.status for e in server.events] == [204, 403]
    # A lower bound only: the sleep is at least 25 ms, however slow the machine.
    assert all(e.responded - e.arrived >= 0.024 for e in server.events)


# --- the server's clock ------------------------------------------------------------------------

WALL = 1_800_000_000.0  # the wall clock, frozen on a whole second
AHEAD = 900.0  # the server's clock runs 15 minutes ahead of it


@dataclass(frozen=True)
class Answer:
    status: int
    dates: list[str]  # every Date header, in order
    body: bytes


async def answer(response: aiohttp.ClientResponse) -> Answer:
    return Answer(response.status, response.headers.getall("Date", []), await response.read())


async def put_signed_at(
    http: aiohttp.ClientSession, server: MockChimeServer, when: float
) -> Answer:
    """A PUT signed by the client's signer at wall time ``when``."""
    signer = SigV4Signer(host=server.url.split("//")[1], region="us-east-1", service="chime")
    path = settings_path("acc-1", "user-1")
    headers = signer.sign(
        "PUT", path, GOOD_BODY, "application/json", SigningCredentials(AKID, SECRET), now=when
    )
    url = yarl.URL(server.url + path, encoded=True)
    async with http.put(url, data=GOOD_BODY, headers=headers) as response:
        return await answer(response)


@pytest.fixture
async def ahead() -> AsyncIterator[MockChimeServer]:
    config = MockConfig(clock_offset_s=AHEAD)
    async with MockChimeServer(config, wall_clock=lambda: WALL) as started:
        yield started


async def test_x_amz_date_is_judged_by_the_servers_skewed_clock(
    http: aiohttp.ClientSession, ahead: MockChimeServer
) -> None:
    assert ahead.server_time() == WALL + AHEAD
    behind = await put_signed_at(http, ahead, WALL)  # the client's clock: 15 minutes behind
    assert behind.status == 403
    body = json.loads(behind.body)
    assert body["Message"] == (
        "Signature expired: 20270115T080000Z is more than 300 s away from the server time "
        "20270115T081500Z."
    )
    assert ahead.counters["clock_skew"] == 1
    corrected = await put_signed_at(http, ahead, WALL + AHEAD)
    assert corrected.status == 204
    assert ahead.applied == {("acc-1", "user-1"): GOOD_SETTINGS}


async def test_every_response_carries_one_date_header_from_the_servers_clock(
    http: aiohttp.ClientSession, ahead: MockChimeServer
) -> None:
    want = "Fri, 15 Jan 2027 08:15:00 GMT"
    assert email.utils.parsedate_to_datetime(want).timestamp() == WALL + AHEAD
    responses = [
        await put_signed_at(http, ahead, WALL + AHEAD),  # 204
        await put_signed_at(http, ahead, WALL),  # 403 skew
    ]
    for path in ("/_mock/state", "/nowhere", "/_mock/nope"):
        async with http.get(ahead.url + path) as response:
            responses.append(await answer(response))
    assert [r.status for r in responses] == [204, 403, 200, 401, 404]
    assert [r.dates for r in responses] == [[want]] * 5


async def test_send_date_false_sends_no_date_header_on_any_response(
    http: aiohttp.ClientSession,
) -> None:
    config = MockConfig(clock_offset_s=AHEAD, send_date=False)
    async with MockChimeServer(config, wall_clock=lambda: WALL) as server:
        ok = await put_signed_at(http, server, WALL + AHEAD)
        skewed = await put_signed_at(http, server, WALL)
        async with http.get(server.url + "/_mock/state") as response:
            admin = await answer(response)
    assert (ok.status, skewed.status, admin.status) == (204, 403, 200)
    assert [r.dates for r in (ok, skewed, admin)] == [[], [], []]


async def test_the_clock_offset_and_the_date_header_change_at_run_time(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    server.set_limits(clock_offset_s=-60.0)
    assert server.config.clock_offset_s == -60.0
    change = {"clock_offset_s": 3600, "send_date": False}
    async with http.post(server.url + "/_mock/limits", json=change) as response:
        limits = await response.json()
        assert "Date" not in response.headers
    assert (limits["clock_offset_s"], limits["send_date"]) == (3600, False)
    assert server.server_time() == pytest.approx(time.time() + 3600, abs=5)
    for bad in ({"clock_offset_s": "soon"}, {"send_date": "yes"}):
        async with http.post(server.url + "/_mock/limits", json=bad) as response:
            assert response.status == 400
            assert next(iter(bad)) in (await response.json())["Message"]


async def test_the_latency_changes_at_run_time_from_the_next_answer(
    http: aiohttp.ClientSession,
) -> None:
    """A mock started with a 60 s latency answers at once after ``/_mock/limits`` sets it to 0
    (a test's second phase need not wait out its first phase's slow server); then a latency
    set mid-run holds the next answer at least that long. Bad values are refused."""
    async with MockChimeServer(MockConfig(latency_ms=60_000.0, record_events=True)) as server:
        change = {"latency_ms": 0, "latency_jitter_ms": 0}
        async with http.post(server.url + "/_mock/limits", json=change) as response:
            limits = await response.json()
        assert (limits["latency_ms"], limits["latency_jitter_ms"]) == (0, 0)
        async with asyncio.timeout(20):  # (60 s, had the change not applied)
            first = await put_signed(http, server)
        server.set_limits(latency_ms=200.0)
        second = await put_signed(http, server, user_id="user-2")
        for bad in ({"latency_ms": -1}, {"latency_jitter_ms": "a lot"}):
            async with http.post(server.url + "/_mock/limits", json=bad) as response:
                assert response.status == 400
        assert server.config.latency_ms == 200.0
    assert (first.status, second.status) == (204, 204)
    held = server.events[-1].responded - server.events[-1].arrived
    assert held >= 0.19  # slept at least the latency set (the loop may wake a hair early)


async def test_a_read_is_judged_by_the_servers_clock_and_answered_with_its_date(
    http: aiohttp.ClientSession, ahead: MockChimeServer
) -> None:
    from async_updater.testing.mock import initial_settings

    signer = SigV4Signer(host=ahead.url.split("//")[1], region="us-east-1", service="chime")
    path = settings_path("acc-1", "user-1")
    answers = []
    for when in (WALL, WALL + AHEAD):  # the client's clock, then the corrected one
        headers = signer.sign(
            "GET", path, b"", "application/json", SigningCredentials(AKID, SECRET), now=when
        )
        async with http.get(yarl.URL(ahead.url + path, encoded=True), headers=headers) as response:
            answers.append(await answer(response))
    skewed, read = answers
    assert skewed.status == 403
    assert json.loads(skewed.body)["Message"].startswith("Signature expired: ")
    assert ahead.counters["clock_skew"] == 1
    assert read.status == 200
    assert json.loads(read.body) == {
        "UserSettings": {"Telephony": initial_settings("acc-1", "user-1")}
    }
    assert [skewed.dates, read.dates] == [["Fri, 15 Jan 2027 08:15:00 GMT"]] * 2
    assert dict(ahead.read_counts) == {("acc-1", "user-1"): 1}


def test_mock_config_refuses_a_clock_offset_that_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="clock_offset_s must be a number of seconds"):
        MockConfig(clock_offset_s=math.nan)
    with pytest.raises(ValueError, match="send_date must be true or false"):
        MockConfig(send_date=1)  # type: ignore[arg-type]


def test_standalone_server_takes_clock_offset_and_no_date_options() -> None:
    with mock_process("--clock-offset", "900", "--no-date") as mock:
        limits = mock.state()["limits"]
        with urllib.request.urlopen(mock.url + "/_mock/state", timeout=10) as response:
            date = response.headers.get("Date")
    assert (limits["clock_offset_s"], limits["send_date"], date) == (900.0, False, None)
    with (
        mock_process("--clock-offset", "-120") as mock,
        urllib.request.urlopen(mock.url + "/_mock/state", timeout=10) as response,
    ):
        served = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
    assert served == pytest.approx(time.time() - 120, abs=5)


# --- admin endpoints -----------------------------------------------------------------------------


async def test_admin_endpoints_report_change_limits_and_reset(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    assert (await put_signed(http, server, "acc", "a/b")).status == 204
    async with http.get(server.url + "/_mock/state") as response:
        state = await response.json()
    assert state["counters"]["accepted"] == 1
    assert state["applied_users"] == 1
    assert list(state["timeline"]) == ["0"]
    async with http.get(server.url + "/_mock/applied") as response:
        assert await response.json() == [["acc", "a/b", GOOD_SETTINGS, 1]]

    limits = {"rate_limit": 50, "burst": 4, "fault_rate": 0.25, "retry_after": 2}
    async with http.post(server.url + "/_mock/limits", json=limits) as response:
        assert response.status == 200
        assert (await response.json())["burst"] == 4
    assert server.config.rate_limit == 50
    assert server.config.fault_rate == 0.25
    async with http.post(server.url + "/_mock/limits", json={"rate_limit": None}) as response:
        assert response.status == 200
    assert server.config.rate_limit is None
    assert server.config.retry_after == 2
    async with http.post(server.url + "/_mock/limits", json={"rate_limit": -1}) as response:
        assert response.status == 400
        assert "rate_limit" in (await response.json())["Message"]
    async with http.post(server.url + "/_mock/limits", json={"bogus": 1}) as response:
        assert response.status == 400

    async with http.post(server.url + "/_mock/reset") as response:
        assert response.status == 200
    assert server.applied == {}
    assert server.events == []
    assert server.state()["counters"] == {}  # admin calls are never counted


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate_limit", 0),
        ("rate_limit", -1.0),
        ("rate_limit", float("nan")),
        ("burst", 0.5),
        ("limit_scope", "user"),
        ("retry_after", -1),
        ("latency_ms", -1),
        ("latency_jitter_ms", -0.5),
        ("fault_rate", 1.01),
        ("fault_rate", -0.1),
        ("max_clock_skew_s", 0),
        ("verify_fraction", 2),
        ("region", ""),
        ("session_tokens", {"AKIDNOTKNOWN": "t"}),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        MockConfig(**{field: value})


def test_config_defaults_and_read_only_mappings() -> None:
    credentials = {"AK": "sk"}
    config = MockConfig(credentials=credentials, rate_limit=250)
    credentials["AK2"] = "sk2"
    assert dict(config.credentials) == {"AK": "sk"}
    assert config.effective_burst == 25
    assert MockConfig(rate_limit=5).effective_burst == 1
    assert MockConfig().effective_burst is None
    with pytest.raises(TypeError):
        config.credentials["x"] = "y"  # type: ignore[index]


async def test_start_refuses_a_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        await MockChimeServer().start("0.0.0.0")


# --- the verifier as a pure function, against botocore -------------------------------------------

HOST = "127.0.0.1:8080"
BASE = "http://" + HOST
# Hypothesis needs no server for these: the verifier is a plain function of the request.
ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=24)
tokens = st.none() | st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)
queries = st.none() | st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z0-9_.~-]{1,6}", fullmatch=True),
        st.from_regex(r"[a-z0-9%]{0,6}", fullmatch=True),
    ),
    min_size=1,
    max_size=4,
)


def signed_parts(
    path: str, body: bytes, token: str | None, secret: str = SECRET
) -> tuple[str, CIMultiDict[str]]:
    headers = CIMultiDict(sign(BASE + path, body, token=token, secret=secret))
    headers["Host"] = HOST  # what an HTTP client adds; botocore signs it without setting it
    return path, headers


def check(path: str, headers: CIMultiDict[str], body: bytes, token: str | None) -> Any:
    return verify_sigv4(
        "PUT",
        path,
        headers,
        body,
        credentials={AKID: SECRET},
        session_tokens={AKID: token} if token else None,
        now=time.time(),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    account_id=ids,
    user_id=ids,
    body=st.binary(max_size=200),
    token=tokens,
    query=queries,
)
def test_verifier_accepts_every_botocore_signed_request(
    account_id: str,
    user_id: str,
    body: bytes,
    token: str | None,
    query: list[tuple[str, str]] | None,
) -> None:
    path = settings_path(account_id, user_id)
    if query:
        path += "?" + "&".join(f"{k}={v}" for k, v in query)
    raw_path, headers = signed_parts(path, body, token)
    assert check(raw_path, headers, body, token) is None


@settings(max_examples=60, deadline=None)
@given(user_id=ids, body=st.binary(max_size=50), position=st.integers(0, 63))
def test_verifier_rejects_a_signature_with_one_character_changed(
    user_id: str, body: bytes, position: int
) -> None:
    raw_path, headers = signed_parts(settings_path("acc", user_id), body, None)
    prefix, signature = headers["Authorization"].rsplit("Signature=", 1)
    chars = list(signature)
    chars[position] = "0" if chars[position] != "0" else "1"
    headers["Authorization"] = prefix + "Signature=" + "".join(chars)
    failure = check(raw_path, headers, body, None)
    assert failure is not None
    assert (failure.status, failure.code) == (403, "InvalidSignatureException")


def test_verifier_collapses_header_whitespace_like_the_spec() -> None:
    path = settings_path("acc", "u")
    request = AWSRequest(
        method="PUT",
        url=BASE + path,
        data=GOOD_BODY,
        headers={"Content-Type": "application/json", "X-Custom": "  a   b \t c  "},
    )
    SigV4Auth(Credentials(AKID, SECRET), "chime", "us-east-1").add_auth(request)
    headers = CIMultiDict(request.headers.items())
    headers["Host"] = HOST
    assert check(path, headers, GOOD_BODY, None) is None


def test_verifier_skips_only_the_hmac_when_not_full() -> None:
    raw_path, headers = signed_parts(settings_path("acc", "u"), GOOD_BODY, None, secret="wrong")
    verifier = SigV4Verifier({AKID: SECRET})
    assert verifier.verify("PUT", raw_path, headers, GOOD_BODY, now=time.time(), full=False) is None
    failure = verifier.verify("PUT", raw_path, headers, GOOD_BODY, now=time.time())
    assert failure is not None and failure.message == SIGNATURE_MISMATCH


def test_verifier_requires_host_and_date_to_be_signed() -> None:
    raw_path, headers = signed_parts(settings_path("acc", "u"), GOOD_BODY, None)
    headers["Authorization"] = headers["Authorization"].replace("host;", "")
    failure = check(raw_path, headers, GOOD_BODY, None)
    assert failure is not None and failure.status == 403
    assert "host" in failure.message


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/accounts/a%2Fb/users/u%20v/settings", "/accounts/a%252Fb/users/u%2520v/settings"),
        ("/a/./b/../c", "/a/c"),
        ("//a//b/", "/a/b/"),
        ("/", "/"),
        ("", "/"),
        ("/A-Za-z0-9_.~", "/A-Za-z0-9_.~"),
    ],
)
def test_canonical_uri_double_encodes_segments(raw: str, canonical: str) -> None:
    assert canonical_uri(raw) == canonical


def test_canonical_query_sorts_by_key_then_value() -> None:
    assert canonical_query("b=2&a=2&a=1&c") == "a=1&a=2&b=2&c="
    assert canonical_query("") == ""


# --- standalone ----------------------------------------------------------------------------------


async def test_standalone_prints_its_url_answers_and_exits_by_itself(
    http: aiohttp.ClientSession,
) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "async_updater.testing.mock",
        "--port",
        "0",
        "--duration",
        "5",  # (the clock starts before it listens: time for the two requests below)
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode()
        assert line.startswith("mock chime server listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        server = MockChimeServer()
        server.url = url
        assert (await put_signed(http, server)).status == 204
        async with http.get(url + "/_mock/applied") as response:
            assert await response.json() == [["acc-1", "user-1", GOOD_SETTINGS, 1]]
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
        rest = await process.stdout.read()
        assert SECRET.encode() not in rest and SECRET not in line
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_main_refuses_a_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--host", "10.0.0.1", "--port", "0", "--duration", "1"])
    assert exit_info.value.code == 2
    assert "loopback" in capsys.readouterr().err


def test_main_reports_bad_options_as_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "0", "--fault-rate", "2"])
    assert exit_info.value.code == 2
    assert "fault_rate" in capsys.readouterr().err


# --- the events endpoint (benchmarks read it to check cool-downs) -------------------------------


async def test_events_endpoint_lists_each_request_in_seconds_since_reset(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    config = MockConfig(rate_limit=1, burst=1, retry_after=1, record_events=True)
    async with MockChimeServer(config, clock=clock) as server:
        clock.advance(0.5)
        assert (await put_signed(http, server)).status == 204
        clock.advance(0.25)  # within the second the bucket needs for its next token
        assert (await put_signed(http, server, user_id="user-2")).status == 429
        async with http.get(server.url + "/_mock/events") as response:
            assert response.status == 200
            data = await response.json()
        assert data["recording"] is True
        [first, second] = data["events"]
        assert first[2:] == ["acc-1", "user-1", 204]
        assert second[2:] == ["acc-1", "user-2", 429]
        assert (first[:2], second[:2]) == ([0.5, 0.5], [0.75, 0.75])
        async with http.post(server.url + "/_mock/reset") as response:
            assert response.status == 200
        async with http.get(server.url + "/_mock/events") as response:
            assert (await response.json())["events"] == []
        async with http.post(server.url + "/_mock/events") as response:
            assert response.status == 405


async def test_events_endpoint_is_empty_when_not_recording(
    http: aiohttp.ClientSession,
) -> None:
    async with MockChimeServer() as server:
        assert (await put_signed(http, server)).status == 204
        async with http.get(server.url + "/_mock/events") as response:
            assert await response.json() == {"recording": False, "events": []}


async def test_record_events_flag_turns_recording_on_in_standalone_mode(
    http: aiohttp.ClientSession,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "async_updater.testing.mock",
        "--port",
        "0",
        "--duration",
        "5",
        "--record-events",
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode()
        url = line.rsplit(" ", 1)[1].strip()
        server = MockChimeServer()
        server.url = url
        assert (await put_signed(http, server)).status == 204
        async with http.get(url + "/_mock/events") as response:
            data = await response.json()
        assert data["recording"] is True
        assert [event[2:] for event in data["events"]] == [["acc-1", "user-1", 204]]
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


# --- GetUserSettings -----------------------------------------------------------------------------


async def get_signed(
    http: aiohttp.ClientSession,
    server: MockChimeServer,
    account_id: str = "acc-1",
    user_id: str = "user-1",
    **sign_args: Any,
) -> Reply:
    url = server.url + settings_path(account_id, user_id)
    return await send(http, url, b"", sign(url, b"", method="GET", **sign_args), method="GET")


def telephony(reply: Reply) -> dict[str, bool]:
    document = json.loads(reply.body)
    assert list(document) == ["UserSettings"] and list(document["UserSettings"]) == ["Telephony"]
    found: dict[str, bool] = document["UserSettings"]["Telephony"]
    return found


async def test_a_user_never_written_reads_as_a_state_derived_from_its_ids(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    from async_updater.testing.mock import initial_settings

    ids = [("acc-1", f"user-{i}") for i in range(64)] + [("a/b", "ü s%")]
    states = set()
    for account_id, user_id in ids:
        reply = await get_signed(http, server, account_id, user_id)
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("application/json")
        assert len(reply.headers["x-amzn-requestid"]) == 36
        state = telephony(reply)
        assert (
            state == initial_settings(account_id, user_id) == server.settings(account_id, user_id)
        )
        states.add(tuple(state.values()))
    assert len(states) == 8  # the three bits take every value over 64 users
    # The same ids give the same state in another server: it depends on nothing else.
    async with MockChimeServer(MockConfig(seed=99)) as other:
        assert telephony(await get_signed(http, other, *ids[3])) == initial_settings(*ids[3])
    assert server.applied == {}  # reading writes nothing


async def test_a_put_changes_what_the_get_answers_and_both_are_counted_per_user(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    assert (await get_signed(http, server)).status == 200
    assert (await put_signed(http, server)).status == 204
    reply = await get_signed(http, server)
    assert telephony(reply) == GOOD_SETTINGS
    assert server.read_counts[("acc-1", "user-1")] == 2
    assert server.apply_counts[("acc-1", "user-1")] == 1
    counters = server.counters
    assert (counters["requests"], counters["reads"], counters["reads_served"]) == (3, 2, 2)
    assert counters["accepted"] == 1  # writes applied; reads are not "accepted" writes
    [slot] = server.timeline.values()
    assert (slot["reads"], slot["accepted"], slot["admitted"]) == (2, 1, 3)
    state = server.state()
    assert (state["read_users"], state["max_read_count"]) == (1, 2)
    server.reset()
    assert server.read_counts == {} and server.settings("acc-1", "user-1") != {}
    assert server.settings("acc-1", "user-1") == telephony(await get_signed(http, server))


async def test_reads_are_signed_checked_throttled_and_faulted_like_writes(
    http: aiohttp.ClientSession,
) -> None:
    config = MockConfig(rate_limit=1.0, burst=1.0, not_found=frozenset({"gone"}))
    async with MockChimeServer(config) as server:
        assert (await get_signed(http, server, secret="wrong")).status == 403
        assert (await get_signed(http, server)).status == 200
        # One token per second, shared by reads and writes.
        assert (await put_signed(http, server, user_id="user-2")).status == 429
        reply = await get_signed(http, server, user_id="user-3")
        assert (reply.status, reply.code) == (429, "ThrottledClientException")
        assert server.counters["reads_throttled"] == 1 and server.counters["throttled"] == 2
        server.set_limits(rate_limit=None, fault_rate=1.0)
        reply = await get_signed(http, server)
        assert reply.status in (500, 503)
        assert server.counters["reads_faulted"] == 1
        server.set_limits(fault_rate=0.0)
        reply = await get_signed(http, server, user_id="gone")
        assert (reply.status, reply.code) == (404, "NotFoundException")
        # Counted once authenticated and routed: the refused signature is not a read.
        assert server.counters["reads"] == 4 and server.counters["reads_served"] == 1
        assert dict(server.read_counts) == {("acc-1", "user-1"): 1}


async def test_admin_user_endpoint_shows_a_users_state_and_counts(
    http: aiohttp.ClientSession, server: MockChimeServer
) -> None:
    from async_updater.testing.mock import initial_settings

    await put_signed(http, server, "a/b", "u 1")
    await get_signed(http, server, "a/b", "u 1")
    query = {"account_id": "a/b", "user_id": "u 1"}
    async with http.get(server.url + "/_mock/user", params=query) as response:
        assert response.status == 200
        data = await response.json()
    assert data == {
        "account_id": "a/b",
        "user_id": "u 1",
        "settings": GOOD_SETTINGS,
        "initial": initial_settings("a/b", "u 1"),
        "writes": 1,
        "reads": 1,
    }
    async with http.get(server.url + "/_mock/user", params={"account_id": "a"}) as response:
        assert response.status == 400
    assert server.counters["requests"] == 2  # admin calls are not counted


async def test_state_counts_the_requests_in_flight_and_the_open_connections(
    http: aiohttp.ClientSession,
) -> None:
    async with MockChimeServer(MockConfig(latency_ms=300)) as server:
        pending = asyncio.ensure_future(put_signed(http, server))
        deadline = time.monotonic() + 10
        while server.state()["in_flight"] < 1:
            assert time.monotonic() < deadline, "the request never arrived"
            await asyncio.sleep(0.005)
        assert server.state()["connections"] == 1
        assert (await pending).status == 204
        async with http.get(server.url + "/_mock/state") as response:
            state = await response.json()
        # The admin request is not counted in flight; its connection is open while it asks.
        assert (state["in_flight"], state["counters"]["accepted"]) == (0, 1)
        assert state["connections"] >= 1
        await http.close()  # the client goes: its connections close
        while server.state()["connections"] > 0:
            assert time.monotonic() < deadline, "connections stayed open"
            await asyncio.sleep(0.005)
