"""The end-of-run summary people read: what a safety stop and a clock correction add to it, and
which command it offers next."""

from __future__ import annotations

import dataclasses

from async_updater.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SAFETY_STOP, exit_code
from async_updater.model import RunSummary
from async_updater.stats import RunStats
from async_updater.summary import format_summary

NEXT = ["async-updater", "run", "my users.csv", "--report", "r.csv", "--resume"]


def summary(**changes: object) -> RunSummary:
    stats = RunStats(100.0)
    stats.requests = 40
    base = stats.summary(110.0, cuts=0, final_rate=None)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_finished_run_shows_no_clock_line_and_no_next_command() -> None:
    text = format_summary(summary(), next_command=NEXT)
    assert text.startswith("== summary\n")
    assert "clock" not in text and "next" not in text
    assert exit_code(summary()) == EXIT_OK


def test_a_safety_stop_heads_the_summary_names_the_cause_and_offers_the_resume_command() -> None:
    cause = "the server refused our credentials or permissions 10 times in a row (401 X: no)"
    s = summary(interrupted=True, safety_stop=cause)
    lines = format_summary(s, next_command=NEXT).splitlines()
    assert lines[0] == "== summary (safety stop)"
    assert f"stopped    {cause}" in lines
    at = lines.index("next       to finish the run (users already updated are skipped):")
    assert lines[at + 1] == "           async-updater run 'my users.csv' --report r.csv --resume"
    assert exit_code(s) == EXIT_SAFETY_STOP
    assert s.as_dict()["safety_stop"] == cause


def test_an_interrupted_run_still_reads_interrupted_and_exits_130() -> None:
    s = summary(interrupted=True)
    assert format_summary(s, next_command=NEXT).startswith("== summary (interrupted)\n")
    assert exit_code(s) == EXIT_INTERRUPTED


def test_a_clock_corrected_from_the_servers_date_is_shown_with_its_sign() -> None:
    stats = RunStats(100.0)
    stats.clock_offset_s = 900.4
    s = stats.summary(110.0, cuts=0, final_rate=None)
    assert s.clock_offset_s == 900.4
    assert "\nclock      offset +900.4 s (from the server's Date)" in format_summary(s)
    behind = dataclasses.replace(s, clock_offset_s=-61.96)
    assert "clock      offset -62.0 s (from the server's Date)" in format_summary(behind)
    assert s.as_dict()["clock_offset_s"] == 900.4


def test_failed_rows_offer_to_retry_them() -> None:
    s = summary(counts={"updated": 3, "failed": 2, "invalid": 0, "planned": 0})
    assert "next       to retry the 2 failed rows" in format_summary(s, next_command=NEXT)
    assert exit_code(s) == EXIT_FAILED
