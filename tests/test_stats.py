"""Run figures: latency percentiles in constant memory."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_updater.pipeline.stats import LatencyHistogram, percentile

latencies = st.lists(
    st.floats(min_value=0.002, max_value=600_000.0, allow_nan=False), min_size=1, max_size=300
)


@given(latencies, st.sampled_from([1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]))
def test_percentile_is_within_half_a_percent_of_the_exact_nearest_rank(
    values: list[float], q: float
) -> None:
    h = LatencyHistogram()
    for v in values:
        h.add(v)
    exact = percentile(sorted(values), q)
    got = h.percentile(q)
    assert exact is not None and got is not None
    assert got == pytest.approx(exact, rel=0.0051)


def test_memory_does_not_grow_with_the_number_of_requests() -> None:
    rng = random.Random(7)
    h = LatencyHistogram()
    for _ in range(200_000):
        h.add(rng.uniform(5.0, 500.0))  # two decades: about 463 buckets of 1%
    assert len(h) == 200_000
    assert h.buckets <= 465


def test_an_empty_histogram_has_no_percentiles() -> None:
    assert LatencyHistogram().percentile(50) is None


def test_zero_and_sub_microsecond_latencies_count_as_the_lowest_bucket() -> None:
    h = LatencyHistogram()
    for v in (0.0, 0.0001, 0.0, 3.0):
        h.add(v)
    assert h.percentile(75) == 0.001
    assert h.percentile(100) == pytest.approx(3.0, rel=0.0051)
