"""The CSV source against hostile input: every bad file or row gets the exact message the user
sees, file-level problems stop the run before anything is sent, and no input makes it crash."""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_updater.errors import ConfigError, InputError
from async_updater.io.reader import read_report
from async_updater.io.report import CsvReport
from async_updater.io.source import MAX_ROW, CsvSource, Shard, ShardBasis
from async_updater.model import Result, Status, UserRecord
from async_updater.operations.base import encode_segment
from async_updater.pipeline.run import expected_rows, expected_work
from async_updater.testing.sample import generate_users

HEADER = "account_id,user_id,inbound_calling,outbound_calling,sms\n"
EXPECTED = "account_id,user_id,inbound_calling,outbound_calling,sms"
BAD = "'bad' is not a boolean; expected true or false (or 1/0, yes/no)"
LONG = "x" * (MAX_ROW + 10)


def h(rows: str) -> bytes:
    """The standard header, then ``rows`` (UTF-8)."""
    return (HEADER + rows).encode("utf-8")


def ok(line: int, account: str, user: str, i: bool = True, o: bool = False, s: bool = True) -> str:
    return f"ok line {line}: {account!r} {user!r} {i:d}{o:d}{s:d}"


def outcome(item: object) -> str:
    """One outcome as text: a record, or the message of an invalid row."""
    if isinstance(item, UserRecord):
        return ok(
            item.line,
            item.account_id,
            item.user_id,
            item.inbound_calling,
            item.outbound_calling,
            item.sms,
        )
    assert isinstance(item, Result) and item.status is Status.INVALID, item
    return item.message


# (file bytes, what the user sees): a str is the InputError message after "<path>: ";
# a list is one outcome per data row, in order.
CASES: dict[str, tuple[bytes, str | list[str]]] = {
    # -- encodings and line endings ---------------------------------------------------------
    "utf8_bom_is_accepted": (b"\xef\xbb\xbf" + h("a,u,true,false,true\n"), [ok(2, "a", "u")]),
    "crlf_line_endings_are_accepted": (
        h("a,u,true,false,true\nb,v,1,0,yes\n").replace(b"\n", b"\r\n"),
        [ok(2, "a", "u"), ok(3, "b", "v")],
    ),
    "bom_and_crlf_together": (
        b"\xef\xbb\xbf" + h("a,u,true,false,true\n").replace(b"\n", b"\r\n"),
        [ok(2, "a", "u")],
    ),
    "old_mac_cr_line_endings_are_accepted": (
        h("a,u,true,false,true\nb,v,bad,0,1\n").replace(b"\n", b"\r"),
        [ok(2, "a", "u"), f"line 3: inbound_calling: {BAD}"],
    ),
    "utf16_file_is_refused_with_a_hint": (
        (HEADER + "a,u,true,false,true\n").encode("utf-16"),
        "is UTF-16; save it as UTF-8 (a BOM is fine)",
    ),
    "non_utf8_byte_in_header_is_refused": (
        b"account_id,user_id\xff,inbound_calling,outbound_calling,sms\n",
        "the header line is not valid UTF-8",
    ),
    "non_utf8_byte_in_an_id_is_invalid": (
        h("a,u") + b"\xff" + b",true,false,true\nb,v,true,false,true\n",
        ["line 2: user_id: is not valid UTF-8", ok(3, "b", "v")],
    ),
    "latin1_byte_in_a_boolean_is_invalid": (
        h("a,u,tru") + b"\xe9" + b",false,true\n",
        ["line 2: inbound_calling: is not valid UTF-8"],
    ),
    # -- the header -------------------------------------------------------------------------
    "empty_file_is_refused": (b"", "is empty; the first line must be the header"),
    "file_of_blank_lines_is_refused": (b"\n\n \n", "is empty; the first line must be the header"),
    "missing_header_is_refused": (
        b"a,u,true,false,true\n",
        f"the first line is not a header; it must be: {EXPECTED}",
    ),
    "header_with_an_extra_column_is_refused": (
        (HEADER.strip() + ",note\n").encode(),
        f"the header does not fit: unexpected 'note'. Expected: {EXPECTED}",
    ),
    "header_with_a_missing_column_is_refused": (
        b"account_id,user_id,inbound_calling,outbound_calling\n",
        f"the header does not fit: missing sms. Expected: {EXPECTED}",
    ),
    "header_with_a_renamed_column_is_refused": (
        b"account_id,userid,inbound_calling,outbound_calling,sms\n",
        f"the header does not fit: missing user_id; unexpected 'userid'. Expected: {EXPECTED}",
    ),
    "header_naming_a_column_twice_is_refused": (
        (HEADER.strip() + ",sms\n").encode(),
        "the header names column 'sms' twice",
    ),
    "header_in_other_case_and_order_with_spaces_is_accepted": (
        b" SMS ,User_ID,account_id,outbound_calling,inbound_calling\n0, u ,a,1,yes\n",
        [ok(2, "a", "u", True, True, False)],
    ),
    "blank_lines_before_the_header_are_skipped": (
        b"\n\n" + h("a,u,maybe,false,true\n"),
        [
            "line 4: inbound_calling: 'maybe' is not a boolean; expected true or false (or 1/0, "
            "yes/no)"
        ],
    ),
    "header_only_is_valid_with_nothing_to_do": (h(""), []),
    "header_only_without_final_newline_is_valid": (HEADER.strip().encode(), []),
    "first_line_too_long_is_refused": (
        LONG.encode(),
        f"the first line is longer than {MAX_ROW} characters; is it a CSV file?",
    ),
    # -- ids --------------------------------------------------------------------------------
    "empty_account_id_is_invalid": (h(",u,true,false,true\n"), ["line 2: account_id: is empty"]),
    "empty_user_id_is_invalid": (h("a,,true,false,true\n"), ["line 2: user_id: is empty"]),
    "whitespace_only_id_is_invalid": (h("a,   ,true,false,true\n"), ["line 2: user_id: is empty"]),
    "whitespace_around_values_is_stripped": (
        h("  a  ,\tu ,  TRUE , false ,1 \n"),
        [ok(2, "a", "u")],
    ),
    "ids_with_slash_question_hash_percent_are_valid": (
        h("a/b?c#d%,u/1?x=1#f%20,true,false,true\n"),
        [ok(2, "a/b?c#d%", "u/1?x=1#f%20")],
    ),
    "unicode_ids_are_valid": (h("ünï,用户 ✓,true,false,true\n"), [ok(2, "ünï", "用户 ✓")]),
    "dot_dot_id_is_invalid": (
        h("a,..,true,false,true\n"),
        ["line 2: user_id: '..' cannot be used as a path segment"],
    ),
    "id_longer_than_1024_characters_is_invalid": (
        h("a," + "u" * 2000 + ",true,false,true\n"),
        ["line 2: user_id: is 2000 characters long; the limit is 1024"],
    ),
    "nul_byte_in_an_id_is_invalid": (
        h("a,u\x00v,true,false,true\nb,v,true,false,true\n"),
        ["line 2: user_id: contains a control character", ok(3, "b", "v")],
    ),
    "tab_inside_an_id_is_invalid": (
        h("a,u\tv,true,false,true\n"),
        ["line 2: user_id: contains a control character"],
    ),
    # -- booleans ---------------------------------------------------------------------------
    "bad_boolean_is_invalid_naming_line_and_field": (
        h("a,u,true,false,true\nb,v,true,bad,true\n"),
        [ok(2, "a", "u"), f"line 3: outbound_calling: {BAD}"],
    ),
    "empty_boolean_is_invalid": (
        h("a,u,true,false,\n"),
        ["line 2: sms: is empty; expected true or false"],
    ),
    "boolean_spellings_in_any_case_are_accepted": (
        h("a,u,YES,n,T\nb,v,0,1,False\n"),
        [ok(2, "a", "u", True, False, True), ok(3, "b", "v", False, True, False)],
    ),
    "nul_byte_in_a_boolean_is_invalid": (
        h("a,u,tr\x00ue,false,true\n"),
        [
            "line 2: inbound_calling: 'tr\\x00ue' is not a boolean; expected true or false "
            "(or 1/0, yes/no)"
        ],
    ),
    # -- row shape --------------------------------------------------------------------------
    "too_few_fields_is_invalid": (
        h("a,u,true,false\n"),
        ["line 2: has 4 fields; the header has 5"],
    ),
    "too_many_fields_is_invalid": (
        h("a,u,true,false,true,extra\n"),
        ["line 2: has 6 fields; the header has 5"],
    ),
    "trailing_comma_is_one_field_too_many": (
        h("a,u,true,false,true,\n"),
        ["line 2: has 6 fields; the header has 5"],
    ),
    "quoted_commas_are_part_of_the_field": (
        h('"a,1","u,2",true,false,true\n'),
        [ok(2, "a,1", "u,2")],
    ),
    "doubled_quotes_are_a_quote": (h('a,"say ""hi""",1,0,1\n'), [ok(2, "a", 'say "hi"')]),
    "quoted_newline_in_an_id_keeps_later_line_numbers_right": (
        h('"a\nb",u,true,false,true\nc,v,bad,false,true\nd,w,1,0,1\n'),
        [
            "line 2: account_id: contains a control character",
            f"line 4: inbound_calling: {BAD}",
            ok(5, "d", "w"),
        ],
    ),
    "quoted_crlf_in_a_boolean_keeps_later_line_numbers_right": (
        h('a,u,"tr\r\nue",false,true\r\nb,v,bad,0,1\r\n'),
        [
            "line 2: inbound_calling: 'tr\\r\\nue' is not a boolean; expected true or false "
            "(or 1/0, yes/no)",
            f"line 4: inbound_calling: {BAD}",
        ],
    ),
    "unclosed_quote_swallowing_the_rest_names_where_it_started": (
        h('a,u,true,false,true\nb,"v,true,false,true\nc,w,true,false,true\n'),
        [
            ok(2, "a", "u"),
            "line 3: has 2 fields; the header has 5 (a quoted field runs from line 3 to line 4; "
            "is a closing quote missing?)",
        ],
    ),
    "field_longer_than_the_csv_limit_is_invalid_and_later_rows_are_read": (
        h(f"a,{LONG},true,false,true\nb,v,bad,0,1\n"),
        [f"line 2: the row is longer than {MAX_ROW} characters", f"line 3: inbound_calling: {BAD}"],
    ),
    "long_quoted_field_over_lines_is_skipped_whole_never_read_as_rows": (
        h(f'a,"{LONG}\nx,y,true,true,true\n",true,false,true\nb,v,bad,0,1\n'),
        [
            f"line 2: the row is longer than {MAX_ROW} characters (a quoted field runs from "
            "line 2 to line 4; is a closing quote missing?)",
            f"line 5: inbound_calling: {BAD}",
        ],
    ),
    "line_of_3_mib_without_newline_then_rows_keeps_line_numbers": (
        h("a," + "x" * (3 * MAX_ROW) + ',"q\nb",1\nc,w,1,0,1\n'),
        [
            f"line 2: the row is longer than {MAX_ROW} characters (a quoted field runs from "
            "line 2 to line 3; is a closing quote missing?)",
            ok(4, "c", "w", True, False, True),
        ],
    ),
    "long_line_closing_a_quote_then_rows_keeps_line_numbers": (
        h(f'a,"{LONG}\n{LONG}",1,0,1{LONG}\nb,v,bad,0,1\n'),
        [
            f"line 2: the row is longer than {MAX_ROW} characters (a quoted field runs from "
            "line 2 to line 3; is a closing quote missing?)",
            f"line 4: inbound_calling: {BAD}",
        ],
    ),
    "unclosed_long_quote_to_end_of_file_is_one_invalid_row": (
        h(f'a,u,true,false,true\nb,"{LONG}\nc,w,true,false,true\n'),
        [
            ok(2, "a", "u"),
            f"line 3: the row is longer than {MAX_ROW} characters (a quoted field runs from "
            "line 3 to line 4; is a closing quote missing?)",
        ],
    ),
    # -- blank lines and duplicates ---------------------------------------------------------
    "blank_lines_are_skipped_and_line_numbers_stay_right": (
        h("\na,u,true,false,true\n\n   \nb,v,bad,0,1\n"),
        [ok(3, "a", "u"), f"line 6: inbound_calling: {BAD}"],
    ),
    "comma_only_lines_are_skipped": (
        h("a,u,true,false,true\n,,,,\n,,\n , ,\nb,v,bad,0,1\n"),
        [ok(2, "a", "u"), f"line 6: inbound_calling: {BAD}"],
    ),
    "last_row_without_newline_is_read": (h("a,u,true,false,true"), [ok(2, "a", "u")]),
    "duplicate_user_is_invalid_naming_the_earlier_line": (
        h("a,u,true,false,true\nb,v,true,false,true\na,u,false,false,false\n"),
        [
            ok(2, "a", "u"),
            ok(3, "b", "v"),
            "line 4: user_id: duplicate of line 2 (same account_id and user_id); only line 2 is "
            "applied",
        ],
    ),
    "duplicate_after_stripping_spaces_is_a_duplicate": (
        h("a,u,true,false,true\n a , u ,true,false,true\n"),
        [
            ok(2, "a", "u"),
            "line 3: user_id: duplicate of line 2 (same account_id and user_id); only line 2 is "
            "applied",
        ],
    ),
    "same_user_id_in_two_accounts_is_two_users": (
        h("a,u,true,false,true\nb,u,true,false,true\n"),
        [ok(2, "a", "u"), ok(3, "b", "u")],
    ),
    "invalid_first_row_does_not_make_the_valid_one_a_duplicate": (
        h("a,u,maybe,false,true\na,u,true,false,true\n"),
        [
            "line 2: inbound_calling: 'maybe' is not a boolean; expected true or false (or 1/0, "
            "yes/no)",
            ok(3, "a", "u"),
        ],
    ),
}


@pytest.mark.parametrize(("data", "expected"), CASES.values(), ids=CASES.keys())
def test_hostile_input_gets_the_exact_message(
    tmp_path: Path, data: bytes, expected: str | list[str]
) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(data)
    if isinstance(expected, str):
        with pytest.raises(InputError) as info:
            CsvSource(path)
        assert str(info.value) == f"{path}: {expected}"
        return
    source = CsvSource(path)
    got = [outcome(item) for item in source]
    assert got == expected
    assert source.rows == len(expected)
    assert source.invalid == sum(not m.startswith("ok ") for m in expected)
    assert [outcome(item) for item in source] == got  # iterable more than once, same answer


def test_directory_as_input_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r": is a directory, not a CSV file$"):
        CsvSource(tmp_path)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        CsvSource(tmp_path / "nope.csv")
    assert str(info.value) == f"{tmp_path / 'nope.csv'}: no such file"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read a chmod 000 file"
)
def test_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(h("a,u,true,false,true\n"))
    path.chmod(0)
    try:
        with pytest.raises(InputError) as info:
            CsvSource(path)
    finally:
        path.chmod(0o600)
    assert str(info.value) == f"{path}: cannot read it (permission denied)"


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("a/b", "a%2Fb"),
        ("q?x#y", "q%3Fx%23y"),
        ("100%", "100%25"),
        ("with space", "with%20space"),
        ("ünï", "%C3%BCn%C3%AF"),
        ("用户", "%E7%94%A8%E6%88%B7"),
        ("plain-id_1.2~x", "plain-id_1.2~x"),
    ],
)
def test_ids_are_percent_encoded_as_one_path_segment(value: str, segment: str) -> None:
    assert encode_segment(value) == segment
    assert "/" not in encode_segment(value)


def test_invalid_row_with_undecodable_bytes_still_writes_a_readable_report(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(h("") + b"acct\xff,u\xfe\x00,true,false,true\n")
    (result,) = list(CsvSource(path))
    assert isinstance(result, Result)
    assert result.message == "line 2: account_id: is not valid UTF-8"
    report = tmp_path / "r.csv"
    sink = CsvReport(report)
    sink.write(result)
    sink.close()
    (row,) = list(read_report(report))
    assert (row.account_id, row.status) == ("acct?", "invalid")
    assert row.user_id == "u?\\0"


def test_an_oversized_row_is_reported_by_exactly_one_shard(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(
        h(
            f"a,{LONG},true,false,true\n"
            + "".join(f"acct{i},u{i},true,false,true\n" for i in range(30))
        )
    )
    whole = [outcome(x) for x in CsvSource(path)]
    for basis in ShardBasis:
        parts = [[outcome(x) for x in CsvSource(path, shard=Shard(k, 3, basis))] for k in range(3)]
        assert sorted(m for part in parts for m in part) == sorted(whole)
        assert sum(m.startswith("line 2: the row is longer") for part in parts for m in part) == 1


def test_a_source_says_how_many_rows_to_expect_before_it_is_read_except_a_shard(
    tmp_path: Path,
) -> None:
    """Slow start may risk a share of the work once it knows how much there is
    (``RateController.work_known``): the file's rows, counted cheaply, for a whole file; a
    shard's share of them is not known up front. A collection says its length."""
    path = tmp_path / "users.csv"
    path.write_bytes(h("".join(f"acct{i},u{i},true,false,true\n" for i in range(30))))
    assert CsvSource(path).expected_rows() == 30
    assert CsvSource(path, shard=Shard(0, 3)).expected_rows() is None
    assert expected_rows([1, 2, 3]) == 3
    assert expected_rows(CsvSource(path)) == 30
    assert expected_rows(iter([1, 2, 3])) is None  # an iterator says nothing before it is read


def test_a_shard_by_user_expects_its_even_share_of_the_file_a_shard_by_account_nothing(
    tmp_path: Path,
) -> None:
    """A row's shard by user is a hash of its ids, so a shard of N holds about 1/N of the
    file's rows in any order: its work is estimated from the start (slow start's risk and a
    probe's pay need it), and the estimate is near what it yields. By account, a shard holds
    whole accounts, however many rows each has: nothing is estimated."""
    path = tmp_path / "users.csv"
    path.write_bytes(h("".join(f"acct{i % 3},u{i},true,false,true\n" for i in range(3000))))
    assert CsvSource(path).rows_expected() == 3000 == expected_work(CsvSource(path))
    for k in range(4):
        shard = CsvSource(path, shard=Shard(k, 4))
        assert expected_work(shard) == shard.rows_expected() == 750.0
        assert abs(sum(1 for _ in shard) - 750) <= 75  # within 10% (binomial: sd ~24)
    by_account = CsvSource(path, shard=Shard(0, 4, ShardBasis.ACCOUNT))
    assert by_account.rows_expected() is None and expected_work(by_account) is None
    assert expected_work([1, 2]) == 2 and expected_work(iter([1])) is None


# -- fuzzing ------------------------------------------------------------------------------------
#
# What "one outcome per data row" means: the file is cut into rows the way CSV does it (a line
# break inside a quoted field belongs to the field), the header row and rows whose every cell is
# blank are not data, and every other row yields exactly one record or one invalid result, whose
# line is the physical line the row starts on (\n, \r\n and a lone \r each end a line).

FUZZ_FILE = Path(tempfile.mkdtemp(prefix="async-updater-fuzz-")) / "users.csv"
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _collect(path: Path, shard: Shard | None = None) -> list[UserRecord | Result]:
    items: list[UserRecord | Result] = []
    for item in CsvSource(path, shard=shard):
        assert isinstance(item, (UserRecord, Result)), item
        if isinstance(item, Result):
            assert item.status is Status.INVALID
            assert item.message.startswith(f"line {item.line}: ")
            item.message.encode("utf-8")  # a report can always hold it
            item.account_id.encode("utf-8")
            item.user_id.encode("utf-8")
        items.append(item)
    return items


def _row_starts(text: str) -> Iterator[tuple[int, list[str]]]:
    """(start line, cells) of every CSV row of ``text``, as the csv module cuts them."""
    lines = io.StringIO(text, newline="")
    reader = csv.reader(lines)
    start = 1
    for cells in reader:
        yield start, cells
        start = reader.line_num + 1


cell_text = st.one_of(
    st.text(alphabet='ab ,"\n\r\t\x00é用-/%?#', max_size=8),
    st.sampled_from(["true", "false", "1", "0", " ", ""]),
)
row = st.lists(cell_text, min_size=1, max_size=7)
ident = st.text(alphabet="ab1 ,/%é用", min_size=1, max_size=4)
flag = st.sampled_from(["true", "false", "1", "0", "yes", "No"])
valid_row = st.tuples(ident, ident, flag, flag, flag).map(list)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.one_of(valid_row, row, st.just([""]), st.just(["", "", ""])), max_size=12),
    terminator=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
)
def test_fuzz_every_csv_row_yields_one_outcome_on_the_line_it_starts(
    rows: list[list[str]], terminator: str, bom: bool
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # quotes any field holding \r or \n
    parts = [HEADER.replace("\n", terminator)]
    for cells in rows:
        out.seek(0)
        out.truncate()
        writer.writerow(cells)
        parts.append(out.getvalue()[:-2] + terminator)
    text = "".join(parts)
    FUZZ_FILE.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    # Independent of the csv module: the line each written row starts on.
    starts, line = [], 2
    for cells, part in zip(rows, parts[1:], strict=True):
        if any(c.strip() for c in cells):
            starts.append(line)
        line += len(LINE_BREAK.findall(part))
    items = _collect(FUZZ_FILE)
    assert [item.line for item in items] == starts
    for basis in ShardBasis:
        sharded = sorted(
            item.line for k in range(3) for item in _collect(FUZZ_FILE, Shard(k, 3, basis))
        )
        assert sharded == starts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: HEADER.encode() + b),
        st.text(max_size=200).map(lambda t: (HEADER + t).encode("utf-8", "surrogatepass")),
    )
)
def test_fuzz_arbitrary_bytes_only_ever_raise_input_error_at_construction(data: bytes) -> None:
    FUZZ_FILE.write_bytes(data)
    try:
        CsvSource(FUZZ_FILE)
    except InputError as exc:
        assert "\n" not in str(exc).replace(str(FUZZ_FILE), "")
        return
    items = _collect(FUZZ_FILE)
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    rows = list(_row_starts(text))
    header_at = next(i for i, (_, cells) in enumerate(rows) if any(c.strip() for c in cells))
    data_rows = [start for start, cells in rows[header_at + 1 :] if any(c.strip() for c in cells)]
    assert [item.line for item in items] == data_rows
    total_lines = len(LINE_BREAK.findall(text)) + 1
    assert all(2 <= item.line <= total_lines for item in items)


def test_one_endless_line_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER + "a,")
        for _ in range(24):
            f.write("y" * (1 << 20))  # 24 MiB, no line break
    tracemalloc.start()
    try:
        got = [outcome(item) for item in CsvSource(path)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [f"line 2: the row is longer than {MAX_ROW} characters"]
    assert peak < 8 * MAX_ROW  # a few copies of one chunk, never the whole line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/3", "--shard: need 0 <= K < N, got 3/3"),
        ("-1/3", "--shard: need 0 <= K < N, got -1/3"),
        ("0/0", "--shard: need 0 <= K < N, got 0/0"),
        ("1", "--shard: '1' is not K/N, e.g. 0/4 (K counts from 0)"),
        ("a/b", "--shard: 'a/b' is not K/N, e.g. 0/4 (K counts from 0)"),
    ],
)
def test_bad_shard_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Shard.parse(text)
    assert str(info.value) == message


def test_every_account_and_user_belongs_to_exactly_one_shard_on_either_basis() -> None:
    ids = ["", "a", "acct/1 %", "ünï", "\udcff", *(f"acct-{i}" for i in range(200))]
    for basis in ShardBasis:
        shards = [Shard.parse(f"{k}/4", basis) for k in range(4)]
        for account in ids:
            for user in ("", "u", f"{account}-user"):
                assert sum(s.owns(account, user) for s in shards) == 1
    assert Shard.parse("2/4") == Shard(2, 4, ShardBasis.USER) and str(Shard(2, 4)) == "2/4"
    assert Shard.parse("2/4", ShardBasis.ACCOUNT).basis is ShardBasis.ACCOUNT


def test_the_limit_scope_picks_the_shard_basis() -> None:
    assert ShardBasis.for_scope("global") is ShardBasis.USER
    assert ShardBasis.for_scope("account") is ShardBasis.ACCOUNT


def test_shard_assignment_is_stable_across_processes_and_versions() -> None:
    # BLAKE2b of the ids, not Python's salted hash(): these must never change, or a --resume
    # after an upgrade would find other users in its shard. By account, they are what every
    # version before the user basis computed, so its reports still resume.
    def owner(basis: ShardBasis, account: str, user: str) -> list[int]:
        return [k for k in range(4) if Shard(k, 4, basis).owns(account, user)]

    assert owner(ShardBasis.USER, "a1", "u1") == [3]
    assert owner(ShardBasis.USER, "a1", "u2") == [0]
    assert owner(ShardBasis.ACCOUNT, "a1", "u1") == owner(ShardBasis.ACCOUNT, "a1", "u2") == [3]


def _rows_per_shard(path: Path, count: int, basis: ShardBasis) -> list[list[UserRecord]]:
    shards = []
    for k in range(count):
        items = list(CsvSource(path, shard=Shard(k, count, basis)))
        assert all(isinstance(item, UserRecord) for item in items)
        shards.append([item for item in items if isinstance(item, UserRecord)])
    return shards


@pytest.mark.parametrize("accounts", [1, 16])
def test_shards_by_user_are_even_whatever_the_number_of_accounts(
    tmp_path: Path, accounts: int
) -> None:
    path = tmp_path / "users.csv"
    users = generate_users(path, 8000, accounts, seed=accounts)
    shards = _rows_per_shard(path, 4, ShardBasis.USER)
    sizes = [len(shard) for shard in shards]
    assert all(abs(size - users / 4) <= 0.05 * users / 4 for size in sizes), sizes
    lines = sorted(record.line for shard in shards for record in shard)
    assert lines == list(range(2, users + 2))  # every row in exactly one shard


@pytest.mark.parametrize("accounts", [1, 16])
def test_shards_by_account_keep_each_account_whole(tmp_path: Path, accounts: int) -> None:
    path = tmp_path / "users.csv"
    users = generate_users(path, 8000, accounts, seed=accounts)
    shards = _rows_per_shard(path, 4, ShardBasis.ACCOUNT)
    owner: dict[str, int] = {}
    for k, shard in enumerate(shards):
        for record in shard:
            assert owner.setdefault(record.account_id, k) == k
    assert len(owner) == accounts
    lines = sorted(record.line for shard in shards for record in shard)
    assert lines == list(range(2, users + 2))
    if accounts == 1:  # why a global limit splits by user instead: one shard gets everything
        assert sorted(len(shard) for shard in shards) == [0, 0, 0, users]


@pytest.mark.parametrize("basis", list(ShardBasis))
def test_a_duplicate_row_is_caught_in_the_shard_of_the_row_it_repeats(
    tmp_path: Path, basis: ShardBasis
) -> None:
    path = tmp_path / "users.csv"
    rows = [f"acct{i % 3},u{i},true,false,true\n" for i in range(40)]
    # Each user again, with spaces around the ids (stripped, so the same user).
    repeats = [f" acct{i % 3} , u{i} ,false,false,true\n" for i in range(40)]
    path.write_bytes(h("".join(rows + repeats)))
    whole = sorted(outcome(x) for x in CsvSource(path))
    parts = [[outcome(x) for x in CsvSource(path, shard=Shard(k, 3, basis))] for k in range(3)]
    assert sorted(m for part in parts for m in part) == whole
    assert sum("duplicate of line" in m for m in whole) == 40
