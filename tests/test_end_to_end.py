"""End to end against the mock server, which verifies every SigV4 signature independently,
throttles with a token bucket, injects faults, and records what it applied."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from pathlib import Path

from async_updater.aws.credentials import StaticCredentials
from async_updater.cli import build_parser, run_command
from async_updater.config import UpdaterConfig
from async_updater.io.report import MemoryReport
from async_updater.io.source import CsvSource
from async_updater.model import Status, UserRecord
from async_updater.operations.base import HttpRequest
from async_updater.operations.chime import ChimeUpdateUserSettings
from async_updater.pipeline.updater import Updater
from async_updater.testing.mock import MockChimeServer
from async_updater.testing.mock.config import MockConfig
from async_updater.testing.sample import generate_users, write_users

from .fault_servers import FaultServer, Reply, Request, ok

AK, SK = "AKIDE2E", "e2e-secret"
CREDS = StaticCredentials(AK, SK)


def mock_config(**kw: object) -> MockConfig:
    base: dict[str, object] = {"credentials": {AK: SK}, "seed": 1}
    base.update(kw)
    return MockConfig(**base)  # type: ignore[arg-type]


def expected_state(path: Path) -> dict[tuple[str, str], dict[str, bool]]:
    out = {}
    for item in CsvSource(path):
        if isinstance(item, UserRecord):
            out[(item.account_id, item.user_id)] = {
                "InboundCalling": item.inbound_calling,
                "OutboundCalling": item.outbound_calling,
                "SMS": item.sms,
            }
    return out


def report_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


async def cli(args: list[str], server: MockChimeServer, creds: StaticCredentials = CREDS) -> int:
    parsed = build_parser().parse_args(
        ["run", *args, "--endpoint-url", server.url, "--no-progress"]
    )
    return await run_command(parsed, credentials=creds, out=open(os.devnull, "w"))


async def test_library_run_applies_every_row_under_throttling_and_faults() -> None:
    records = [
        UserRecord(f"acct{i % 3}", f"user-{i}", i % 2 == 0, i % 3 == 0, i % 5 == 0, i + 2)
        for i in range(600)
    ]
    # A bucket of one token and a limit slow start must cross: throttles are certain however
    # slowly a loaded machine sends (at 400/s with a bucket of 20 a loaded run saw only 2).
    cfg = mock_config(rate_limit=200.0, burst=1, latency_ms=5, fault_rate=0.05)
    async with MockChimeServer(cfg) as server:
        config = UpdaterConfig(endpoint_url=server.url, rate=1200.0, concurrency=16)
        sink = MemoryReport()
        async with Updater(config, credentials=CREDS) as up:
            summary = await up.run(records, sink)
    assert len(sink.results) == 600
    assert {r.status for r in sink.results} == {Status.UPDATED}
    assert server.applied == {
        (r.account_id, r.user_id): {
            "InboundCalling": r.inbound_calling,
            "OutboundCalling": r.outbound_calling,
            "SMS": r.sms,
        }
        for r in records
    }
    assert server.counters["throttled"] > 0 and server.counters["faults"] > 0
    assert summary.throttles == server.counters["throttled"]
    assert summary.counts["updated"] == 600


async def test_per_account_limits_one_account_paused_by_the_server_does_not_hold_the_others() -> (
    None
):
    """The server pauses account a1 for a minute (a 429 with Retry-After to its first request).
    On the server's own record, a2 and a3 are served in full meanwhile, and a1 sends nothing
    but what was already on its way. (With one limit for the run, the pause holds them all:
    ``test_retry_after_pauses_sending_for_the_whole_scope``.)"""
    throttled = json.dumps({"Code": "ThrottledClientException", "Message": "slow down"})
    pause = Reply(
        429,
        throttled.encode(),
        {"Retry-After": "60", "x-amzn-ErrorType": "ThrottledClientException"},
    )
    others_done = asyncio.Event()
    served: set[tuple[str, str]] = set()
    a1_requests_when_others_done: list[int] = []

    def account(req: Request) -> str:
        return req.path.split("/")[2]

    def decide(req: Request) -> Reply:
        if account(req) == "a1" and not any(account(r) == "a1" for r in server.requests[:-1]):
            return pause
        served.add((account(req), req.user_id))
        if not others_done.is_set() and sum(1 for a, _ in served if a != "a1") == 40:
            a1_requests_when_others_done.append(
                sum(1 for r in server.requests if account(r) == "a1")
            )
            others_done.set()
        return ok()

    # Sorted by account, as exports are: a1's rows come first.
    records = [
        UserRecord(a, f"u{i}", True, False, True, i + 2)
        for a in ("a1", "a2", "a3")
        for i in range(20)
    ]
    async with FaultServer(decide) as server:
        config = UpdaterConfig(endpoint_url=server.url, limit_scope="account", concurrency=8)
        sink = MemoryReport()
        async with Updater(config, credentials=CREDS) as up:
            run = asyncio.ensure_future(up.run(records, sink))
            # A deadline well inside a1's pause: the others must not wait it out.
            await asyncio.wait_for(others_done.wait(), 30)
            up.stop()
            summary = await asyncio.wait_for(run, 30)
    a1 = [r for r in server.requests if account(r) == "a1"]
    paused_at = a1[0].n
    # Every request of a2 and a3 reached the server, most of them after a1 was paused...
    assert {(a, u) for a, u in served if a != "a1"} == {
        (r.account_id, r.user_id) for r in records if r.account_id != "a1"
    }
    assert sum(1 for r in server.requests if r.n > paused_at and account(r) != "a1") > 0
    # ...while a1 sent only what was already in flight when its 429 came (its scope's cap).
    [a1_sent] = a1_requests_when_others_done
    assert a1_sent == len(a1) <= 1 + 8
    assert len(a1) < 20  # a1 did not finish: it was waiting
    assert summary.cooldowns == 1 and summary.interrupted
    done = {(r.account_id, r.user_id) for r in sink.results if r.status is Status.UPDATED}
    assert done == served  # what the report says is what the server served


async def test_cli_report_has_one_row_per_input_row_and_the_server_matches(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 300, 4, seed=3)
    with open(users, "a", encoding="utf-8") as f:
        f.write("acct-x,,true,false,true\n")  # empty user id: invalid
        f.write("acct-y,u-bad,maybe,false,true\n")  # bad boolean: invalid
    report = tmp_path / "report.csv"
    async with MockChimeServer(mock_config(rate_limit=300.0, not_found={"gone-user"})) as server:
        code = await cli([str(users), "--report", str(report), "--rate", "900"], server)
    rows = report_rows(report)
    assert len(rows) == 302
    assert code == 1  # two invalid rows
    by_status = {s: sum(r["status"] == s for r in rows) for s in ("updated", "failed", "invalid")}
    assert by_status == {"updated": 300, "failed": 0, "invalid": 2}
    assert server.applied == expected_state(users)
    invalid = sorted(r["message"] for r in rows if r["status"] == "invalid")
    assert invalid[0].startswith("line 302: user_id")
    assert invalid[1].startswith("line 303: inbound_calling")


async def test_ids_with_slashes_spaces_percent_and_unicode_land_on_the_right_user(
    tmp_path: Path,
) -> None:
    ids = ["a/b", "with space", "100%", "q?x#y", "ünï/cødé 用户", "..x", "~tilde", "+plus"]
    users = tmp_path / "users.csv"
    write_users(users, iter([UserRecord("acct/1 %", u, True, True, False) for u in ids]))
    async with MockChimeServer(mock_config()) as server:
        code = await cli([str(users), "--report", str(tmp_path / "r.csv")], server)
    assert code == 0
    assert sorted(server.applied) == sorted(("acct/1 %", u) for u in ids)


async def test_mock_rejects_a_wrong_secret_so_signing_is_really_checked(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 5)
    report = tmp_path / "r.csv"
    async with MockChimeServer(mock_config()) as server:
        code = await cli(
            [str(users), "--report", str(report)], server, StaticCredentials(AK, "wrong-secret")
        )
    assert code == 1
    assert server.applied == {}
    rows = report_rows(report)
    assert {(r["status"], r["http_status"]) for r in rows} == {("failed", "403")}
    assert all(r["error_code"] == "InvalidSignatureException" for r in rows)


async def test_throttling_and_503_are_retried_404_is_final_with_code(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    write_users(
        users,
        iter(
            [UserRecord("acct", f"u{i}", True, False, True) for i in range(100)]
            + [UserRecord("acct", "missing-user", True, True, True)]
        ),
    )
    report = tmp_path / "r.csv"
    # A limit this job's slow start passes for sure (it grows by a share of the work left per
    # round trip, so a hundred rows may end before it reaches 200/s), and a bucket of one.
    cfg = mock_config(rate_limit=50.0, burst=1, fault_rate=0.2, not_found={"missing-user"})
    async with MockChimeServer(cfg) as server:
        code = await cli([str(users), "--report", str(report), "--rate", "1000"], server)
    rows = {r["user_id"]: r for r in report_rows(report)}
    assert code == 1
    missing = rows.pop("missing-user")
    assert (missing["status"], missing["http_status"], missing["error_code"]) == (
        "failed",
        "404",
        "NotFoundException",
    )
    assert missing["message"]
    assert {r["status"] for r in rows.values()} == {"updated"}
    assert any(int(r["attempts"]) > 1 for r in rows.values())
    assert server.counters["throttled"] > 0 and server.counters["faults"] > 0


class EmptyBodyOperation(ChimeUpdateUserSettings):
    """A second operation: the same route with a body the server must refuse (400)."""

    name = "empty-body"

    def build(self, record: UserRecord) -> HttpRequest:
        return HttpRequest(
            "PUT", f"/accounts/{record.account_id}/users/{record.user_id}/settings", b"{}"
        )


async def test_400_bad_request_is_final_and_reported_with_code_and_message() -> None:
    async with MockChimeServer(mock_config()) as server:
        config = UpdaterConfig(endpoint_url=server.url, rate=100.0)
        sink = MemoryReport()
        async with Updater(config, credentials=CREDS, operation=EmptyBodyOperation()) as up:
            await up.run([UserRecord("a", "u", True, True, True)], sink)
    (r,) = sink.results
    assert (r.status, r.http_status, r.error_code, r.attempts) == (
        Status.FAILED,
        400,
        "BadRequestException",
        1,
    )
    assert r.message
    assert server.applied == {}


async def test_dry_run_sends_nothing(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 20)
    report = tmp_path / "r.csv"
    async with MockChimeServer(mock_config()) as server:
        code = await cli([str(users), "--report", str(report), "--dry-run"], server)
    assert code == 0
    assert server.counters["requests"] == 0
    assert {r["status"] for r in report_rows(report)} == {"planned"}


async def test_missing_credentials_exit_2_before_anything_is_sent(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    async with MockChimeServer(mock_config()) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "async_updater",
            "run",
            str(users),
            "--endpoint-url",
            server.url,
            "--report",
            str(tmp_path / "r.csv"),
            "--no-progress",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert server.counters["requests"] == 0
    message = err.decode().strip()
    assert message.count("\n") == 0 and "no AWS credentials found" in message
    assert "Traceback" not in message


async def test_cli_reads_credentials_from_the_environment_and_exits_0(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 30, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=AK,
        AWS_SECRET_ACCESS_KEY=SK,
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    summary = tmp_path / "summary.json"
    async with MockChimeServer(mock_config()) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "async_updater",
            "run",
            str(users),
            "--endpoint-url",
            server.url,
            "--report",
            str(tmp_path / "r.csv"),
            "--no-progress",
            "--summary-json",
            str(summary),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert len(server.applied) == 30
    assert json.loads(summary.read_text())["counts"]["updated"] == 30
    assert SK not in out.decode() + err.decode()


async def test_resume_skips_users_already_updated_and_keeps_one_row_per_input_row(
    tmp_path: Path,
) -> None:
    users = tmp_path / "users.csv"
    generate_users(users, 200, 2, seed=5)
    report = tmp_path / "r.csv"
    async with MockChimeServer(mock_config(fault_rate=0.3)) as server:
        # First run: many rows fail because attempts run out quickly (no failure budget, or
        # the run would stop itself at 10%).
        await cli(
            [str(users), "--report", str(report), "--max-attempts", "1", "--max-failures", "100%"],
            server,
        )
        first = {(r["account_id"], r["user_id"]): r["status"] for r in report_rows(report)}
        updated_before = {k for k, s in first.items() if s == "updated"}
        assert 0 < len(updated_before) < 200
        counts_before = dict(server.apply_counts)
        server.set_limits(fault_rate=0.0)
        code = await cli([str(users), "--report", str(report), "--resume"], server)
    rows = report_rows(report)
    assert code == 0
    assert len(rows) == 200 and {r["status"] for r in rows} == {"updated"}
    assert len({(r["account_id"], r["user_id"]) for r in rows}) == 200
    # Nobody updated in the first run was sent again.
    for key in updated_before:
        assert server.apply_counts[key] == counts_before[key] == 1
    assert server.applied == expected_state(users)


async def test_demo_updates_every_sample_user_and_checks_the_server(tmp_path: Path) -> None:
    from async_updater.cli import demo_command

    parsed = build_parser().parse_args(
        ["demo", "--users", "300", "--accounts", "3", "--out", str(tmp_path), "--no-progress"]
    )
    with open(tmp_path / "out.txt", "w") as out:
        await demo_command(parsed, out=out)
    text = (tmp_path / "out.txt").read_text()
    # The preview, undo and round trip are checked in test_read_before.py.
    assert "server check: 0 writes during the preview" in text
    assert "server check: 300/300 users hold the requested settings; 0 applied more" in text
    rows = report_rows(tmp_path / "report.csv")
    assert len(rows) == 300 and {r["status"] for r in rows} == {"updated"}
    timeline = (tmp_path / "timeline.jsonl").read_text().splitlines()
    assert timeline and all("allowed_rate" in json.loads(line) for line in timeline)
