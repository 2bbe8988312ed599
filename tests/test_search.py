"""The step planned into the bounds where every failed step costs a pause (``best_step``)."""

from __future__ import annotations

import math

import pytest

from async_updater.ratelimit.search import best_step


def thin_hold(step: float, base: float) -> float:
    """A thin bucket's hold: two tokens over the step's excess, half a second at least."""
    return max(0.5, 2.0 / (step - base))


def test_a_step_costing_a_pause_is_planned_nearer_the_rate_held_than_the_middle() -> None:
    """Bisecting [16, 32] steps to 22.6/s and fails half the time, a 4 s pause each. With 80 s
    of work left, the plan steps lower: a smaller gain, but a pause less often."""
    step = best_step(16.0, 32.0, pause_s=4.0, work_s=80.0, hold_s=thin_hold)
    assert step is not None
    assert 16.0 < step < math.sqrt(16.0 * 32.0)


def test_no_step_is_planned_where_the_work_left_cannot_pay_for_a_pause() -> None:
    """Two seconds of work left: cruising at the rate held loses less than a 4 s pause risks."""
    assert best_step(16.0, 32.0, pause_s=4.0, work_s=2.0, hold_s=thin_hold) is None


def test_steps_grow_bolder_as_the_pause_they_risk_shrinks() -> None:
    """The same bounds and work: the cheaper a failed step, the higher the step."""
    steps = [
        best_step(100.0, 200.0, pause_s=pause, work_s=60.0, hold_s=thin_hold)
        for pause in (8.0, 2.0, 0.5)
    ]
    assert all(s is not None for s in steps)
    assert steps == sorted(steps)
    assert steps[0] < steps[-1]


def test_bounds_too_close_to_gain_on_are_not_stepped_into() -> None:
    """Within 1% of the rate held, a step gains less than its hold and its risk cost."""
    assert best_step(100.0, 101.0, pause_s=1.0, work_s=30.0, hold_s=thin_hold) is None


@pytest.mark.parametrize(
    ("lo", "hi", "work_s"),
    [(0.0, 10.0, 5.0), (10.0, 10.0, 5.0), (10.0, math.inf, 5.0), (10.0, 20.0, math.inf)],
)
def test_no_plan_without_finite_bounds_and_known_work(lo: float, hi: float, work_s: float) -> None:
    assert best_step(lo, hi, pause_s=1.0, work_s=work_s, hold_s=thin_hold) is None


def test_a_planned_step_lies_strictly_between_the_bounds() -> None:
    for lo, hi, pause, work in [(5.0, 9.0, 1.0, 20.0), (500.0, 4000.0, 5.0, 100.0)]:
        step = best_step(lo, hi, pause_s=pause, work_s=work, hold_s=thin_hold)
        assert step is not None
        assert lo < step < hi
