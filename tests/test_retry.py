"""Classifying answers, backoff, Retry-After parsing and the global retry budget."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from async_updater.pipeline.retry import (
    Action,
    ErrorClass,
    RetryBudget,
    classify,
    decide,
    full_jitter_backoff,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (204, "", ErrorClass.SUCCESS),
        (200, "", ErrorClass.SUCCESS),
        (429, "ThrottledClientException", ErrorClass.THROTTLED),
        (429, "", ErrorClass.THROTTLED),
        (400, "ThrottlingException", ErrorClass.THROTTLED),
        (400, "TooManyRequestsException", ErrorClass.THROTTLED),
        (503, "ServiceUnavailableException", ErrorClass.OVERLOADED),
        (503, "SlowDown", ErrorClass.THROTTLED),
        (500, "ServiceFailureException", ErrorClass.TRANSIENT),
        (502, "", ErrorClass.TRANSIENT),
        (504, "", ErrorClass.TRANSIENT),
        (None, "ConnectionError", ErrorClass.TRANSIENT),
        (None, "Timeout", ErrorClass.TRANSIENT),
        (403, "ExpiredTokenException", ErrorClass.EXPIRED_CREDENTIALS),
        (400, "ExpiredToken", ErrorClass.EXPIRED_CREDENTIALS),
        (400, "BadRequestException", ErrorClass.FINAL),
        (401, "UnauthorizedClientException", ErrorClass.FINAL),
        (403, "ForbiddenException", ErrorClass.FINAL),
        (403, "InvalidSignatureException", ErrorClass.FINAL),
        (404, "NotFoundException", ErrorClass.FINAL),
        (409, "ConflictException", ErrorClass.FINAL),
    ],
)
def test_classify_maps_answers_to_what_to_do(
    status: int | None, code: str, expected: ErrorClass
) -> None:
    assert classify(status, code) is expected


def test_full_jitter_backoff_stays_within_the_exponential_envelope() -> None:
    assert full_jitter_backoff(1, base=0.1, cap=10, rand=lambda: 1.0) == pytest.approx(0.1)
    assert full_jitter_backoff(4, base=0.1, cap=10, rand=lambda: 1.0) == pytest.approx(0.8)
    assert full_jitter_backoff(40, base=0.1, cap=10, rand=lambda: 1.0) == pytest.approx(10)
    assert full_jitter_backoff(3, base=0.1, cap=10, rand=lambda: 0.0) == 0.0
    assert full_jitter_backoff(3, base=0.1, cap=10, rand=lambda: 0.5) == pytest.approx(0.2)


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({"Retry-After": " 2.5 "}, 2.5),
        ({"Retry-After": formatdate(NOW + 7, usegmt=True)}, 7.0),
        ({"Retry-After": formatdate(NOW - 30, usegmt=True)}, 0.0),  # a date in the past
        ({"x-amz-retry-after": "1500"}, 1.5),
        ({"x-amz-retry-after": "250", "Retry-After": "9"}, 0.25),  # the precise one wins
        ({"x-amz-retry-after": "junk", "Retry-After": "3"}, 3.0),
        ({"Retry-After": "3600"}, 60.0),  # capped
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after_reads_seconds_dates_and_milliseconds(
    headers: dict[str, str], expected: float | None
) -> None:
    got = parse_retry_after(headers, NOW, cap=60.0)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-6)


def test_retry_budget_runs_out_and_successes_earn_it_back() -> None:
    budget = RetryBudget(capacity=3, refund=1)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    assert budget.exhausted == 1
    budget.on_success()
    assert budget.try_spend()
    assert not budget.try_spend()


def test_retry_budget_never_grows_past_its_capacity() -> None:
    budget = RetryBudget(capacity=2, refund=1)
    for _ in range(10):
        budget.on_success()
    assert budget.tokens == 2


# -- the retry policy as a table -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "attempts", "refreshed", "budget_left", "action", "why", "spends"),
    [
        (ErrorClass.SUCCESS, 1, False, True, Action.SUCCEED, "", False),
        (ErrorClass.FINAL, 1, False, True, Action.FAIL, "", False),
        (ErrorClass.EXPIRED_CREDENTIALS, 1, False, True, Action.REFRESH, "", False),
        (ErrorClass.EXPIRED_CREDENTIALS, 2, True, True, Action.FAIL, "", False),
        (ErrorClass.THROTTLED, 1, False, False, Action.RETRY, "", False),
        (ErrorClass.THROTTLED, 3, False, False, Action.RETRY, "", False),
        (ErrorClass.THROTTLED, 8, False, True, Action.FAIL, "gave up after 8 attempts: ", False),
        (ErrorClass.TRANSIENT, 2, False, True, Action.RETRY, "", True),
        (ErrorClass.OVERLOADED, 2, False, True, Action.RETRY, "", True),
        (ErrorClass.TRANSIENT, 2, False, False, Action.FAIL, "retry budget exhausted: ", False),
        (ErrorClass.TRANSIENT, 8, False, True, Action.FAIL, "gave up after 8 attempts: ", False),
    ],
)
def test_the_retry_decision_for_each_answer_and_history(
    kind: ErrorClass,
    attempts: int,
    refreshed: bool,
    budget_left: bool,
    action: Action,
    why: str,
    spends: bool,
) -> None:
    d = decide(
        kind,
        attempts=attempts,
        max_attempts=8,
        refreshed=refreshed,
        budget_left=budget_left,
        backoff=0.25,
    )
    assert (d.action, d.why, d.spends_budget) == (action, why, spends)
    # A row throttled on its first attempt is not backed off (the pacing slows it); throttled
    # again, or any other retry, it waits.
    first_throttle = kind is ErrorClass.THROTTLED and attempts <= 1
    assert d.delay == (0.25 if action is Action.RETRY and not first_throttle else 0.0)
