"""The aiohttp transport against aioresponses: what it sends, and how answers are read."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest
from aioresponses import CallbackResult

from async_updater.aws.credentials import Credentials
from async_updater.aws.sigv4 import SigV4Signer
from async_updater.testing.mock import MockChimeServer
from async_updater.testing.mock.config import MockConfig
from async_updater.transport.base import TransportError
from async_updater.transport.http import AiohttpTransport

from .conftest import CompatClientResponse, aioresponses

BASE = "https://chime.example.test"
PATH = "/accounts/a%2Fb/users/u%20v/settings"
URL = re.compile(r"^https://chime\.example\.test/.*$")


@pytest.fixture
async def transport() -> AiohttpTransport:
    t = AiohttpTransport(BASE, concurrency=4, timeout=5.0)
    yield t  # type: ignore[misc]
    await t.close()


async def test_success_returns_status_and_request_id(transport: AiohttpTransport) -> None:
    with aioresponses() as m:
        m.put(URL, status=204, headers={"x-amzn-RequestId": "req-1"})
        r = await transport.send("PUT", PATH, {"Content-Type": "application/json"}, b"{}")
    assert (r.status, r.request_id, r.error_code, r.message) == (204, "req-1", "", "")


async def test_path_is_sent_exactly_as_encoded(transport: AiohttpTransport) -> None:
    seen: list[str] = []

    def record(url: object, **kwargs: object) -> CallbackResult:
        seen.append(str(url))
        return CallbackResult(status=204, response_class=CompatClientResponse)

    with aioresponses() as m:
        m.put(URL, callback=record)
        await transport.send("PUT", PATH, {}, b"{}")
    assert seen == [BASE + PATH]


async def test_error_code_comes_from_the_error_type_header(transport: AiohttpTransport) -> None:
    with aioresponses() as m:
        m.put(
            URL,
            status=429,
            headers={
                "x-amzn-ErrorType": "ThrottledClientException:http://internal.amazon.com/",
                "x-amzn-RequestId": "req-2",
                "Retry-After": "2",
            },
            body=b'{"Message": "Rate exceeded"}',
        )
        r = await transport.send("PUT", PATH, {}, b"{}")
    assert (r.status, r.error_code, r.message, r.request_id) == (
        429,
        "ThrottledClientException",
        "Rate exceeded",
        "req-2",
    )
    assert r.retry_after == 2.0


async def test_error_code_comes_from_the_body_when_no_header(transport: AiohttpTransport) -> None:
    with aioresponses() as m:
        m.put(URL, status=404, body=b'{"Code":"NotFoundException","Message":"no such user"}')
        r = await transport.send("PUT", PATH, {}, b"{}")
    assert (r.error_code, r.message) == ("NotFoundException", "no such user")


async def test_namespaced_type_in_the_body_is_reduced_to_the_code(
    transport: AiohttpTransport,
) -> None:
    with aioresponses() as m:
        m.put(URL, status=400, body=b'{"__type":"com.amazon#BadRequestException","message":"x"}')
        r = await transport.send("PUT", PATH, {}, b"{}")
    assert (r.error_code, r.message) == ("BadRequestException", "x")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "HTTP 502 with no message"),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"\xff\xfe garbage", "\ufffd\ufffd garbage"),
        (b"[1, 2]", "[1, 2]"),
    ],
)
async def test_garbage_or_empty_error_bodies_still_give_a_code_and_message(
    transport: AiohttpTransport, body: bytes, message: str
) -> None:
    with aioresponses() as m:
        m.put(URL, status=502, body=body)
        r = await transport.send("PUT", PATH, {}, b"{}")
    assert r.error_code == "HTTP502"
    assert r.message == message


async def test_long_error_messages_are_shortened(transport: AiohttpTransport) -> None:
    with aioresponses() as m:
        m.put(URL, status=500, body=b"x" * 10_000)
        r = await transport.send("PUT", PATH, {}, b"{}")
    assert len(r.message) == 300 and r.message.endswith("...")


async def test_timeout_becomes_a_transport_error(transport: AiohttpTransport) -> None:
    with aioresponses() as m:
        m.put(URL, exception=asyncio.TimeoutError())
        with pytest.raises(TransportError) as info:
            await transport.send("PUT", PATH, {}, b"{}")
    assert info.value.code == "Timeout"


async def test_connection_reset_becomes_a_transport_error(transport: AiohttpTransport) -> None:
    with aioresponses() as m:
        m.put(URL, exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(TransportError) as info:
            await transport.send("PUT", PATH, {}, b"{}")
    assert info.value.code == "ConnectionError"
    assert "ServerDisconnectedError" in str(info.value)


async def test_connection_refused_names_host_and_port() -> None:
    # A port nobody listens on (bound then closed), on loopback only.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t = AiohttpTransport(f"http://127.0.0.1:{port}", concurrency=1, connect_timeout=2.0)
    try:
        with pytest.raises(TransportError) as info:
            await t.send("PUT", "/x", {}, b"{}")
    finally:
        await t.close()
    assert info.value.code == "ConnectionError"
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_endpoint_base_path_prefixes_every_request_path() -> None:
    seen: list[str] = []

    def record(url: object, **kwargs: object) -> CallbackResult:
        seen.append(str(url))
        return CallbackResult(status=204, response_class=CompatClientResponse)

    t = AiohttpTransport(BASE + "/prod/", concurrency=1, timeout=5.0)
    try:
        with aioresponses() as m:
            m.put(URL, callback=record)
            await t.send("PUT", PATH, {}, b"{}")
    finally:
        await t.close()
    assert seen == [BASE + "/prod" + PATH]


async def test_request_on_the_wire_is_exactly_the_signed_headers_and_ours() -> None:
    # A real socket, not aioresponses: aiohttp's automatic headers are added below the mock.
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 204 No Content\r\nx-amzn-RequestId: r-1\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t = AiohttpTransport(f"http://127.0.0.1:{port}", concurrency=1, timeout=5.0)
    signed = {
        "Host": f"127.0.0.1:{port}",
        "Content-Type": "application/json",
        "X-Amz-Date": "20250101T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/x, Signature=abc",
    }
    try:
        r = await t.send("PUT", PATH, signed, b"{}")
    finally:
        await t.close()
        server.close()
        await server.wait_closed()
    assert (r.status, r.request_id) == (204, "r-1")
    lines = heads[0].decode().split("\r\n")
    # Accept-Encoding lists the decoders installed (brotli, zstd): not this test's business.
    assert [h for h in lines if not h.startswith("Accept")] == [
        f"PUT {PATH} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "User-Agent: async-updater",
        "Content-Type: application/json",
        "X-Amz-Date: 20250101T000000Z",
        "Authorization: AWS4-HMAC-SHA256 Credential=AKID/x, Signature=abc",
        "Content-Length: 2",
        "",
        "",
    ]


async def test_an_error_answer_keeps_the_servers_date_header_and_a_success_does_not() -> None:
    wall = 1_800_000_000.0
    config = MockConfig(credentials={"AKIDT": "secret-t"}, clock_offset_s=900.0)
    async with MockChimeServer(config, wall_clock=lambda: wall) as server:
        transport = AiohttpTransport(server.url, concurrency=2)
        signer = SigV4Signer(host=server.url.split("//")[1], region="us-east-1", service="chime")
        path, body = "/accounts/a/users/u/settings", b'{"UserSettings": {}}'
        try:
            answers = []
            for when in (wall, wall + 900.0):  # the client's clock, then the corrected one
                headers = signer.sign(
                    "PUT", path, body, "application/json", Credentials("AKIDT", "secret-t"),
                    now=when,
                )  # fmt: skip
                answers.append(await transport.send("PUT", path, headers, body))
        finally:
            await transport.close()
    skewed, accepted = answers
    assert (skewed.status, skewed.error_code) == (403, "InvalidSignatureException")
    assert skewed.message.startswith("Signature expired: ")
    assert skewed.date == "Fri, 15 Jan 2027 08:15:00 GMT"
    assert accepted.status == 400  # past the signature check: this body is not the real shape
    assert accepted.date == "Fri, 15 Jan 2027 08:15:00 GMT"


async def test_a_read_refused_for_its_time_keeps_the_date_a_served_one_its_body() -> None:
    from async_updater.testing.mock import initial_settings

    wall = 1_800_000_000.0
    config = MockConfig(credentials={"AKIDT": "secret-t"}, clock_offset_s=900.0)
    async with MockChimeServer(config, wall_clock=lambda: wall) as server:
        transport = AiohttpTransport(server.url, concurrency=2)
        signer = SigV4Signer(host=server.url.split("//")[1], region="us-east-1", service="chime")
        path = "/accounts/a/users/u/settings"
        try:
            answers = []
            for when in (wall, wall + 900.0):
                headers = signer.sign(
                    "GET", path, b"", "application/json", Credentials("AKIDT", "secret-t"),
                    now=when,
                )  # fmt: skip
                answers.append(await transport.send("GET", path, headers, b""))
        finally:
            await transport.close()
    skewed, read = answers
    assert (skewed.status, skewed.error_code, skewed.body) == (
        403,
        "InvalidSignatureException",
        b"",
    )
    assert skewed.date == "Fri, 15 Jan 2027 08:15:00 GMT"
    assert (read.status, read.error_code, read.date) == (200, "", None)
    assert json.loads(read.body) == {"UserSettings": {"Telephony": initial_settings("a", "u")}}


async def test_a_success_does_not_keep_the_date_header(transport: AiohttpTransport) -> None:
    with aioresponses() as m:
        m.put(URL, status=204, headers={"Date": "Fri, 15 Jan 2027 08:15:00 GMT"})
        r = await transport.send("PUT", PATH, {}, b"{}")
    assert (r.status, r.date) == (204, None)


# -- bodies of reads ------------------------------------------------------------------------------


async def test_a_reads_2xx_answer_comes_back_with_its_body_over_a_real_socket() -> None:
    from async_updater.transport.base import MAX_READ_BODY

    from .fault_servers import FaultServer, Reply

    state = b'{"UserSettings": {"Telephony": {"InboundCalling": true}}}'
    big = b"x" * (3 * 65536 + 7)  # several socket reads

    def decide(request: object) -> Reply:
        path = getattr(request, "path", "")
        if path.endswith("/big"):
            return Reply(200, big)
        if path.endswith("/huge"):
            return Reply(200, b"y" * (MAX_READ_BODY + 1))
        return Reply(200, state, {"x-amzn-RequestId": "rid-get"})

    async with FaultServer(decide) as server:
        t = AiohttpTransport(server.url, concurrency=2, timeout=10.0)
        try:
            r = await t.send("GET", "/accounts/a/users/u/settings", {}, b"")
            assert (r.status, r.request_id, r.body, r.error_code) == (200, "rid-get", state, "")
            r = await t.send("GET", "/big", {}, b"")
            assert r.body == big
            r = await t.send("GET", "/huge", {}, b"")
            assert (r.status, r.body, r.error_code) == (200, b"", "ResponseTooLarge")
            assert r.message == f"the answer to the read is larger than {MAX_READ_BODY} bytes"
            # A write's success keeps no body, even when the server sends one.
            r = await t.send("PUT", "/accounts/a/users/u/settings", {}, b"{}")
            assert (r.status, r.body) == (200, b"")
            # The connection is still usable after each of them.
            r = await t.send("GET", "/accounts/a/users/u/settings", {}, b"")
            assert r.body == state
        finally:
            await t.close()


async def test_an_error_answer_to_a_read_is_read_like_a_writes_and_keeps_no_body(
    transport: AiohttpTransport,
) -> None:
    with aioresponses() as m:
        m.get(
            URL,
            status=404,
            headers={"x-amzn-ErrorType": "NotFoundException"},
            body=b'{"Message": "User u was not found."}',
        )
        r = await transport.send("GET", PATH, {}, b"")
    assert (r.status, r.error_code, r.message, r.body) == (
        404,
        "NotFoundException",
        "User u was not found.",
        b"",
    )
