"""Durations counted in fine buckets, so that the median and 90th percentile of any number of
days come from adding the days' counts up instead of sorting every duration again.

Below ``EXACT_BELOW`` seconds every second is a bucket of its own (exact); above, each bucket is
2^(1/32) times wider than the one before, and the value a bucket stands for is within
``RELATIVE_ERROR`` (1.2 %) of every duration in it. A percentile is the nearest-rank one, as
before: the bucket holding the ranked duration is found exactly, only its value is rounded."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping

EXACT_BELOW = 256  # seconds: every duration under 4 min 16 s is kept exactly
STEPS_PER_DOUBLING = 32
RELATIVE_ERROR = 0.012  # the most a shown duration of EXACT_BELOW or more can be off
MAX_SECONDS = 2**31 - 1  # the report columns are 32-bit


def _lower_bounds() -> list[int]:
    """The smallest duration of every bucket, in order."""
    bounds = list(range(EXACT_BELOW))
    step = 0
    while bounds[-1] <= MAX_SECONDS:
        bound = math.ceil(EXACT_BELOW * 2 ** (step / STEPS_PER_DOUBLING))
        if bound > bounds[-1]:
            bounds.append(bound)
        step += 1
    return bounds


_LOWER = _lower_bounds()


def bucket_of(seconds: int) -> int:
    """The bucket a duration falls in (negative durations count as 0)."""
    return bisect.bisect_right(_LOWER, min(max(0, seconds), MAX_SECONDS)) - 1


def value_of(bucket: int) -> int:
    """The duration a bucket stands for: its only value below ``EXACT_BELOW``, else the whole
    second nearest to the one that is off by the same share at both ends of the bucket."""
    low = _LOWER[bucket]
    if low < EXACT_BELOW:
        return low
    high = _LOWER[bucket + 1] - 1
    return round(2 * low * high / (low + high))


class Durations:
    """How many durations fell in each bucket."""

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: Counter[int] = Counter(counts or {})

    @classmethod
    def of(cls, seconds: Iterable[int]) -> Durations:
        """The buckets of these durations."""
        return cls(Counter(bucket_of(s) for s in seconds))

    @classmethod
    def from_json(cls, data: Mapping[str, int] | None) -> Durations:
        """Read back what ``to_json`` wrote."""
        return cls({int(k): int(n) for k, n in (data or {}).items()})

    def to_json(self) -> dict[str, int]:
        """Bucket number (as text, a JSON key) to count, only buckets in use."""
        return {str(k): n for k, n in sorted(self.counts.items()) if n}

    def add(self, other: Durations) -> None:
        """Count ``other``'s durations too."""
        self.counts.update(other.counts)

    @property
    def count(self) -> int:
        """How many durations there are."""
        return sum(self.counts.values())

    def percentile(self, q: float) -> int | None:
        """The nearest-rank percentile (the duration with at least ``q`` of them at or below
        it), as its bucket's value; None when there are none."""
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return value_of(bucket)
        raise AssertionError("unreachable: the ranks add up to the total")
