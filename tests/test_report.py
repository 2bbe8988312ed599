"""The report as a journal: rows readable as soon as they are flushed, a crash-cut last line
ignored, and ``--resume`` keeping one row per user, refusing other inputs, rewriting atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from async_updater.errors import ReportError
from async_updater.io.meta import meta_path, write_meta
from async_updater.io.reader import read_report
from async_updater.io.report import CsvReport, JsonlReport, open_report
from async_updater.io.resume import ResumeState
from async_updater.model import REPORT_COLUMNS, Result, Status
from async_updater.reporting.summary import summarize_report

from .processes import small_disk

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


# -- a full disk ------------------------------------------------------------------------------


@pytest.mark.parametrize("append", [False, True], ids=["new", "append"])
def test_a_new_csv_report_on_a_full_disk_fails_when_opened_before_any_answer(
    tmp_path: Path, append: bool
) -> None:
    path = tmp_path / "r.csv"
    path.symlink_to("/dev/full")  # every write: ENOSPC; empty, so append writes a header too
    with pytest.raises(ReportError) as info:
        CsvReport(path, append=append)  # the header is written through at once
    assert str(info.value) == f"cannot write the report {path}: No space left on device"


def test_a_jsonl_report_has_no_header_and_fails_at_its_first_flush_on_a_full_disk(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.jsonl"
    path.symlink_to("/dev/full")
    sink = JsonlReport(path)
    sink.write(res("u1"))  # buffered: nothing has touched the disk yet
    with pytest.raises(ReportError) as info:
        sink.flush()
    assert str(info.value) == f"cannot write the report {path}: No space left on device"
    sink.close()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("flush_every", [10, None], ids=["flushed", "buffered"])
def test_a_disk_that_fills_keeps_failing_the_report_and_close_does_not_raise_again(
    tmp_path: Path, fmt: str, flush_every: int | None
) -> None:
    with small_disk(tmp_path / "disk", 16) as disk:
        path = disk / f"r.{fmt}"
        sink = open_report(path, fmt)
        written = 0
        # Unflushed, the disk fills inside a write (the buffers spill): a ReportError too,
        # never a bare OSError.
        with pytest.raises(ReportError) as info:
            for i in range(100_000):
                sink.write(res(f"user-{i}"))
                written += 1
                if flush_every and i % flush_every == 0:
                    sink.flush()
        first = info.value
        assert str(first) == f"cannot write the report {path}: No space left on device"
        # Nothing more gets in, and every later call says so, the same way.
        for call in (lambda: sink.write(res("late")), sink.flush):
            with pytest.raises(ReportError) as again:
                call()
            assert again.value is first
        sink.close()
        sink.close()
        rows = list(read_report(path))
        assert 0 < len(rows) <= written
        assert [r.user_id for r in rows] == [f"user-{i}" for i in range(len(rows))]


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
            {"shard": "1/3", "shard_basis": "user"},
            "was made with no --shard, not --shard 1/3 split by user; resume with the same "
            "--shard and --limit-scope (--limit-scope account splits by account, global by user)",
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


@pytest.mark.parametrize(
    ("recorded", "resumed", "accepted"),
    [
        ("user", "user", True),
        ("account", "account", True),
        ("user", "account", False),
        ("account", "user", False),
        (None, "account", True),  # a report from before bases were recorded: split by account
        (None, "user", False),
    ],
)
def test_resume_needs_the_shard_basis_the_report_was_made_with(
    tmp_path: Path, recorded: str | None, resumed: str, accepted: bool
) -> None:
    path = tmp_path / "r.csv"
    old = {"shard": "1/3", "shard_basis": recorded} if recorded else {"shard": "1/3"}
    write(path, [res("u1"), res("u2", Status.FAILED)], meta=old)
    new = {**META, "shard": "1/3", "shard_basis": resumed}
    if accepted:
        assert ResumeState.prepare(path, "csv", new).carried_rows == 1
        return
    before = path.read_bytes()
    with pytest.raises(ReportError) as info:
        ResumeState.prepare(path, "csv", new)
    assert str(info.value).startswith(
        f"cannot resume: {path} was made with --shard 1/3 split by {recorded or 'account'}, "
        f"not --shard 1/3 split by {resumed}; "
    )
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


# -- the before column --------------------------------------------------------------------------

BEFORE = '{"inbound_calling": true, "outbound_calling": false, "sms": true}'
LEGACY_HEADER = (
    "account_id,user_id,status,http_status,error_code,message,attempts,latency_ms,request_id"
)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_before_round_trips_in_both_formats_empty_when_nothing_was_read(
    tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"r.{fmt}"
    write(
        path, [res("u1", before=BEFORE), res("u2"), res("u3", Status.UNCHANGED, before=BEFORE)], fmt
    )
    rows = list(read_report(path))
    assert [(r.user_id, r.status, r.before) for r in rows] == [
        ("u1", "updated", BEFORE),
        ("u2", "updated", ""),
        ("u3", "unchanged", BEFORE),
    ]
    if fmt == "jsonl":
        first, second, _ = (json.loads(line) for line in path.read_text().splitlines())
        assert first["before"] == json.loads(BEFORE) and second["before"] is None
    else:
        assert (
            path.read_text().splitlines()[1].endswith(',req-u1,"' + BEFORE.replace('"', '""') + '"')
        )


def test_a_csv_report_written_before_the_before_column_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    path.write_text(
        LEGACY_HEADER + "\nacct,u1,updated,204,,,1,12.3,req-u1\nacct,u2,failed,404,NotFound,,1,,\n"
    )
    rows = list(read_report(path))
    assert [(r.user_id, r.status, r.request_id, r.before) for r in rows] == [
        ("u1", "updated", "req-u1", ""),
        ("u2", "failed", "", ""),
    ]
    # Row text comes back in the current layout, so it can be written next to new rows.
    assert rows[0].text == "acct,u1,updated,204,,,1,12.3,req-u1,\n"
    assert summarize_report(path).counts["updated"] == 1


def test_a_jsonl_report_written_before_the_before_column_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    line = {c: None for c in REPORT_COLUMNS if c != "before"}
    line.update(account_id="acct", user_id="ü1", status="updated", attempts=1)
    path.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    (row,) = list(read_report(path))
    assert (row.user_id, row.status, row.before) == ("ü1", "updated", "")
    assert json.loads(row.text) == {**line, "before": None}


def test_report_has_before_tells_new_reports_from_old_ones(tmp_path: Path) -> None:
    from async_updater.io.reader import report_has_before

    new_csv, new_jsonl = tmp_path / "n.csv", tmp_path / "n.jsonl"
    write(new_csv, [res("u1")])
    write(new_jsonl, [res("u1")], "jsonl")
    old_csv, old_jsonl = tmp_path / "o.csv", tmp_path / "o.jsonl"
    old_csv.write_text(LEGACY_HEADER + "\n")
    old_jsonl.write_text('{"account_id": "a", "user_id": "u", "status": "updated"}\n')
    assert report_has_before(new_csv) and report_has_before(new_jsonl)
    assert not report_has_before(old_csv) and not report_has_before(old_jsonl)


def test_resume_of_an_old_csv_report_rewrites_it_in_the_current_layout(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        LEGACY_HEADER + "\nacct,u1,updated,204,,,1,12.3,req-u1\nacct,u2,failed,500,,,1,,\n"
    )
    write_meta(path, META)
    state = ResumeState.prepare(path, "csv", META)
    assert state.carried_rows == 1
    sink = open_report(path, "csv", append=True)
    sink.write(res("u2", before=BEFORE))
    sink.close()
    assert path.read_text().splitlines()[0] == ",".join(REPORT_COLUMNS)
    assert [(r.user_id, r.before) for r in read_report(path)] == [("u1", ""), ("u2", BEFORE)]


def test_resume_treats_unchanged_users_as_done(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write(path, [res("u1", Status.UNCHANGED, before=BEFORE), res("u2", Status.FAILED), res("u3")])
    state = ResumeState.prepare(path, "csv", META)
    assert state.carried_rows == 2
    assert ("acct", "u1") in state.updated and ("acct", "u3") in state.updated
    assert ("acct", "u2") not in state.updated
    assert state.befores is None  # not asked to read


def state_text(sms: bool) -> str:
    return json.dumps({"inbound_calling": True, "outbound_calling": False, "sms": sms})


def test_resume_with_read_before_keeps_the_first_state_captured_for_each_user_not_done(
    tmp_path: Path,
) -> None:
    from async_updater.io.before import BeforeJournal, journal_path

    path = tmp_path / "r.csv"
    write(
        path,
        [
            res("done", before=state_text(False)),
            res("failed-write", Status.FAILED, http_status=500, before=state_text(False)),
            res("failed-read", Status.FAILED, error_code="Read:ThrottledClientException"),
            res("planned", Status.PLANNED, before=state_text(False)),
        ],
    )
    journal = BeforeJournal.start(path)
    journal.record("acct", "done", state_text(False))
    journal.record("acct", "killed", state_text(False))  # written, then the run was killed
    journal.record("acct", "killed", state_text(True))  # a later read sees the run's own write
    journal.record("acct", "failed-write", state_text(False))
    journal.close()
    with open(journal_path(path), "a") as f:
        f.write('{"account_id": "acct", "user_id": "cut", "bef')  # a crash mid-line
    state = ResumeState.prepare(path, "csv", META, read_before=True)
    befores = state.befores
    assert befores is not None
    try:
        assert befores.captured("acct", "killed") == state_text(False)
        assert befores.captured("acct", "failed-write") == state_text(False)
        assert befores.captured("acct", "done") is None  # done: not sent again
        assert befores.captured("acct", "failed-read") is None  # nothing was read
        assert befores.captured("acct", "planned") is None  # a plan wrote nothing
        assert befores.captured("acct", "cut") is None
        # The resumed run journals new reads after the carried ones.
        befores.record("acct", "new", state_text(True))
        befores.flush()
    finally:
        befores.close()
    lines = journal_path(path).read_text().splitlines()
    assert [json.loads(line)["user_id"] for line in lines] == ["killed", "failed-write", "new"]
    # A second resume finds the same first states.
    again = ResumeState.prepare(path, "csv", META, read_before=True)
    assert again.befores is not None
    assert again.befores.captured("acct", "killed") == state_text(False)
    assert again.befores.captured("acct", "new") == state_text(True)
    again.befores.close()


def test_a_failed_rows_before_is_carried_when_the_journal_is_gone(tmp_path: Path) -> None:
    from async_updater.io.before import journal_path

    path = tmp_path / "r.jsonl"
    write(path, [res("u1", Status.FAILED, before=state_text(True))], "jsonl")
    assert not journal_path(path).exists()
    state = ResumeState.prepare(path, "jsonl", {**META, "format": "jsonl"}, read_before=True)
    assert state.befores is not None
    assert state.befores.captured("acct", "u1") == state_text(True)
    state.befores.close()


def test_a_fresh_resume_with_read_before_starts_an_empty_journal(tmp_path: Path) -> None:
    from async_updater.io.before import journal_path

    path = tmp_path / "r.csv"
    journal_path(path).write_text('{"account_id": "a", "user_id": "stale", "before": {}}\n')
    state = ResumeState.prepare(path, "csv", META, read_before=True)
    assert state.befores is not None
    assert state.befores.captured("a", "stale") is None
    state.befores.close()
    assert journal_path(path).read_text() == ""


def test_an_unreadable_journal_line_stops_the_resume_naming_it(tmp_path: Path) -> None:
    from async_updater.io.before import journal_path

    path = tmp_path / "r.csv"
    write(path, [res("u1", Status.FAILED)])
    journal_path(path).write_text('{"account_id": "a", "user_id": "u", "before": {}}\nnot json\n')
    before = path.read_text()
    with pytest.raises(ReportError, match=r"r\.csv\.before\.jsonl: line 2 is not a before-state"):
        ResumeState.prepare(path, "csv", META, read_before=True)
    assert path.read_text() == before
