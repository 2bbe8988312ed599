"""One run per report: the lock itself (in this process), then real runs as subprocesses
against the mock server in its own process: a second run leaves at once having sent nothing,
a lock left by a killed run is taken over with a notice, and the read-only commands need no
lock."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from async_updater.cli import main
from async_updater.errors import ReportError, ReportLocked
from async_updater.io.lock import LockHolder, ReportLock, lock_path
from async_updater.io.reader import read_report
from async_updater.testing.sample import generate_users

from .processes import (
    MockProcess,
    Run,
    assert_finished,
    cli_env,
    expected_state,
    mock_process,
    one_error_line,
    small_disk,
)

HOST = socket.gethostname()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


# -- the lock ---------------------------------------------------------------------------------


def test_a_second_lock_on_a_report_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    with ReportLock(report) as first:
        assert first.held
        holder = LockHolder.parse(lock_path(report).read_text())
        assert holder is not None and (holder.pid, holder.host) == (os.getpid(), HOST)
        with pytest.raises(ReportLocked) as info:
            ReportLock(report).acquire()
    message = str(info.value)
    assert message == (
        f"{report} is in use by another run (pid {holder.pid} on host {HOST}, since "
        f"{holder.since}; lock file {tmp_path / 'r.csv.lock'}): wait for it to end, or stop "
        "it, before running again"
    )
    assert info.value.holder == str(holder)
    assert isinstance(info.value, ReportError)


def test_a_released_lock_leaves_an_empty_file_and_is_taken_again_without_notice(
    tmp_path: Path,
) -> None:
    report = tmp_path / "r.csv"
    notices: list[str] = []
    with ReportLock(report, notice=notices.append):
        pass
    assert lock_path(report).read_text() == ""
    with ReportLock(report, notice=notices.append) as again:
        assert again.held
    assert notices == []
    assert not report.exists()  # the lock never creates the report itself


def test_a_lock_file_naming_a_dead_process_is_taken_over_with_a_notice_naming_its_pid(
    tmp_path: Path,
) -> None:
    report = tmp_path / "r.csv"
    pid = dead_pid()
    left = LockHolder(pid, HOST, "2026-01-02T03:04:05Z")
    lock_path(report).write_text(left.dump())
    notices: list[str] = []
    with ReportLock(report, notice=notices.append):
        now = LockHolder.parse(lock_path(report).read_text())
        assert now is not None and now.pid != pid
    assert notices == [
        f"taking over the lock of {report} left by pid {pid} on host {HOST}, since "
        "2026-01-02T03:04:05Z (which is no longer running)"
    ]


def test_a_free_lock_left_by_another_host_is_taken_over_and_said_to_be_free(
    tmp_path: Path,
) -> None:
    report = tmp_path / "r.csv"
    lock_path(report).write_text(LockHolder(4242, "elsewhere", "2026-01-02T03:04:05Z").dump())
    notices: list[str] = []
    with ReportLock(report, notice=notices.append):
        pass
    assert len(notices) == 1 and notices[0].endswith(
        "left by pid 4242 on host elsewhere, since 2026-01-02T03:04:05Z (whose lock is free)"
    )


def test_an_unreadable_lock_file_is_simply_taken(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    lock_path(report).write_text("not json\n")
    notices: list[str] = []
    with ReportLock(report, notice=notices.append):
        holder = LockHolder.parse(lock_path(report).read_text())
    assert holder is not None and notices == []


def test_a_lock_in_a_missing_folder_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"cannot create the lock file .*: No such file"):
        ReportLock(tmp_path / "missing" / "r.csv").acquire()


def test_a_lock_that_cannot_name_its_holder_on_a_full_disk_is_a_report_error(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk", 4) as disk:
        filler = disk / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            f.write(b"x" * 65536)  # fills the 4 KiB disk
        lock = ReportLock(disk / "r.csv")
        with pytest.raises(ReportError) as info:
            lock.acquire()
        assert not lock.held
    assert str(info.value) == (
        f"cannot write the lock file {disk / 'r.csv.lock'}: No space left on device"
    )


def test_the_lock_sits_beside_a_symlinked_report_not_at_its_target(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    report.symlink_to("/dev/null")
    assert lock_path(report) == tmp_path / "r.csv.lock"


# -- one run per report, end to end -------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_mock() -> Iterator[MockProcess]:
    """50 ms per answer: at --concurrency 4 a run of 400 users lasts 5 s, 4,000 users 50 s."""
    with mock_process("--latency-ms", "50") as server:
        yield server


@pytest.fixture
def mock(slow_mock: MockProcess) -> MockProcess:
    slow_mock.reset()
    return slow_mock


def users(tmp_path: Path, n: int = 400) -> Path:
    path = tmp_path / "users.csv"
    generate_users(path, n, 4, seed=21)
    return path


def stop(run: Run) -> int:
    """SIGINT, then the exit code (130: the requests in flight are answered and reported)."""
    run.proc.send_signal(signal.SIGINT)
    return run.finish(30)


@pytest.mark.parametrize("mode", ["", "--resume"], ids=["plain", "resume"])
def test_a_second_run_on_the_same_report_exits_2_at_once_naming_the_holder_and_sends_nothing(
    tmp_path: Path, mock: MockProcess, mode: str
) -> None:
    # A first run far longer than starting other processes takes, even on a loaded machine
    # (it is stopped once they are done).
    users_csv, report = users(tmp_path, 4000), tmp_path / "report.csv"
    first = Run(tmp_path, users_csv, report, mock.url, "--concurrency", "4")
    try:
        first.wait_for_rows(20)
        second = Run(tmp_path, users_csv, report, mock.url, *([mode] if mode else []))
        code = second.finish(30)
        took = time.monotonic() - second.started
        # It did not wait for the lock: the first run still holds it.
        assert first.proc.poll() is None, first.stderr()
        assert stop(first) == 130, first.stderr()
    finally:
        first.kill()
    assert code == 2
    assert second.stdout() == ""
    message = one_error_line(second.stderr())
    assert message.startswith(
        f"{report} is in use by another run (pid {first.proc.pid} on host {HOST}, since "
    )
    assert message.endswith(
        f"; lock file {report}.lock): wait for it to end, or stop it, before running again"
    )
    # Every request the server saw is a row of the first run: the second sent nothing, and
    # nobody was applied twice.
    rows = list(read_report(report))
    state = mock.state()
    assert state["counters"]["requests"] == len(rows) == state["applied_users"]
    assert state["max_apply_count"] == 1
    assert {r.status for r in rows} == {"updated"}
    print(
        f"\nsecond run {mode or '(no --resume)'}: exit 2 after {took:.2f} s (process start to "
        f"exit) while the first ran; server requests {state['counters']['requests']} == first "
        f"run's report rows {len(rows)}; applied twice 0"
    )


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_notice_naming_its_pid(
    tmp_path: Path, mock: MockProcess
) -> None:
    users_csv, report = users(tmp_path, 200), tmp_path / "report.csv"
    first = Run(tmp_path, users_csv, report, mock.url, "--concurrency", "4")
    try:
        first.wait_for_rows(10)
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        first.kill()
    left = LockHolder.parse(lock_path(report).read_text())
    assert left is not None and left.pid == first.proc.pid

    resumed = Run(tmp_path, users_csv, report, mock.url, "--resume", "--concurrency", "32")
    assert resumed.finish(60) == 0, resumed.stderr()
    notices = [line for line in resumed.stderr().splitlines() if "taking over the lock" in line]
    assert notices == [
        f"taking over the lock of {report} left by pid {first.proc.pid} on host {HOST}, since "
        f"{left.since} (which is no longer running)"
    ]
    assert_finished(report, mock, expected_state(users_csv))
    # A clean exit leaves the lock file empty: nothing to take over next time.
    assert lock_path(report).read_text() == ""


def test_report_and_merge_reports_work_while_a_run_holds_the_lock(
    tmp_path: Path, mock: MockProcess
) -> None:
    # A first run far longer than starting other processes takes, even on a loaded machine
    # (it is stopped once they are done).
    users_csv, report = users(tmp_path, 4000), tmp_path / "report.csv"
    first = Run(tmp_path, users_csv, report, mock.url, "--concurrency", "4")
    try:
        first.wait_for_rows(20)
        env = cli_env(tmp_path)
        summary = subprocess.run(
            ["async-updater", "report", str(report), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        merged = tmp_path / "merged.csv"
        merge = subprocess.run(
            ["async-updater", "merge-reports", str(merged), str(report)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert first.proc.poll() is None, first.stderr()
        assert stop(first) == 130
    finally:
        first.kill()
    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout)["counts"]["updated"] >= 20
    assert merge.returncode == 0, merge.stderr
    assert len(list(read_report(merged))) >= 20


# -- the CLI, in this process -----------------------------------------------------------------


def test_a_run_on_a_locked_report_touches_nothing_even_with_overwrite(
    tmp_path: Path, mock: MockProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    users_csv, report = users(tmp_path, 5), tmp_path / "report.csv"
    report.write_text("precious\n")
    with ReportLock(report):
        code = main(
            [
                *("run", str(users_csv), "--report", str(report), "--overwrite"),
                *("--endpoint-url", mock.url, "--no-progress"),
            ]
        )
    assert code == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"{report} is in use by another run")
    assert report.read_text() == "precious\n"
    assert not (tmp_path / "report.csv.meta.json").exists()
    assert mock.counters().get("requests", 0) == 0
