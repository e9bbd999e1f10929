"""Durations in buckets: exact under EXACT_BELOW seconds, within RELATIVE_ERROR above, and the
percentile of any days added up is the bucket of the exact nearest-rank duration."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from desk.reports.durations import (
    EXACT_BELOW,
    MAX_SECONDS,
    RELATIVE_ERROR,
    Durations,
    bucket_of,
    value_of,
)


def test_every_duration_up_to_a_month_is_shown_within_the_stated_error() -> None:
    worst = 0.0
    for seconds in range(1, 31 * 86_400):
        shown = value_of(bucket_of(seconds))
        if seconds < EXACT_BELOW:
            assert shown == seconds
        worst = max(worst, abs(shown - seconds) / seconds)
    assert 0.01 < worst <= RELATIVE_ERROR


@given(st.integers(min_value=EXACT_BELOW, max_value=MAX_SECONDS))
def test_long_durations_are_shown_within_the_stated_error(seconds: int) -> None:
    assert abs(value_of(bucket_of(seconds)) - seconds) <= RELATIVE_ERROR * seconds


def test_buckets_keep_the_order_of_durations() -> None:
    assert bucket_of(-5) == bucket_of(0) == 0
    assert bucket_of(MAX_SECONDS + 1000) == bucket_of(MAX_SECONDS)
    for low, high in ((255, 256), (256, 300), (3_600, 86_400), (86_400, 30 * 86_400)):
        assert bucket_of(low) <= bucket_of(high)
        assert value_of(bucket_of(low)) <= value_of(bucket_of(high))


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=40 * 86_400), max_size=30),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([0.5, 0.9, 0.1, 1.0]),
)
def test_days_added_up_give_the_bucket_of_the_exact_percentile(
    days: list[list[int]], q: float
) -> None:
    total = Durations()
    for day in days:
        total.add(Durations.from_json(Durations.of(day).to_json()))  # stored and read back
    everything = [s for day in days for s in day]
    assert total.count == len(everything)
    if not everything:
        assert total.percentile(q) is None
        return
    assert total.percentile(q) == value_of(bucket_of(nearest_rank(everything, q)))


def test_a_year_of_durations_keeps_the_median_and_90th_percentile_within_the_error() -> None:
    rng = random.Random(10)
    values = [int(rng.lognormvariate(8, 1.5)) for _ in range(200_000)]
    merged = Durations()
    for start in range(0, len(values), 550):  # a day's worth at a time
        merged.add(Durations.of(values[start : start + 550]))
    for q in (0.5, 0.9):
        exact = nearest_rank(values, q)
        shown = merged.percentile(q)
        assert shown is not None and abs(shown - exact) <= RELATIVE_ERROR * exact
