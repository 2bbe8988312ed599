"""The report as a journal: rows readable as soon as they are flushed, a crash-cut last line
ignored, and ``--resume`` keeping one row per user, refusing other inputs, rewriting atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from async_updater.errors import ReportError
from async_updater.model import REPORT_COLUMNS, Result, Status
from async_updater.report import (
    CsvReport,
    JsonlReport,
    ResumeState,
    meta_path,
    open_report,
    read_report,
    write_meta,
)
from async_updater.summary import summarize_report

META: dict[str, Any] = {
    "input": "users.csv",
    "input_sha256": "a" * 64,
    "operation": "chime-update-user-settings",
    "shard": None,
    "format": "csv",
}


def res(user: str, status: Status = Status.UPDATED, account: str = "acct", **kw: Any) -> Result:
    base: dict[str, Any] = {"attempts": 1}
    if status is Status.UPDATED:
        base.update(http_status=204, latency_ms=12.345, request_id=f"req-{user}")
    base.update(kw)
    return Result(account, user, status, **base)


def cells(path: Path) -> list[tuple[str, str, str]]:
    return [(r.account_id, r.user_id, r.status) for r in read_report(path)]


def write(path: Path, results: list[Result], fmt: str = "csv", meta: dict[str, Any] | None = None):
    sink = open_report(path, fmt)
    for r in results:
        sink.write(r)
    sink.close()
    write_meta(path, {**META, "format": fmt, **(meta or {})})


# -- sinks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_each_flushed_result_is_readable_while_the_report_is_still_open(
    tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"r.{fmt}"
    sink = open_report(path, fmt)
    try:
        for n in range(1, 4):
            sink.write(res(f"u{n}"))
            sink.flush()
            assert cells(path) == [("acct", f"u{i}", "updated") for i in range(1, n + 1)]
    finally:
        sink.close()


def test_csv_report_has_the_contract_header_and_one_line_per_result(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write(path, [res("u1"), res("u2", Status.FAILED, http_status=404, error_code="NotFound")])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == [
        ",".join(REPORT_COLUMNS),
        "acct,u1,updated,204,,,1,12.3,req-u1,",
        "acct,u2,failed,404,NotFound,,1,,,",
    ]


def test_jsonl_report_has_numbers_as_numbers_and_absent_values_as_null(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write(path, [res("u1"), res("ü/2", Status.INVALID, message="line 3: sms: is empty")], "jsonl")
    first, second = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    assert list(first) == list(REPORT_COLUMNS)
    assert (first["http_status"], first["latency_ms"], first["attempts"]) == (204, 12.3, 1)
    assert (second["user_id"], second["http_status"], second["latency_ms"]) == ("ü/2", None, None)


def test_tricky_values_round_trip_and_row_text_is_the_exact_file_text(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    tricky = res(
        'a,"b"\nc',
        Status.FAILED,
        account="用户 1",
        http_status=400,
        error_code="BadRequestException",
        message='bad "thing",\r\nsecond line',
    )
    write(path, [tricky, res("plain")])
    rows = list(read_report(path))
    assert (rows[0].user_id, rows[0].account_id, rows[0].message) == (
        tricky.user_id,
        tricky.account_id,
        tricky.message,
    )
    body = path.read_bytes().decode("utf-8").split("\n", 1)[1]
    assert "".join(r.text for r in rows) == body


def test_append_to_an_existing_csv_report_does_not_repeat_the_header(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write(path, [res("u1")])
    sink = CsvReport(path, append=True)
    sink.write(res("u2"))
    sink.close()
    assert path.read_text().count("account_id,user_id") == 1
    assert cells(path) == [("acct", "u1", "updated"), ("acct", "u2", "updated")]


def test_unknown_format_and_unwritable_path_are_report_errors(tmp_path: Path) -> None:
    with pytest.raises(
        ReportError, match=r"unknown report format 'xml'; expected one of csv, jsonl"
    ):
        open_report(tmp_path / "r.xml", "xml")
    with pytest.raises(ReportError) as info:
        JsonlReport(tmp_path / "no-such-folder" / "r.jsonl")
    assert str(info.value) == (
        f"cannot write the report {tmp_path / 'no-such-folder' / 'r.jsonl'}: "
        "No such file or directory"
    )


# -- reading back after a crash -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_last_line_cut_anywhere_by_a_crash_is_ignored(tmp_path: Path, fmt: str) -> None:
    whole = tmp_path / f"whole.{fmt}"
    last = res("u3", Status.FAILED, http_status=500, error_code="E", message="two\nlines, here")
    write(whole, [res("u1"), res("u2"), last], fmt)
    data = whole.read_bytes()
    complete = len(data) - len(list(read_report(whole))[-1].text.encode())
    cut = tmp_path / f"cut.{fmt}"
    for end in range(complete, len(data)):
        cut.write_bytes(data[:end])
        assert cells(cut) == [("acct", "u1", "updated"), ("acct", "u2", "updated")], end
    cut.write_bytes(data)
    assert len(cells(cut)) == 3


def test_a_corrupt_row_before_the_last_is_an_error_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write(path, [res("u1"), res("u2")])
    text = path.read_text().replace("acct,u1,updated,204,,,1,12.3,req-u1,", "acct,u1,updated")
    path.write_text(text)
    with pytest.raises(ReportError) as info:
        list(read_report(path))
    assert str(info.value) == f"{path}: line 2 has 3 fields, not 10"


def test_a_corrupt_jsonl_row_is_an_error_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"account_id": "a"}\n{"x": 1}\n')
    with pytest.raises(ReportError) as info:
        list(read_report(path))
    assert str(info.value) == f"{path}: line 1 is not a report row"


def test_a_csv_file_that_is_not_a_report_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("account_id,user_id,inbound_calling,outbound_calling,sms\na,u,1,1,1\n")
    with pytest.raises(ReportError) as info:
        list(read_report(path))
    assert str(info.value) == f"{path} is not an async-updater report (unexpected header)"


def test_summary_of_a_partial_report_counts_only_complete_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write(path, [res("u1"), res("u2", Status.FAILED, error_code="Throttled", attempts=8)])
    with open(path, "a", encoding="utf-8") as f:
        f.write("acct,u3,upd")  # the crash
    summary = summarize_report(path)
    assert (summary.rows, dict(summary.counts), summary.attempts) == (
        2,
        {"updated": 1, "failed": 1},
        9,
    )
    assert summary.errors == {"Throttled": [1, ""]}


# -- resume ------------------------------------------------------------------------------------


def test_resume_keeps_one_updated_row_per_user_the_latest_outcome_winning(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write(
        path,
        [
            res("u1", Status.FAILED, http_status=503),
            res("u1"),  # failed, then updated: carried
            res("u2"),
            res("u2", Status.FAILED, http_status=403),  # updated, then failed: sent again
            res("u3"),
            res("u3", request_id="second"),  # updated twice: one row, the latest
            res("u4", Status.INVALID, message="line 9: sms: is empty"),
            res("u5", Status.PLANNED),
        ],
    )
    state = ResumeState.prepare(path, "csv", META)
    assert state.carried_rows == 2
    assert [(r.user_id, r.status, r.request_id) for r in read_report(path)] == [
        ("u1", "updated", "req-u1"),
        ("u3", "updated", "second"),
    ]
    assert ("acct", "u1") in state.updated and ("acct", "u3") in state.updated
    assert ("acct", "u2") not in state.updated and ("acct", "u5") not in state.updated
    assert len(state.updated) == 2


def test_resume_drops_a_crash_cut_last_line_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write(path, [res("u1"), res("u2")], "jsonl", {"format": "jsonl"})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"account_id": "acct", "user_id": "u3", "status": "upd')
    state = ResumeState.prepare(path, "jsonl", {**META, "format": "jsonl"})
    assert state.carried_rows == 2
    assert path.read_text(encoding="utf-8").endswith("}\n")
    assert cells(path) == [("acct", "u1", "updated"), ("acct", "u2", "updated")]


def test_resume_without_a_report_starts_fresh_and_records_the_input(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    state = ResumeState.prepare(path, "csv", META)
    assert (state.carried_rows, len(state.updated)) == (0, 0)
    assert json.loads(meta_path(path).read_text()) == META


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"input_sha256": "b" * 64},
            "was made from a different input file (users.csv has changed since); "
            "choose a new --report to start over",
        ),
        (
            {"input_sha256": "b" * 64, "input": "other.csv"},
            "was made from a different input file (it was made from users.csv, whose content "
            "differs from other.csv); choose a new --report to start over",
        ),
        (
            {"operation": "generic PUT /v1/{user_id}"},
            "was made by operation 'chime-update-user-settings', not 'generic PUT /v1/{user_id}'"
            "; choose a new --report to start over",
        ),
        (
            {"shard": "1/3"},
            "was made with no --shard, not --shard 1/3; resume with the same --shard",
        ),
    ],
    ids=["changed-input", "other-input", "other-operation", "other-shard"],
)
def test_resume_refuses_a_report_of_another_run_and_leaves_it_alone(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = tmp_path / "r.csv"
    write(path, [res("u1"), res("u2", Status.FAILED)])
    before = path.read_bytes()
    with pytest.raises(ReportError) as info:
        ResumeState.prepare(path, "csv", {**META, **change})
    assert str(info.value) == f"cannot resume: {path} {message}"
    assert path.read_bytes() == before


def test_resume_refuses_a_report_without_its_meta_file(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write(path, [res("u1")])
    meta_path(path).unlink()
    with pytest.raises(ReportError, match=r"r\.csv\.meta\.json is missing or unreadable"):
        ResumeState.prepare(path, "csv", META)


def test_resume_refuses_a_report_in_the_other_format(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write(path, [res("u1")], "jsonl")
    with pytest.raises(ReportError) as info:
        ResumeState.prepare(path, "csv", META)
    assert str(info.value) == f"cannot resume: {path} is not in csv format (see --format)"


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_resume_over_a_corrupt_report_fails_leaving_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write(path, [res(f"u{i}") for i in range(50)])
    text = path.read_text().splitlines(keepends=True)
    text[30] = "acct,u29,updated\n"  # a damaged row in the middle
    path.write_text("".join(text))
    before = _listing(tmp_path)
    with pytest.raises(ReportError, match=r"line 31 has 3 fields, not 10"):
        ResumeState.prepare(path, "csv", META)
    assert _listing(tmp_path) == before


def test_resume_that_cannot_write_its_temporary_file_leaves_the_report_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.csv"
    write(path, [res("u1"), res("u2", Status.FAILED)])
    (tmp_path / "r.csv.resume.tmp").mkdir()  # in the way of the rewrite
    before = _listing(tmp_path)
    with pytest.raises(ReportError, match=r"^cannot rewrite the report .*r\.csv: "):
        ResumeState.prepare(path, "csv", META)
    assert _listing(tmp_path) == before


def test_meta_is_written_atomically_next_to_the_report(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write_meta(path, META)
    write_meta(path, {**META, "shard": "0/2"})
    assert json.loads(meta_path(path).read_text())["shard"] == "0/2"
    assert sorted(os.listdir(tmp_path)) == ["r.csv.meta.json"]
