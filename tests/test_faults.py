"""Faults end to end: a network and a server that misbehave, credentials that expire, and a
process that is killed or interrupted mid-run. Every case ends in a retry that succeeds or a
clear ``failed`` row with an error code, never in a hang, a lost row or a row that claims more
than the server confirmed."""

from __future__ import annotations

import asyncio
import io
import os
import random
import shlex
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from async_updater.aws.credentials import Credentials, StaticCredentials
from async_updater.cli import build_parser, run_command
from async_updater.config import UpdaterConfig
from async_updater.errors import CredentialsError
from async_updater.io.reader import read_report
from async_updater.io.report import MemoryReport
from async_updater.model import Result, Status, UserRecord
from async_updater.pipeline.updater import Updater
from async_updater.testing.mock import MockChimeServer
from async_updater.testing.mock.config import MockConfig
from async_updater.testing.sample import generate_users, write_users

from .fault_servers import Action, Close, FaultServer, Hang, Reply, Request, Reset, Truncate, ok
from .processes import (
    CONCURRENCY,
    MockProcess,
    Run,
    assert_finished,
    expected_state,
    mock_process,
    one_error_line,
    report_keys,
    small_disk,
)

AK, SK = "AKIDFAULT", "fault-secret"
CREDS = StaticCredentials(AK, SK)
# Nothing here may wait on its own: every run is bounded, and a hang fails the test.
RUN_LIMIT = 30.0


def users(n: int, account: str = "acct") -> list[UserRecord]:
    return [
        UserRecord(account, f"u{i}", i % 2 == 0, i % 3 == 0, i % 5 == 0, i + 2) for i in range(n)
    ]


# The timeout of tests whose fault is a slow or missing answer: a fault then costs a fraction
# of a second. Others keep the default timeouts, so that a loaded machine's stall is never
# taken for a fault (a retry would put every count of requests off by one).
SHORT = {"timeout": 0.4, "connect_timeout": 0.4}


def fast(url: str, **kw: Any) -> UpdaterConfig:
    """Small backoffs, so that a fault costs milliseconds, not seconds."""
    base: dict[str, Any] = {
        "endpoint_url": url,
        "rate": 2000.0,
        "concurrency": 4,
        "max_attempts": 3,
        "backoff_base": 0.01,
        "backoff_cap": 0.04,
    }
    base.update(kw)
    return UpdaterConfig(**base)


async def run_all(
    config: UpdaterConfig, records: list[UserRecord], credentials: Any = CREDS
) -> dict[str, Result]:
    """Run to the end within ``RUN_LIMIT``; every record must get exactly one result."""
    sink = MemoryReport()
    async with Updater(config, credentials=credentials) as up:
        await asyncio.wait_for(up.run(records, sink), RUN_LIMIT)
    keys = [(r.account_id, r.user_id) for r in sink.results]
    assert sorted(keys) == sorted((r.account_id, r.user_id) for r in records)
    return {r.user_id: r for r in sink.results}


def first_attempt_then_ok(fault: Action) -> Callable[[Request], Action]:
    """A script: each user's first request meets ``fault``, later ones succeed."""
    seen: Counter[str] = Counter()

    def decide(req: Request) -> Action:
        seen[req.user_id] += 1
        return fault if seen[req.user_id] == 1 else ok()

    return decide


# -- the network ----------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_fails_every_row_with_connection_error_after_max_attempts() -> (
    None
):
    port = closed_port()
    results = await run_all(fast(f"http://127.0.0.1:{port}"), users(10))
    for r in results.values():
        assert (r.status, r.http_status, r.error_code, r.attempts) == (
            Status.FAILED,
            None,
            "ConnectionError",
            3,
        )
        assert r.message.startswith(f"gave up after 3 attempts: cannot connect to 127.0.0.1:{port}")


async def test_unresolvable_host_fails_every_row_with_dns_error_without_hanging() -> None:
    # .invalid never resolves (RFC 6761); a slow resolver would still be cut at connect_timeout.
    config = fast("http://nonexistent.invalid:1", max_attempts=2, connect_timeout=3.0)
    results = await run_all(config, users(6))
    for r in results.values():
        assert (r.status, r.error_code, r.attempts) == (Status.FAILED, "DNSError", 2)
        assert "cannot resolve host: nonexistent.invalid" in r.message


@pytest.mark.parametrize(
    "fault",
    [
        Reset(),
        Reset(partial=b"HTTP/1.1 204 No Cont"),
        Close(),
        Truncate(status=200, length=100, sent=b'{"partial'),
        Reply(204, delay=2.0),  # past the short timeout
        Hang(),
    ],
    ids=["reset", "reset-mid-status-line", "close", "body-cut-short", "slow", "no-answer"],
)
async def test_a_fault_on_the_first_attempt_is_retried_and_the_row_updated(fault: Any) -> None:
    late = isinstance(fault, Hang) or (isinstance(fault, Reply) and fault.delay > 0)
    async with FaultServer(first_attempt_then_ok(fault)) as server:
        results = await run_all(fast(server.url, **(SHORT if late else {})), users(12))
    for r in results.values():
        assert (r.status, r.http_status) == (Status.UPDATED, 204)
        assert server.attempts(r.user_id) == 2
        # aiohttp itself resends an idempotent request once when the connection drops before
        # an answer (RFC 9112 9.3.1), so our count may not see the first attempt.
        assert r.attempts == 2 or (r.attempts == 1 and isinstance(fault, (Reset, Close)))


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Reset(), "ConnectionError"),
        (Truncate(status=200, length=100, sent=b"{"), "ConnectionError"),
        (Hang(), "Timeout"),
    ],
    ids=["reset", "body-cut-short", "no-answer"],
)
async def test_a_fault_on_every_attempt_ends_failed_with_its_code(fault: Any, code: str) -> None:
    async with FaultServer(lambda req: fault) as server:
        results = await run_all(
            fast(server.url, **(SHORT if isinstance(fault, Hang) else {})), users(8)
        )
    for r in results.values():
        assert (r.status, r.error_code, r.attempts) == (Status.FAILED, code, 3)
        assert r.message.startswith("gave up after 3 attempts: ")
        resent_by_aiohttp = isinstance(fault, Reset)  # see the test above
        assert server.attempts(r.user_id) == (6 if resent_by_aiohttp else 3)


# -- answers that are not what the documentation promises -----------------------------------

HTML_500 = Reply(
    500,
    b"<html><head><title>500 Internal Server Error</title></head>\n<body><h1>Internal Server"
    b" Error</h1></body></html>",
    {"Content-Type": "text/html"},
)


async def test_html_500_error_pages_are_retried_then_fail_with_the_status_as_code() -> None:
    async with FaultServer(lambda req: HTML_500) as server:
        results = await run_all(fast(server.url), users(5))
    for r in results.values():
        assert (r.status, r.http_status, r.error_code, r.attempts) == (
            Status.FAILED,
            500,
            "HTTP500",
            3,
        )
        assert "500 Internal Server Error" in r.message and "\n" not in r.message


@pytest.mark.parametrize(
    ("reply", "code", "message"),
    [
        (Reply(400), "HTTP400", "HTTP 400 with no message"),
        (Reply(400, b"not json at all"), "HTTP400", "not json at all"),
        (Reply(403, b'["a", "list"]'), "HTTP403", '["a", "list"]'),
        (Reply(404, b'{"Code": 5, "Message": null}'), "HTTP404", "HTTP 404 with no message"),
        (Reply(400, b"\xff\xfe bad utf-8"), "HTTP400", "\ufffd\ufffd bad utf-8"),
    ],
    ids=["empty", "text", "json-list", "json-wrong-types", "bad-utf8"],
)
async def test_4xx_with_garbage_bodies_are_final_with_a_code_and_message(
    reply: Reply, code: str, message: str
) -> None:
    async with FaultServer(lambda req: reply) as server:
        results = await run_all(fast(server.url), users(3))
    for r in results.values():
        assert (r.status, r.http_status, r.error_code, r.message, r.attempts) == (
            Status.FAILED,
            reply.status,
            code,
            message,
            1,
        )


def _storm(until: int, reply: Reply) -> Any:
    return lambda req: reply if req.n < until else ok()


UNAVAILABLE = Reply(
    503,
    b'{"Code": "ServiceUnavailableException", "Message": "try later"}',
    {"Content-Type": "application/json"},
)
FAILURE = Reply(
    500,
    b'{"Code": "ServiceFailureException", "Message": "internal"}',
    {"Content-Type": "application/json", "x-amzn-ErrorType": "ServiceFailureException"},
)


async def test_a_503_storm_that_passes_ends_with_every_row_updated() -> None:
    async with FaultServer(_storm(60, UNAVAILABLE)) as server:
        results = await run_all(fast(server.url, max_attempts=30), users(20))
    assert {r.status for r in results.values()} == {Status.UPDATED}
    assert sum(r.attempts for r in results.values()) == len(server.requests) == 80


async def test_a_500_storm_that_never_ends_fails_every_row_with_the_code_after_max_attempts() -> (
    None
):
    async with FaultServer(lambda req: FAILURE) as server:
        results = await run_all(fast(server.url, max_attempts=4), users(10))
    for r in results.values():
        assert (r.status, r.http_status, r.error_code, r.attempts) == (
            Status.FAILED,
            500,
            "ServiceFailureException",
            4,
        )
        assert r.message == "gave up after 4 attempts: internal"
    assert len(server.requests) == 40


async def test_an_empty_retry_budget_bounds_the_requests_of_a_failing_server() -> None:
    async with FaultServer(lambda req: FAILURE) as server:
        results = await run_all(fast(server.url, max_attempts=8, retry_budget=5), users(10))
    assert {r.status for r in results.values()} == {Status.FAILED}
    assert len(server.requests) == 10 + 5
    exhausted = [r for r in results.values() if r.message.startswith("retry budget exhausted")]
    assert exhausted and all(r.error_code == "ServiceFailureException" for r in exhausted)


async def test_stop_during_a_retry_after_cool_down_ends_at_once_reporting_only_answers() -> None:
    throttle = Reply(
        429,
        b'{"Code": "ThrottledClientException", "Message": "Rate exceeded"}',
        {"Retry-After": "30", "Content-Type": "application/json"},
    )
    async with FaultServer(lambda req: throttle if req.n == 5 else ok()) as server:
        sink = MemoryReport()
        async with Updater(
            fast(server.url, concurrency=1, max_attempts=5), credentials=CREDS
        ) as up:
            task = asyncio.ensure_future(up.run(users(50), sink))
            deadline = asyncio.get_running_loop().time() + 30.0
            while len(server.requests) < 6:
                assert asyncio.get_running_loop().time() < deadline, "the sixth never came"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # now paused for 30 s by the Retry-After
            assert not task.done()
            up.stop()
            summary = await asyncio.wait_for(task, 2.0)
    assert summary.interrupted and summary.cooldowns == 1
    assert [r.user_id for r in sink.results] == [f"u{i}" for i in range(5)]
    assert {r.status for r in sink.results} == {Status.UPDATED}
    assert len(server.requests) == 6


# -- expired credentials --------------------------------------------------------------------


class ExpiringCredentials:
    """Hands out ``tokens[0]`` first; each refresh moves to the next token (the last repeats)."""

    def __init__(self, *tokens: str, fail_refresh: bool = False) -> None:
        self.tokens = list(tokens)
        self.index = 0
        self.refreshes = 0
        self.fail_refresh = fail_refresh

    async def current(self) -> Credentials:
        return Credentials(AK, SK, self.tokens[self.index])

    async def refresh(self) -> Credentials:
        self.refreshes += 1
        await asyncio.sleep(0.01)  # a real refresh goes to the network
        if self.fail_refresh:
            raise CredentialsError("could not refresh AWS credentials (test)")
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return await self.current()


def token_server(**kw: Any) -> MockChimeServer:
    return MockChimeServer(
        MockConfig(
            credentials={AK: SK},
            session_tokens={AK: "fresh"},
            expired_tokens=frozenset({"stale", "stale-too"}),
            latency_ms=20,
            **kw,
        )
    )


async def test_expired_token_is_refreshed_once_and_every_row_is_retried_and_updated() -> None:
    creds = ExpiringCredentials("stale", "fresh")
    async with token_server() as server:
        results = await run_all(fast(server.url, concurrency=8), users(40), creds)
    assert {r.status for r in results.values()} == {Status.UPDATED}
    assert len(server.applied) == 40
    # Up to `concurrency` requests were signed with the stale token before the first answer;
    # one refresh serves them all.
    assert 1 <= server.counters["expired_token"] <= 8
    assert creds.refreshes == 1


async def test_a_refresh_that_yields_a_still_expired_token_fails_each_row_after_one_retry() -> None:
    creds = ExpiringCredentials("stale", "stale-too")
    async with token_server() as server:
        results = await run_all(fast(server.url, concurrency=4), users(12), creds)
    for r in results.values():
        assert (r.status, r.http_status, r.error_code, r.attempts) == (
            Status.FAILED,
            403,
            "ExpiredTokenException",
            2,
        )
    assert server.applied == {}


async def test_credentials_that_cannot_be_refreshed_stop_the_cli_run_with_a_credentials_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.csv"
    generate_users(path, 50, 2, seed=4)
    report = tmp_path / "r.csv"
    creds = ExpiringCredentials("stale", fail_refresh=True)
    async with token_server() as server:
        args = build_parser().parse_args(
            [
                *("run", str(path), "--endpoint-url", server.url, "--report", str(report)),
                *("--no-progress", "--concurrency", "4"),
            ]
        )
        with open(os.devnull, "w") as devnull, pytest.raises(CredentialsError):
            # main() maps CredentialsError to exit 2
            await asyncio.wait_for(run_command(args, credentials=creds, out=devnull), RUN_LIMIT)
    rows = list(read_report(report))
    assert len({(r.account_id, r.user_id) for r in rows}) == len(rows) <= 4
    assert {(r.status, r.error_code) for r in rows} <= {("failed", "ExpiredTokenException")}
    assert server.applied == {}


# -- the process: kill -9, Ctrl-C, SIGTERM --------------------------------------------------

N_USERS = 6000


@pytest.fixture(scope="module")
def fast_mock() -> Iterator[MockProcess]:
    """A server limit of 1500/s and 10 ms latency: 6,000 users take about 4 s."""
    with mock_process("--rate-limit", "1500", "--latency-ms", "10") as server:
        yield server


@pytest.fixture
def mock(fast_mock: MockProcess) -> MockProcess:
    fast_mock.reset()
    return fast_mock


def test_kill_9_mid_run_and_mid_resume_then_resume_resends_at_most_the_requests_in_flight(
    tmp_path: Path, mock: MockProcess
) -> None:
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, N_USERS, 4, seed=11)
    expected = expected_state(users_csv)
    report = tmp_path / "report.csv"
    rng = random.Random(90210)
    first = rng.randint(500, 5000)
    # The resumed run is killed too, somewhere in what is left (its report starts with the
    # rows carried over, so the kill point counts them).
    kill_points = [first, rng.randint(first + 200, N_USERS - 300)]
    unreported: list[set[tuple[str, str]]] = []
    figures = []
    for i, kill_at in enumerate(kill_points):
        run = Run(tmp_path, users_csv, report, mock.url, *(["--resume"] if i else []))
        try:
            run.wait_for_rows(kill_at)
            run.proc.send_signal(signal.SIGKILL)
            assert run.proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            run.kill()
        mock.wait_until_idle()  # requests on the wire when the client died still land
        rows_at_kill = list(read_report(report))
        updated_at_kill = report_keys(report)
        assert len(updated_at_kill) == len(rows_at_kill)  # only updates, one row per user
        applied_at_kill = mock.applied()
        # The report never claims what the server did not confirm...
        assert updated_at_kill <= set(applied_at_kill)
        # ...and what the server applied without a row yet was in flight (or just answered).
        unreported.append(set(applied_at_kill) - updated_at_kill)
        assert len(unreported[-1]) <= CONCURRENCY
        figures.append(
            f"kill point {kill_at} rows, report rows at kill {len(rows_at_kill)}, server "
            f"applied {len(applied_at_kill)}, applied but unreported {len(unreported[-1])}"
        )

    resumed = Run(tmp_path, users_csv, report, mock.url, "--resume")
    assert resumed.finish() == 0, resumed.stderr()
    counts = assert_finished(report, mock, expected)
    # Every user was applied once, plus once more for each kill that caught it unreported.
    for key, n in counts.items():
        assert n == 1 + sum(key in u for u in unreported), key
    resent = sum(n - 1 for n in counts.values())
    print(
        "\nkill -9: " + "; ".join(figures) + f"; re-sent after resume {resent} "
        f"(bound: --concurrency {CONCURRENCY} per kill); final: {len(counts)}/{len(expected)} "
        f"users hold the input settings, report {len(expected)} rows all updated"
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_exits_130_with_a_report_that_matches_the_server_then_resume_finishes(
    tmp_path: Path, mock: MockProcess, signum: signal.Signals
) -> None:
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, N_USERS, 4, seed=12)
    expected = expected_state(users_csv)
    report = tmp_path / "report.csv"
    stop_at = random.Random(int(signum)).randint(500, 4000)

    run = Run(tmp_path, users_csv, report, mock.url)
    try:
        run.wait_for_rows(stop_at)
        sent = time.monotonic()
        run.proc.send_signal(signum)
        code = run.proc.wait(timeout=10)  # the bar: out within 10 s
        took = time.monotonic() - sent
    finally:
        run.kill()
    assert code == 130, run.stderr()
    err = run.stderr()
    assert "stopping: no new requests" in err and "Traceback" not in err
    assert "--resume" in run.stdout() + err
    updated = report_keys(report)
    applied = mock.applied()
    assert len(list(read_report(report))) == len(updated)
    assert updated == set(applied)
    assert {n for _, n in applied.values()} == {1}
    print(
        f"\n{signum.name}: sent at {stop_at} rows; exit 130 after {took:.2f} s; "
        f"report updated {len(updated)} == server applied {len(applied)}"
    )

    resumed = Run(tmp_path, users_csv, report, mock.url, "--resume")
    assert resumed.finish() == 0, resumed.stderr()
    counts = assert_finished(report, mock, expected)
    assert set(counts.values()) == {1}  # nobody applied twice


def test_sigterm_stops_a_run_whose_console_went_away_and_resume_finishes_it(
    tmp_path: Path, mock: MockProcess
) -> None:
    """Its stdout and stderr are pipes whose reader is gone (``| tee`` killed, a parent that
    died): the stop notice raised ``BrokenPipeError`` before the run was told to stop, so a
    supervisor's SIGTERM was ignored and the run went on to the end."""
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, N_USERS, 4, seed=17)
    expected = expected_state(users_csv)
    report = tmp_path / "report.csv"
    run = Run(tmp_path, users_csv, report, mock.url, closed_output=True)
    try:
        run.wait_for_rows(1000)
        run.proc.send_signal(signal.SIGTERM)
        code = run.proc.wait(timeout=10)
    finally:
        run.kill()
    assert code == 130
    updated = report_keys(report)
    assert len(list(read_report(report))) == len(updated) < N_USERS
    assert updated == set(mock.applied())
    resumed = Run(tmp_path, users_csv, report, mock.url, "--resume")
    assert resumed.finish() == 0, resumed.stderr()
    assert set(assert_finished(report, mock, expected).values()) == {1}


def test_a_run_whose_console_went_away_finishes_and_exits_0(
    tmp_path: Path, mock: MockProcess
) -> None:
    """Nothing reads its output any more: the run is not the console's, it finishes, and its
    exit code says how it went (the summary's ``BrokenPipeError`` made it 1)."""
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, 2000, 4, seed=18)
    expected = expected_state(users_csv)
    report = tmp_path / "report.csv"
    run = Run(tmp_path, users_csv, report, mock.url, closed_output=True)
    assert run.finish() == 0
    assert set(assert_finished(report, mock, expected).values()) == {1}


def printed_resume_command(stdout: str) -> list[str]:
    """The command the summary printed under ``next``, as the shell would split it."""
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("next       to finish"))
    return shlex.split(lines[at + 1])


def test_the_resume_command_printed_after_sigint_run_exactly_as_printed_finishes_the_run(
    tmp_path: Path, mock: MockProcess
) -> None:
    users_csv = tmp_path / "my users.csv"  # a space, so the printed command must quote it
    generate_users(users_csv, 3000, 4, seed=16)
    expected = expected_state(users_csv)
    report = tmp_path / "the report's rows.jsonl"
    options = [
        *("--format", "jsonl", "--max-attempts", "5", "--limit-scope", "account"),
        *("--timeout", "10", "--max-failures", "25", "--timeline", str(tmp_path / "t.jsonl")),
    ]
    run = Run(tmp_path, users_csv, report, mock.url, *options)
    try:
        run.wait_for_rows(500)
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(timeout=10) == 130, run.stderr()
    finally:
        run.kill()
    command = printed_resume_command(run.stdout())
    assert command[0] == "async-updater"
    assert "--timeline" not in command  # one invocation's figures: not overwritten
    resumed = Run.command(tmp_path, command, report)
    assert resumed.finish() == 0, resumed.stderr()
    counts = assert_finished(report, mock, expected)
    assert set(counts.values()) == {1}
    print(f"\nresume command run as printed: {shlex.join(command)}")


def test_a_second_sigint_abandons_requests_in_flight_and_never_reports_them_updated(
    tmp_path: Path,
) -> None:
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, 600, 3, seed=13)
    expected = expected_state(users_csv)
    report = tmp_path / "report.csv"
    # 1-2 s per answer, spent after the server applied the update: plenty in flight, and
    # their answers spread out over a drain far longer than any hiccup of this test before
    # it sends the second SIGINT (at 50-550 ms a loaded machine could let the drain end).
    with mock_process("--latency-ms", "1500", "--jitter-ms", "500") as slow:
        run = Run(tmp_path, users_csv, report, slow.url)
        try:
            run.wait_for_rows(100)
            sent = time.monotonic()
            run.proc.send_signal(signal.SIGINT)
            # A second SIGINT sent before the first is handled would merge with it.
            run.wait_for_stderr("stopping: no new requests")
            run.proc.send_signal(signal.SIGINT)
            code = run.proc.wait(timeout=10)
            took = time.monotonic() - sent
        finally:
            run.kill()
        assert code == 130, run.stderr()
        err = run.stderr()
        assert "abandoning the requests in flight" in err and "Traceback" not in err
        slow.wait_until_idle()  # the abandoned requests land (or not) on the server
        updated = report_keys(report)
        applied = slow.applied()
        assert len(list(read_report(report))) == len(updated)
        assert updated <= set(applied)
        abandoned = set(applied) - updated  # applied by the server, unconfirmed to the client
        assert 0 < len(abandoned) <= CONCURRENCY
        print(
            f"\nSIGINT x2: exit 130 after {took:.2f} s; report updated {len(updated)}, "
            f"server applied {len(applied)}, abandoned in flight {len(abandoned)}"
        )

        slow.limits(latency_ms=5, latency_jitter_ms=0)  # the resume need not wait as long
        resumed = Run(tmp_path, users_csv, report, slow.url, "--resume", "--concurrency", "128")
        assert resumed.finish() == 0, resumed.stderr()
        counts = assert_finished(report, slow, expected)
    assert {key for key, n in counts.items() if n > 1} == abandoned
    assert max(counts.values()) == 2


async def test_a_signal_while_the_server_hangs_abandons_the_hung_requests_after_a_grace_period(
    tmp_path: Path,
) -> None:
    users_csv = tmp_path / "users.csv"
    write_users(users_csv, iter(users(300)))
    report = tmp_path / "report.csv"
    answered: set[str] = set()
    hanging = [True]
    one_hangs = asyncio.Event()

    def decide(req: Request) -> Any:
        if hanging[0] and len(answered) >= 100:
            one_hangs.set()
            return Hang()
        answered.add(req.user_id)
        return ok()

    async with FaultServer(decide) as server:
        run = Run(tmp_path, users_csv, report, server.url, "--concurrency", "8")
        try:
            await run.await_rows(100)
            await asyncio.wait_for(one_hangs.wait(), 30)  # the next requests are sent and hang
            sent = time.monotonic()
            run.proc.send_signal(signal.SIGTERM)
            # Without the grace period the hung requests held the exit for all of --timeout (30 s).
            code = await run.await_exit(10)
            took = time.monotonic() - sent
        finally:
            run.kill()
        assert code == 130, run.stderr()
        err = run.stderr()
        assert "abandoning the requests in flight" in err and "Traceback" not in err
        assert report_keys(report) == {("acct", u) for u in answered}
        assert len(list(read_report(report))) == 100
        hung = {r.user_id for r in server.requests} - answered
        assert 0 < len(hung) <= 8
        print(f"\nSIGTERM, server hung: exit 130 after {took:.2f} s, {len(hung)} abandoned")

        hanging[0] = False
        resumed = Run(tmp_path, users_csv, report, server.url, "--resume")
        assert await resumed.await_exit(30) == 0, resumed.stderr()
    rows = list(read_report(report))
    assert len(rows) == 300 and {r.status for r in rows} == {"updated"}
    assert answered == {f"u{i}" for i in range(300)}


# -- the disk: ENOSPC ---------------------------------------------------------------------------

DISK_FULL = "cannot write the report {report}: No space left on device"


@pytest.mark.parametrize(
    ("extra", "bound"),
    [((), 0), (("--resume",), 0), (("--format", "jsonl"), CONCURRENCY)],
    ids=["csv", "csv-resume", "jsonl"],
)
def test_a_report_on_a_full_disk_exits_2_with_one_line_and_sends_nothing_it_cannot_record(
    tmp_path: Path, mock: MockProcess, extra: tuple[str, ...], bound: int
) -> None:
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, 500, 4, seed=14)
    report = tmp_path / "report.csv"
    report.symlink_to("/dev/full")  # every write: ENOSPC
    run = Run(tmp_path, users_csv, report, mock.url, *extra)
    assert run.finish() == 2
    assert one_error_line(run.stderr()) == DISK_FULL.format(report=report)
    assert run.stdout() == ""
    # A CSV report writes its header through before anything is sent; a JSON Lines report has
    # none, so its first flush finds the disk full: at most the requests in flight then.
    assert mock.counters().get("requests", 0) <= bound


def test_a_disk_that_fills_mid_run_stops_it_and_nothing_more_is_sent_then_resume_finishes(
    tmp_path: Path, mock: MockProcess
) -> None:
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, N_USERS, 4, seed=15)
    expected = expected_state(users_csv)
    concurrency = 8
    with small_disk(tmp_path / "disk", 64) as disk:
        report = disk / "report.csv"
        run = Run(tmp_path, users_csv, report, mock.url, "--concurrency", str(concurrency))
        code = run.finish()
        rows = list(read_report(report))
        sent = mock.counters()["requests"]
        assert code == 2, run.stderr()
        assert one_error_line(run.stderr()) == DISK_FULL.format(report=report)
        assert run.stdout() == ""
        # Every request the server saw is a recorded row, a row lost in the write buffers when
        # the disk filled, or a request in flight then: the run sent nothing after that.
        shortest = min(len(r.text.encode()) for r in rows)
        buffered = 2 * io.DEFAULT_BUFFER_SIZE // shortest
        assert len(rows) <= sent <= len(rows) + buffered + concurrency
        assert {r.status for r in rows} == {"updated"}
        assert sent < N_USERS // 2
        figures = (
            f"\nENOSPC mid-run: report recorded {len(rows)} rows, server received {sent} "
            f"requests (bound: recorded + {buffered} buffered + {concurrency} in flight); "
            f"exit 2"
        )

        # Free space, resume: every user ends applied, the unrecorded ones once more at most.
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True, timeout=30)
        resumed = Run(tmp_path, users_csv, report, mock.url, "--resume")
        assert resumed.finish() == 0, resumed.stderr()
        counts = assert_finished(report, mock, expected)
    twice = sum(1 for n in counts.values() if n > 1)
    assert twice <= sent - len(rows)
    print(figures + f"; after --resume 0 lost, {twice} users applied twice")
