"""The live progress display: the figures it shows (plain values in, text out), the plain line
display and the rich live display (each drawing into a stream the test reads), and the choice
between them."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import time
from dataclasses import dataclass, field

import pytest

from async_updater.model import Result, Status
from async_updater.pipeline.stats import RunStats
from async_updater.reporting.progress import (
    ProgressDisplay,
    _Sample,
    progress_figures,
    progress_line,
)


def result(status: Status) -> Result:
    return Result("acct", "user", status)


def stats_with(updated: int = 0, failed: int = 0, invalid: int = 0) -> RunStats:
    stats = RunStats(started=0.0)
    for status, n in (
        (Status.UPDATED, updated),
        (Status.FAILED, failed),
        (Status.INVALID, invalid),
    ):
        for _ in range(n):
            stats.record_result(result(status))
    return stats


def test_figures_show_rows_done_of_total_rates_counts_and_the_eta() -> None:
    stats = stats_with(updated=20)
    last = _Sample(10.0, stats)
    stats.requests, stats.throttles, stats.retries, stats.in_flight = 130, 4, 6, 7
    for _ in range(20):
        stats.record_result(result(Status.UPDATED))
    stats.record_result(result(Status.FAILED))
    now = _Sample(12.0, stats)
    # 21 rows in 2 s: 10.5 rows/s; 100 - 41 rows left: 5.6 s, shown as 0:05.
    f = progress_figures(stats, 100, 80.0, last, now)
    assert f == {
        "rows": "41/100 rows (41%)",
        "eta": "ETA 0:05",
        "rate": "65 req/s (allowed 80/s)",
        "in_flight": "in flight 7",
        "counts": "updated 40  failed 1  invalid 0",
        "recent": "last 2s: throttled 4, retries 6",
    }


def test_figures_without_a_total_or_progress_show_no_percentage_and_no_eta() -> None:
    stats = stats_with(updated=3)
    sample = _Sample(5.0, stats)
    f = progress_figures(stats, None, 10.0, sample, sample)
    assert (f["rows"], f["eta"]) == ("3/? rows", "ETA -")


def test_figures_count_users_skipped_by_a_resume_as_done_and_name_what_holds_the_run_back() -> None:
    stats = stats_with(updated=10)
    stats.skipped = 40
    stats.counts["unchanged"] = 5
    sample = _Sample(1.0, stats)
    f = progress_figures(stats, 100, 50.0, sample, sample, bound_by="--concurrency")
    assert f["rows"] == "55/100 rows (55%)"
    assert f["counts"] == "updated 10  unchanged 5  failed 0  invalid 0"
    assert f["rate"].endswith("held back by --concurrency")


def test_eta_past_an_hour_shows_hours() -> None:
    stats = stats_with()
    last = _Sample(0.0, stats)
    stats.record_result(result(Status.UPDATED))
    now = _Sample(10.0, stats)  # 0.1 rows/s, 99,999 rows left: 999,990 s
    assert progress_figures(stats, 100_000, 1.0, last, now)["eta"] == "ETA 277:46:30"


def test_the_plain_line_holds_every_figure_in_order() -> None:
    stats = stats_with(updated=5, invalid=1)
    sample = _Sample(3.0, stats)
    f = progress_figures(stats, 12, 9.0, sample, sample)
    line = progress_line(stats, 12, 9.0, sample, sample)
    order = ("rows", "rate", "counts", "recent", "in_flight", "eta")
    assert line == "  ".join(f[k] for k in order)


# -- the displays --------------------------------------------------------------------------------


@dataclass
class FakeUpdater:
    """What the display reads of an ``Updater``: its stats, allowed rate and what holds it."""

    stats: RunStats = field(default_factory=stats_with)
    rate: float = 25.0
    bound_by: str = ""


class Terminal(io.StringIO):
    """A stream that says it is a terminal, so rich draws live into it."""

    def isatty(self) -> bool:
        return True


async def wait_for(stream: io.StringIO, pattern: str, limit: float = 10.0) -> str:
    """Poll what was written to ``stream`` until ``pattern`` matches it."""
    deadline = time.monotonic() + limit
    while not re.search(pattern, stream.getvalue()):
        assert time.monotonic() < deadline, f"{pattern!r} not shown: {stream.getvalue()!r}"
        await asyncio.sleep(0.005)
    return stream.getvalue()


async def test_the_plain_display_prints_a_line_each_interval_with_the_current_figures() -> None:
    updater = FakeUpdater()
    stream = io.StringIO()
    display = ProgressDisplay(updater, 10, mode="plain", stream=stream, plain_every=0.01)
    async with display:
        await wait_for(stream, r"0/10 rows \(0%\)")
        for _ in range(4):
            updater.stats.record_result(result(Status.UPDATED))
        updater.stats.record_result(result(Status.FAILED))
        await wait_for(stream, r"5/10 rows \(50%\).*updated 4  failed 1  invalid 0")
        display.print("cool-down: 2 s")
        await wait_for(stream, r"(?m)^cool-down: 2 s$")
    lines = stream.getvalue().splitlines()
    assert all(re.match(r"\d+/10 rows", line) or line == "cool-down: 2 s" for line in lines)


async def test_the_rich_display_draws_a_bar_and_the_figures_live_and_clears_them_at_the_end() -> (
    None
):
    updater = FakeUpdater(rate=40.0, bound_by="--rate")
    stream = Terminal()
    async with ProgressDisplay(updater, 8, mode="rich", stream=stream, interval=0.01) as display:
        await wait_for(stream, r"0/8 rows \(0%\)")
        for _ in range(6):
            updater.stats.record_result(result(Status.UPDATED))
        shown = await wait_for(stream, r"6/8 rows \(75%\)")
        assert "allowed 40/s" in shown and "held back by --rate" in shown
        assert "━" in shown  # the progress bar
        display.print("refreshed credentials")
        await wait_for(stream, r"refreshed credentials")
    # Transient: the last frame's three lines (bar, two of figures) are erased when the run
    # ends; the notice, printed above the frame, stays.
    written = stream.getvalue()
    assert written.endswith("\x1b[1A\x1b[2K" * 3)
    assert written.count("refreshed credentials") == 1


def test_off_when_asked_or_when_the_stream_is_not_a_terminal() -> None:
    assert ProgressDisplay.choose_mode(disabled=True, stream=Terminal()) == "off"
    assert ProgressDisplay.choose_mode(disabled=False, stream=io.StringIO()) == "off"


def test_rich_on_a_terminal_and_plain_lines_where_rich_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ProgressDisplay.choose_mode(disabled=False, stream=Terminal()) == "rich"
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich raises ImportError
    assert ProgressDisplay.choose_mode(disabled=False, stream=Terminal()) == "plain"


async def test_the_off_display_writes_nothing_and_print_still_reaches_the_stream() -> None:
    updater = FakeUpdater()
    stream = io.StringIO()
    async with ProgressDisplay(updater, 3, mode="off", stream=stream) as display:
        updater.stats.record_result(result(Status.UPDATED))
        display.print("a notice")
        await asyncio.sleep(0)
    assert stream.getvalue() == "a notice\n"
