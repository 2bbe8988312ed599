"""Sharded runs (``--shard K/N``) and ``merge-reports``: shards split by user (one global limit)
or by account (``--limit-scope account``), and the merged report holds every input row exactly
once; inconsistent inputs (mixed splits among them) are refused, never half-merged; a resume
with another split is refused."""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from async_updater.cli import main
from async_updater.errors import ReportError
from async_updater.io.meta import meta_path, write_meta
from async_updater.io.reader import read_report
from async_updater.io.report import open_report
from async_updater.io.source import MAX_ROW
from async_updater.model import Result, Status
from async_updater.reporting.merge import merge_reports
from async_updater.testing.mock import MockChimeServer
from async_updater.testing.mock.config import MockConfig
from async_updater.testing.sample import generate_users

from .test_cli import ThreadedMock

AK, SK = "AKIDMERGE", "merge-secret"
META: dict[str, Any] = {
    "input": "users.csv",
    "input_sha256": "c" * 64,
    "operation": "chime-update-user-settings",
    "shard": None,
    "shard_basis": None,
    "format": "csv",
}
# Rows the source reports invalid, with empty and non-empty accounts, and a duplicate.
BAD_ROWS = (
    ",u-no-account,true,false,true\n"
    "acct-bad,,true,false,true\n"
    "acct-bad,u-bad-bool,maybe,false,true\n"
    "acct-short,u-short,true\n"
    "\n"
    ",,,,\n"
    f"acct-long,{'x' * (MAX_ROW + 1)},true,false,true\n"
)


@pytest.fixture
def server() -> Iterator[MockChimeServer]:
    with ThreadedMock(MockConfig(credentials={AK: SK}, seed=2)) as s:
        yield s


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    empty = tmp_path / "empty-aws-file"
    empty.write_text("")
    for key, value in {
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": AK,
        "AWS_SECRET_ACCESS_KEY": SK,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def input_rows(path: Path) -> tuple[set[tuple[str, str]], set[int]]:
    """The valid users (account, user) and the line numbers of the invalid rows of ``path``."""
    valid: set[tuple[str, str]] = set()
    invalid: set[int] = set()
    lines = path.read_text(encoding="utf-8").splitlines()  # no quoted fields in these files
    for line, text in enumerate(lines[1:], 2):
        cells = text.split(",")
        if not any(c.strip() for c in cells):
            continue
        key = (cells[0], cells[1]) if len(cells) == 5 else ("", "")
        ok = all(key) and len(key[1]) <= 1024 and key not in valid
        if ok and all(c in ("true", "false") for c in cells[2:]):
            valid.add(key)
        else:
            invalid.add(line)
    return valid, invalid


def report_rows(path: Path) -> list[Any]:
    return list(read_report(path))


def line_of(message: str) -> int:
    match = re.match(r"line (\d+): ", message)
    assert match, message
    return int(match.group(1))


@pytest.fixture(params=["global", "account"])
def scope(request: pytest.FixtureRequest) -> str:
    """The ``--limit-scope`` of the sharded runs: ``global`` splits by user, ``account`` by
    account."""
    value: str = request.param
    return value


@pytest.fixture
def sharded(
    tmp_path: Path,
    server: MockChimeServer,
    aws: None,
    capsys: pytest.CaptureFixture[str],
    scope: str,
) -> tuple[Path, list[Path], MockChimeServer]:
    """Three shard runs over 90 users in 7 accounts, plus invalid and duplicate rows."""
    users = tmp_path / "users.csv"
    generate_users(users, 90, 7, seed=11)
    first = users.read_text(encoding="utf-8").splitlines()[1]
    with open(users, "a", encoding="utf-8") as f:
        f.write(BAD_ROWS + first.replace("true", "false") + "\n")  # a duplicate user
    reports = []
    for k in range(3):
        report = tmp_path / f"shard{k}.csv"
        code, _, err = cli(
            capsys, "run", users, "--shard", f"{k}/3", "--endpoint-url", server.url,
            "--report", report, "--no-progress", "--rate", "5000", "--limit-scope", scope,
        )  # fmt: skip
        assert code in (0, 1), err  # 1 for the shards that drew an invalid row
        reports.append(report)
    return users, reports, server


@pytest.mark.parametrize("scope", ["account"])
def test_shards_by_account_keep_each_account_whole_and_cover_every_account(
    sharded: tuple[Path, list[Path], MockChimeServer],
) -> None:
    users, reports, _ = sharded
    owner: dict[str, int] = {}
    for k, report in enumerate(reports):
        for row in report_rows(report):
            if row.status == "updated":
                assert owner.setdefault(row.account_id, k) == k, row.account_id
    valid, _ = input_rows(users)
    assert set(owner) == {a for a, _ in valid}
    assert len(set(owner.values())) > 1  # 7 accounts really were split


@pytest.mark.parametrize("scope", ["global"])
def test_shards_by_user_split_accounts_and_hold_each_user_once(
    sharded: tuple[Path, list[Path], MockChimeServer],
) -> None:
    users, reports, _ = sharded
    owner: dict[tuple[str, str], int] = {}
    shards_of_account: dict[str, set[int]] = {}
    for k, report in enumerate(reports):
        for row in report_rows(report):
            if row.status == "updated":
                assert owner.setdefault((row.account_id, row.user_id), k) == k
                shards_of_account.setdefault(row.account_id, set()).add(k)
    valid, _ = input_rows(users)
    assert set(owner) == valid
    # 7 accounts of about 13 users over 3 shards: every account is spread.
    assert all(len(shards) > 1 for shards in shards_of_account.values())


def test_merged_report_holds_every_input_row_exactly_once(
    tmp_path: Path,
    sharded: tuple[Path, list[Path], MockChimeServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    users, reports, server = sharded
    merged = tmp_path / "merged.csv"
    code, out, err = cli(capsys, "merge-reports", merged, *reports)
    assert (code, err) == (0, "")
    valid, invalid = input_rows(users)
    rows = report_rows(merged)
    assert out.strip() == f"wrote {len(rows)} rows from 3 reports to {merged}"
    updated = Counter((r.account_id, r.user_id) for r in rows if r.status == "updated")
    assert set(updated) == valid and set(updated.values()) == {1}
    bad_lines = Counter(line_of(r.message) for r in rows if r.status == "invalid")
    assert set(bad_lines) == invalid and set(bad_lines.values()) == {1}
    assert len(rows) == len(valid) + len(invalid)
    assert {r.status for r in rows} == {"updated", "invalid"}
    assert set(server.applied) == valid
    assert set(server.apply_counts.values()) == {1}


def test_merge_of_some_shards_warns_which_are_missing(
    tmp_path: Path,
    sharded: tuple[Path, list[Path], MockChimeServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, reports, _ = sharded
    code, _, err = cli(capsys, "merge-reports", tmp_path / "m.csv", reports[0], reports[2])
    assert code == 0
    assert err.strip() == (
        "async-updater: warning: shards 1/3 are missing: the merged report does not cover "
        "the whole input"
    )


def test_merge_with_a_full_run_of_the_same_input_is_refused(
    tmp_path: Path,
    sharded: tuple[Path, list[Path], MockChimeServer],
    capsys: pytest.CaptureFixture[str],
    scope: str,
) -> None:
    users, reports, server = sharded
    full = tmp_path / "full.csv"
    args = ("--endpoint-url", server.url, "--report", full, "--rate", "5000")
    assert cli(capsys, "run", users, *args)[0] == 1
    out = tmp_path / "m.csv"
    code, _, err = cli(capsys, "merge-reports", out, reports[0], full)
    assert code == 2
    basis = "user" if scope == "global" else "account"
    assert err.strip() == (
        "async-updater: error: merge-reports: the reports were not made with one --shard K/N "
        f"split: {reports[0]} (--shard 0/3 split by {basis}), {full} (no --shard)"
    )
    assert not out.exists()


def test_resume_with_another_shard_basis_is_refused_and_leaves_the_report_alone(
    sharded: tuple[Path, list[Path], MockChimeServer],
    capsys: pytest.CaptureFixture[str],
    scope: str,
) -> None:
    users, reports, server = sharded
    before = reports[1].read_bytes()
    other, was, now = (
        ("account", "user", "account") if scope == "global" else ("global", "account", "user")
    )
    code, _, err = cli(
        capsys, "run", users, "--shard", "1/3", "--limit-scope", other, "--resume",
        "--endpoint-url", server.url, "--report", reports[1], "--no-progress",
    )  # fmt: skip
    assert code == 2
    assert err.strip() == (
        f"async-updater: error: cannot resume: {reports[1]} was made with --shard 1/3 split by "
        f"{was}, not --shard 1/3 split by {now}; resume with the same --shard and --limit-scope "
        "(--limit-scope account splits by account, global by user)"
    )
    assert reports[1].read_bytes() == before


def test_resume_with_the_same_shard_and_scope_sends_nothing_again(
    sharded: tuple[Path, list[Path], MockChimeServer],
    capsys: pytest.CaptureFixture[str],
    scope: str,
) -> None:
    users, reports, server = sharded
    sent = sum(server.apply_counts.values())
    code, _, err = cli(
        capsys, "run", users, "--shard", "1/3", "--limit-scope", scope, "--resume",
        "--endpoint-url", server.url, "--report", reports[1], "--no-progress",
    )  # fmt: skip
    assert code in (0, 1), err
    assert sum(server.apply_counts.values()) == sent


def test_merge_with_the_output_first_by_mistake_leaves_the_shard_report_alone(
    sharded: tuple[Path, list[Path], MockChimeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    _, reports, _ = sharded
    before = reports[0].read_bytes()
    code, _, err = cli(capsys, "merge-reports", *reports)  # shard0.csv taken as the output
    assert code == 2
    assert err.strip() == (
        f"async-updater: error: merge-reports: {reports[0]} is the report of a run "
        f"({reports[0].name}.meta.json is next to it); the first argument is the merged report "
        "to write: name a new file"
    )
    assert reports[0].read_bytes() == before


# -- refusals, on hand-made reports -------------------------------------------------------------


def make_report(
    path: Path, users: list[str], meta: dict[str, Any] | None = None, fmt: str = "csv"
) -> Path:
    sink = open_report(path, fmt)
    for u in users:
        sink.write(Result("acct", u, Status.UPDATED, http_status=204, attempts=1))
    sink.close()
    if meta is not None:
        if meta.get("shard") and "shard_basis" not in meta:
            meta = {**meta, "shard_basis": "user"}
        write_meta(path, {**META, "format": fmt, **meta})
    return path


def refused(inputs: list[Path], out: Path) -> str:
    before = {p: p.read_bytes() for p in out.parent.iterdir() if p.is_file()}
    with pytest.raises(ReportError) as info:
        merge_reports(inputs, out)
    after = {p: p.read_bytes() for p in out.parent.iterdir() if p.is_file()}
    assert after == before  # no output, no temporary file, inputs untouched
    return str(info.value)


def test_merge_refuses_a_user_in_two_reports(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1", "u2"], {"shard": "0/2"})
    b = make_report(tmp_path / "b.csv", ["u3", "u2"], {"shard": "1/2"})
    assert refused([a, b], tmp_path / "m.csv") == (
        f"merge-reports: user acct/u2 is in both {a} and {b}: these are not shards of one run"
    )


def test_merge_refuses_reports_of_different_inputs(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"], {"shard": "0/2"})
    b = make_report(tmp_path / "b.csv", ["u2"], {"shard": "1/2", "input_sha256": "d" * 64})
    assert refused([a, b], tmp_path / "m.csv") == (
        "merge-reports: the reports were made from different input files"
    )


def test_merge_refuses_reports_of_different_operations(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"], {"shard": "0/2"})
    b = make_report(tmp_path / "b.csv", ["u2"], {"shard": "1/2", "operation": "other"})
    assert refused([a, b], tmp_path / "m.csv") == (
        "merge-reports: the reports were made from different operations"
    )


def test_merge_refuses_different_shard_counts(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"], {"shard": "0/2"})
    b = make_report(tmp_path / "b.csv", ["u2"], {"shard": "1/3"})
    assert refused([a, b], tmp_path / "m.csv") == (
        "merge-reports: the reports were not made with one --shard K/N split: "
        f"{a} (--shard 0/2 split by user), {b} (--shard 1/3 split by user)"
    )


def test_merge_refuses_shards_split_by_user_and_by_account(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"], {"shard": "0/2", "shard_basis": "user"})
    b = make_report(tmp_path / "b.csv", ["u2"], {"shard": "1/2", "shard_basis": "account"})
    assert refused([a, b], tmp_path / "m.csv") == (
        "merge-reports: the reports were not made with one --shard K/N split: "
        f"{a} (--shard 0/2 split by user), {b} (--shard 1/2 split by account)"
    )


def test_a_report_from_before_shard_bases_counts_as_split_by_account(tmp_path: Path) -> None:
    old = make_report(tmp_path / "old.csv", ["u1"], {"shard": "0/2", "shard_basis": None})
    by_account = make_report(tmp_path / "a.csv", ["u2"], {"shard": "1/2", "shard_basis": "account"})
    by_user = make_report(tmp_path / "u.csv", ["u3"], {"shard": "1/2", "shard_basis": "user"})
    assert merge_reports([old, by_account], tmp_path / "m.csv") == (2, [])
    assert refused([old, by_user], tmp_path / "m2.csv") == (
        "merge-reports: the reports were not made with one --shard K/N split: "
        f"{old} (--shard 0/2 split by account), {by_user} (--shard 1/2 split by user)"
    )


def test_merge_refuses_the_same_shard_twice(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"], {"shard": "0/2"})
    b = make_report(tmp_path / "b.csv", ["u2"], {"shard": "0/2"})
    assert refused([a, b], tmp_path / "m.csv") == "merge-reports: shard 0/2 is given twice"


def test_merge_refuses_the_same_file_twice_even_without_a_meta_file(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"])
    same = tmp_path / "." / "a.csv"
    assert refused([a, same], tmp_path / "m.csv") == f"merge-reports: {same} is given twice"


def test_merge_refuses_mixed_formats(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"], {"shard": "0/2"})
    b = make_report(tmp_path / "b.jsonl", ["u2"], {"shard": "1/2"}, fmt="jsonl")
    assert refused([a, b], tmp_path / "m.csv") == (
        f"merge-reports: {b} is not in the same format as {a}"
    )


def test_merge_refuses_an_output_that_is_an_input(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"], {"shard": "0/2"})
    b = make_report(tmp_path / "b.csv", ["u2"], {"shard": "1/2"})
    assert refused([a, b], b) == "merge-reports: the output must not be one of the inputs"


def test_merge_refuses_a_missing_input(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"], {"shard": "0/2"})
    missing = tmp_path / "b.csv"
    assert refused([a, missing], tmp_path / "m.csv") == f"merge-reports: {missing}: no such file"


def test_merge_refuses_a_corrupt_report_without_leaving_a_partial_output(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"], {"shard": "0/2"})
    b = make_report(tmp_path / "b.csv", ["u2", "u3"], {"shard": "1/2"})
    b.write_text(b.read_text().replace("acct,u2,updated,204,,,1,,,", "acct,u2"))
    assert refused([a, b], tmp_path / "m.csv") == f"{b}: line 2 has 2 fields, not 10"


def test_merge_of_reports_without_meta_warns_that_it_cannot_check_them(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.csv", ["u1"], {"shard": "0/2"})
    b = make_report(tmp_path / "b.csv", ["u2"])
    written, warnings = merge_reports([a, b], tmp_path / "m.csv")
    assert written == 2
    assert warnings[0] == (
        f"{b} has no readable b.csv.meta.json: cannot check it belongs with the others"
    )


def test_merge_of_jsonl_shards_writes_jsonl(tmp_path: Path) -> None:
    a = make_report(tmp_path / "a.jsonl", ["u1"], {"shard": "0/2"}, fmt="jsonl")
    b = make_report(tmp_path / "b.jsonl", ["u2", "u3"], {"shard": "1/2"}, fmt="jsonl")
    out = tmp_path / "m.jsonl"
    assert merge_reports([a, b], out) == (3, [])
    assert [r.user_id for r in read_report(out)] == ["u1", "u2", "u3"]
    assert out.read_text().startswith("{")
    assert not meta_path(out).exists()
    shutil.copy(out, tmp_path / "again.jsonl")  # the merged report can itself be read back
    assert len(list(read_report(tmp_path / "again.jsonl"))) == 3


def test_merge_keeps_before_states_and_brings_an_old_shard_into_the_current_layout(
    tmp_path: Path,
) -> None:
    from async_updater.model import REPORT_COLUMNS

    before = '{"inbound_calling": true, "outbound_calling": false, "sms": true}'
    new = tmp_path / "new.csv"
    sink = open_report(new, "csv")
    sink.write(Result("acct", "u1", Status.UPDATED, 204, attempts=1, before=before))
    sink.write(Result("acct", "u2", Status.UNCHANGED, attempts=1, before=before))
    sink.close()
    write_meta(new, {**META, "shard": "0/2"})
    old = tmp_path / "old.csv"
    old.write_text(",".join(REPORT_COLUMNS[:9]) + "\nacct,u3,updated,204,,,1,,\n")
    write_meta(old, {**META, "shard": "1/2"})
    out = tmp_path / "merged.csv"
    assert merge_reports([new, old], out) == (3, [])
    assert out.read_text().splitlines()[0] == ",".join(REPORT_COLUMNS)
    assert [(r.user_id, r.status, r.before) for r in read_report(out)] == [
        ("u1", "updated", before),
        ("u2", "unchanged", before),
        ("u3", "updated", ""),
    ]
