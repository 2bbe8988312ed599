"""Where to step next when every step above the limit costs a pause.

Between ``lo`` (a rate that held) and ``hi`` (the lowest rate throttled), the limit is
unknown; taken log-uniform between them, a step to ``s`` fails with the chance that the limit
is below ``s``. Where the server answers throttles with cool-downs, a failed step costs the
whole pause; a step that holds costs its hold (sent at ``s``, a little under a limit above
it); cruising at ``lo`` for the rest of the work costs the gap to the limit on every request.
Bisecting the bounds weighs none of that: from a bracket of two it fails once or twice on
average, a pause each. ``best_step`` chooses the step (or none) that loses the least time on
average, by dynamic programming over a grid of the bounds.

Pure arithmetic: every rate, pause and hold is an argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["best_step"]

_GRID = 32  # points between the bounds (a bracket of two: steps about 2% apart)


def _cruise_loss(ratio: float) -> float:
    """The time lost per second of work, cruising at ``lo`` with the limit log-uniform in
    ``[lo, lo * ratio]``: ``E[L / lo] - 1``."""
    u = math.log(ratio)
    if u < 1e-12:
        return 0.0
    return math.expm1(u) / u - 1.0


def _hold_loss(ratio: float) -> float:
    """The share of a hold's time lost, sending at ``s`` with the limit log-uniform in
    ``[s, s * ratio]``: ``1 - E[s / L]``."""
    u = math.log(ratio)
    if u < 1e-12:
        return 0.0
    return 1.0 + math.expm1(-u) / u


def best_step(
    lo: float,
    hi: float,
    *,
    pause_s: float,
    work_s: float,
    hold_s: Callable[[float, float], float],
    cruise: float | None = None,
) -> float | None:
    """The rate to step to from ``lo`` (held) below ``hi`` (throttled), or None where cruising
    at ``lo`` for the rest of the work loses least.

    ``pause_s``: what a failed step costs. ``work_s``: the work left, in seconds at the limit.
    ``hold_s(step, base)``: how long a step from ``base`` must hold to count as sustained.
    ``cruise``: the rate cruised at below ``lo`` where no step is taken (a margin under a
    reading; ``lo`` by default): a step that holds is cruised at.
    Each rate on the grid holds its own cost (a hold at a high rate is short), so the plan is
    exact on the grid; the first step of the best plan is returned."""
    if not (0 < lo < hi < math.inf) or not work_s > 0 or math.isinf(work_s):
        return None
    below = lo / min(lo, cruise or lo)  # the margin cruising keeps under ``lo``
    n = _GRID
    ratio = hi / lo
    rates = [lo * ratio ** (k / n) for k in range(n + 1)]
    # cost[a][b]: the least expected loss with the limit in [rates[a], rates[b]], lo = rates[a]
    holds = [
        [hold_s(rates[c], rates[a]) if c > a else 0.0 for c in range(n + 1)] for a in range(n + 1)
    ]
    cost = [[0.0] * (n + 1) for _ in range(n + 1)]
    first = [[-1] * (n + 1) for _ in range(n + 1)]
    for width in range(1, n + 1):
        for a in range(n + 1 - width):
            b = a + width
            margin = below if a == 0 else 1.0
            loss = margin * (1.0 + _cruise_loss(rates[b] / rates[a])) - 1.0
            best, step = work_s * loss, -1
            for c in range(a + 1, b):
                fails = (c - a) / width  # the limit below rates[c]
                hold = holds[a][c] * _hold_loss(rates[b] / rates[c])
                total = fails * (pause_s + cost[a][c]) + (1.0 - fails) * (hold + cost[c][b])
                if total < best:
                    best, step = total, c
            cost[a][b], first[a][b] = best, step
    c = first[0][n]
    return None if c < 0 else rates[c]
