"""Exit codes: 0 every row updated or unchanged, 1 some rows failed or invalid, 2 usage, input,
credentials or report locked (``UpdaterError.exit_code``), 3 safety stop
(``SafetyStop.exit_code``), 130 interrupted."""

from __future__ import annotations

from ..model import RunSummary, Status

EXIT_OK = 0


EXIT_FAILED = 1


EXIT_USAGE = 2


EXIT_SAFETY_STOP = 3


EXIT_INTERRUPTED = 130


def exit_code(summary: RunSummary) -> int:
    if summary.safety_stop:
        return EXIT_SAFETY_STOP
    if summary.interrupted:
        return EXIT_INTERRUPTED
    bad = summary.counts.get(Status.FAILED.value, 0) + summary.counts.get(Status.INVALID.value, 0)
    return EXIT_FAILED if bad else EXIT_OK
