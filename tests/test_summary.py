"""The summaries for people: the plan line, the ``unchanged`` count, and the exit code rules
(``unchanged`` is success); what a safety stop and a clock correction add to the end-of-run
summary, and which command it offers next. Plain values: summaries built by hand."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from async_updater.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SAFETY_STOP, exit_code
from async_updater.io.report import open_report
from async_updater.model import Plan, Result, RunSummary, Status
from async_updater.pipeline.stats import RunStats
from async_updater.reporting.summary import format_report_summary, format_summary, summarize_report


def summary(plan: Plan | None = None, interrupted: bool = False, **counts: int) -> RunSummary:
    full = {s.value: counts.get(s.value, 0) for s in Status}
    return RunSummary(
        counts=full,
        rows=sum(full.values()),
        elapsed_s=2.0,
        requests=10,
        retries=0,
        throttles=0,
        server_errors=0,
        cuts=0,
        cooldowns=0,
        latency_p50_ms=None,
        latency_p95_ms=None,
        latency_p99_ms=None,
        final_rate=None,
        average_rate=None,
        interrupted=interrupted,
        plan=plan,
    )


def line(text: str, name: str) -> str:
    (found,) = [row for row in text.splitlines() if row.startswith(name + " ")]
    return " ".join(found.split()[1:])


def test_a_run_without_reads_reads_as_before_no_plan_no_unchanged() -> None:
    text = format_summary(summary(updated=5))
    assert line(text, "rows") == "5 updated 5 failed 0 invalid 0"
    assert not any(row.startswith("plan") for row in text.splitlines())


def test_a_plan_says_how_many_users_would_change_and_which_fields() -> None:
    plan = Plan(852, 1000, (("sms", 812), ("inbound_calling", 40)))
    text = format_summary(summary(plan, planned=852, unchanged=148), dry_run=True)
    assert line(text, "rows") == "1000 updated 0 unchanged 148 failed 0 invalid 0 planned 852"
    assert line(text, "plan") == (
        "852 of 1000 users would change (sms: 812 users, inbound_calling: 40 users)"
    )
    done = format_summary(summary(Plan(3, 5, (("sms", 3),)), updated=3, unchanged=2))
    assert line(done, "plan") == "3 of 5 users changed (sms: 3 users)"
    assert summary(plan).as_dict()["plan"] == {
        "changing": 852,
        "compared": 1000,
        "fields": {"sms": 812, "inbound_calling": 40},
    }
    assert summary().as_dict()["plan"] is None


def test_unchanged_rows_count_as_success_for_the_exit_code() -> None:
    assert exit_code(summary(updated=3, unchanged=7)) == EXIT_OK
    assert exit_code(summary(unchanged=7)) == EXIT_OK
    assert exit_code(summary(planned=2, unchanged=7)) == EXIT_OK
    assert exit_code(summary(updated=3, unchanged=7, failed=1)) == EXIT_FAILED
    assert exit_code(summary(unchanged=7, invalid=1)) == EXIT_FAILED
    assert exit_code(summary(unchanged=7, interrupted=True)) == EXIT_INTERRUPTED


def test_report_summary_counts_unchanged_and_the_before_states(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    sink = open_report(path)
    before = '{"sms": true}'
    sink.write(Result("a", "u1", Status.UPDATED, 204, attempts=2, before=before))
    sink.write(Result("a", "u2", Status.UNCHANGED, 200, attempts=1, before=before))
    sink.write(Result("a", "u3", Status.UPDATED, 204, attempts=1))
    sink.write(Result("a", "u4", Status.FAILED, 429, "Read:ThrottledClientException", attempts=8))
    sink.close()
    report = summarize_report(path)
    text = format_report_summary(report)
    assert re.search(r"rows\s+4\s+updated 2  unchanged 1  failed 1  invalid 0$", text, re.M)
    assert line(text, "before") == (
        "2 rows hold the state read before writing; undo restores 1 updated users"
    )
    assert "error      Read:ThrottledClientException x1" in text
    data = json.loads(json.dumps(report.as_dict()))
    assert data["counts"]["unchanged"] == 1
    assert data["before_states"] == {"rows": 2, "updated": 1}


# -- safety stops and the clock -------------------------------------------------------------

NEXT = ["async-updater", "run", "my users.csv", "--report", "r.csv", "--resume"]


def from_stats(**changes: object) -> RunSummary:
    stats = RunStats(100.0)
    stats.requests = 40
    base = stats.summary(110.0, cuts=0, final_rate=None)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_finished_run_shows_no_clock_line_and_no_next_command() -> None:
    text = format_summary(from_stats(), next_command=NEXT)
    assert text.startswith("== summary\n")
    assert "clock" not in text and "next" not in text
    assert exit_code(from_stats()) == EXIT_OK


def test_a_safety_stop_heads_the_summary_names_the_cause_and_offers_the_resume_command() -> None:
    cause = "the server refused our credentials or permissions 10 times in a row (401 X: no)"
    s = from_stats(interrupted=True, safety_stop=cause)
    lines = format_summary(s, next_command=NEXT).splitlines()
    assert lines[0] == "== summary (safety stop)"
    assert f"stopped    {cause}" in lines
    at = lines.index("next       to finish the run (users already done are skipped):")
    assert lines[at + 1] == "           async-updater run 'my users.csv' --report r.csv --resume"
    assert exit_code(s) == EXIT_SAFETY_STOP
    assert s.as_dict()["safety_stop"] == cause


def test_an_interrupted_run_still_reads_interrupted_and_exits_130() -> None:
    s = from_stats(interrupted=True)
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
    s = from_stats(counts={"updated": 3, "failed": 2, "invalid": 0, "planned": 0})
    assert "next       to retry the 2 failed rows" in format_summary(s, next_command=NEXT)
    assert exit_code(s) == EXIT_FAILED
