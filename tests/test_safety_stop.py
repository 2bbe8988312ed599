"""Safety stops end to end. What the CLI does with one (exit 3, the cause in one line, the
summary with the resume command) is proved now, with a plugin operation that raises
``SafetyStop``; the stops the pipeline itself makes (wrong secret, clock skew, no usable
Date) against the mock server."""

from __future__ import annotations

import json
import os
import shlex
import textwrap
from pathlib import Path

import pytest

from async_updater.io.reader import read_report
from async_updater.testing.sample import generate_users

from .processes import (
    Run,
    assert_finished,
    cli_env,
    expected_state,
    mock_process,
    one_error_line,
)

STOP_TEXT = "stopped by the plugin after 50 rows (403 AccessDeniedException: no more for you)"
PLUGIN = '''
from async_updater.errors import SafetyStop
from async_updater.operations.chime import ChimeUpdateUserSettings
from async_updater.pipeline.safety import StopCause, StopReason


class StopAfter50(ChimeUpdateUserSettings):
    """Chime's operation, except that it raises SafetyStop at the 51st row it builds."""

    name = "stop-after-50"

    def __init__(self):
        self.built = 0

    def build(self, record):
        self.built += 1
        if self.built > 50:
            raise SafetyStop(
                StopReason(
                    StopCause.CREDENTIALS, {text!r}, 403, "AccessDeniedException",
                    "no more for you",
                )
            )
        return super().build(record)
'''


def install_plugin(folder: Path) -> dict[str, str]:
    """A distribution registering ``stop-after-50`` in ``async_updater.operations``, found
    through ``PYTHONPATH`` as any installed plugin is; returns the environment that sees it."""
    folder.mkdir()
    (folder / "stopping_plugin.py").write_text(PLUGIN.format(text=STOP_TEXT))
    info = folder / "stopping_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stopping-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [async_updater.operations]
            stop-after-50 = stopping_plugin:StopAfter50
            """
        )
    )
    env = cli_env(folder.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH")) if p)
    return env


def test_a_safety_stop_exits_3_with_one_line_and_the_summary_with_the_resume_command(
    tmp_path: Path,
) -> None:
    env = install_plugin(tmp_path / "plugin")
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, 400, 4, seed=31)
    report, summary = tmp_path / "report.csv", tmp_path / "summary.json"
    with mock_process("--latency-ms", "5") as mock:
        run = Run(
            tmp_path, users_csv, report, mock.url,
            "--operation", "stop-after-50", "--concurrency", "8", "--summary-json", str(summary),
            env=env,
        )  # fmt: skip
        code = run.finish()
        applied = mock.applied()
    assert code == 3, run.stderr()
    assert one_error_line(run.stderr(), "async-updater: safety stop: ") == STOP_TEXT
    out = run.stdout()
    assert out.startswith("== summary (safety stop)\n")
    assert f"stopped    {STOP_TEXT}\n" in out
    lines = out.splitlines()
    at = lines.index("next       to finish the run (users already done are skipped):")
    command = shlex.split(lines[at + 1])
    assert command[:3] == ["async-updater", "run", str(users_csv)]
    assert command[-1] == "--resume" and "stop-after-50" in command
    # The requests in flight were finished and reported; nothing unsent got a row.
    rows = list(read_report(report))
    assert 0 < len(rows) <= 50 and {r.status for r in rows} == {"updated"}
    assert {(r.account_id, r.user_id) for r in rows} == set(applied)
    data = json.loads(summary.read_text())
    assert (data["safety_stop"], data["interrupted"]) == (STOP_TEXT, True)


# -- what the pipeline does ---------------------------------------------------------------------


def printed_resume_command(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("next       to finish"))
    return shlex.split(lines[at + 1])


def test_a_wrong_secret_stops_20000_users_within_100_requests_then_the_resume_finishes(
    tmp_path: Path,
) -> None:
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, 20_000, 20, seed=32)
    report = tmp_path / "report.csv"
    with mock_process("--rate-limit", "100000") as mock:
        wrong = cli_env(tmp_path, AWS_SECRET_ACCESS_KEY="not-the-secret")
        run = Run(tmp_path, users_csv, report, mock.url, env=wrong)
        code = run.finish()
        sent = mock.counters()["requests"]
        print(f"\nwrong secret, 20,000 users: exit {code}, {sent} requests sent")
        assert code == 3, run.stderr()
        assert sent <= 100
        cause = one_error_line(run.stderr(), "async-updater: safety stop: ")
        assert "403 InvalidSignatureException" in cause
        assert "The request signature we calculated does not match" in cause
        assert "not-the-secret" not in run.stdout() + run.stderr()

        resumed = Run.command(tmp_path, printed_resume_command(run.stdout()), report)
        assert resumed.finish(120) == 0, resumed.stderr()
        counts = assert_finished(report, mock, expected_state(users_csv))
    assert set(counts.values()) == {1}


def test_a_server_clock_15_minutes_ahead_is_corrected_from_its_date_and_every_user_updated(
    tmp_path: Path,
) -> None:
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, 2000, 4, seed=33)
    report = tmp_path / "report.csv"
    with mock_process("--clock-offset", "900", "--rate-limit", "2000") as mock:
        run = Run(tmp_path, users_csv, report, mock.url)
        code = run.finish()
        skewed = mock.counters().get("clock_skew", 0)
        print(f"\nserver clock +15 min: exit {code}, {skewed} requests rejected for skew")
        assert code == 0, run.stderr()
        assert skewed <= 50
        counts = assert_finished(report, mock, expected_state(users_csv))
    assert set(counts.values()) == {1}
    clock = [line for line in run.stdout().splitlines() if line.startswith("clock ")]
    assert len(clock) == 1
    offset = float(clock[0].split("offset ")[1].split(" s ")[0])
    assert offset == pytest.approx(900.0, abs=3.0)
    assert clock[0].endswith(" s (from the server's Date)")


def test_a_skewed_server_without_a_date_header_is_a_safety_stop_naming_the_clock(
    tmp_path: Path,
) -> None:
    users_csv = tmp_path / "users.csv"
    generate_users(users_csv, 500, 4, seed=34)
    report = tmp_path / "report.csv"
    with mock_process("--clock-offset", "900", "--no-date") as mock:
        run = Run(tmp_path, users_csv, report, mock.url)
        code = run.finish()
        sent = mock.counters()["requests"]
    assert code == 3, run.stderr()
    cause = one_error_line(run.stderr(), "async-updater: safety stop: ")
    assert "clock" in cause and "Date" in cause
    assert "403 InvalidSignatureException: Signature expired: " in cause
    assert sent <= 100
    assert "--resume" in run.stdout()
