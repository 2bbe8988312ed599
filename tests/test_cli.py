"""The command line contract: help, exit codes, one-line errors without tracebacks, nothing sent
and nothing touched when the run cannot start, dry runs, the report and summary files."""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

import async_updater
from async_updater.cli import (
    NOT_RESUMED,
    build_parser,
    main,
    resume_command,
    resume_text,
    run_parser,
    version,
)
from async_updater.model import REPORT_COLUMNS
from async_updater.testing.mock import MockChimeServer
from async_updater.testing.mock.config import MockConfig
from async_updater.testing.sample import generate_users

AK, SK = "AKIDCLITEST", "cli-test-secret"
HEADER = "account_id,user_id,inbound_calling,outbound_calling,sms\n"
# Every option DESIGN.md gives the run command.
DESIGN_RUN_OPTIONS = (
    "--report",
    "--format",
    "--endpoint-url",
    "--region",
    "--profile",
    "--rate",
    "--concurrency",
    "--max-attempts",
    "--resume",
    "--dry-run",
    "--no-progress",
    "--max-failures",
)


class ThreadedMock:
    """The mock server on its own loop in a thread, so ``main()`` can run its own loop."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def __enter__(self) -> MockChimeServer:
        self.thread.start()
        self.server = MockChimeServer(self.config)
        self._call(self.server.__aenter__())
        return self.server

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._call(self.server.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


@pytest.fixture
def server() -> Iterator[MockChimeServer]:
    with ThreadedMock(MockConfig(credentials={AK: SK}, seed=1)) as s:
        yield s


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """An environment with no AWS credentials anywhere; returns it (for subprocesses)."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    empty = tmp_path / "empty-aws-file"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return dict(os.environ)


@pytest.fixture
def aws(no_aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The mock's credentials in the environment, as an operator would set them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    return dict(os.environ)


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    """``main(argv)`` -> (exit code, stdout, stderr), run in ``tmp_path`` (defaults write there)."""
    monkeypatch.chdir(tmp_path)

    def _run(*argv: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def users_csv(tmp_path: Path, n: int = 6, accounts: int = 2, extra: str = "") -> Path:
    path = tmp_path / "users.csv"
    generate_users(path, n, accounts, seed=4)
    if extra:
        with open(path, "a", encoding="utf-8") as f:
            f.write(extra)
    return path


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def one_line_error(err: str) -> str:
    """The whole of stderr, which must be a single line and no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("async-updater: error: ")
    return lines[0].removeprefix("async-updater: error: ")


# -- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    ["run", "demo", "report", "merge-reports", "undo", "plot", "operations", "completion"],
)
def test_help_of_every_subcommand_exits_0(command: str, run: Run) -> None:
    with pytest.raises(SystemExit) as info:
        run(command, "--help")
    assert info.value.code == 0


def test_mock_server_subcommand_takes_the_mock_options_and_serves_until_its_duration(
    run: Run,
) -> None:
    code, out, _ = run("mock-server", "--port", "0", "--rate-limit", "50", "--duration", "0.2")
    assert code == 0
    assert re.fullmatch(r"mock chime server listening on http://127\.0\.0\.1:\d+\n", out), out


def test_mock_server_subcommand_passes_the_clock_date_and_api_options_to_the_mock() -> None:
    import select
    import time
    import urllib.request

    from async_updater.aws.credentials import Credentials
    from async_updater.aws.sigv4 import SigV4Signer

    from .processes import BIN

    args = ["--port", "0", "--clock-offset", "900", "--no-date", "--api", "cognito"]
    proc = subprocess.Popen(
        [str(BIN / "async-updater"), "mock-server", *args, "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        url = line.split("listening on ", 1)[1].strip()
        with urllib.request.urlopen(url + "/_mock/state", timeout=10) as response:
            limits = json.loads(response.read())["limits"]
            assert response.headers.get("Date") is None  # --no-date
        assert (limits["clock_offset_s"], limits["send_date"]) == (900.0, False)
        # --api cognito: an AdminUpdateUserAttributes signed for cognito-idp at the server's
        # time (--clock-offset) is applied.
        body = b'{"UserPoolId": "p", "Username": "u", "UserAttributes": []}'
        target = "AWSCognitoIdentityProviderService.AdminUpdateUserAttributes"
        signer = SigV4Signer(
            host=url.removeprefix("http://"), region="us-east-1", service="cognito-idp"
        )
        headers = signer.sign(
            "POST", "/", body, "application/x-amz-json-1.1", Credentials("AKIDMOCK", "mock-secret"),
            time.time() + 900, headers=(("X-Amz-Target", target),),
        )  # fmt: skip
        request = urllib.request.Request(url + "/", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(url + "/_mock/applied", timeout=10) as response:
            assert json.loads(response.read()) == [["p", "u", {}, 1]]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_mock_server_subcommand_refuses_a_non_loopback_host(run: Run) -> None:
    with pytest.raises(SystemExit) as info:
        run("mock-server", "--host", "0.0.0.0")
    assert info.value.code == 2


def test_run_help_mentions_every_option_of_the_design_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    missing = [opt for opt in DESIGN_RUN_OPTIONS if opt not in text]
    assert missing == []
    assert "csv" in text and "jsonl" in text
    for code in (
        "0 all updated",
        "1 some failed or invalid",
        "2 usage error",
        "report locked by another run",
        "3 safety stop",
        "130 interrupted",
    ):
        assert code in " ".join(text.split())


def test_module_entry_point_help_and_bad_input_via_subprocess(
    tmp_path: Path, aws: dict[str, str]
) -> None:
    help_ = subprocess.run(
        [sys.executable, "-m", "async_updater", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=aws,
    )
    assert help_.returncode == 0
    for command in ("run", "demo", "report", "merge-reports"):
        assert command in help_.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "async_updater", "run", str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
        timeout=60,
        env=aws,
    )
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert one_line_error(missing.stderr) == f"{tmp_path / 'nope.csv'}: no such file"


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["operations"], 0), (["run", "nope.csv"], 2)],
    ids=["operations", "run-bad-input"],
)
def test_a_command_whose_output_has_no_reader_exits_with_its_own_code(
    tmp_path: Path, aws: dict[str, str], argv: list[str], code: int
) -> None:
    """Whoever read its output went away (a closed pipe): its writes raised BrokenPipeError,
    and the command exited 1 with a traceback nobody could read."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "async_updater", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=aws,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait(timeout=60) == code


# -- exit 2 before anything is sent --------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing.csv", "{input}: no such file"),
        (lambda d: d, "{input}: is a directory, not a CSV file"),
        (
            lambda d: _write(d / "u.csv", "account,user\na,u\n"),
            "{input}: the first line is not a header; it must be: "
            "account_id,user_id,inbound_calling,outbound_calling,sms",
        ),
        (
            lambda d: _write(d / "u.csv", HEADER.replace("sms", "text")),
            "{input}: the header does not fit: missing sms; unexpected 'text'. Expected: "
            "account_id,user_id,inbound_calling,outbound_calling,sms",
        ),
        (lambda d: _write(d / "u.csv", ""), "{input}: is empty; the first line must be the header"),
    ],
    ids=["missing-input", "directory-input", "no-header", "bad-header", "empty-input"],
)
def test_unusable_input_exits_2_with_one_line_and_sends_nothing(
    tmp_path: Path,
    run: Run,
    server: MockChimeServer,
    aws: dict[str, str],
    setup: Callable[[Path], Path],
    message: str,
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    path = setup(folder)
    report = tmp_path / "r.csv"
    code, out, err = run("run", path, "--endpoint-url", server.url, "--report", report)
    assert (code, out) == (2, "")
    assert one_line_error(err) == message.format(input=path)
    assert server.counters["requests"] == 0
    assert not report.exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run_args(tmp_path: Path, server: MockChimeServer) -> list[object]:
    """``run`` over ten valid users against ``server``, reporting to ``r.csv``."""
    report = tmp_path / "r.csv"
    return ["run", users_csv(tmp_path), "--endpoint-url", server.url, "--report", report]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--rate", "0"], "--rate: must be a number > 0, not 0.0"),
        (["--rate", "-5"], "--rate: must be a number > 0, not -5.0"),
        (["--rate", "nan"], "--rate: must be a number > 0, not nan"),
        (["--concurrency", "0"], "--concurrency: must be a whole number >= 1, not 0"),
        (["--max-attempts", "0"], "--max-attempts: must be a whole number >= 1, not 0"),
        (["--timeout", "0"], "--timeout: must be a number > 0, not 0.0"),
        (["--shard", "3/3"], "--shard: need 0 <= K < N, got 3/3"),
        (["--shard", "x"], "--shard: 'x' is not K/N, e.g. 0/4 (K counts from 0)"),
        (
            ["--max-failures", "lots"],
            "--max-failures: 'lots' is neither a number of rows (e.g. 50) nor a percentage "
            "(e.g. 10%)",
        ),
        (
            ["--max-failures", "120%"],
            "--max-failures: a percentage must be between 0% and 100%, not 120.0%",
        ),
        (
            ["--endpoint-url", "ftp://example.com"],
            "--endpoint-url: 'ftp://example.com' is not an http(s) URL with a host",
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_option_value_exits_2_with_a_message_naming_the_option(
    tmp_path: Path,
    run: Run,
    server: MockChimeServer,
    aws: dict[str, str],
    option: list[str],
    message: str,
) -> None:
    args = run_args(tmp_path, server)
    code, _, err = run(*args, *option)
    assert (code, one_line_error(err)) == (2, message)
    assert server.counters["requests"] == 0


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (["--rate", "fast"], "argument --rate: invalid float value: 'fast'"),
        (
            ["--concurrency", "1.5"],
            "argument --concurrency: invalid value: '1.5' (a whole number, or auto)",
        ),
        (["--format", "xml"], "argument --format: invalid choice: 'xml' (choose from "),
    ],
    ids=["rate-not-a-number", "concurrency-not-whole", "unknown-format"],
)
def test_unparseable_option_exits_2_with_a_single_error_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], error: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", str(users_csv(tmp_path)), *option])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert errors[0].startswith(f"async-updater run: error: {error}")


def test_infinite_timeout_is_refused_like_any_bad_value(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    args = run_args(tmp_path, server)
    code, _, err = run(*args, "--timeout", "inf", "--no-progress")
    assert code == 2
    assert one_line_error(err).startswith("--timeout: ")


def test_report_in_a_missing_folder_exits_2(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    report = tmp_path / "no-such-folder" / "r.csv"
    args = ["run", users_csv(tmp_path), "--endpoint-url", server.url, "--report", report]
    code, _, err = run(*args)
    assert (code, one_line_error(err)) == (2, f"--report: folder {report.parent} does not exist")
    assert server.counters["requests"] == 0


def test_report_under_a_regular_file_exits_2_and_sends_nothing(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    (tmp_path / "afile").write_text("x")
    report = tmp_path / "afile" / "r.csv"
    args = ["run", users_csv(tmp_path), "--endpoint-url", server.url, "--report", report]
    code, _, err = run(*args, "--no-progress")
    assert code == 2
    assert one_line_error(err) == f"--report: {report.parent} is not a folder"
    assert server.counters["requests"] == 0


def test_report_that_is_a_directory_exits_2(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    args = ["run", users_csv(tmp_path), "--endpoint-url", server.url, "--report", tmp_path]
    code, _, err = run(*args)
    assert (code, one_line_error(err)) == (2, f"--report: {tmp_path} is a directory")


def test_existing_report_without_resume_or_overwrite_exits_2_and_is_left_alone(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    report = tmp_path / "r.csv"
    report.write_text("precious\n")
    args = ["run", users_csv(tmp_path), "--endpoint-url", server.url, "--report", report]
    code, _, err = run(*args)
    assert code == 2
    assert one_line_error(err) == (
        f"{report} already exists: add --resume to continue that run, --overwrite to start "
        "over, or choose another --report"
    )
    assert report.read_text() == "precious\n"
    assert server.counters["requests"] == 0


@pytest.mark.parametrize("mode", ["--resume", "--overwrite"])
def test_no_credentials_exits_2_sends_nothing_and_leaves_the_report_byte_identical(
    tmp_path: Path, run: Run, server: MockChimeServer, no_aws: dict[str, str], mode: str
) -> None:
    users = users_csv(tmp_path, 4)
    report = tmp_path / "r.csv"
    # A real earlier run's report and meta, so --resume gets as far as it can.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", AK)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SK)
        assert run("run", users, "--endpoint-url", server.url, "--report", report)[0] == 0
    server.reset()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code, _, err = run("run", users, "--endpoint-url", server.url, "--report", report, mode)
    assert code == 2
    assert one_line_error(err).startswith("no AWS credentials found")
    assert server.counters["requests"] == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


# -- runs ---------------------------------------------------------------------------------------


def test_dry_run_sends_nothing_and_reports_every_row_planned(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    report = tmp_path / "r.csv"
    code, out, _ = run(
        "run", users_csv(tmp_path, 8), "--endpoint-url", server.url, "--report", report,
        "--dry-run",
    )  # fmt: skip
    assert code == 0
    assert "planned 8" in out
    assert server.counters["requests"] == 0
    got = rows(report)
    assert len(got) == 8 and {r["status"] for r in got} == {"planned"}
    assert all(re.fullmatch(r"PUT /accounts/[^/]+/users/[^/]+/settings", r["message"]) for r in got)


def test_dry_run_without_credentials_still_validates(
    tmp_path: Path, run: Run, server: MockChimeServer, no_aws: dict[str, str]
) -> None:
    report = tmp_path / "r.csv"
    users = users_csv(tmp_path, 3, extra="a,u,maybe,false,true\n")
    code, _, err = run("run", users, "--endpoint-url", server.url, "--report", report, "--dry-run")
    assert code == 1, err
    assert [r["status"] for r in rows(report)] == ["planned"] * 3 + ["invalid"]
    assert server.counters["requests"] == 0


def test_some_invalid_rows_exit_1_and_every_row_is_in_the_report(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    users = users_csv(tmp_path, 6, extra="acct-x,,true,false,true\nacct-y,u,maybe,false,true\n")
    report = tmp_path / "r.jsonl"
    code, out, err = run(
        "run", users, "--endpoint-url", server.url, "--report", report, "--format", "jsonl",
        "--no-progress",
    )  # fmt: skip
    assert code == 1, err
    lines = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["status"] for r in lines) == ["invalid"] * 2 + ["updated"] * 6
    assert sorted(r["message"] for r in lines if r["status"] == "invalid") == [
        "line 8: user_id: is empty",
        "line 9: inbound_calling: 'maybe' is not a boolean; expected true or false (or 1/0, "
        "yes/no)",
    ]
    assert len(server.applied) == 6
    assert "invalid 2" in out


def test_header_only_input_exits_0_with_nothing_to_do(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    users = _write(tmp_path / "users.csv", HEADER)
    report = tmp_path / "r.csv"
    code, out, _ = run("run", users, "--endpoint-url", server.url, "--report", report)
    assert code == 0
    assert f"{users} has a header but no rows: nothing to do" in out
    assert report.read_text() == ",".join(REPORT_COLUMNS) + "\n"
    assert server.counters["requests"] == 0


def test_summary_json_holds_the_counts_and_the_report_path(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    users = users_csv(tmp_path, 10, extra="a,u,bad,0,1\n")
    report, summary = tmp_path / "r.csv", tmp_path / "summary.json"
    code, _, _ = run(
        "run", users, "--endpoint-url", server.url, "--report", report, "--summary-json", summary,
    )  # fmt: skip
    assert code == 1
    data = json.loads(summary.read_text())
    assert data["counts"] == {
        "updated": 10,
        "unchanged": 0,
        "failed": 0,
        "invalid": 1,
        "planned": 0,
    }
    assert (data["rows"], data["requests"], data["report_path"]) == (11, 10, str(report))
    assert data["interrupted"] is False
    assert data["skipped_already_updated"] == 0
    assert set(data["latency_ms"]) == {"p50", "p95", "p99"}
    assert data["latency_ms"]["p50"] > 0


def test_resume_after_a_finished_run_sends_nothing_and_keeps_one_row_per_input_row(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    users = users_csv(tmp_path, 5, extra="a,u,bad,0,1\n")
    report = tmp_path / "r.csv"
    args = ("run", users, "--endpoint-url", server.url, "--report", report)
    assert run(*args)[0] == 1
    sent = server.counters["requests"]
    code, _, err = run(*args, "--resume")
    assert code == 1
    assert "resuming: 5 users already updated" in err
    assert server.counters["requests"] == sent
    assert sorted(r["status"] for r in rows(report)) == ["invalid"] + ["updated"] * 5


# -- the report subcommand ---------------------------------------------------------------------


def _finished_report(tmp_path: Path, run: Run, server: MockChimeServer) -> Path:
    report = tmp_path / "r.csv"
    users = users_csv(tmp_path, 4, extra="a,u,bad,0,1\n")
    assert run("run", users, "--endpoint-url", server.url, "--report", report)[0] == 1
    return report


def test_report_command_summarises_a_finished_report(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    report = _finished_report(tmp_path, run, server)
    code, out, err = run("report", report)
    assert (code, err) == (1, "")
    assert f"== report {report}" in out
    assert re.search(r"rows\s+5\s+updated 4  failed 0  invalid 1", out), out
    assert "error      InvalidRow x1: line 6: inbound_calling: 'bad' is not a boolean" in out
    code, out, _ = run("report", report, "--json")
    data = json.loads(out)
    assert (code, data["rows"], data["counts"]["updated"], data["requests"]) == (1, 5, 4, 4)


@pytest.mark.parametrize(
    ("invalid_row_last", "counts", "expected_code"),
    [(False, {"updated": 3, "invalid": 1}, 1), (True, {"updated": 4, "invalid": 0}, 0)],
    ids=["an-updated-row-cut", "the-invalid-row-cut"],
)
def test_report_command_on_a_partial_report_counts_the_complete_rows(
    tmp_path: Path,
    run: Run,
    server: MockChimeServer,
    aws: dict[str, str],
    invalid_row_last: bool,
    counts: dict[str, int],
    expected_code: int,
) -> None:
    report = _finished_report(tmp_path, run, server)
    header, *lines = report.read_text(encoding="utf-8").splitlines(keepends=True)
    invalid = [line for line in lines if ",invalid," in line]
    updated = [line for line in lines if ",updated," in line]
    assert (len(invalid), len(updated)) == (1, 4)
    # The row written last is cut off mid-line, as by a run killed while writing it.
    ordered = updated + invalid if invalid_row_last else invalid + updated
    partial = header + "".join(ordered[:-1]) + ordered[-1][:5]
    report.write_text(partial, encoding="utf-8")
    code, out, _ = run("report", report, "--json")
    summary = json.loads(out)
    assert summary["rows"] == 4
    assert {k: summary["counts"].get(k, 0) for k in counts} == counts
    assert code == expected_code


def test_report_command_on_an_all_updated_report_exits_0(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str]
) -> None:
    report = tmp_path / "r.csv"
    assert (
        run("run", users_csv(tmp_path, 3), "--endpoint-url", server.url, "--report", report)[0] == 0
    )
    code, out, _ = run("report", report)
    assert code == 0
    assert re.search(r"rows\s+3\s+updated 3  failed 0  invalid 0", out), out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the report {path}: No such file or directory"),
        ("account_id,user_id,inbound_calling\n", "{path} is not an async-updater report"),
    ],
    ids=["missing", "not-a-report"],
)
def test_report_command_on_a_bad_file_exits_2_with_one_line(
    tmp_path: Path, run: Run, content: str | None, message: str
) -> None:
    path = tmp_path / "r.csv"
    if content is not None:
        path.write_text(content)
    code, out, err = run("report", path)
    assert (code, out) == (2, "")
    assert one_line_error(err).startswith(message.format(path=path))


@pytest.mark.parametrize("option", ["--summary-json", "--timeline"])
@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing/out.json", "{option}: folder {path.parent} does not exist"),
        ("", "{option}: {path} is a directory"),
    ],
    ids=["missing-folder", "a-directory"],
)
def test_unwritable_summary_or_timeline_exits_2_before_anything_is_sent(
    tmp_path: Path,
    run: Run,
    server: MockChimeServer,
    aws: dict[str, str],
    option: str,
    where: str,
    message: str,
) -> None:
    path = tmp_path / where if where else tmp_path
    report = tmp_path / "r.csv"
    code, _, err = run(
        "run", users_csv(tmp_path), "--endpoint-url", server.url, "--report", report, option, path
    )
    assert (code, one_line_error(err)) == (2, message.format(option=option, path=path))
    assert server.counters["requests"] == 0
    assert not report.exists()


# -- the resume command -------------------------------------------------------------------------


def other_value(action: argparse.Action) -> list[str]:
    """Arguments giving ``action`` a value other than its default (a space and a quote in
    free text, so the shell quoting is exercised too)."""
    option = next(o for o in action.option_strings if o.startswith("--"))
    if action.nargs == 0:
        return [option]
    if action.choices:
        return [option, next(str(c) for c in action.choices if c != action.default)]
    if action.type is int:
        return [option, str((action.default or 0) + 7)]
    if action.type is float:
        return [option, str((action.default or 0.0) + 2.5)]
    if callable(action.type) and action.type is not str:
        for candidate in ("17", "5%"):  # a value an option of its own type takes
            try:
                value = action.type(candidate)
            except (ValueError, argparse.ArgumentTypeError):
                continue
            if value != action.default:
                return [option, candidate]
    return [option, f"it's {action.dest} value"]


def test_every_run_option_round_trips_through_the_resume_command() -> None:
    parser = build_parser()
    actions = [a for a in run_parser().options() if a.option_strings and a.dest != "help"]
    given = ["run", "my users.csv", *(arg for a in actions for arg in other_value(a))]
    args = parser.parse_args(given)
    cmd = resume_command(args, Path("out dir/r.csv"))
    assert cmd[:2] == ["async-updater", "run"]
    # What the shell hands back after the printed (quoted) command is pasted.
    back = parser.parse_args(shlex.split(shlex.join(cmd))[1:])
    resumed = {n for n in NOT_RESUMED if n != "resume"}
    for action in actions:
        name = action.dest
        if name == "report":
            assert back.report == "out dir/r.csv"
        elif name == "resume":
            assert back.resume is True
        elif name in resumed:
            assert getattr(back, name) == action.default, name
        else:
            assert getattr(back, name) == getattr(args, name) != action.default, name
    assert back.input == "my users.csv"
    # The one-shot options are the ones named, each for its stated reason.
    assert resumed == {"overwrite", "dry_run", "timeline", "summary_json"}


def test_the_resume_command_of_a_run_with_defaults_names_only_input_report_and_resume() -> None:
    args = build_parser().parse_args(["run", "users.csv"])
    assert resume_command(args, Path("users.report.csv")) == [
        *("async-updater", "run", "users.csv", "--report", "users.report.csv", "--resume")
    ]


def test_resume_command_keeps_a_value_that_starts_with_a_dash_attached_to_its_option() -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "u.csv", "--method=-weird", "--dry-run", "--overwrite"])
    cmd = resume_command(args, Path("r.csv"))
    assert "--method=-weird" in cmd
    assert "--dry-run" not in cmd and "--overwrite" not in cmd
    assert parser.parse_args(cmd[1:]).method == "-weird"


# -- read before write: options --------------------------------------------------------------


def test_run_help_explains_preview_run_and_undo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in (
        "--read-before",
        "--skip-unchanged",
        "--read-path-template",
        "--read-field",
        "'run --dry-run --read-before' reads every user",
        "'undo REPORT --out UNDO.csv' writes the input that restores every updated user",
        "async-updater undo migration.csv --out undo.csv async-updater run undo.csv",
        "0 all updated (or unchanged)",
    ):
        assert phrase in text, phrase


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--skip-unchanged", "--service", "execute-api", "--path-template", "/v1/u/{user_id}"],
            "--skip-unchanged: operation 'generic PUT execute-api /v1/u/{user_id} body:",
        ),
        (
            ["--read-before", "--service", "execute-api", "--path-template", "/v1/u/{user_id}"],
            "--read-before: operation 'generic PUT",
        ),
        (["--read-field", "sms=/sms"], "--read-field: only used with --path-template"),
        (
            ["--read-path-template", "/v1/u/{user_id}"],
            "--read-path-template: only used with --path-template",
        ),
    ],
    ids=["skip-unchanged", "read-before", "read-field", "read-path-template"],
)
def test_reading_options_that_cannot_work_exit_2_with_one_line_and_send_nothing(
    tmp_path: Path,
    run: Run,
    server: MockChimeServer,
    aws: dict[str, str],
    options: list[str],
    message: str,
) -> None:
    code, out, err = run(*run_args(tmp_path, server), *options)
    assert (code, out) == (2, "")
    assert one_line_error(err).startswith(message)
    assert server.counters["requests"] == 0
    assert not (tmp_path / "r.csv").exists()


def test_resume_command_carries_the_reading_options() -> None:
    from async_updater.cli import build_parser, resume_command

    args = build_parser().parse_args(
        [
            *("run", "m.csv", "--skip-unchanged", "--service", "execute-api"),
            *("--path-template", "/v1/{org}/{member}", "--body-template", "b.json"),
            *("--read-path-template", "/v1/{org}/{member}"),
            *("--read-field", "on=/on", "--read-field", "n=/n"),
        ]
    )
    command = resume_command(args, Path("r.csv"))
    assert command[:5] == ["async-updater", "run", "m.csv", "--report", "r.csv"]
    assert command[-1] == "--resume"
    rest = " ".join(command[5:-1])
    assert "--skip-unchanged" in command and "--read-before" not in command
    assert "--read-path-template /v1/{org}/{member}" in rest
    assert "--read-field on=/on --read-field n=/n" in rest
    again = build_parser().parse_args(command[1:])
    assert again.skip_unchanged and again.read_field == ["on=/on", "n=/n"]


@pytest.mark.parametrize("reading", [[], ["--read-before"]], ids=["plain", "read-before"])
def test_a_fresh_run_replaces_the_before_journal_of_an_earlier_run_and_a_finished_one_removes_it(
    tmp_path: Path, run: Run, server: MockChimeServer, aws: dict[str, str], reading: list[str]
) -> None:
    from async_updater.io.before import journal_path

    report = tmp_path / "r.csv"
    journal_path(report).write_text('{"account_id": "a", "user_id": "u", "before": {}}\n')
    code, out, _ = run(*run_args(tmp_path, server), *reading)
    assert code == 0, out
    assert not journal_path(report).exists()


# -- conventions: --version, environment variables, shell completion ----------------------------


def test_version_flag_prints_the_installed_distribution_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    expected = importlib.metadata.version("async-updater")
    assert capsys.readouterr().out == f"async-updater {expected}\n"


def test_version_of_a_package_that_is_not_installed_is_the_source_tree_version() -> None:
    assert version("async-updater-never-installed") == async_updater.__version__


def test_environment_variables_give_options_their_values_and_a_flag_wins_over_its_variable() -> (
    None
):
    environ = {
        "ASYNC_UPDATER_RATE": "120",
        "ASYNC_UPDATER_CONCURRENCY": "12",
        "ASYNC_UPDATER_LIMIT_SCOPE": "account",
        "ASYNC_UPDATER_NO_PROGRESS": "Yes",
        "ASYNC_UPDATER_FORMAT": "jsonl",
    }
    args = build_parser(environ=environ).parse_args(["run", "u.csv"])
    assert (args.rate, args.concurrency, args.limit_scope, args.no_progress, args.format) == (
        *(120.0, 12, "account", True, "jsonl"),
    )
    given = ["--rate", "30", "--concurrency", "auto", "--limit-scope", "global", "--format", "csv"]
    args = build_parser(environ=environ).parse_args(["run", "u.csv", *given])
    assert (args.rate, args.concurrency, args.limit_scope, args.format) == (
        *(30.0, None, "global", "csv"),
    )


def test_an_empty_variable_or_a_false_flag_variable_leaves_the_default() -> None:
    environ = {"ASYNC_UPDATER_RATE": " ", "ASYNC_UPDATER_NO_PROGRESS": "off"}
    args = build_parser(environ=environ).parse_args(["run", "u.csv"])
    assert (args.rate, args.no_progress) == (None, False)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ASYNC_UPDATER_RATE", "fast", "ASYNC_UPDATER_RATE='fast': not a valid value for --rate"),
        (
            "ASYNC_UPDATER_CONCURRENCY",
            "many",
            "ASYNC_UPDATER_CONCURRENCY='many': not a valid value for --concurrency (invalid "
            "value: 'many' (a whole number, or auto))",
        ),
        (
            "ASYNC_UPDATER_LIMIT_SCOPE",
            "region",
            "ASYNC_UPDATER_LIMIT_SCOPE='region': --limit-scope takes one of global, account",
        ),
        (
            "ASYNC_UPDATER_NO_PROGRESS",
            "maybe",
            "ASYNC_UPDATER_NO_PROGRESS='maybe': expected 1/0, true/false, yes/no or on/off",
        ),
    ],
    ids=lambda v: v if v.startswith("ASYNC") else None,
)
def test_a_variable_the_option_would_refuse_exits_2_naming_the_variable(
    run: Run,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as info:
        run("run", "users.csv")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [f"async-updater run: error: {message}"]


def test_a_run_takes_its_report_format_and_ceilings_from_the_environment(
    tmp_path: Path,
    run: Run,
    server: MockChimeServer,
    aws: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users = users_csv(tmp_path, 8)
    monkeypatch.setenv("ASYNC_UPDATER_FORMAT", "jsonl")
    monkeypatch.setenv("ASYNC_UPDATER_MAX_ATTEMPTS", "3")
    code, _, err = run("run", users, "--endpoint-url", server.url)
    assert code == 0, err
    report = tmp_path / "users.report.jsonl"  # the default name for --format jsonl
    lines = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert [r["status"] for r in lines] == ["updated"] * 8
    assert not (tmp_path / "users.report.csv").exists()


def test_the_resume_command_spells_out_the_values_that_came_from_the_environment() -> None:
    environ = {
        "ASYNC_UPDATER_RATE": "120",
        "ASYNC_UPDATER_LIMIT_SCOPE": "account",
        "ASYNC_UPDATER_SHARED_LIMIT": "redis://127.0.0.1:6379/0",
        "ASYNC_UPDATER_NO_PROGRESS": "1",
    }
    args = build_parser(environ=environ).parse_args(["run", "u.csv"])
    cmd = resume_command(args, Path("r.csv"))
    again = build_parser(environ={}).parse_args(cmd[1:])  # a shell without the variables
    assert (again.rate, again.limit_scope, again.shared_limit, again.no_progress) == (
        *(120.0, "account", "redis://127.0.0.1:6379/0", True),
    )


def shell_args(text: str, environ: dict[str, str]) -> list[str]:
    """The arguments bash hands a program for the command line ``text``."""
    done = subprocess.run(
        ["bash", "-c", f"set -- {text}; printf '%s\\0' \"$@\""],
        env={"PATH": os.environ.get("PATH", ""), **environ},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.split("\0")[:-1]


@pytest.mark.parametrize("given", ["environment", "command line"])
@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret-pw@127.0.0.1:6379/0",
        "rediss://fleet:s3cret-pw@10.0.0.5:6380/1",
        "redis://127.0.0.1:6379/0?password=s3cret-pw",
    ],
)
def test_the_resume_command_never_prints_a_password_and_runs_where_the_variable_is_set(
    given: str, url: str
) -> None:
    environ = {"ASYNC_UPDATER_SHARED_LIMIT": url} if given == "environment" else {}
    argv = ["run", "my users.csv", "--rate", "50"]
    if given == "command line":
        argv += ["--shared-limit", url]
    args = build_parser(environ=environ).parse_args(argv)
    text = resume_text(args, Path("r.csv"), environ=environ)
    assert "s3cret-pw" not in text
    command, *note = text.splitlines()
    # Already in this shell's environment: nothing to say; given on the command line: say it.
    assert note == ([] if given == "environment" else [NOTE])
    back = shell_args(command, {"ASYNC_UPDATER_SHARED_LIMIT": url})
    assert back[:2] == ["async-updater", "run"]
    resumed = build_parser(environ={}).parse_args(back[1:])
    assert (resumed.input, resumed.shared_limit, resumed.rate, resumed.resume) == (
        *("my users.csv", url, 50.0, True),
    )


NOTE = (
    "(set ASYNC_UPDATER_SHARED_LIMIT to this run's value first: it holds a password, so it is "
    "not printed)"
)


def bash_completions(line: str) -> list[str]:
    """What bash offers for ``line`` once ``async-updater completion bash`` is loaded."""
    words = [*shlex.split(line), *([""] if line.endswith(" ") else [])]
    script = "\n".join(
        [
            'eval "$(async-updater completion bash)"',
            # The function the script registered for the command, called as bash would.
            "fn=$(complete -p async-updater | sed -E 's/.* -F ([^ ]+) .*/\\1/')",
            f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}",
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}",
            '"$fn" async-updater',
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    done = subprocess.run(
        ["bash", "-c", script], env=completion_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [w.strip() for w in done.stdout.splitlines() if w.strip()]


def completion_env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # async-updater, as installed with the suite
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("async-updater com", ["completion"]),
        ("async-updater run --limit-s", ["--limit-scope"]),
        ("async-updater run --limit-scope ", ["account", "global"]),
        ("async-updater completion ", ["--help", "-h", "bash", "fish", "zsh"]),
    ],
)
def test_bash_completes_commands_options_and_choices(line: str, offered: list[str]) -> None:
    assert sorted(bash_completions(line)) == offered


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_options_and_choices() -> None:
    done = subprocess.run(
        [
            *("fish", "-c"),
            "async-updater completion fish | source; "
            "complete -C 'async-updater run --limit-s'; complete -C 'async-updater run --format '",
        ],
        env=completion_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    offered = sorted(line.split("\t")[0] for line in done.stdout.splitlines())
    assert offered == ["--limit-scope", "csv", "jsonl"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_registers_the_completion_for_the_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *("zsh", "-fc"),
            f"autoload -U compinit && compinit -u -d {shlex.quote(str(tmp_path / 'zcompdump'))}; "
            'eval "$(async-updater completion zsh)"; print -r -- ${_comps[async-updater]}',
        ],
        env=completion_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "no completion function registered for async-updater"


def test_the_program_answers_a_zsh_completion_request_with_choices_and_their_help(
    tmp_path: Path,
) -> None:
    answer = tmp_path / "answer"
    line = "async-updater run --limit-scope "
    done = subprocess.run(
        ["async-updater"],
        env={
            **completion_env(),
            **dict(COMP_LINE=line, COMP_POINT=str(len(line)), _ARGCOMPLETE="1"),
            **dict(_ARGCOMPLETE_SHELL="zsh", _ARGCOMPLETE_STDOUT_FILENAME=str(answer)),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    offered = answer.read_text(encoding="utf-8").split("\v")
    assert sorted(o.split(":")[0] for o in offered) == ["account", "global"]
    assert all("one per account" in o for o in offered)
