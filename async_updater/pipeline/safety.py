"""Safety stops: the decisions that end a run early because going on would only do harm.

Pure objects fed with plain values (results, status codes, header text, times); the pipeline
carries their decisions out. Three causes:

- **credentials rejected**: ``CredentialsRejections`` counts 401s, and 403s whose code or
  message speaks of credentials, signatures, tokens or denied access, in a row with no success
  between them. A wrong secret must cost a handful of requests, not one per user.
- **failure budget spent**: ``FailureBudget`` (``--max-failures N|P%``) counts rows that end
  ``failed``; a share counts only once enough rows have an outcome to mean something.
- **clock**: ``is_clock_skew`` recognises a rejection of the request time, and ``ClockOffset``
  keeps the run's correction (server time minus local time) from the answer's ``Date``; with
  no usable ``Date`` nothing can be corrected and the run stops, naming the clock.

``SafetyPolicy`` combines the first two for the pipeline: one call per row outcome.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum

from ..errors import ConfigError
from ..model import Result, Status
from .retry import EXPIRED_CREDENTIAL_CODES

__all__ = [
    "DEFAULT_MAX_FAILURES",
    "DEFAULT_REJECTIONS_IN_A_ROW",
    "MIN_ANSWERED_FOR_SHARE",
    "ClockOffset",
    "CredentialsRejections",
    "FailureBudget",
    "MaxFailures",
    "SafetyPolicy",
    "StopCause",
    "StopReason",
    "is_clock_skew",
    "is_credentials_rejection",
    "parse_http_date",
]

# Ten rejections in a row, with no success between them, is proof that the credentials (not one
# user's permissions) are wrong: if one row in ten were denied for reasons of its own, ten in a
# row would happen about once in ten billion rows, and a run where more than one row in ten
# fails stops on the default failure budget anyway. Waiting for ten costs next to nothing: when
# the first rejection comes back, up to --concurrency requests signed with the same
# credentials are already in flight (32 by default) and come back rejected too, whatever the
# rule; the stop only prevents the requests after them.
DEFAULT_REJECTIONS_IN_A_ROW = 10
# A share of failures means something only over enough rows: with 1 failure in the first 3
# rows, 33% says nothing. 100 rows put the false alarm rate of the default 10% budget near 1%
# for a run whose true failure rate is 5% (binomial), while an input where every row fails
# stops after about 100 requests.
MIN_ANSWERED_FOR_SHARE = 100

# Codes that say "who you are or what you may do" whatever the status (DynamoDB and others
# answer some of them with 400); matched exactly.
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "NotAuthorized",
        "SignatureDoesNotMatch",
        "UnauthorizedClientException",
        "UnauthorizedException",
        "UnrecognizedClientException",
    }
)
# In a 403's code or message (lower case): the brief's "credentials, signature, token or access
# denied", in the words AWS services use.
_AUTH_WORDS = (
    "credential",
    "signature",
    "token",
    "access denied",
    "accessdenied",
    "not authorized",
    "unauthorized",
    "access key",
)
# Codes that reject the request time. AWS SDKs (JavaScript v3, Java v2) treat these as clock
# skew; S3 says RequestTimeTooSkewed, EC2 RequestExpired and RequestInTheFuture.
_SKEW_CODES = frozenset({"RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture"})
# Most JSON services answer 403 InvalidSignatureException with one of these messages: "Signature
# expired: 20240101T000000Z is now earlier than ...", "Signature not yet current: ... is still
# later than ...".
_SKEW_PHRASES = (
    "signature expired",
    "signature not yet current",
    "too skewed",
    "clock skew",
    "difference between the request time and the current time",
)
_SKEW_STATUSES = frozenset({400, 401, 403})


class StopCause(Enum):
    """Why a run stopped early."""

    CREDENTIALS = "credentials"  # the server keeps rejecting our credentials or permissions
    FAILURE_BUDGET = "failure_budget"  # --max-failures spent
    CLOCK = "clock"  # the request time is rejected and cannot be corrected


@dataclass(frozen=True, slots=True)
class StopReason:
    """A safety stop: its cause, the answer that triggered it (``code`` and ``message`` as the
    server sent them, already redacted by the caller) and ``text``, one line for people."""

    cause: StopCause
    text: str
    http_status: int | None = None
    code: str = ""
    message: str = ""


def _answer(status: int | None, code: str, message: str) -> str:
    """``403 InvalidSignatureException: The request signature ...`` (what the server said)."""
    head = " ".join(part for part in (str(status) if status else "", code) if part)
    if head and message:
        return f"{head}: {message}"
    return head or message or "no answer"


# -- credentials ------------------------------------------------------------------------------


def is_credentials_rejection(status: int | None, code: str = "", message: str = "") -> bool:
    """True when an answer says the credentials or permissions are refused: a 401, a 403 whose
    code or message speaks of credentials, signatures, tokens or denied access, or a 4xx with a
    code that only means that. Clock skew and expired tokens are not: they are corrected (new
    time, refreshed credentials) rather than stopped for."""
    if status is None or not 400 <= status < 500:
        return False
    if code in EXPIRED_CREDENTIAL_CODES or is_clock_skew(status, code, message):
        return False
    if status == 401 or code in _AUTH_CODES:
        return True
    if status != 403:
        return False
    text = f"{code} {message}".lower()
    return any(word in text for word in _AUTH_WORDS)


class CredentialsRejections:
    """Counts credentials rejections in a row; a success resets the count, other answers
    (throttling, 404, 5xx...) neither count nor reset. ``observe`` returns a ``StopReason`` at
    the ``limit``-th rejection in a row."""

    __slots__ = ("in_a_row", "limit")

    def __init__(self, limit: int = DEFAULT_REJECTIONS_IN_A_ROW) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigError(f"rejections in a row: must be a whole number >= 1, not {limit!r}")
        self.limit = limit
        self.in_a_row = 0

    def observe(self, status: int | None, code: str = "", message: str = "") -> StopReason | None:
        if status is not None and 200 <= status < 300:
            self.in_a_row = 0
            return None
        if not is_credentials_rejection(status, code, message):
            return None
        self.in_a_row += 1
        if self.in_a_row < self.limit:
            return None
        return StopReason(
            StopCause.CREDENTIALS,
            f"the server refused our credentials or permissions {self.in_a_row} times in a row "
            f"({_answer(status, code, message)}); check the keys, the profile and the "
            "permissions, then resume",
            status,
            code,
            message,
        )


# -- failure budget ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MaxFailures:
    """A failure budget, as ``--max-failures`` gives it: ``count`` failed rows tolerated, or
    ``percent`` of the rows with an outcome (counted once ``min_answered`` rows have one).
    Exactly one of ``count`` and ``percent`` is set."""

    count: int | None = None
    percent: float | None = None
    min_answered: int = MIN_ANSWERED_FOR_SHARE

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise ConfigError("--max-failures: give either a count or a percentage")
        if self.count is not None and (
            not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 0
        ):
            raise ConfigError(f"--max-failures: must be a whole number >= 0, not {self.count!r}")
        if self.percent is not None and not (
            isinstance(self.percent, (int, float))
            and not isinstance(self.percent, bool)
            and math.isfinite(self.percent)
            and 0 <= self.percent <= 100
        ):
            raise ConfigError(
                f"--max-failures: a percentage must be between 0% and 100%, not {self.percent!r}%"
            )
        if not isinstance(self.min_answered, int) or self.min_answered < 1:
            raise ConfigError(f"min_answered: must be a whole number >= 1, not {self.min_answered}")

    @classmethod
    def parse(cls, text: str) -> MaxFailures:
        """``"50"`` (failed rows tolerated) or ``"10%"``/``"2.5%"`` (share of rows with an
        outcome). Raises ``ConfigError`` with a one-line message naming the option."""
        value = text.strip()
        if value.endswith("%"):
            number = value[:-1].strip()
            try:
                percent = float(number)
            except ValueError:
                percent = math.nan
            if not math.isfinite(percent) or not number:
                raise ConfigError(
                    f"--max-failures: {text!r} is not a percentage like 10% or 2.5%"
                ) from None
            return cls(percent=percent)
        if not value.isdigit():
            raise ConfigError(
                f"--max-failures: {text!r} is neither a number of rows (e.g. 50) "
                "nor a percentage (e.g. 10%)"
            )
        return cls(count=int(value))

    def __str__(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        return str(self.count)


# Stop when more than one row in ten fails, counted over at least 100 rows with an outcome.
# AWS Step Functions' Distributed Map tolerates no failure by default (ToleratedFailureCount 0)
# and GNU parallel never halts by default (--halt never). Neither fits a bulk update: a stale
# user or two in a large input is normal, and stopping on the first 404 would make every run
# stop; while an input where most rows fail (a wrong endpoint path, a body the API refuses,
# a permission missing for most accounts) is a mistake that each further request repeats.
# The share is of rows with an outcome so far (the input streams, so the total is unknown;
# GNU parallel's fail=P% reads all of it first to get one).
DEFAULT_MAX_FAILURES = MaxFailures(percent=10.0)


class FailureBudget:
    """Counts rows that end ``failed`` against ``MaxFailures``; ``observe`` returns a
    ``StopReason`` when more have failed than the budget tolerates."""

    __slots__ = ("answered", "failed", "limit")

    def __init__(self, limit: MaxFailures = DEFAULT_MAX_FAILURES) -> None:
        self.limit = limit
        self.answered = 0
        self.failed = 0

    def observe(self, result: Result) -> StopReason | None:
        """Count one row's outcome (invalid and planned rows were never sent: not counted)."""
        if result.status is Status.INVALID or result.status is Status.PLANNED:
            return None
        self.answered += 1
        if result.status is not Status.FAILED:
            return None
        self.failed += 1
        if not self.spent():
            return None
        limit = self.limit
        share = "" if limit.percent is None else f" ({100.0 * self.failed / self.answered:.1f}%)"
        return StopReason(
            StopCause.FAILURE_BUDGET,
            f"failure budget spent: {self.failed} of {self.answered} rows failed{share}, more "
            f"than --max-failures {limit} allows (last: "
            f"{_answer(result.http_status, result.error_code, result.message)})",
            result.http_status,
            result.error_code,
            result.message,
        )

    def spent(self) -> bool:
        limit = self.limit
        if limit.count is not None:
            return self.failed > limit.count
        assert limit.percent is not None
        if self.answered < limit.min_answered:
            return False
        return self.failed * 100.0 > limit.percent * self.answered


class SafetyPolicy:
    """The stop rules a run obeys, fed one call per row outcome.

    ``on_result`` returns a ``StopReason`` once, at the outcome that triggers a stop (then None:
    the requests still in flight keep coming back while the run drains); ``stopped`` keeps it.
    A rejection that is also a failed row counts for both rules; the credentials rule speaks
    first, as it names the better cure.
    """

    __slots__ = ("budget", "rejections", "stopped")

    def __init__(
        self,
        *,
        max_failures: MaxFailures | None = DEFAULT_MAX_FAILURES,
        rejections_in_a_row: int = DEFAULT_REJECTIONS_IN_A_ROW,
    ) -> None:
        self.rejections = CredentialsRejections(rejections_in_a_row)
        self.budget = None if max_failures is None else FailureBudget(max_failures)
        self.stopped: StopReason | None = None

    def on_result(self, result: Result) -> StopReason | None:
        if self.stopped is not None:
            return None
        if result.status is Status.INVALID or result.status is Status.PLANNED:
            return None
        reason = self.rejections.observe(result.http_status, result.error_code, result.message)
        budget = self.budget.observe(result) if self.budget is not None else None
        self.stopped = reason or budget
        return self.stopped


# -- clock --------------------------------------------------------------------------------------


def is_clock_skew(status: int | None, code: str = "", message: str = "") -> bool:
    """True when an answer rejects the request's time (the signature expired or is not yet
    current, the request time is too skewed) rather than the credentials."""
    if status not in _SKEW_STATUSES:
        return False
    if code in _SKEW_CODES:
        return True
    text = message.lower()
    return any(phrase in text for phrase in _SKEW_PHRASES)


def parse_http_date(value: str | None) -> float | None:
    """An HTTP ``Date`` header (RFC 7231 IMF-fixdate, or the obsolete forms ``email.utils``
    reads) as epoch seconds; None if absent, unreadable or without a time zone."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


class ClockOffset:
    """The run's clock correction: server time minus local wall time, in seconds.

    Sign at ``now(time.time())``. ``generation`` counts corrections: record it when signing a
    request, and hand it back to ``on_skew`` if the request is rejected for its time, so a
    rejection of a request signed before the latest correction is simply retried.
    """

    __slots__ = ("corrected", "generation", "seconds")

    # The Date header counts whole seconds and is stamped somewhere in the round trip; an
    # estimate closer than this to the offset in force is the same estimate.
    AGREES_WITHIN_S = 5.0

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.generation = 0
        self.corrected = False  # True once a server's Date set the offset

    def now(self, local_wall: float) -> float:
        """The wall time to sign with."""
        return local_wall + self.seconds

    def on_skew(
        self,
        date_header: str | None,
        local_wall: float,
        *,
        signed_with: int,
        status: int | None = None,
        code: str = "",
        message: str = "",
    ) -> StopReason | None:
        """A request signed with offset generation ``signed_with`` was rejected for its time,
        with ``date_header`` in the answer, read at local wall time ``local_wall``.
        None: sign again at ``now()`` and retry (the offset was corrected now or since the
        request was signed). A ``StopReason`` (cause CLOCK): no usable ``Date``, or the server
        rejects a time its own ``Date`` agrees with, so nothing can be corrected."""
        answer = _answer(status, code, message)
        server = parse_http_date(date_header)
        if server is None:
            return StopReason(
                StopCause.CLOCK,
                f"the server rejects our clock ({answer}) and its answer has no usable Date "
                "header to correct it by; set this machine's clock (NTP), then resume",
                status,
                code,
                message,
            )
        if signed_with != self.generation:
            return None
        # The Date names the second the answer was made in: its middle is the best estimate.
        estimate = server + 0.5 - local_wall
        if abs(estimate - self.seconds) < self.AGREES_WITHIN_S:
            return StopReason(
                StopCause.CLOCK,
                f"the server rejects our clock ({answer}) although its Date header agrees "
                f"with our time corrected by {self.seconds:+.1f} s; check this machine's "
                "clock and the server's, then resume",
                status,
                code,
                message,
            )
        self.seconds = estimate
        self.generation += 1
        self.corrected = True
        return None
