"""The safety-stop decisions with plain values: which answers are credentials rejections or clock
skew, when a failure budget is spent, how the clock offset is kept, what ``--max-failures``
accepts."""

from __future__ import annotations

import pytest

from async_updater.config import UpdaterConfig
from async_updater.errors import ConfigError, SafetyStop, UpdaterError
from async_updater.model import Result, Status
from async_updater.pipeline.safety import (
    DEFAULT_MAX_FAILURES,
    DEFAULT_REJECTIONS_IN_A_ROW,
    MIN_ANSWERED_FOR_SHARE,
    ClockOffset,
    CredentialsRejections,
    FailureBudget,
    MaxFailures,
    SafetyPolicy,
    StopCause,
    is_clock_skew,
    is_credentials_rejection,
    parse_http_date,
)

MISMATCH = "The request signature we calculated does not match the signature you provided."
EXPIRED_SIG = (
    "Signature expired: 20260101T000000Z is now earlier than 20260101T001000Z "
    "(20260101T001500Z - 5 min.)"
)
NOT_YET = (
    "Signature not yet current: 20260101T003000Z is still later than 20260101T002000Z "
    "(20260101T001500Z + 5 min.)"
)
MOCK_SKEW = (
    "Signature expired: 20260101T000000Z is more than 300 s away from the server time "
    "20260101T001500Z."
)


def ok(user: str = "u") -> Result:
    return Result("a", user, Status.UPDATED, 204, attempts=1)


def failed(status: int | None = 404, code: str = "NotFoundException", message: str = "") -> Result:
    return Result("a", "u", Status.FAILED, status, code, message or f"{code} says no", attempts=1)


# -- what counts as a credentials rejection ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (401, "UnauthorizedClientException", "Unknown access key id '[redacted]'."),
        (401, "", ""),
        (403, "InvalidSignatureException", MISMATCH),
        (403, "SignatureDoesNotMatch", MISMATCH),
        (403, "ForbiddenException", "The security token included in the request is invalid."),
        (403, "AccessDeniedException", "User: arn:aws:iam::1:user/x is not authorized to ..."),
        (403, "ForbiddenException", "Access denied for this account"),
        (403, "InvalidClientTokenId", "The security token included in the request is invalid."),
        (403, "MissingAuthenticationTokenException", "Missing Authentication Token"),
        (400, "UnrecognizedClientException", "The security token included in the request is ..."),
        (400, "InvalidSignatureException", MISMATCH),
    ],
)
def test_401_and_403_about_credentials_signature_token_or_access_are_rejections(
    status: int, code: str, message: str
) -> None:
    assert is_credentials_rejection(status, code, message)


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (403, "InvalidSignatureException", EXPIRED_SIG),
        (403, "InvalidSignatureException", NOT_YET),
        (403, "InvalidSignatureException", MOCK_SKEW),
        (403, "RequestTimeTooSkewed", "The difference between the request time and ..."),
        (400, "RequestExpired", "Request has expired."),
        (403, "ExpiredTokenException", "The security token included in the request is expired"),
        (400, "ExpiredToken", "The provided token has expired."),
        (403, "ForbiddenException", "The account is suspended."),
        (404, "NotFoundException", "User 'u' was not found."),
        (400, "BadRequestException", "Telephony.SMS must be a JSON boolean."),
        (429, "ThrottledClientException", "Rate exceeded"),
        (500, "ServiceFailureException", "internal error"),
        (None, "ConnectionError", "cannot connect"),
        (204, "", ""),
    ],
)
def test_skew_expired_tokens_and_other_answers_are_not_credentials_rejections(
    status: int | None, code: str, message: str
) -> None:
    assert not is_credentials_rejection(status, code, message)


def test_rejections_stop_at_the_limit_in_a_row_and_name_the_servers_answer() -> None:
    rule = CredentialsRejections(3)
    assert rule.observe(403, "InvalidSignatureException", MISMATCH) is None
    assert rule.observe(403, "InvalidSignatureException", MISMATCH) is None
    reason = rule.observe(403, "InvalidSignatureException", MISMATCH)
    assert reason is not None
    assert reason.cause is StopCause.CREDENTIALS
    assert (reason.http_status, reason.code, reason.message) == (
        403,
        "InvalidSignatureException",
        MISMATCH,
    )
    assert reason.text == (
        "the server refused our credentials or permissions 3 times in a row "
        f"(403 InvalidSignatureException: {MISMATCH}); check the keys, the profile and the "
        "permissions, then resume"
    )
    assert "\n" not in reason.text


def test_a_success_between_rejections_starts_the_count_again() -> None:
    rule = CredentialsRejections(3)
    for _ in range(10):
        assert rule.observe(401, "UnauthorizedClientException", "no") is None
        assert rule.observe(401, "UnauthorizedClientException", "no") is None
        assert rule.observe(204) is None
    assert rule.in_a_row == 0


def test_throttles_404s_and_skew_between_rejections_neither_count_nor_reset() -> None:
    rule = CredentialsRejections(3)
    rule.observe(401)
    rule.observe(429, "ThrottledClientException", "Rate exceeded")
    rule.observe(404, "NotFoundException", "gone")
    rule.observe(403, "InvalidSignatureException", MOCK_SKEW)
    rule.observe(403, "ExpiredTokenException", "expired")
    rule.observe(None, "Timeout", "no answer")
    assert rule.in_a_row == 1
    rule.observe(401)
    assert rule.observe(401) is not None


def test_the_default_rejection_limit_is_small_and_positive() -> None:
    assert 1 < DEFAULT_REJECTIONS_IN_A_ROW <= 32  # within the default concurrency
    with pytest.raises(ConfigError, match="rejections in a row"):
        CredentialsRejections(0)


# -- the failure budget -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "percent"),
    [("0", 0, None), ("50", 50, None), (" 7 ", 7, None), ("10%", None, 10.0),
     ("2.5%", None, 2.5), ("0%", None, 0.0), ("100%", None, 100.0), ("5 %", None, 5.0)],
)  # fmt: skip
def test_max_failures_parses_a_count_or_a_percentage(
    text: str, count: int | None, percent: float | None
) -> None:
    parsed = MaxFailures.parse(text)
    assert (parsed.count, parsed.percent) == (count, percent)
    assert MaxFailures.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--max-failures: '' is neither a number of rows (e.g. 50) nor a percentage (e.g. 1"),
        ("ten", "--max-failures: 'ten' is neither a number of rows (e.g. 50) nor a percentage"),
        ("-1", "--max-failures: '-1' is neither a number of rows (e.g. 50) nor a percentage"),
        ("2.5", "--max-failures: '2.5' is neither a number of rows (e.g. 50) nor a percentage"),
        ("%", "--max-failures: '%' is not a percentage like 10% or 2.5%"),
        ("abc%", "--max-failures: 'abc%' is not a percentage like 10% or 2.5%"),
        ("nan%", "--max-failures: 'nan%' is not a percentage like 10% or 2.5%"),
        ("150%", "--max-failures: a percentage must be between 0% and 100%, not 150.0%"),
        ("-5%", "--max-failures: a percentage must be between 0% and 100%, not -5.0%"),
    ],
)
def test_bad_max_failures_is_one_line_naming_the_option(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        MaxFailures.parse(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_a_count_budget_tolerates_n_failed_rows_and_stops_at_the_next() -> None:
    budget = FailureBudget(MaxFailures(count=2))
    assert budget.observe(failed()) is None
    assert budget.observe(ok()) is None
    assert budget.observe(failed()) is None
    reason = budget.observe(failed(404, "NotFoundException", "User 'u' was not found."))
    assert reason is not None and reason.cause is StopCause.FAILURE_BUDGET
    assert reason.text == (
        "failure budget spent: 3 of 4 rows failed, more than --max-failures 2 allows "
        "(last: 404 NotFoundException: User 'u' was not found.)"
    )
    assert (reason.http_status, reason.code) == (404, "NotFoundException")


def test_a_zero_count_budget_stops_at_the_first_failed_row() -> None:
    assert FailureBudget(MaxFailures(count=0)).observe(failed()) is not None


def test_a_percentage_counts_only_after_the_minimum_number_of_rows_with_an_outcome() -> None:
    budget = FailureBudget(MaxFailures(percent=10.0, min_answered=20))
    # Every one of the first 19 rows fails: 100%, but too few rows to judge.
    for _ in range(19):
        assert budget.observe(failed()) is None
    reason = budget.observe(failed())
    assert reason is not None
    assert reason.text.startswith(
        "failure budget spent: 20 of 20 rows failed (100.0%), more than --max-failures 10% allows"
    )


def test_a_percentage_budget_holds_at_the_share_and_is_spent_just_above_it() -> None:
    budget = FailureBudget(MaxFailures(percent=10.0, min_answered=10))
    results = [failed() if i % 10 == 9 else ok() for i in range(100)]  # 10% at each tenth
    assert all(budget.observe(r) is None for r in results)
    assert budget.observe(failed()) is not None  # 11 of 101


def test_invalid_and_planned_rows_are_not_counted_by_the_budget() -> None:
    budget = FailureBudget(MaxFailures(count=0))
    invalid = Result("a", "u", Status.INVALID, error_code="InvalidRow", message="line 3: bad")
    planned = Result("a", "u", Status.PLANNED, message="PUT /x")
    assert budget.observe(invalid) is None and budget.observe(planned) is None
    assert (budget.answered, budget.failed) == (0, 0)


def test_the_default_budget_is_ten_percent_over_at_least_100_rows() -> None:
    assert MaxFailures(percent=10.0) == DEFAULT_MAX_FAILURES
    assert DEFAULT_MAX_FAILURES.min_answered == MIN_ANSWERED_FOR_SHARE == 100
    assert UpdaterConfig().max_failures == DEFAULT_MAX_FAILURES
    assert UpdaterConfig(max_failures="25").max_failures == MaxFailures(count=25)
    assert UpdaterConfig(max_failures=None).max_failures is None
    with pytest.raises(ConfigError, match="--max-failures"):
        UpdaterConfig(max_failures="lots")


# -- the policy -------------------------------------------------------------------------------


def rejected() -> Result:
    return failed(403, "InvalidSignatureException", MISMATCH)


def test_policy_stops_once_on_rejections_in_a_row_and_keeps_the_reason() -> None:
    policy = SafetyPolicy(rejections_in_a_row=3, max_failures=None)
    assert policy.on_result(rejected()) is None
    assert policy.on_result(rejected()) is None
    reason = policy.on_result(rejected())
    assert reason is not None and reason.cause is StopCause.CREDENTIALS
    # The answers still in flight keep coming back: no second stop.
    assert policy.on_result(rejected()) is None
    assert policy.stopped is reason


def test_policy_prefers_the_credentials_cause_when_both_rules_trigger_together() -> None:
    policy = SafetyPolicy(rejections_in_a_row=2, max_failures=MaxFailures(count=1))
    policy.on_result(rejected())
    reason = policy.on_result(rejected())
    assert reason is not None and reason.cause is StopCause.CREDENTIALS


def test_policy_without_a_budget_never_stops_on_ordinary_failures() -> None:
    policy = SafetyPolicy(max_failures=None)
    assert all(policy.on_result(failed()) is None for _ in range(10_000))


def test_policy_stops_on_the_budget_for_failures_that_are_not_rejections() -> None:
    policy = SafetyPolicy(max_failures=MaxFailures(percent=50.0, min_answered=4))
    outcomes = [ok(), failed(), failed(), failed()]
    reasons = [policy.on_result(r) for r in outcomes]
    assert reasons[:3] == [None, None, None]
    assert reasons[3] is not None and reasons[3].cause is StopCause.FAILURE_BUDGET


def test_safety_stop_is_an_updater_error_with_exit_3_carrying_the_reason() -> None:
    policy = SafetyPolicy(rejections_in_a_row=1)
    reason = policy.on_result(rejected())
    assert reason is not None
    stop = SafetyStop(reason)
    assert isinstance(stop, UpdaterError)
    assert stop.exit_code == 3
    assert str(stop) == reason.text and stop.reason is reason


# -- the clock --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (403, "InvalidSignatureException", EXPIRED_SIG),
        (403, "InvalidSignatureException", NOT_YET),
        (403, "InvalidSignatureException", MOCK_SKEW),
        (403, "RequestTimeTooSkewed", "The difference between the request time and the ..."),
        (400, "RequestExpired", "Request has expired."),
        (400, "RequestInTheFuture", "Request is in the future."),
        (401, "UnauthorizedException", "Signature expired: ..."),
    ],
)
def test_skew_rejections_are_recognised(status: int, code: str, message: str) -> None:
    assert is_clock_skew(status, code, message)


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (403, "InvalidSignatureException", MISMATCH),
        (401, "UnauthorizedClientException", "Unknown access key id."),
        (500, "ServiceFailureException", "Signature expired"),  # a 5xx is never about us
        (404, "NotFoundException", "User 'signature expired' was not found."),
        (204, "", ""),
    ],
)
def test_other_answers_are_not_skew(status: int, code: str, message: str) -> None:
    assert not is_clock_skew(status, code, message)


@pytest.mark.parametrize(
    ("header", "epoch"),
    [
        ("Wed, 01 Jan 2025 00:00:00 GMT", 1735689600.0),
        ("Wednesday, 01-Jan-25 00:00:00 GMT", 1735689600.0),
        ("Wed Jan  1 00:00:00 2025", None),  # asctime has no zone: not usable
        ("", None),
        (None, None),
        ("yesterday", None),
        ("Wed, 01 Jan 2025 25:00:00 GMT", None),
    ],
)
def test_http_dates_are_read_with_their_zone_or_not_at_all(
    header: str | None, epoch: float | None
) -> None:
    assert parse_http_date(header) == epoch


SERVER = 1_800_000_000.0  # a whole second
DATE = "Fri, 15 Jan 2027 08:00:00 GMT"


def test_a_skew_answer_with_a_date_sets_the_offset_from_it() -> None:
    assert parse_http_date(DATE) == SERVER
    clock = ClockOffset()
    local = SERVER - 900.0  # our clock is 15 minutes behind
    assert clock.on_skew(DATE, local, signed_with=clock.generation) is None
    assert clock.seconds == pytest.approx(900.5)
    assert clock.corrected and clock.generation == 1
    assert clock.now(local) == pytest.approx(SERVER + 0.5)


def test_requests_signed_before_a_correction_are_retried_without_changing_it() -> None:
    clock = ClockOffset()
    local = SERVER - 900.0
    first = clock.generation
    assert clock.on_skew(DATE, local, signed_with=first) is None
    corrected = clock.seconds
    # The others signed with the old offset come back rejected too, a little later.
    for later in (0.1, 0.2, 1.7):
        assert clock.on_skew(DATE, local + later, signed_with=first) is None
    assert (clock.seconds, clock.generation) == (corrected, 1)


def test_the_offset_is_updated_when_the_server_disagrees_again() -> None:
    clock = ClockOffset()
    assert clock.on_skew(DATE, SERVER - 900.0, signed_with=0) is None
    # Our clock jumps back another 10 minutes (a VM resumed): requests signed with the
    # correction are rejected in their turn, and the Date says by how much.
    later = "Fri, 15 Jan 2027 08:01:00 GMT"
    assert clock.on_skew(later, SERVER + 60.0 - 1500.0, signed_with=1) is None
    assert clock.seconds == pytest.approx(1500.5)
    assert clock.generation == 2


def test_a_clock_ahead_of_the_server_gets_a_negative_offset() -> None:
    clock = ClockOffset()
    assert clock.on_skew(DATE, SERVER + 600.0, signed_with=0) is None
    assert clock.seconds == pytest.approx(-599.5)


@pytest.mark.parametrize("header", [None, "", "not a date", "Wed Jan  1 00:00:00 2025"])
def test_no_usable_date_is_a_stop_naming_the_clock(header: str | None) -> None:
    clock = ClockOffset()
    reason = clock.on_skew(
        header,
        SERVER,
        signed_with=0,
        status=403,
        code="InvalidSignatureException",
        message=MOCK_SKEW,
    )
    assert reason is not None and reason.cause is StopCause.CLOCK
    assert reason.text == (
        f"the server rejects our clock (403 InvalidSignatureException: {MOCK_SKEW}) and its "
        "answer has no usable Date header to correct it by; set this machine's clock (NTP), "
        "then resume"
    )
    assert (clock.seconds, clock.generation, clock.corrected) == (0.0, 0, False)


def test_a_server_that_rejects_a_time_its_own_date_agrees_with_is_a_stop() -> None:
    clock = ClockOffset()
    assert clock.on_skew(DATE, SERVER - 900.0, signed_with=0) is None
    # Signed with the correction, rejected again, and the Date agrees with the correction.
    reason = clock.on_skew(DATE, SERVER - 900.0 + 1.0, signed_with=1, status=403)
    assert reason is not None and reason.cause is StopCause.CLOCK
    assert "although its Date header agrees with our time corrected by +900.5 s" in reason.text
