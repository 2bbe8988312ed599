"""The orchestrator with a scripted transport: retries, finality, stop, dry run, skip, budget.

Scripted answers and no sockets: every test runs in virtual time (``@virtual_time``), so
back-offs, pauses and the rate controller's reactions take no real time, and the outcomes do
not depend on how loaded the machine is."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping

import pytest

from async_updater.aws.credentials import Credentials
from async_updater.config import UpdaterConfig
from async_updater.errors import CredentialsError
from async_updater.io.keyindex import KeyIndex
from async_updater.io.report import MemoryReport
from async_updater.model import Result, Status, UserRecord
from async_updater.pipeline.updater import Updater
from async_updater.testing import virtual_time
from async_updater.transport.base import Response, TransportError

OK = Response(204, "rid")
THROTTLED = Response(429, "rid", "ThrottledClientException", "Rate exceeded")
UNAVAILABLE = Response(503, "rid", "ServiceUnavailableException", "try later")
FAILURE = Response(500, "rid", "ServiceFailureException", "boom")
NOT_FOUND = Response(404, "rid", "NotFoundException", "no such user")
BAD = Response(400, "rid", "BadRequestException", "bad body")
EXPIRED = Response(403, "rid", "ExpiredTokenException", "token expired")


class ScriptedTransport:
    """Answers each user's attempts from a script (then 204), records what was sent."""

    def __init__(
        self,
        script: Mapping[str, list[Response | TransportError]] | None = None,
        *,
        delay: float = 0.0,
    ) -> None:
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.delay = delay
        self.sent: list[tuple[str, str, dict[str, str], float]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False

    async def send(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        user = path.split("/")[4]
        self.sent.append((method, path, dict(headers), asyncio.get_running_loop().time()))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            else:
                await asyncio.sleep(0)
        finally:
            self.in_flight -= 1
        answers = self.script.get(user)
        answer = answers.pop(0) if answers else OK
        if isinstance(answer, TransportError):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True

    def attempts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for _, path, _, _ in self.sent:
            counts[path.split("/")[4]] += 1
        return dict(counts)


class RotatingCredentials:
    """Each refresh hands out a new access key, so tests can see what signed what."""

    def __init__(self, fail_refresh: bool = False) -> None:
        self.n = 0
        self.fail_refresh = fail_refresh

    async def current(self) -> Credentials:
        return Credentials(f"AKID{self.n}", "secret", None)

    async def refresh(self) -> Credentials:
        if self.fail_refresh:
            raise CredentialsError("could not refresh AWS credentials (test)")
        self.n += 1
        return await self.current()


def users(n: int, account: str = "acct") -> list[UserRecord]:
    return [UserRecord(account, f"u{i}", True, False, True, i + 2) for i in range(n)]


def fast_config(**kw: object) -> UpdaterConfig:
    base: dict[str, object] = {
        "endpoint_url": "http://127.0.0.1:9",
        "rate": 100_000.0,
        "concurrency": 8,
        "max_attempts": 4,
        "backoff_base": 0.001,
        "backoff_cap": 0.005,
    }
    base.update(kw)
    return UpdaterConfig(**base)  # type: ignore[arg-type]


async def run_all(
    records: object,
    transport: ScriptedTransport,
    credentials: object | None = None,
    **kw: object,
) -> tuple[list[Result], Updater]:
    up = Updater(
        fast_config(**kw),
        transport=transport,
        credentials=credentials or RotatingCredentials(),  # type: ignore[arg-type]
    )
    async with up:
        sink = MemoryReport()
        await up.run(records, sink)  # type: ignore[arg-type]
    return sink.results, up


def by_user(results: list[Result]) -> dict[str, Result]:
    out = {r.user_id: r for r in results}
    assert len(out) == len(results), "a user got more than one result"
    return out


@virtual_time
async def test_every_record_gets_exactly_one_result() -> None:
    t = ScriptedTransport()
    results, up = await run_all(users(500), t)
    assert sorted(r.user_id for r in results) == sorted(f"u{i}" for i in range(500))
    assert all(r.status is Status.UPDATED and r.http_status == 204 for r in results)
    assert up.summary().counts["updated"] == 500


@virtual_time
async def test_429_and_503_are_retried_and_end_updated() -> None:
    t = ScriptedTransport({"u0": [THROTTLED, THROTTLED], "u1": [UNAVAILABLE], "u2": [FAILURE]})
    results, up = await run_all(users(3), t)
    r = by_user(results)
    assert {u: (r[u].status, r[u].attempts) for u in r} == {
        "u0": (Status.UPDATED, 3),
        "u1": (Status.UPDATED, 2),
        "u2": (Status.UPDATED, 2),
    }
    s = up.summary()
    assert (s.retries, s.throttles, s.server_errors) == (4, 2, 2)


@virtual_time
async def test_connection_errors_and_timeouts_are_retried() -> None:
    t = ScriptedTransport(
        {
            "u0": [TransportError("ConnectionError", "reset")],
            "u1": [TransportError("Timeout", "no answer within 30s")],
        }
    )
    results, _ = await run_all(users(2), t)
    assert all(r.status is Status.UPDATED and r.attempts == 2 for r in results)


@pytest.mark.parametrize(
    ("answer", "code", "message"),
    [
        (NOT_FOUND, "NotFoundException", "no such user"),
        (BAD, "BadRequestException", "bad body"),
        (
            Response(401, "rid", "UnauthorizedClientException", "who?"),
            "UnauthorizedClientException",
            "who?",
        ),
        (Response(403, "rid", "ForbiddenException", "no"), "ForbiddenException", "no"),
    ],
)
@virtual_time
async def test_4xx_answers_are_final_and_reported_with_code_and_message(
    answer: Response, code: str, message: str
) -> None:
    t = ScriptedTransport({"u0": [answer]})
    results, _ = await run_all(users(1), t)
    (r,) = results
    assert (r.status, r.http_status, r.error_code, r.message, r.attempts) == (
        Status.FAILED,
        answer.status,
        code,
        message,
        1,
    )
    assert r.request_id == "rid"


@virtual_time
async def test_gives_up_after_max_attempts_naming_the_last_error() -> None:
    t = ScriptedTransport({"u0": [FAILURE] * 10})
    results, _ = await run_all(users(1), t, max_attempts=3)
    (r,) = results
    assert (r.status, r.attempts, r.error_code) == (Status.FAILED, 3, "ServiceFailureException")
    assert r.message == "gave up after 3 attempts: boom"
    assert t.attempts() == {"u0": 3}


@virtual_time
async def test_empty_retry_budget_fails_rows_instead_of_retrying() -> None:
    t = ScriptedTransport({f"u{i}": [FAILURE] * 10 for i in range(10)})
    results, _ = await run_all(users(10), t, retry_budget=3.0, max_attempts=10, concurrency=1)
    assert all(r.status is Status.FAILED for r in results)
    assert sum(t.attempts().values()) == 10 + 3  # one try each, plus the budget
    assert sum("retry budget exhausted" in r.message for r in results) == 10


@virtual_time
async def test_throttle_retries_do_not_spend_the_retry_budget() -> None:
    t = ScriptedTransport({f"u{i}": [THROTTLED] * 2 for i in range(10)})
    results, _ = await run_all(users(10), t, retry_budget=0.0, max_attempts=5)
    assert all(r.status is Status.UPDATED for r in results)


@virtual_time
async def test_expired_token_refreshes_credentials_once_and_retries_signed_anew() -> None:
    t = ScriptedTransport({"u0": [EXPIRED]})
    results, _ = await run_all(users(1), t)
    (r,) = results
    assert (r.status, r.attempts) == (Status.UPDATED, 2)
    keys = [h["Authorization"].split("Credential=")[1].split("/")[0] for _, _, h, _ in t.sent]
    assert keys == ["AKID0", "AKID1"]


@virtual_time
async def test_expired_token_twice_fails_the_row() -> None:
    t = ScriptedTransport({"u0": [EXPIRED, EXPIRED]})
    results, _ = await run_all(users(1), t)
    (r,) = results
    assert (r.status, r.error_code) == (Status.FAILED, "ExpiredTokenException")


@virtual_time
async def test_credentials_that_cannot_be_refreshed_stop_the_run_with_a_credentials_error() -> None:
    t = ScriptedTransport({"u0": [EXPIRED]}, delay=0.01)
    up = Updater(
        fast_config(concurrency=1), transport=t, credentials=RotatingCredentials(fail_refresh=True)
    )
    sink = MemoryReport()
    async with up:
        with pytest.raises(CredentialsError):
            await up.run(users(50), sink)
    # The row that met the expired token is reported; nothing else was sent after it.
    assert sink.results[0].user_id == "u0" and sink.results[0].status is Status.FAILED
    assert len(t.sent) <= 2


@virtual_time
async def test_every_attempt_is_signed_after_its_token_with_a_fresh_date_header() -> None:
    t = ScriptedTransport({"u0": [THROTTLED, THROTTLED]})
    await run_all(users(1), t)
    for _, path, headers, _ in t.sent:
        assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID0/")
        assert "X-Amz-Date" in headers and path == "/accounts/acct/users/u0/settings"
    assert len(t.sent) == 3


@virtual_time
async def test_dry_run_sends_nothing_and_reports_planned_with_the_request() -> None:
    t = ScriptedTransport()
    results, _ = await run_all(users(3), t, dry_run=True)
    assert t.sent == []
    assert {r.status for r in results} == {Status.PLANNED}
    assert by_user(results)["u1"].message == "PUT /accounts/acct/users/u1/settings"


@virtual_time
async def test_dry_run_needs_no_credentials() -> None:
    up = Updater(fast_config(dry_run=True), transport=ScriptedTransport())
    async with up:
        results = [r async for r in up.results(users(2))]
    assert len(results) == 2


@virtual_time
async def test_invalid_rows_pass_straight_through_without_being_sent() -> None:
    t = ScriptedTransport()
    bad = Result(
        "acct",
        "",
        Status.INVALID,
        error_code="InvalidRow",
        message="line 9: user_id: is empty",
        line=9,
    )
    results, _ = await run_all([*users(2), bad], t)
    assert bad in results and len(results) == 3
    assert len(t.sent) == 2


@virtual_time
async def test_users_in_the_skip_set_are_neither_sent_nor_reported() -> None:
    t = ScriptedTransport()
    skip = KeyIndex()
    skip.add("acct", "u1", 1)
    up = Updater(fast_config(), transport=t, credentials=RotatingCredentials())  # type: ignore[arg-type]
    sink = MemoryReport()
    async with up:
        summary = await up.run(users(3), sink, skip=skip)
    assert sorted(r.user_id for r in sink.results) == ["u0", "u2"]
    assert summary.skipped == 1
    assert "u1" not in t.attempts()


@virtual_time
async def test_requests_in_flight_never_exceed_concurrency() -> None:
    # Round trips of 50 ms: five in flight at 100/s, which slow start reaches on a job this
    # small (it grows by a share of the work left per round trip).
    t = ScriptedTransport(delay=0.05)
    await run_all(users(200), t, concurrency=5)
    assert t.max_in_flight == 5


@virtual_time
async def test_the_memory_budget_does_not_cap_requests_in_flight() -> None:
    # A long round trip at a high rate needs more requests in flight than the rows kept
    # queued in memory; the budget is for rows waiting, besides those the in-flight cap lets out.
    # (Enough rows that slow start, risking a share of the known work a round, gets there.)
    t = ScriptedTransport(delay=0.05)
    await run_all(users(3000), t, concurrency=64, queue_size=16)
    assert t.max_in_flight == 64


@virtual_time
async def test_the_summary_names_the_in_flight_ceiling_that_held_the_run_back() -> None:
    t = ScriptedTransport(delay=0.05)
    _, up = await run_all(users(200), t, concurrency=2)
    assert up.summary().bound_by == "--concurrency"


@virtual_time
async def test_the_summary_names_the_open_files_limit_when_that_set_the_ceiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Where the hard limit on open files allowed fewer connections than asked for, raising
    # --concurrency would not help: the summary says what would.
    import async_updater.config

    monkeypatch.setattr(async_updater.config, "connections_allowed", lambda wanted: 2)
    t = ScriptedTransport(delay=0.05)
    _, up = await run_all(users(200), t, concurrency=64)
    assert t.max_in_flight == 2
    assert up.summary().bound_by == "the open-files limit (ulimit -n: 2 connections)"


@virtual_time
async def test_async_iterable_input_is_accepted() -> None:
    async def gen() -> object:
        for r in users(20):
            await asyncio.sleep(0)
            yield r

    results, _ = await run_all(gen(), ScriptedTransport())
    assert len(results) == 20


@virtual_time
async def test_results_can_be_consumed_as_they_complete_and_abandoned_early() -> None:
    t = ScriptedTransport(delay=0.001)
    up = Updater(fast_config(), transport=t, credentials=RotatingCredentials())  # type: ignore[arg-type]
    async with up:
        seen = 0
        async for _ in up.results(users(1000)):
            seen += 1
            if seen == 10:
                break
        await asyncio.sleep(0.02)
        sent = len(t.sent)
        await asyncio.sleep(0.02)
        assert len(t.sent) == sent  # nothing keeps running after the consumer left
    assert sent < 1000


@virtual_time
async def test_stop_lets_in_flight_requests_finish_and_reports_only_finished_rows() -> None:
    t = ScriptedTransport(delay=0.05)
    up = Updater(fast_config(concurrency=4), transport=t, credentials=RotatingCredentials())  # type: ignore[arg-type]
    sink = MemoryReport()

    async def stop_soon() -> None:
        deadline = asyncio.get_running_loop().time() + 30.0
        while len(t.sent) < 6:
            assert asyncio.get_running_loop().time() < deadline, "the sixth was never sent"
            await asyncio.sleep(0.001)
        up.stop()

    async with up:
        stopper = asyncio.ensure_future(stop_soon())
        summary = await up.run(users(100), sink)
        await stopper
    assert summary.interrupted
    # Everything that was sent finished and is reported; nothing else was sent.
    assert len(sink.results) == len(t.sent)
    assert all(r.status is Status.UPDATED for r in sink.results)
    assert len(t.sent) < 100


@virtual_time
async def test_retry_after_pauses_sending_for_the_whole_scope() -> None:
    throttled = Response(429, "rid", "ThrottledClientException", "slow down", retry_after=0.2)
    t = ScriptedTransport({"u0": [throttled]}, delay=0.001)
    results, up = await run_all(users(30), t, concurrency=1)
    assert all(r.status is Status.UPDATED for r in results)
    first = t.sent[0][3]
    later = [when for _, _, _, when in t.sent[1:]]
    assert min(later) >= first + 0.2  # nothing was sent during the cool-down
    assert up.summary().cooldowns == 1


@virtual_time
async def test_a_paused_account_does_not_delay_the_other_accounts() -> None:
    pause = Response(429, "rid", "ThrottledClientException", "slow down", retry_after=5.0)
    t = ScriptedTransport({"u0": [pause]}, delay=0.01)
    # Sorted by account, as exports are: a1's rows come first.
    records = users(20, "a1") + users(20, "a2") + users(20, "a3")
    results, up = await run_all(records, t, limit_scope="account", rate=None, concurrency=None)
    assert len(results) == 60 and all(r.status is Status.UPDATED for r in results)
    paused_at = next(when for _, path, _, when in t.sent if path.split("/")[2] == "a1")
    sends = [(path.split("/")[2], when) for _, path, _, when in t.sent]
    during = [account for account, when in sends if paused_at + 0.02 < when < paused_at + 5.0]
    assert "a1" not in during  # a1 waits its pause out...
    others = [when for account, when in sends if account != "a1"]
    assert len(others) == 40 and max(others) < paused_at + 5.0  # ...the others do not wait
    assert up.summary().cooldowns == 1


@virtual_time
async def test_a_throttled_run_lowers_the_allowed_rate() -> None:
    t = ScriptedTransport({f"u{i}": [THROTTLED] for i in range(0, 200, 10)})
    _, up = await run_all(users(200), t, rate=5000.0, concurrency=4)
    assert up.summary().cuts >= 1
    assert up.rate < 5000.0


@virtual_time
async def test_an_on_notice_that_raises_changes_nothing_the_run_does() -> None:
    """Notices are advice: one whose delivery fails (a console gone, a full disk) must not
    break the step that gave it. The cool-down's notice came from the middle of settling an
    answer."""
    throttled = Response(429, "rid", "ThrottledClientException", "slow down", retry_after=0.2)
    t = ScriptedTransport({"u0": [throttled]}, delay=0.001)
    told: list[str] = []

    def gone(message: str) -> None:
        told.append(message)
        raise BrokenPipeError(32, "Broken pipe")

    up = Updater(fast_config(concurrency=1), transport=t, credentials=RotatingCredentials())  # type: ignore[arg-type]
    up.on_notice = gone
    async with up:
        sink = MemoryReport()
        summary = await up.run(users(30), sink)
    assert any("wait" in m for m in told)  # the notice was given...
    assert len(sink.results) == 30  # ...and the run went on as without it
    assert all(r.status is Status.UPDATED for r in sink.results)
    assert summary.cooldowns == 1
    assert up.undelivered_notices == len(told)
