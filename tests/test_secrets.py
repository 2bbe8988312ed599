"""Secrets never leave the process: not on stdout or stderr, not in the report, its meta file, the
timeline or the summary JSON, not in log records (DEBUG included), not in exception messages or
reprs, whether the run succeeds or fails (wrong secret, expired token, bad endpoint)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from async_updater.aws.credentials import Credentials, StaticCredentials
from async_updater.cli import build_parser, main, run_command
from async_updater.errors import SafetyStop, UpdaterError
from async_updater.testing.mock import MockChimeServer
from async_updater.testing.mock.config import MockConfig
from async_updater.testing.sample import generate_users

from .test_cli import ThreadedMock

AK = "AKIDSECRETSTEST"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzSecretMarker9q"
TOKEN = "FwoGZXIvYXdzEXAMPLE+TokenMarker/7b1e93c4d2aa0f=="
WRONG_SECRET = "WrongSecretMarker/Zq9+k3v7x1m5n8p2r4t6"
NEVER = (SECRET, TOKEN, WRONG_SECRET, "Authorization", "Signature=")


def leaks(text: str) -> list[str]:
    """What ``text`` gives away: a marker, or any 12 characters in a row of a secret (a message
    cut short must not carry half a token either)."""
    found = [s for s in NEVER if s in text]
    for secret in (SECRET, TOKEN, WRONG_SECRET):
        if secret not in found and any(secret[i : i + 12] in text for i in range(len(secret) - 11)):
            found.append(f"part of {secret}")
    return found


def files_text(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_bytes().decode("utf-8", "replace")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            parts.extend(traceback.format_exception(record.exc_info[1]))
    return "\n".join(parts)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS settings but ours; runs in ``tmp_path / 'run'``, which holds every file written."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "config").write_text("")
    (aws / "credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    folder = tmp_path / "run"
    folder.mkdir()
    monkeypatch.chdir(folder)
    generate_users(folder / "users.csv", 12, 2, seed=9)
    return folder


@pytest.fixture
def caplog_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "aiobotocore", "aiohttp", "asyncio", "async_updater"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog


def mock(**kw: Any) -> MockConfig:
    return MockConfig(credentials={AK: SECRET}, session_tokens={AK: TOKEN}, seed=3, **kw)


def run_cli(folder: Path, url: str, *extra: str, report: str = "report.csv") -> int:
    return main(
        [
            "run",
            str(folder / "users.csv"),
            "--endpoint-url",
            url,
            "--report",
            str(folder / report),
            "--timeline",
            str(folder / "timeline.jsonl"),
            "--summary-json",
            str(folder / "summary.json"),
            "--no-progress",
            "--rate",
            "2000",
            "--max-attempts",
            "3",
            *extra,
        ]
    )


def assert_nothing_leaked(
    folder: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> dict[str, str]:
    out, err = capsys.readouterr()
    written = files_text(folder)
    assert {"users.csv", "summary.json"} < set(written)
    found = {
        "stdout": leaks(out),
        "stderr": leaks(err),
        "logs": leaks(log_text(caplog)),
        **{name: leaks(text) for name, text in written.items()},
    }
    assert {k: v for k, v in found.items() if v} == {}
    assert caplog.records  # the logs really were captured at DEBUG
    return written


@pytest.mark.parametrize(
    ("case", "secret", "expect_code", "expect_status"),
    [
        ("good-credentials", SECRET, 0, {"updated"}),
        # Rejected ten times in a row: a safety stop (exit 3) before the last rows are sent.
        ("wrong-secret", WRONG_SECRET, 3, {"failed"}),
    ],
)
def test_secret_and_token_never_appear_in_output_files_or_logs(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog_debug: pytest.LogCaptureFixture,
    case: str,
    secret: str,
    expect_code: int,
    expect_status: set[str],
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    with ThreadedMock(mock()) as server:
        code = run_cli(env, server.url)
        requests = server.counters["requests"]
    written = assert_nothing_leaked(env, capsys, caplog_debug)
    assert code == expect_code
    rows = 12 if expect_code == 0 else 10
    assert requests >= rows  # the credentials really were used
    statuses = {line.split(",")[2] for line in written["report.csv"].splitlines()[1:]}
    assert statuses == expect_status
    summary = json.loads(written["summary.json"])
    assert rows <= summary["rows"] <= 12


def session_credentials_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)


def test_expired_token_run_fails_without_leaking_the_token(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog_debug: pytest.LogCaptureFixture,
) -> None:
    session_credentials_in_env(monkeypatch)
    with ThreadedMock(mock(expired_tokens=frozenset({TOKEN}))) as server:
        code = run_cli(env, server.url, "--format", "jsonl", report="report.jsonl")
        expired = server.counters["expired_token"]
    written = assert_nothing_leaked(env, capsys, caplog_debug)
    assert code == 1
    assert expired > 0
    rows = [json.loads(line) for line in written["report.jsonl"].splitlines()]
    assert len(rows) == 12
    assert {(r["status"], r["error_code"]) for r in rows} == {("failed", "ExpiredTokenException")}


def test_credentials_from_a_profile_file_never_leak(
    env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog_debug: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "aws" / "credentials").write_text(
        f"[ops]\naws_access_key_id = {AK}\naws_secret_access_key = {SECRET}\n"
        f"aws_session_token = {TOKEN}\n"
    )
    with ThreadedMock(mock()) as server:
        code = run_cli(env, server.url, "--profile", "ops", "--region", "us-east-1")
        applied = len(server.applied)
    assert_nothing_leaked(env, capsys, caplog_debug)
    assert (code, applied) == (0, 12)


def test_unreachable_endpoint_run_does_not_leak(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog_debug: pytest.LogCaptureFixture,
) -> None:
    session_credentials_in_env(monkeypatch)
    code = run_cli(env, "http://127.0.0.1:9", "--max-attempts", "1", "--timeout", "5")
    written = assert_nothing_leaked(env, capsys, caplog_debug)
    assert code == 1
    assert "ConnectionError" in written["report.csv"]


def test_credential_objects_and_errors_hide_the_secret_in_repr_and_str() -> None:
    creds = Credentials(AK, SECRET, TOKEN)
    static = StaticCredentials(AK, SECRET, TOKEN)
    for text in (repr(creds), str(creds), repr(static), str(static)):
        assert leaks(text) == []
    assert AK in repr(creds)  # the key id is not secret and helps to tell credentials apart


async def test_exception_raised_by_a_run_does_not_carry_the_secret(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that cannot start raises an UpdaterError; its message, repr, traceback and cause
    chain are what a caller logs."""
    args = build_parser().parse_args(
        ["run", str(env / "users.csv"), "--endpoint-url", "not a url", "--no-progress"]
    )
    with pytest.raises(UpdaterError) as info:
        await run_command(args, credentials=StaticCredentials(AK, SECRET, TOKEN))
    text = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert leaks(text) == []


async def _echo_server() -> tuple[web.AppRunner, str]:
    """A server whose 403 echoes the canonical request, security token included, the way AWS
    services word a signature mismatch (without their long preamble)."""

    async def handler(request: web.Request) -> web.Response:
        token = request.headers.get("X-Amz-Security-Token", "")
        canonical = (
            f"{request.method}\n{request.raw_path}\n\ncontent-type:application/json\n"
            f"host:{request.host}\nx-amz-date:{request.headers.get('X-Amz-Date', '')}\n"
            f"x-amz-security-token:{token}\n"
        )
        body = {
            "__type": "InvalidSignatureException",
            "message": f"The Canonical String for this request should have been '{canonical}'",
        }
        return web.json_response(body, status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def test_a_server_message_echoing_the_token_is_redacted_in_the_report(
    env: Path,
) -> None:
    runner, url = await _echo_server()
    try:
        args = build_parser().parse_args(
            [
                "run",
                str(env / "users.csv"),
                "--endpoint-url",
                url,
                "--report",
                str(env / "report.csv"),
                "--no-progress",
                "--max-attempts",
                "1",
            ]
        )
        with open(os.devnull, "w") as devnull, pytest.raises(SafetyStop) as stop:
            # Every answer refuses the credentials: a safety stop (main() makes it exit 3).
            await run_command(args, credentials=StaticCredentials(AK, SECRET, TOKEN), out=devnull)
    finally:
        await runner.cleanup()
    assert leaks(str(stop.value)) == []
    report = (env / "report.csv").read_text(encoding="utf-8")
    assert leaks(report) == []
    assert "x-amz-security-token:[redacted]" in report  # the message itself is still there


async def test_mock_server_in_process_run_with_token_does_not_leak(
    env: Path, caplog_debug: pytest.LogCaptureFixture
) -> None:
    """The library path (no CLI): results carry no secret either."""
    from async_updater.config import UpdaterConfig
    from async_updater.io.report import MemoryReport
    from async_updater.io.source import CsvSource
    from async_updater.pipeline.updater import Updater

    async with MockChimeServer(mock()) as server:
        sink = MemoryReport()
        config = UpdaterConfig(endpoint_url=server.url, rate=2000.0)
        async with Updater(config, credentials=StaticCredentials(AK, WRONG_SECRET, TOKEN)) as up:
            with pytest.raises(SafetyStop) as stop:  # the credentials are refused every time
                await up.run(CsvSource(env / "users.csv"), sink)
            summary = up.summary()
            await asyncio.sleep(0)
    text = "\n".join(repr(r) for r in sink.results) + repr(summary) + json.dumps(summary.as_dict())
    text += str(stop.value) + repr(stop.value.reason)
    assert leaks(text) == [] and leaks(log_text(caplog_debug)) == []
    assert {r.http_status for r in sink.results} == {403}


def test_the_leak_check_catches_whole_partial_and_header_leaks() -> None:
    assert leaks("all clear: AKIDSECRETSTEST x-amz-date:20260101T000000Z") == []
    assert leaks(f"token={TOKEN}") == [TOKEN]
    assert leaks(f"x-amz-security-token:{TOKEN[:20]}...") == [f"part of {TOKEN}"]
    assert leaks("AWS4-HMAC-SHA256 Credential=AKID/..., Signature=abc") == ["Signature="]
    assert leaks("{'Authorization': '...'}") == ["Authorization"]


# -- redaction through the pipeline and the transport -----------------------------------------

OLD_TOKEN = "IQoJb3JpZ2luX2VjEOLD+RotatedTokenMarker/99aa00bb=="
NEVER_AFTER_ROTATION = (*NEVER, OLD_TOKEN, OLD_TOKEN[:12])


class _RotatingToken:
    """Signs with ``OLD_TOKEN`` until refreshed, then with ``TOKEN``."""

    def __init__(self) -> None:
        self.token = OLD_TOKEN

    async def current(self) -> Credentials:
        return Credentials(AK, SECRET, self.token)

    async def refresh(self) -> Credentials:
        self.token = TOKEN
        return await self.current()


class _EchoTransport:
    """Answers by ``answer(user, headers, tokens seen so far)``: a server that quotes back what
    it was sent, from this request and from earlier ones."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.tokens: list[str] = []

    async def send(self, method: str, path: str, headers: Any, body: bytes) -> Any:
        self.tokens.append(headers.get("X-Amz-Security-Token", ""))
        return self.answer(path.split("/")[4], headers, self.tokens)

    async def close(self) -> None:
        pass


async def _run_echo(answer: Any, n: int = 1) -> tuple[list[Any], str, _EchoTransport]:
    from async_updater.config import UpdaterConfig
    from async_updater.io.report import MemoryReport
    from async_updater.model import UserRecord
    from async_updater.pipeline.updater import Updater

    transport = _EchoTransport(answer)
    config = UpdaterConfig(endpoint_url="http://127.0.0.1:9", rate=10_000.0, max_attempts=1)
    sink = MemoryReport()
    records = [UserRecord("acct", f"u{i}", True, False, True, i + 2) for i in range(n)]
    async with Updater(config, transport=transport, credentials=_RotatingToken()) as up:
        summary = await up.run(records, sink)
    text = "\n".join(repr(r) for r in sink.results) + json.dumps(summary.as_dict())
    return list(sink.results), text, transport


async def test_a_refreshed_credentials_old_token_echoed_later_is_still_redacted() -> None:
    from async_updater.transport.base import Response

    def answer(user: str, headers: Any, tokens: list[str]) -> Response:
        token = headers["X-Amz-Security-Token"]
        if token == OLD_TOKEN:
            return Response(403, "rid", "ExpiredTokenException", f"token {token} has expired")
        return Response(
            400,
            f"rid-{token}",
            f"Bad{SECRET}",
            f"tokens seen: {' '.join(tokens)}; authorization: {headers['Authorization']}",
        )

    results, text, transport = await _run_echo(answer)
    assert transport.tokens == [OLD_TOKEN, TOKEN]  # both really were sent and echoed
    assert [s for s in NEVER_AFTER_ROTATION if s in text] == [] and leaks(text) == []
    assert results[0].message == "tokens seen: [redacted] [redacted]; [redacted]"
    assert (results[0].error_code, results[0].request_id) == ("Bad[redacted]", "rid-[redacted]")


async def test_normal_errors_pass_through_but_header_echoes_do_not() -> None:
    from async_updater.transport.base import Response, TransportError

    def answer(user: str, headers: Any, tokens: list[str]) -> Response:
        if user == "u0":
            return Response(404, "rid-7", "NotFoundException", "no such user")
        if user == "u1":
            raise TransportError("ConnectionError", "cannot connect to 127.0.0.1:9 (refused)")
        raise TransportError("ConnectionError", f"reset after sending {dict(headers)}")

    results, text, _ = await _run_echo(answer, n=3)
    by_user = {r.user_id: r for r in results}
    assert (by_user["u0"].error_code, by_user["u0"].message, by_user["u0"].request_id) == (
        "NotFoundException",
        "no such user",
        "rid-7",
    )
    assert by_user["u1"].message.endswith("cannot connect to 127.0.0.1:9 (refused)")
    assert [s for s in NEVER_AFTER_ROTATION if s in text] == [] and leaks(text) == []


async def test_an_aiohttp_error_holding_signed_headers_gives_a_message_without_them() -> None:
    """aiohttp's ``ClientResponseError`` holds the request's headers (its repr shows them); the
    transport's message is built from its ``str``, which does not."""
    import re

    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    from async_updater.aws.sigv4 import SigV4Signer
    from async_updater.transport.base import TransportError
    from async_updater.transport.http import AiohttpTransport

    from .conftest import aioresponses

    headers = SigV4Signer(host="h.test", region="us-east-1", service="chime").sign(
        "PUT", "/x", b"{}", "application/json", Credentials(AK, SECRET, TOKEN)
    )
    url = URL("https://h.test/x")
    info = aiohttp.RequestInfo(url, "PUT", CIMultiDictProxy(CIMultiDict(headers)), url)
    exc = aiohttp.ClientResponseError(info, (), status=400, message="Bad Request")
    assert leaks(repr(exc))  # the headers really are in there
    transport = AiohttpTransport("https://h.test", concurrency=1, timeout=5.0)
    try:
        with aioresponses() as m:
            m.put(re.compile(r"^https://h\.test/.*$"), exception=exc)
            with pytest.raises(TransportError) as raised:
                await transport.send("PUT", "/x", headers, b"{}")
    finally:
        await transport.close()
    text = "".join(traceback.format_exception(raised.value)) + repr(raised.value)
    assert leaks(text) == []
    assert "ClientResponseError: 400, message='Bad Request'" in str(raised.value)


async def test_a_message_cut_inside_the_echoed_token_leaks_no_piece_of_it() -> None:
    """The transport shortens messages to 300 characters before the pipeline redacts them."""
    import re

    from aioresponses import CallbackResult

    from async_updater.config import UpdaterConfig
    from async_updater.io.report import MemoryReport
    from async_updater.model import UserRecord
    from async_updater.pipeline.updater import Updater

    from .conftest import CompatClientResponse, aioresponses

    def echo(url: object, **kwargs: Any) -> CallbackResult:
        token = kwargs["headers"]["X-Amz-Security-Token"]
        message = "m" * 250 + f" x-amz-security-token:{token} and more"
        return CallbackResult(
            status=403,
            payload={"__type": "InvalidSignatureException", "message": message},
            response_class=CompatClientResponse,
        )

    sink = MemoryReport()
    config = UpdaterConfig(endpoint_url="https://h.test", rate=10_000.0, max_attempts=1)
    with aioresponses() as m:
        m.put(re.compile(r"^https://h\.test/.*$"), callback=echo)
        async with Updater(config, credentials=StaticCredentials(AK, SECRET, TOKEN)) as up:
            await up.run([UserRecord("acct", "u0", True, False, True, 2)], sink)
    (result,) = sink.results
    assert result.message.endswith("x-amz-security-token:[redacted]..."), result.message
    assert leaks(repr(result)) == []
