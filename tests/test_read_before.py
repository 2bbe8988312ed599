"""Read before write, end to end against the mock server (which answers GetUserSettings with a
state derived from each user's ids until a PUT changes it): preview, skip unchanged, undo, a
failed read, and ``--resume`` keeping the before-state. See the README's report contract.
"""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path
from typing import Any

from async_updater.aws.credentials import StaticCredentials
from async_updater.cli import build_parser, main, run_command
from async_updater.config import UpdaterConfig
from async_updater.io.before import journal_path
from async_updater.io.reader import read_report
from async_updater.io.report import MemoryReport
from async_updater.io.source import CsvSource
from async_updater.model import Status, UserRecord
from async_updater.pipeline.updater import Updater
from async_updater.testing.mock import MockChimeServer, initial_settings
from async_updater.testing.mock.config import MockConfig
from async_updater.testing.sample import generate_users

from .fault_servers import FaultServer, Reply, Request
from .test_faults import Run, mock_process

AK, SK = "AKIDREAD", "read-secret"
CREDS = StaticCredentials(AK, SK)
KEYS = (
    ("inbound_calling", "InboundCalling"),
    ("outbound_calling", "OutboundCalling"),
    ("sms", "SMS"),
)

Key = tuple[str, str]


def as_state(settings: dict[str, bool]) -> dict[str, bool]:
    """The mock's ``{"InboundCalling": ...}`` as a row's fields, the shape of ``before``."""
    return {field: settings[key] for field, key in KEYS}


def before_text(settings: dict[str, bool]) -> str:
    """The exact ``before`` cell for these settings."""
    return json.dumps(as_state(settings))


def desired(path: Path) -> dict[Key, dict[str, bool]]:
    """Each input user's settings, as the mock stores them."""
    out = {}
    for item in CsvSource(path):
        assert isinstance(item, UserRecord)
        out[(item.account_id, item.user_id)] = {
            "InboundCalling": item.inbound_calling,
            "OutboundCalling": item.outbound_calling,
            "SMS": item.sms,
        }
    return out


def field_changes(
    current: dict[Key, dict[str, bool]], wanted: dict[Key, dict[str, bool]]
) -> dict[str, int]:
    """Per row field, for how many users ``current`` differs from ``wanted``."""
    counts = {field: 0 for field, _ in KEYS}
    for key, want in wanted.items():
        for field, name in KEYS:
            counts[field] += current[key][name] != want[name]
    return {field: n for field, n in counts.items() if n}


async def cli(args: list[str | Path], server: MockChimeServer) -> tuple[int, str]:
    """``async-updater run ARGS`` against ``server`` (rate ceiling 4000/s): (exit code, output)."""
    common = ["--endpoint-url", server.url, "--no-progress", "--rate", "4000"]
    parsed = build_parser().parse_args(["run", *(str(a) for a in args), *common])
    text = io.StringIO()
    code = await run_command(parsed, credentials=CREDS, out=text)
    return code, text.getvalue()


def rows_by_user(report: Path) -> dict[Key, Any]:
    rows = list(read_report(report))
    found = {(r.account_id, r.user_id): r for r in rows}
    assert len(found) == len(rows), "one row per user"
    return found


def mock_config(**kw: Any) -> MockConfig:
    base: dict[str, Any] = {"credentials": {AK: SK}, "seed": 13}
    base.update(kw)
    return MockConfig(**base)


# -- (a) the round trip: run --read-before, undo, run UNDO.csv ------------------------------------


async def test_round_trip_of_3000_users_restores_every_state_and_reads_each_user_once(
    tmp_path: Path,
) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 3000, 5, seed=21)
    wanted = desired(users)
    initial = {key: initial_settings(*key) for key in wanted}
    report, summary = tmp_path / "report.csv", tmp_path / "summary.json"
    config = mock_config(
        rate_limit=2000.0, burst=40, latency_ms=2, fault_rate=0.02, record_events=True
    )
    async with MockChimeServer(config) as server:
        # 1. run --read-before
        code, text = await cli(
            [
                users,
                "--read-before",
                "--report",
                report,
                "--rate",
                "4000",
                "--summary-json",
                summary,
            ],
            server,
        )
        assert code == 0, text
        rows = rows_by_user(report)
        assert set(rows) == set(wanted)
        for key, row in rows.items():
            assert row.status == Status.UPDATED.value
            assert row.before == before_text(initial[key]), key  # the state before the run
        assert server.applied == wanted
        # Each user read exactly once: every other read was throttled or faulted, and retried.
        assert set(server.read_counts) == set(wanted)
        assert set(server.read_counts.values()) == {1}
        counters = server.counters
        assert counters["reads"] == 3000 + counters["reads_throttled"] + counters["reads_faulted"]
        assert counters["reads_throttled"] + counters["reads_faulted"] > 0  # retries were seen
        assert set(server.apply_counts.values()) == {1}
        # ...and each read was answered before that user's write was sent.
        answered: dict[Key, float] = {}
        for event in server.events:
            key = (event.account_id, event.user_id)
            if event.status == 200:
                answered.setdefault(key, event.responded)
            elif event.status == 204:
                assert answered[key] <= event.arrived, key
        plan = json.loads(summary.read_text())["plan"]
        changing = sum(1 for key in wanted if initial[key] != wanted[key])
        assert plan == {
            "changing": changing,
            "compared": 3000,
            "fields": field_changes(initial, wanted),
        }
        assert not journal_path(report).exists()  # a finished run leaves no journal

        # 2. undo
        undo = tmp_path / "undo.csv"
        assert main(["undo", str(report), "--out", str(undo)]) == 0
        assert len(desired(undo)) == 3000

        # 3. run UNDO.csv: a normal run
        code, text = await cli([undo, "--report", tmp_path / "undo-report.csv"], server)
        assert code == 0, text
        for key in wanted:
            assert server.settings(*key) == initial[key], key
    print(
        f"\nround trip: 3000/3000 users back to their initial state; first run read each user "
        f"once ({counters['reads']} GETs = 3000 + {counters['reads_throttled']} throttled + "
        f"{counters['reads_faulted']} faulted)"
    )


# -- (b) --skip-unchanged -----------------------------------------------------------------------


async def test_skip_unchanged_writes_only_users_that_differ_and_a_second_run_writes_nothing(
    tmp_path: Path,
) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 600, 3, seed=22)
    wanted = desired(users)
    initial = {key: initial_settings(*key) for key in wanted}
    already = {key for key in wanted if initial[key] == wanted[key]}
    assert 0 < len(already) < 600  # about one in eight users starts as asked
    async with MockChimeServer(mock_config(rate_limit=2000.0, latency_ms=1)) as server:
        first = tmp_path / "first.csv"
        code, text = await cli([users, "--skip-unchanged", "--report", first], server)
        assert code == 0, text
        rows = rows_by_user(first)
        for key, row in rows.items():
            assert row.status == ("unchanged" if key in already else "updated"), key
            assert row.before == before_text(initial[key])
            if key in already:
                assert (row.message, row.error_code) == ("already as asked; nothing written", "")
        assert set(server.apply_counts) == set(wanted) - already
        assert server.applied == {k: v for k, v in wanted.items() if k not in already}

        writes, reads = server.counters["accepted"], dict(server.read_counts)
        second = tmp_path / "second.csv"
        summary = tmp_path / "summary.json"
        code, text = await cli(
            [users, "--skip-unchanged", "--report", second, "--summary-json", summary], server
        )
        assert code == 0, text
        assert server.counters["accepted"] == writes  # 0 writes
        rows = rows_by_user(second)
        assert set(rows) == set(wanted)
        for key, row in rows.items():
            assert (row.status, row.before) == ("unchanged", before_text(wanted[key])), key
        assert all(server.read_counts[key] == reads.get(key, 0) + 1 for key in wanted)
        data = json.loads(summary.read_text())
        assert data["counts"]["unchanged"] == 600 and data["counts"]["updated"] == 0
        assert data["plan"] == {"changing": 0, "compared": 600, "fields": {}}


# -- (c) the plan: --dry-run --read-before -------------------------------------------------------


async def test_a_plan_reads_every_user_writes_nothing_and_plans_exactly_those_that_differ(
    tmp_path: Path,
) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 600, 3, seed=23)
    wanted = desired(users)
    async with MockChimeServer(mock_config(rate_limit=2000.0, latency_ms=1)) as server:
        # Some users already hold what the file asks: apply the first 200 rows beforehand.
        head = tmp_path / "head.csv"
        head.write_text("".join(users.read_text().splitlines(keepends=True)[:201]))
        assert (await cli([head, "--report", tmp_path / "head-report.csv"], server))[0] == 0
        current = {key: server.settings(*key) for key in wanted}
        differ = {key for key in wanted if current[key] != wanted[key]}
        writes = server.counters["accepted"]

        plan, summary = tmp_path / "plan.csv", tmp_path / "summary.json"
        code, text = await cli(
            [users, "--dry-run", "--read-before", "--report", plan, "--summary-json", summary],
            server,
        )
        assert code == 0, text
        assert server.counters["accepted"] == writes  # 0 writes
        rows = rows_by_user(plan)
        planned = {key for key, row in rows.items() if row.status == "planned"}
        assert planned == differ
        assert {row.status for key, row in rows.items() if key not in differ} == {"unchanged"}
        for key, row in rows.items():
            assert row.before == before_text(current[key]), key
            if key in differ:
                assert row.message.startswith("would change "), row.message
        assert all(server.read_counts[key] >= 1 for key in wanted)
        data = json.loads(summary.read_text())
        assert data["counts"]["planned"] == len(differ)
        assert data["counts"]["unchanged"] == 600 - len(differ)
        assert data["plan"] == {
            "changing": len(differ),
            "compared": 600,
            "fields": field_changes(current, wanted),
        }
        assert f"plan       {len(differ)} of 600 users would change (" in text


# -- (d) a failed read ----------------------------------------------------------------------------


async def test_a_read_answered_with_an_error_fails_the_row_with_a_read_code_and_sends_no_write(
    tmp_path: Path,
) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 50, 2, seed=24)
    with open(users, "a", encoding="utf-8") as f:
        f.write("acct-gone,gone-user,true,true,true\n")
    report = tmp_path / "report.csv"
    async with MockChimeServer(mock_config(not_found=frozenset({"gone-user"}))) as server:
        code, text = await cli([users, "--read-before", "--report", report], server)
    assert code == 1, text
    row = rows_by_user(report)[("acct-gone", "gone-user")]
    assert (row.status, row.http_status, row.error_code, row.before) == (
        "failed",
        "404",
        "Read:NotFoundException",
        "",
    )
    assert row.message.startswith("the read failed, nothing was written: ")
    assert ("acct-gone", "gone-user") not in server.apply_counts  # no write was sent
    assert server.counters["reads"] == 51 and server.counters["accepted"] == 50


async def test_a_read_of_the_wrong_shape_or_throttled_to_the_end_fails_and_sends_no_write() -> None:
    telephony = {"InboundCalling": False, "OutboundCalling": False, "SMS": False}
    state = json.dumps({"UserSettings": {"Telephony": telephony}}).encode()

    def decide(request: Request) -> Reply:
        if request.method == "PUT":
            return Reply(204, headers={"x-amzn-RequestId": "rid-put"})
        if request.user_id == "html":
            return Reply(200, b"<html>maintenance</html>")
        if request.user_id == "throttled":
            return Reply(
                429,
                b'{"Message": "Rate exceeded"}',
                {"x-amzn-ErrorType": "ThrottledClientException"},
            )
        return Reply(200, state, {"x-amzn-RequestId": "rid-get"})

    records = [
        UserRecord("acct", u, True, False, True, i + 2)
        for i, u in enumerate(["ok", "html", "throttled"])
    ]
    sink = MemoryReport()
    async with FaultServer(decide) as server:
        config = UpdaterConfig(
            endpoint_url=server.url, read_before=True, max_attempts=2, backoff_base=0.001
        )
        async with Updater(config, credentials=CREDS) as updater:
            await updater.run(records, sink)
        sent = [(r.method, r.user_id) for r in server.requests]
    by_user = {r.user_id: r for r in sink.results}
    ok, html, throttled = by_user["ok"], by_user["html"], by_user["throttled"]
    assert (ok.status, ok.before) == (
        Status.UPDATED,
        '{"inbound_calling": false, "outbound_calling": false, "sms": false}',
    )
    assert ok.changes == ("inbound_calling", "sms")
    assert (html.status, html.error_code, html.http_status, html.before) == (
        Status.FAILED,
        "Read:InvalidState",
        200,
        "",
    )
    assert "the answer is not JSON: <html>maintenance</html>" in html.message
    assert (throttled.status, throttled.error_code, throttled.attempts) == (
        Status.FAILED,
        "Read:ThrottledClientException",
        2,
    )
    assert sorted(sent) == sorted(
        [("GET", "ok"), ("PUT", "ok"), ("GET", "html"), ("GET", "throttled"), ("GET", "throttled")]
    )


# -- (e) --resume keeps before --------------------------------------------------------------------


def test_resume_after_kill_9_keeps_each_users_first_before_never_the_runs_own_write(
    tmp_path: Path,
) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 1500, 3, seed=25)
    wanted = desired(users)
    report = tmp_path / "report.csv"
    # 60 ms per answer, given after the write is applied: a kill always finds writes that
    # landed on the server with no row in the report yet.
    with mock_process("--rate-limit", "1500", "--latency-ms", "60") as mock:
        run = Run(tmp_path, users, report, mock.url, "--read-before")
        try:
            run.wait_for_rows(400)
            run.proc.send_signal(signal.SIGKILL)
            assert run.proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            run.kill()
        mock.wait_until_idle()  # writes already on the wire land
        reported = {(r.account_id, r.user_id) for r in read_report(report)}
        applied_unreported = set(mock.applied()) - reported
        assert applied_unreported, "the kill must catch writes applied without a row"
        assert journal_path(report).exists()

        resumed = Run(tmp_path, users, report, mock.url, "--read-before", "--resume")
        assert resumed.finish() == 0, resumed.stderr()
        rows = rows_by_user(report)
        assert set(rows) == set(wanted)
        for key, row in rows.items():
            assert row.status == "updated", key
            # Never the state the first run wrote, for those it wrote without a row too.
            assert row.before == before_text(initial_settings(*key)), key
        assert {k: s for k, (s, _) in mock.applied().items()} == wanted
    assert not journal_path(report).exists()
    print(
        f"\nresume after kill -9: {len(applied_unreported)} users written without a row kept "
        "their first before-state"
    )


# -- the demo -------------------------------------------------------------------------------------


async def test_demo_previews_runs_and_undoes_and_the_server_ends_where_it_began(
    tmp_path: Path,
) -> None:
    from async_updater.cli import demo_command

    parsed = build_parser().parse_args(
        ["demo", "--users", "300", "--accounts", "3", "--out", str(tmp_path), "--no-progress"]
    )
    with open(tmp_path / "out.txt", "w") as out:
        code = await demo_command(parsed, out=out)
    text = (tmp_path / "out.txt").read_text()
    assert code == 0, text
    assert "users would change (" in text  # the preview's plan
    assert "300/300 users read exactly once by the run" in text
    assert "wrote 300 users to" in text
    assert "round trip: 300/300 users hold the settings they had before the run" in text
