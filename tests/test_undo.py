"""``async-updater undo``: the input file restoring every updated user's before-state, in the
input's own format; refusals with one line; users without a before-state named and left out.
Reports here are written by the report sink itself (the read-before flow that fills them is
tested end to end in ``test_read_before.py``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from async_updater.cli import main
from async_updater.io.meta import write_meta
from async_updater.io.report import open_report
from async_updater.io.source import CsvSource
from async_updater.model import REPORT_COLUMNS, Result, Status, UserRecord
from async_updater.testing.mock.config import MockConfig

from .test_cli import Run, ThreadedMock, one_line_error

AK, SK = "AKIDUNDOTEST", "undo-test-secret"
META: dict[str, Any] = {
    "input": "users.csv",
    "input_sha256": "b" * 64,
    "operation": "chime-update-user-settings",
    "shard": None,
    "format": "csv",
}
CHIME_HEADER = ["account_id", "user_id", "inbound_calling", "outbound_calling", "sms"]


def state(inbound: bool, outbound: bool, sms: bool) -> str:
    return json.dumps({"inbound_calling": inbound, "outbound_calling": outbound, "sms": sms})


def make_report(path: Path, results: list[Result], meta: dict[str, Any] | None = META) -> Path:
    fmt = "jsonl" if path.suffix == ".jsonl" else "csv"
    sink = open_report(path, fmt)
    for result in results:
        sink.write(result)
    sink.close()
    if meta is not None:
        write_meta(path, {**meta, "format": fmt})
    return path


def updated(user: str, before: str = "", account: str = "acct 1") -> Result:
    return Result(account, user, Status.UPDATED, 204, attempts=1, before=before)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    """``main(argv)`` -> (exit code, stdout, stderr), run in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)

    def _run(*argv: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_undo_writes_the_input_that_restores_every_updated_user_and_no_other(
    tmp_path: Path, run: Run, suffix: str
) -> None:
    report = make_report(
        tmp_path / f"r{suffix}",
        [
            updated("a/b", state(True, False, True)),
            updated("with, comma", state(False, False, False), account='acct "q"'),
            Result("acct 1", "same", Status.UNCHANGED, before=state(True, True, True)),
            Result("acct 1", "failed", Status.FAILED, 500, before=state(True, True, True)),
            Result("acct 1", "plan", Status.PLANNED, before=state(True, True, True)),
            Result("acct 1", "", Status.INVALID, error_code="InvalidRow"),
        ],
    )
    out = tmp_path / "undo.csv"
    code, stdout, err = run("undo", report, "--out", out)
    assert (code, err) == (0, "")
    assert stdout == (
        f"wrote 2 users to {out}: 'async-updater run {out}' puts them back the way they were "
        "before the run\n"
    )
    assert read_csv(out) == [
        CHIME_HEADER,
        ["acct 1", "a/b", "true", "false", "true"],
        ['acct "q"', "with, comma", "false", "false", "false"],
    ]
    # It is an input file like any other.
    records = [r for r in CsvSource(out) if isinstance(r, UserRecord)]
    assert [(r.account_id, r.user_id, r.inbound_calling, r.sms) for r in records] == [
        ("acct 1", "a/b", True, True),
        ('acct "q"', "with, comma", False, False),
    ]


def test_undo_refuses_a_report_without_a_before_column_with_one_line(
    tmp_path: Path, run: Run
) -> None:
    report = tmp_path / "old.csv"
    report.write_text(",".join(REPORT_COLUMNS[:9]) + "\nacct,u1,updated,204,,,1,,\n")
    out = tmp_path / "undo.csv"
    code, stdout, err = run("undo", report, "--out", out)
    assert (code, stdout) == (2, "")
    assert one_line_error(err) == (
        f"undo: {report} has no 'before' column (it was written by a version that did not "
        "record before-states): there is nothing to restore from"
    )
    assert not out.exists()


def test_undo_names_updated_users_without_a_before_state_and_leaves_them_out(
    tmp_path: Path, run: Run
) -> None:
    results = [updated("kept", state(True, True, False))]
    results += [updated(f"nobefore-{i}") for i in range(7)]
    results += [updated("garbled", "not json"), updated("partial", '{"sms": true}')]
    report = make_report(tmp_path / "r.csv", results)
    out = tmp_path / "undo.csv"
    code, stdout, err = run("undo", report, "--out", out)
    assert code == 1
    warnings = err.strip().splitlines()
    assert warnings == [
        "async-updater: warning: 7 updated users have no before-state and are left out (was "
        "the run made without --read-before?): acct 1/nobefore-0; acct 1/nobefore-1; "
        "acct 1/nobefore-2; acct 1/nobefore-3; acct 1/nobefore-4; and 2 more",
        "async-updater: warning: 2 updated users have a before-state that cannot be restored "
        "and are left out: acct 1/garbled (the before-state is not JSON); acct 1/partial "
        "(inbound_calling is missing, not a boolean)",
    ]
    assert stdout.startswith(f"wrote 1 users to {out}") and "(9 updated users left out)" in stdout
    assert read_csv(out) == [CHIME_HEADER, ["acct 1", "kept", "true", "true", "false"]]


def test_undo_refuses_to_replace_a_file_unless_told_and_never_writes_over_the_report(
    tmp_path: Path, run: Run
) -> None:
    report = make_report(tmp_path / "r.csv", [updated("u1", state(True, True, True))])
    out = tmp_path / "undo.csv"
    out.write_text("precious\n")
    code, _, err = run("undo", report, "--out", out)
    assert code == 2
    assert one_line_error(err) == f"undo: {out} already exists: add --overwrite to replace it"
    assert out.read_text() == "precious\n"
    assert run("undo", report, "--out", out, "--overwrite")[0] == 0
    assert read_csv(out)[1] == ["acct 1", "u1", "true", "true", "true"]
    code, _, err = run("undo", report, "--out", report, "--overwrite")
    assert (code, one_line_error(err)) == (2, "undo: --out must not be the report")
    code, _, err = run("undo", tmp_path / "nope.csv", "--out", tmp_path / "x.csv")
    assert (code, one_line_error(err)) == (2, f"undo: {tmp_path / 'nope.csv'}: no such file")


def test_undo_of_a_merged_report_without_a_meta_file_works(tmp_path: Path, run: Run) -> None:
    report = make_report(tmp_path / "m.csv", [updated("u1", state(False, True, False))], None)
    assert run("undo", report, "--out", tmp_path / "undo.csv")[0] == 0


GENERIC = [
    "--service",
    "execute-api",
    "--path-template",
    "/v1/orgs/{org}/members/{member}/flags",
    "--scope-column",
    "org",
]


def test_undo_needs_the_runs_operation_options_for_a_generic_operation(
    tmp_path: Path, run: Run
) -> None:
    from async_updater.operations.generic import GenericOperation

    body = tmp_path / "body.json"
    body.write_text('{"flags": {"enabled": "{enabled:bool}", "seats": "{seats:int}"}}')
    read_options = [
        "--read-path-template",
        "/v1/orgs/{org}/members/{member}",
        "--read-field",
        "enabled=/flags/enabled",
        "--read-field",
        "seats=/flags/seats",
    ]
    operation = GenericOperation(
        service="execute-api",
        path_template="/v1/orgs/{org}/members/{member}/flags",
        body_template=json.loads(body.read_text()),
        scope_column="org",
    )
    report = make_report(
        tmp_path / "r.csv",
        [
            Result("org-1", "b/o b", Status.UPDATED, 200, before='{"enabled": false, "seats": 3}'),
            Result("org-2", "al", Status.UNCHANGED, before='{"enabled": true, "seats": 0}'),
        ],
        {**META, "operation": operation.name},
    )
    out = tmp_path / "undo.csv"
    code, _, err = run("undo", report, "--out", out)
    assert code == 2
    assert one_line_error(err) == (
        f"undo: {report} was made by operation {operation.name!r}, not "
        "'chime-update-user-settings'; give undo the same operation options as the run"
    )
    code, _, err = run("undo", report, "--out", out, *GENERIC, "--body-template", body)
    assert (code, one_line_error(err)) == (
        2,
        f"undo: operation {operation.name!r} cannot read a user's state, so its reports hold "
        "no before-state to restore",
    )
    code, _, err = run(
        "undo", report, "--out", out, *GENERIC, "--body-template", body, *read_options
    )
    assert (code, err) == (0, "")
    assert read_csv(out) == [
        ["org", "member", "enabled", "seats"],
        ["org-1", "b/o b", "false", "3"],
    ]


def test_running_the_undo_file_puts_the_server_back_in_the_before_states(
    tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_updater.testing.mock import initial_settings

    for key, value in {
        "AWS_ACCESS_KEY_ID": AK,
        "AWS_SECRET_ACCESS_KEY": SK,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }.items():
        monkeypatch.setenv(key, value)
    users = [("acct 1", f"u/{i}") for i in range(20)]

    def as_row(settings: dict[str, bool]) -> str:
        return state(settings["InboundCalling"], settings["OutboundCalling"], settings["SMS"])

    report = make_report(
        tmp_path / "r.csv", [updated(u, as_row(initial_settings(a, u)), a) for a, u in users]
    )
    out = tmp_path / "undo.csv"
    assert run("undo", report, "--out", out)[0] == 0
    with ThreadedMock(MockConfig(credentials={AK: SK})) as server:
        # Every user first holds the opposite of its initial settings...
        flipped = tmp_path / "flipped.csv"
        with open(flipped, "w", encoding="utf-8") as f:
            f.write(",".join(CHIME_HEADER) + "\n")
            for a, u in users:
                s = initial_settings(a, u)
                cells = [
                    str(not s[k]).lower() for k in ("InboundCalling", "OutboundCalling", "SMS")
                ]
                f.write(f"{a},{u},{','.join(cells)}\n")
        common = ["--endpoint-url", server.url, "--no-progress"]
        assert run("run", flipped, "--report", tmp_path / "f.csv", *common)[0] == 0
        assert all(server.settings(a, u) != initial_settings(a, u) for a, u in users)
        # ...and the undo file is a normal run that puts them back.
        code, stdout, _ = run("run", out, "--report", tmp_path / "undo-report.csv", *common)
        assert code == 0, stdout
        assert all(server.settings(a, u) == initial_settings(a, u) for a, u in users)
