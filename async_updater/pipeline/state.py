"""A user's state, read before writing: how it is written down (``before``), compared with the
row, what a read decides (write, ``unchanged``, ``planned``), how a failed read is reported, and
the plan that sums up a run's comparisons. Pure functions over plain values; no I/O.

The pipeline's flow for one row with ``--read-before`` (``UpdaterConfig.read_before``):

    read = operation.reader.request(record)          # signed, limited, retried like a write
    answer 2xx:   outcome = after_read(reader, record, response, dry_run=..., ...)
                  WRITE     -> journal the before, send the write; the row carries outcome.before
                  UNCHANGED -> row ``unchanged``, nothing written
                  PLANNED   -> row ``planned`` (dry run), nothing written
    StateError from after_read, or the read failed for good:
                  row = read_failure(result_of_the_read, error)   # ``failed``, code ``Read:...``
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Protocol

from ..errors import StateError
from ..model import Plan, Result, Status
from ..operations.base import StateReader

__all__ = [
    "READ_ERROR_PREFIX",
    "NextStep",
    "PlanTally",
    "ReadAnswer",
    "ReadOutcome",
    "after_read",
    "changed_fields",
    "describe_changes",
    "parse_state_json",
    "plan_of",
    "read_failure",
    "state_json",
    "values_equal",
]

READ_ERROR_PREFIX = "Read:"
"""Error codes of rows whose read failed start with this (``Read:ThrottledClientException``,
``Read:InvalidState``...): the write was not sent."""

UNCHANGED_MESSAGE = "already as asked; nothing written"
_COUNTED = frozenset({Status.UPDATED, Status.UNCHANGED, Status.PLANNED})


def state_json(state: Mapping[str, Any]) -> str:
    """The ``before`` cell: ``{"inbound_calling": true, "outbound_calling": false, "sms": true}``
    (keys in the reader's field order). ASCII only: a string read from an answer may hold a lone
    surrogate (JSON allows ``"\\ud800"``), which no UTF-8 file can take as it is."""
    return json.dumps(state)


def parse_state_json(text: str) -> dict[str, Any]:
    """A ``before`` cell back as a state; ``StateError`` if it is not a JSON object."""
    try:
        state = json.loads(text)
    except ValueError:
        raise StateError("the before-state is not JSON", "InvalidBefore") from None
    if not isinstance(state, dict):
        raise StateError("the before-state is not a JSON object", "InvalidBefore")
    return state


def values_equal(a: Any, b: Any) -> bool:
    """JSON values compared as the API sees them: a boolean equals only a boolean (Python's
    ``True == 1`` does not hold here), numbers compare by value (``3 == 3.0``), containers
    element by element."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return bool(a == b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def changed_fields(current: Mapping[str, Any], desired: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields of ``desired`` whose value ``current`` does not already have, in order."""
    missing = object()
    return tuple(
        field
        for field, want in desired.items()
        if (have := current.get(field, missing)) is missing or not values_equal(have, want)
    )


def describe_changes(
    current: Mapping[str, Any], desired: Mapping[str, Any], fields: Iterable[str]
) -> str:
    """``sms false -> true, inbound_calling true -> false`` for a planned row's message."""
    return ", ".join(
        f"{field} {_shown(current.get(field))} -> {_shown(desired.get(field))}" for field in fields
    )


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


class ReadAnswer(Protocol):
    """What ``after_read`` needs of a read's 2xx answer (``transport.Response`` has it)."""

    @property
    def body(self) -> bytes: ...

    @property
    def error_code(self) -> str: ...

    @property
    def message(self) -> str: ...


class NextStep(str, Enum):
    """What a row needs after its state was read."""

    WRITE = "write"  # send the write; the row ends ``updated`` or ``failed``
    UNCHANGED = "unchanged"  # already as asked: report it ``unchanged``, send nothing
    PLANNED = "planned"  # dry run, it would change: report it ``planned``, send nothing


@dataclass(frozen=True, slots=True)
class ReadOutcome:
    """The decision after a successful read, as data: the pipeline only carries it out.

    ``before`` goes into the row's ``Result.before`` whatever the row's end (a write that then
    fails keeps it), ``changes`` into ``Result.changes``, ``message`` into the message of an
    ``unchanged`` or ``planned`` row (empty for ``WRITE``)."""

    step: NextStep
    before: str
    changes: tuple[str, ...]
    message: str = ""


def after_read(
    reader: StateReader,
    record: Any,
    answer: ReadAnswer,
    *,
    dry_run: bool,
    skip_unchanged: bool,
    captured: str | None = None,
) -> ReadOutcome:
    """Decide what ``record`` needs, given its read's 2xx answer.

    ``captured`` is the before-state an earlier run of the same report captured for this user
    (``BeforeStore.captured``; a ``--resume``). It stays the row's ``before`` and is what the
    changes are counted from: the state read now may be the earlier run's own write. The user is
    ``unchanged`` only if both the state now and the captured one equal the row. Raises
    ``StateError`` if the body does not have the reader's shape, or could not be taken whole
    (the answer's ``error_code``, e.g. ``ResponseTooLarge``)."""
    if answer.error_code:
        raise StateError(answer.message, answer.error_code)
    current = reader.parse(answer.body)
    desired = reader.desired(record)
    if captured is None:
        original, before = current, state_json(current)
    else:
        original, before = parse_state_json(captured), captured
    # Counted from the original state; when that already was as asked but the state now is
    # not (someone else changed it since), what a write changes now.
    changes = changed_fields(original, desired) or changed_fields(current, desired)
    if not changes and (dry_run or skip_unchanged):
        return ReadOutcome(NextStep.UNCHANGED, before, (), UNCHANGED_MESSAGE)
    if dry_run:
        message = "would change " + describe_changes(current, desired, changes)
        return ReadOutcome(NextStep.PLANNED, before, changes, message)
    return ReadOutcome(NextStep.WRITE, before, changes)


def read_failure(
    result: Result, error: StateError | None = None, *, captured: str | None = None
) -> Result:
    """The row of a user whose read failed: ``failed``, its code prefixed ``Read:`` (the read's
    own code, or the ``StateError``'s when the answer had the wrong shape), nothing written.
    ``result`` is the row as the read's last answer would make it; ``captured`` (a resume) stays
    its ``before``."""
    code = error.code if error is not None else (result.error_code or "Error")
    message = str(error) if error is not None else result.message
    return replace(
        result,
        status=Status.FAILED,
        error_code=READ_ERROR_PREFIX + code,
        message="the read failed, nothing was written: " + message,
        before=captured or "",
        changes=(),
    )


class PlanTally:
    """Counts a run's comparisons as results arrive (flat memory): rows ``updated``,
    ``unchanged`` or ``planned`` whose state was read."""

    __slots__ = ("changing", "compared", "fields")

    def __init__(self) -> None:
        self.changing = 0
        self.compared = 0
        self.fields: Counter[str] = Counter()

    def add(self, result: Result) -> None:
        if not result.before or result.status not in _COUNTED:
            return
        self.compared += 1
        if result.changes:
            self.changing += 1
            self.fields.update(result.changes)

    def plan(self) -> Plan | None:
        """None when no row was compared (no ``--read-before``)."""
        if not self.compared:
            return None
        ranked = sorted(self.fields.items(), key=lambda kv: (-kv[1], kv[0]))
        return Plan(self.changing, self.compared, tuple(ranked))


def plan_of(results: Iterable[Result]) -> Plan | None:
    """The plan of ``results``: how many users change (would change, in a dry run) of those
    compared, and per field for how many users."""
    tally = PlanTally()
    for result in results:
        tally.add(result)
    return tally.plan()
