"""What an answer means (classify), how long to wait before trying again (backoff), and the
global retry budget that stops a retry storm. Pure functions and small objects, no I/O."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum

__all__ = [
    "THROTTLING_CODES",
    "Action",
    "Decision",
    "ErrorClass",
    "RetryBudget",
    "classify",
    "decide",
    "full_jitter_backoff",
    "parse_retry_after",
]


def botocore_throttling_codes() -> frozenset[str]:
    """The error codes botocore's standard and adaptive retry modes treat as throttling,
    whatever the HTTP status (Cognito, for one, throttles with a 400 TooManyRequestsException).
    botocore keeps the list on ``ThrottledRetryableChecker``; ``tests/test_aws_operation.py``
    fails if it moves, rather than this module silently falling back to its own list only."""
    try:
        from botocore.retries.standard import ThrottledRetryableChecker
    except ImportError:
        return frozenset()

    class Codes(ThrottledRetryableChecker):  # type: ignore[misc]
        # The list is protected: a subclass may read it.
        def codes(self) -> frozenset[str]:
            return frozenset(self._throttled_error_codes)

    try:
        codes: frozenset[str] = Codes().codes()
    except AttributeError:
        return frozenset()
    return codes


# Chime answers ThrottledClientException; the rest are the codes other AWS services use for the
# same thing, so a generic or model operation behaves too. Union with botocore's own list.
THROTTLING_CODES = (
    frozenset(
        {
            "ThrottledClientException",
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "RequestThrottledException",
            "TooManyRequestsException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            "BandwidthLimitExceeded",
            "LimitExceededException",
            "RequestThrottled",
            "SlowDown",
        }
    )
    | botocore_throttling_codes()
)
EXPIRED_CREDENTIAL_CODES = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
)
_TRANSIENT_STATUSES = frozenset({500, 502, 504})


class ErrorClass(Enum):
    """What to do about an answer."""

    SUCCESS = "success"
    THROTTLED = "throttled"  # 429 or a throttling code: cut the rate, retry
    OVERLOADED = "overloaded"  # 503: cut the rate gently, retry
    TRANSIENT = "transient"  # 500/502/504, connection errors, timeouts: retry
    EXPIRED_CREDENTIALS = "expired_credentials"  # refresh credentials, retry once
    FINAL = "final"  # 4xx: retrying cannot help


def classify(status: int | None, code: str = "") -> ErrorClass:
    """Classify an HTTP answer (``status`` None means no answer: connection error or timeout)."""
    if status is None:
        return ErrorClass.TRANSIENT
    if 200 <= status < 300:
        return ErrorClass.SUCCESS
    if status == 429 or code in THROTTLING_CODES:
        return ErrorClass.THROTTLED
    if code in EXPIRED_CREDENTIAL_CODES:
        return ErrorClass.EXPIRED_CREDENTIALS
    if status == 503:
        return ErrorClass.OVERLOADED
    if status in _TRANSIENT_STATUSES or status >= 500:
        return ErrorClass.TRANSIENT
    return ErrorClass.FINAL


class Action(Enum):
    """What to do with a row after an answer."""

    SUCCEED = "succeed"  # report it updated
    FAIL = "fail"  # report it failed (``Decision.why`` prefixes the message)
    RETRY = "retry"  # send it again after ``Decision.delay`` seconds
    REFRESH = "refresh"  # refresh the credentials, then send it again


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay: float = 0.0
    why: str = ""  # why a retryable answer became final, for the report message
    spends_budget: bool = False  # this retry takes a token from the retry budget


_SUCCEED = Decision(Action.SUCCEED)
_FAIL = Decision(Action.FAIL)
_REFRESH = Decision(Action.REFRESH)
_RETRY_NOW = Decision(Action.RETRY)


def decide(
    kind: ErrorClass,
    *,
    attempts: int,
    max_attempts: int,
    refreshed: bool,
    budget_left: bool,
    backoff: float,
) -> Decision:
    """The retry policy as a table: the answer's class and the row's history in, an action out.

    A throttled row goes straight back to its scope's queue (at its end) the first time: the
    rate limiter already slows the scope. Throttled again, it waits ``backoff`` as well (other
    rows go meanwhile, so the scope does not idle): the last rows of a scope, re-sent at once
    while the controller is still finding a lower rate, would otherwise spend all their
    attempts within a few round trips of one overload. Other retryable answers wait
    ``backoff`` seconds (full jitter, computed by the caller) and spend the global retry
    budget, so a server that fails everything costs a bounded number of extra requests.
    """
    if kind is ErrorClass.SUCCESS:
        return _SUCCEED
    if kind is ErrorClass.FINAL:
        return _FAIL
    if kind is ErrorClass.EXPIRED_CREDENTIALS:
        return _FAIL if refreshed else _REFRESH
    if attempts >= max_attempts:
        return Decision(Action.FAIL, why=f"gave up after {attempts} attempts: ")
    if kind is ErrorClass.THROTTLED:
        return _RETRY_NOW if attempts <= 1 else Decision(Action.RETRY, delay=backoff)
    if not budget_left:
        return Decision(Action.FAIL, why="retry budget exhausted: ")
    return Decision(Action.RETRY, delay=backoff, spends_budget=True)


def full_jitter_backoff(
    attempt: int, *, base: float = 0.05, cap: float = 5.0, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: full jitter, i.e. uniform in
    [0, min(cap, base * 2**(attempt - 1))]."""
    exp = min(cap, base * (2.0 ** min(attempt - 1, 30)))
    return rand() * exp


def parse_retry_after(
    headers: Mapping[str, str], now_wall: float, *, cap: float = 60.0
) -> float | None:
    """Seconds the server asked us to wait, from ``x-amz-retry-after`` (milliseconds) or
    ``Retry-After`` (seconds or an HTTP-date), capped at ``cap``; None if absent or unreadable."""
    value = headers.get("x-amz-retry-after")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if ms >= 0:
            return min(cap, ms / 1000.0)
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now_wall
    if math.isnan(seconds):
        return None
    return min(cap, max(0.0, seconds))


class RetryBudget:
    """A global allowance of retries shared by the whole run (cf. botocore's retry quota).

    Starts with ``capacity`` tokens; each retry spends one; each success earns ``refund`` back
    (up to ``capacity``). While it is empty, failed attempts are final: a server that fails
    everything gets at most ``capacity`` extra requests, not ``rows * max_attempts``.
    """

    __slots__ = ("capacity", "exhausted", "refund", "tokens")

    def __init__(self, capacity: float = 500.0, refund: float = 1.0) -> None:
        if capacity < 0 or refund < 0:
            raise ValueError("capacity and refund must be >= 0")
        self.capacity = capacity
        self.refund = refund
        self.tokens = capacity
        self.exhausted = 0

    @property
    def left(self) -> bool:
        return self.tokens >= 1.0

    def try_spend(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.exhausted += 1
        return False

    def on_success(self) -> None:
        if self.tokens < self.capacity:
            self.tokens = min(self.capacity, self.tokens + self.refund)
