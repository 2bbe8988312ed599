"""A user's state read before writing: Chime's reader, comparing states, the decision after a
read, a failed read's row, and the plan. Plain values only: no network, no files."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from async_updater.config import UpdaterConfig, check_read_support
from async_updater.errors import ConfigError, StateError
from async_updater.model import Plan, Result, Status, UserRecord
from async_updater.operations.chime import ChimeGetUserSettings, ChimeUpdateUserSettings
from async_updater.operations.generic import GenericOperation
from async_updater.pipeline.state import (
    NextStep,
    PlanTally,
    after_read,
    changed_fields,
    parse_state_json,
    plan_of,
    read_failure,
    state_json,
    values_equal,
)

READER = ChimeGetUserSettings()


def answer_body(inbound: bool, outbound: bool, sms: bool) -> bytes:
    telephony = {"InboundCalling": inbound, "OutboundCalling": outbound, "SMS": sms}
    return json.dumps({"UserSettings": {"Telephony": telephony}}).encode()


@dataclass(frozen=True)
class Answer:
    """A read's 2xx answer as ``after_read`` sees it (``transport.Response`` has these)."""

    body: bytes
    error_code: str = ""
    message: str = ""


def user(inbound: bool = True, outbound: bool = False, sms: bool = True) -> UserRecord:
    return UserRecord("acct 1", "u/1", inbound, outbound, sms, 7)


# -- Chime GetUserSettings -----------------------------------------------------------------------


def test_chime_reads_with_a_get_on_the_settings_path_with_an_empty_body() -> None:
    read = READER.request(user())
    write = ChimeUpdateUserSettings().build(user())
    assert (read.method, read.path, read.body) == ("GET", write.path, b"")
    assert read.path == "/accounts/acct%201/users/u%2F1/settings"


def test_chime_answer_becomes_the_rows_fields_in_column_order() -> None:
    state = READER.parse(answer_body(True, False, True))
    assert state == {"inbound_calling": True, "outbound_calling": False, "sms": True}
    assert list(state) == list(READER.fields)
    assert state_json(state) == '{"inbound_calling": true, "outbound_calling": false, "sms": true}'


def test_chime_answer_may_carry_settings_the_state_does_not_use() -> None:
    body = json.loads(answer_body(False, True, False))
    body["UserSettings"]["Telephony"]["Voicemail"] = True
    body["UserSettings"]["Other"] = {}
    assert READER.parse(json.dumps(body).encode()) == {
        "inbound_calling": False,
        "outbound_calling": True,
        "sms": False,
    }


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>gateway</html>", "the answer is not JSON: <html>gateway</html>"),
        (b"", "the answer is not JSON: (empty)"),
        (b"[]", "the answer has no UserSettings.Telephony object: []"),
        (b'{"UserSettings": {}}', "the answer has no UserSettings.Telephony object"),
        (
            b'{"UserSettings": {"Telephony": {"InboundCalling": true, "SMS": false}}}',
            "UserSettings.Telephony.OutboundCalling is missing, not a boolean",
        ),
        (
            b'{"UserSettings": {"Telephony": '
            b'{"InboundCalling": 1, "OutboundCalling": true, "SMS": false}}}',
            "UserSettings.Telephony.InboundCalling is 1, not a boolean",
        ),
    ],
)
def test_chime_answer_of_another_shape_is_a_state_error_saying_what_is_wrong(
    body: bytes, says: str
) -> None:
    with pytest.raises(StateError) as info:
        READER.parse(body)
    assert str(info.value).startswith(says)
    assert info.value.code == "InvalidState"


def test_chime_desired_state_is_the_rows_fields() -> None:
    assert READER.desired(user(False, True, False)) == {
        "inbound_calling": False,
        "outbound_calling": True,
        "sms": False,
    }


def test_chime_restore_row_is_an_input_row_the_parser_reads_back_to_that_state() -> None:
    state = {"inbound_calling": False, "outbound_calling": True, "sms": False}
    cells = READER.restore_row("acct 1", "u/1", state)
    assert cells == ["acct 1", "u/1", "false", "true", "false"]
    parse = ChimeUpdateUserSettings().row_parser(list(READER.restore_columns))
    assert READER.desired(parse(cells, 2)) == state


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ({"inbound_calling": True, "sms": True}, "outbound_calling is missing"),
        ({"inbound_calling": True, "outbound_calling": "yes", "sms": True}, 'is "yes"'),
    ],
)
def test_chime_restore_row_refuses_a_state_it_cannot_write(
    state: dict[str, object], says: str
) -> None:
    with pytest.raises(StateError, match=says):
        READER.restore_row("a", "u", state)


# -- comparing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (True, True, True),
        (True, 1, False),  # Python says True == 1; the API does not
        (0, False, False),
        (3, 3.0, True),
        ("x", "x", True),
        (None, None, True),
        (None, False, False),
        ({"a": [1, True]}, {"a": [1.0, True]}, True),
        ({"a": [1, True]}, {"a": [1, 1]}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1, 2], [1, 2, 3], False),
        ("1", 1, False),
    ],
)
def test_values_compare_as_json_with_booleans_apart(a: object, b: object, equal: bool) -> None:
    assert values_equal(a, b) is equal
    assert values_equal(b, a) is equal


def test_changed_fields_are_the_desired_fields_that_differ_in_order() -> None:
    current = {"inbound_calling": True, "outbound_calling": False, "sms": False}
    desired = {"inbound_calling": False, "outbound_calling": False, "sms": True}
    assert changed_fields(current, desired) == ("inbound_calling", "sms")
    assert changed_fields(desired, desired) == ()
    assert changed_fields({}, {"sms": True}) == ("sms",)


def test_state_json_round_trips_and_a_bad_before_cell_is_a_state_error() -> None:
    state = {"note": "ünï \ud800", "n": 3}
    text = state_json(state)
    assert text.isascii()
    assert parse_state_json(text) == state
    for bad in ("not json", "[1]"):
        with pytest.raises(StateError) as info:
            parse_state_json(bad)
        assert info.value.code == "InvalidBefore"


# -- after a read -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "dry_run", "skip_unchanged", "step"),
    [
        ((True, False, True), False, False, NextStep.WRITE),  # as asked, but no skipping
        ((True, False, True), False, True, NextStep.UNCHANGED),
        ((True, False, True), True, False, NextStep.UNCHANGED),
        ((False, False, True), False, True, NextStep.WRITE),
        ((False, False, True), False, False, NextStep.WRITE),
        ((False, False, True), True, False, NextStep.PLANNED),
        ((False, False, True), True, True, NextStep.PLANNED),
    ],
)
def test_after_read_decides_write_unchanged_or_planned(
    now: tuple[bool, bool, bool], dry_run: bool, skip_unchanged: bool, step: NextStep
) -> None:
    outcome = after_read(
        READER, user(), Answer(answer_body(*now)), dry_run=dry_run, skip_unchanged=skip_unchanged
    )
    assert outcome.step is step
    assert parse_state_json(outcome.before) == READER.parse(answer_body(*now))
    differs = now != (True, False, True)
    assert outcome.changes == (("inbound_calling",) if differs else ())


def test_planned_and_unchanged_rows_say_why_in_their_message() -> None:
    planned = after_read(
        READER, user(), Answer(answer_body(False, True, True)), dry_run=True, skip_unchanged=False
    )
    assert planned.changes == ("inbound_calling", "outbound_calling")
    assert (
        planned.message
        == "would change inbound_calling false -> true, outbound_calling true -> false"
    )
    same = after_read(
        READER, user(), Answer(answer_body(True, False, True)), dry_run=True, skip_unchanged=False
    )
    assert same.message == "already as asked; nothing written"
    write = after_read(
        READER, user(), Answer(answer_body(False, True, True)), dry_run=False, skip_unchanged=True
    )
    assert write.message == ""


def test_a_captured_before_stays_the_before_even_when_the_state_now_is_the_runs_own_write() -> None:
    captured = state_json({"inbound_calling": False, "outbound_calling": True, "sms": False})
    # The earlier run's write landed (the state now is the row) but left no report row.
    outcome = after_read(
        READER,
        user(),
        Answer(answer_body(True, False, True)),
        dry_run=False,
        skip_unchanged=True,
        captured=captured,
    )
    assert outcome.step is NextStep.WRITE  # updated, so that undo restores it
    assert outcome.before == captured
    assert outcome.changes == ("inbound_calling", "outbound_calling", "sms")


def test_with_a_captured_before_as_asked_the_user_is_unchanged_only_if_it_still_is() -> None:
    captured = state_json({"inbound_calling": True, "outbound_calling": False, "sms": True})
    same = after_read(
        READER,
        user(),
        Answer(answer_body(True, False, True)),
        dry_run=False,
        skip_unchanged=True,
        captured=captured,
    )
    assert (same.step, same.before) == (NextStep.UNCHANGED, captured)
    moved = after_read(
        READER,
        user(),
        Answer(answer_body(True, True, True)),
        dry_run=False,
        skip_unchanged=True,
        captured=captured,
    )
    assert (moved.step, moved.changes, moved.before) == (
        NextStep.WRITE,
        ("outbound_calling",),
        captured,
    )


def test_after_read_raises_for_a_body_of_the_wrong_shape_or_one_not_taken_whole() -> None:
    with pytest.raises(StateError) as info:
        after_read(READER, user(), Answer(b"{}"), dry_run=False, skip_unchanged=False)
    assert info.value.code == "InvalidState"
    too_large = Answer(b"", "ResponseTooLarge", "the answer to the read is larger than 1048576")
    with pytest.raises(StateError) as info:
        after_read(READER, user(), too_large, dry_run=False, skip_unchanged=False)
    assert info.value.code == "ResponseTooLarge"


def test_a_failed_read_row_is_failed_with_a_read_code_and_no_before() -> None:
    throttled = Result(
        "a", "u", Status.FAILED, 429, "ThrottledClientException", "Rate exceeded", 8, 3.0, "r1"
    )
    row = read_failure(throttled)
    assert (row.status, row.error_code, row.http_status, row.attempts, row.before) == (
        Status.FAILED,
        "Read:ThrottledClientException",
        429,
        8,
        "",
    )
    assert row.message == "the read failed, nothing was written: Rate exceeded"
    answered = Result("a", "u", Status.UPDATED, 200, attempts=1, request_id="r2")
    shape = read_failure(answered, StateError("the answer is not JSON: x"), captured='{"x": 1}')
    assert (shape.status, shape.error_code, shape.before) == (
        Status.FAILED,
        "Read:InvalidState",
        '{"x": 1}',
    )
    assert shape.message.endswith("the answer is not JSON: x")


# -- the plan -----------------------------------------------------------------------------------


def row(status: Status, changes: tuple[str, ...] = (), before: str = '{"sms": false}') -> Result:
    return Result("a", "u", status, before=before, changes=changes)


def test_plan_counts_users_that_change_of_those_compared_and_each_field() -> None:
    results = [
        *[row(Status.PLANNED, ("sms",)) for _ in range(812)],
        *[row(Status.PLANNED, ("sms", "inbound_calling")) for _ in range(40)],
        *[row(Status.UNCHANGED) for _ in range(148)],
        row(Status.FAILED, ("sms",)),  # a failed row changed nothing
        row(Status.INVALID),
        row(Status.PLANNED, ("sms",), before=""),  # not read: not compared
    ]
    plan = plan_of(results)
    assert plan == Plan(852, 1000, (("sms", 852), ("inbound_calling", 40)))
    assert plan.text(dry_run=True) == (
        "852 of 1000 users would change (sms: 852 users, inbound_calling: 40 users)"
    )
    assert plan.as_dict() == {
        "changing": 852,
        "compared": 1000,
        "fields": {"sms": 852, "inbound_calling": 40},
    }


def test_plan_of_a_run_says_changed_and_counts_users_written_without_a_change() -> None:
    plan = plan_of([row(Status.UPDATED, ("sms",)), row(Status.UPDATED), row(Status.UNCHANGED)])
    assert plan == Plan(1, 3, (("sms", 1),))
    assert plan.text(dry_run=False) == "1 of 3 users changed (sms: 1 user)"


def test_no_plan_without_reads_and_ties_rank_by_name() -> None:
    assert plan_of([Result("a", "u", Status.UPDATED)]) is None
    assert PlanTally().plan() is None
    tied = plan_of([row(Status.PLANNED, ("sms", "inbound_calling"))])
    assert tied is not None and tied.fields == (("inbound_calling", 1), ("sms", 1))
    assert Plan(0, 5).text(dry_run=True) == "0 of 5 users would change"


# -- config -------------------------------------------------------------------------------------


def test_skip_unchanged_implies_read_before_and_a_plan_sends_reads() -> None:
    config = UpdaterConfig(skip_unchanged=True)
    assert config.read_before
    assert not UpdaterConfig(dry_run=True).sends
    assert UpdaterConfig(dry_run=True, read_before=True).sends
    assert UpdaterConfig().sends


def test_reading_with_an_operation_that_cannot_read_is_a_config_error_naming_the_option() -> None:
    cannot = GenericOperation(service="execute-api", path_template="/v1/users/{user_id}")
    check_read_support(UpdaterConfig(), cannot)  # no reading asked: fine
    check_read_support(UpdaterConfig(skip_unchanged=True), ChimeUpdateUserSettings())
    with pytest.raises(ConfigError, match=r"^--skip-unchanged: operation 'generic PUT"):
        check_read_support(UpdaterConfig(skip_unchanged=True), cannot)
    with pytest.raises(ConfigError, match=r"^--read-before: .*--read-path-template"):
        check_read_support(UpdaterConfig(read_before=True), cannot)
