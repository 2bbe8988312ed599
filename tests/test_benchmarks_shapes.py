"""The shape-matrix benchmark's pure parts: the cells it draws, how it sizes them, and the
cool-down and ceiling arithmetic it reports with (``benchmarks/shapes.py``, ``common.py``)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from benchmarks.common import (
    answer_latency,
    cooldown_violations,
    cooldown_violations_split,
    lower_priority,
)
from benchmarks.shapes import (
    ACCOUNTS,
    CEILING_X,
    LATENCY_S,
    LIMIT,
    RETRY_AFTER_S,
    Sizing,
    best_seconds,
    draw_cell,
    draw_cells,
)


def test_a_seed_draws_the_same_cells_whatever_their_number() -> None:
    assert draw_cells(10, 30) == draw_cells(10, 30)
    assert draw_cells(10, 40)[:6] == draw_cells(10, 6)
    assert draw_cell(10, 17) == draw_cells(10, 20)[16]
    assert draw_cells(10, 30) != draw_cells(11, 30)


def test_drawn_cells_stay_within_the_promised_ranges() -> None:
    for cell in draw_cells(3, 64):
        assert LATENCY_S[0] <= cell.latency_s <= LATENCY_S[1]
        assert LIMIT[0] <= cell.limit <= LIMIT[1] * 1.005  # rounded to 3 significant digits
        assert LIMIT[0] <= cell.capacity <= LIMIT[1] * 1.005
        assert 1 <= cell.burst <= max(1.0, round(cell.limit))
        assert ACCOUNTS[0] <= cell.accounts <= ACCOUNTS[1]
        assert cell.retry_after is None or RETRY_AFTER_S[0] <= cell.retry_after <= RETRY_AFTER_S[1]
        if cell.ceiling_x is not None:
            assert CEILING_X[0] <= cell.ceiling_x <= CEILING_X[1]
            assert cell.rate_ceiling is not None and cell.rate_ceiling > cell.limit


def test_every_sixteen_consecutive_cells_cover_each_combination_of_the_yes_no_factors() -> None:
    cells = draw_cells(5, 48)
    for start in (0, 16, 32):
        seen = {
            (c.per_account, c.sorted_input, c.retry_after is not None, c.ceiling_x is not None)
            for c in cells[start : start + 16]
        }
        assert seen == set(itertools.product((False, True), repeat=4))


def test_users_per_cell_follow_capacity_within_floor_and_cap() -> None:
    sizing = Sizing(seconds=15, floor=100, cap=30000, ceiling=2000)
    for cell in draw_cells(10, 30):
        users = sizing.users(cell)
        assert 100 <= users <= 30000
        seconds = max(15, 20 * (cell.retry_after or 0))  # one pause is 0.05 of the run
        if 100 < users < 30000:
            assert abs(users - seconds * min(cell.capacity, 2000)) <= 1
        assert sizing.time_limit(cell) > sizing.time_limit(cell, "aiobotocore-legacy")
        assert sizing.time_limit(cell, "aiobotocore-legacy") > sizing.expected_s(cell)


def test_a_cool_down_binds_only_its_own_account_when_limits_are_per_account() -> None:
    # (arrived, responded, account, user, status): a 429 for account a answered at t=1.0 with
    # a 2 s pause; a's request at 1.5 is inside it, b's at 1.5 is not (b has its own bucket).
    events = [
        [0.99, 1.0, "a", "u1", 429],
        [1.5, 1.52, "a", "u2", 204],
        [1.5, 1.52, "b", "u3", 204],
        [3.1, 3.12, "a", "u4", 204],
    ]
    assert cooldown_violations(events, 2.0, 0.05, per_account=True) == 1
    assert cooldown_violations(events, 2.0, 0.05) == 2
    # Within the tolerance of the announcement, a request was already on its way.
    assert (
        cooldown_violations([[0.99, 1.0, "a", "u", 429], [1.02, 1.03, "a", "v", 204]], 2, 0.05) == 0
    )


def test_requests_inside_a_cool_down_are_split_into_late_to_stop_and_back_too_soon() -> None:
    # A 429 answered at 1.0 announces 1 s. Arrivals at 1.2 and 1.4 come while the client has
    # not stopped yet; at 1.7 and 1.95 it had stopped and came back before the pause ended;
    # 2.1 is after it. Each counts once, in one half or the other.
    events = [
        [0.98, 1.0, "a", "u0", 429],
        *([t, t + 0.02, "a", f"u{t}", 204] for t in (1.2, 1.4, 1.7, 1.95, 2.1)),
    ]
    assert cooldown_violations_split(events, 1.0, 0.05) == (2, 2)
    assert cooldown_violations(events, 1.0, 0.05) == 4
    # A later 429, answered at 1.6, to a request that came back too soon (1.58): 1.7 and 1.95
    # now fall in the first half of its pause, 2.1 in the second.
    events.append([1.58, 1.6, "a", "u9", 429])
    assert cooldown_violations_split(events, 1.0, 0.05) == (4, 2)


@pytest.mark.parametrize("steps", [0, 7])
def test_shards_started_below_the_benchmarks_priority_run_that_many_steps_lower(
    steps: int,
) -> None:
    """``benchmarks.shared`` starts its shards with ``lower_priority``: a real child process
    reads its own niceness, ``steps`` above the parent's (0: the parent's own)."""
    own = os.nice(0)
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.nice(0))"],
        preexec_fn=lower_priority(steps),
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(child.stdout) == min(own + steps, 19)


def test_the_mocks_answer_latency_is_read_from_its_event_log() -> None:
    # 99 answers 20 ms after arrival and one 170 ms after (a starved mock's): the median says
    # 20 ms, the 99th percentile the starved one.
    events = [[i / 100, i / 100 + 0.02, "a", f"u{i}", 204] for i in range(99)]
    events.append([1.0, 1.17, "a", "u99", 204])
    assert answer_latency(events, 0.5) == pytest.approx(0.02)
    assert answer_latency(events, 0.99) == pytest.approx(0.17)
    assert answer_latency([], 0.99) == 0.0


def test_the_machine_ceiling_is_the_best_three_whole_seconds() -> None:
    timeline = {str(s): {"accepted": n} for s, n in enumerate([100, 900, 1000, 1100, 300, 50])}
    # Seconds 1-3 are the best; the last second (partial) is left out.
    assert best_seconds(timeline) == 1000
    assert best_seconds({"0": {"accepted": 40.0}, "1": {"accepted": 20.0}}) == 30
    assert best_seconds({}) == 0
