"""What customers keep coming back about (``/top``): the most frequent categories of a period
and the phrases customers use most in them, each against the period just before."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from desk.reports.appeal_report import lines_of
from desk.reports.periods import Period, period_of_days
from desk.reports.phrases import period_tally
from desk.reports.rating_report import NONE
from desk.reports.report_days import period_figures

TOP_CATEGORIES = 5
TOP_PHRASES = 5
MIN_APPEALS = 2  # a phrase of a single appeal tells nothing (and may be personal)


@dataclass(frozen=True, slots=True)
class Trend:
    """A category or phrase now and in the period before."""

    key: str
    shown: str
    count: int
    previous: int

    @property
    def change(self) -> float | None:
        """The change against the period before as a share (0.5 is +50 %); None from zero."""
        if self.previous == 0:
            return None
        return round((self.count - self.previous) / self.previous, 4)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "key": self.key,
            "shown": self.shown,
            "count": self.count,
            "previous": self.previous,
            "change": self.change,
        }


@dataclass(frozen=True, slots=True)
class TopCategory:
    """One of the most frequent categories and its most used phrases."""

    category: Trend
    phrases: list[Trend]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {**self.category.to_json(), "phrases": [p.to_json() for p in self.phrases]}


@dataclass(frozen=True, slots=True)
class TopReport:
    """The most frequent categories of a period with their phrases."""

    period: Period
    previous: Period
    categories: list[TopCategory]

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        return {
            "period": self.period.to_json(),
            "previous": self.previous.to_json(),
            "categories": [c.to_json() for c in self.categories],
        }


def previous_of(period: Period, zone: ZoneInfo) -> Period:
    """The period of as many days just before ``period``."""
    last = period.first_day - timedelta(days=1)
    return period_of_days(last - timedelta(days=period.day_count - 1), last, zone, "previous")


async def top_report(period: Period, zone: ZoneInfo, today: date) -> TopReport:
    """The top categories of ``period`` by appeals opened, each with its top phrases."""
    before = previous_of(period, zone)
    now = lines_of(await period_figures(period, zone, today, durations=False), "category")
    figures = await period_figures(before, zone, today, durations=False)
    earlier = {line.key: line.count for line in lines_of(figures, "category")}
    top = now[:TOP_CATEGORIES]
    keys = ["" if line.key == NONE else line.key for line in top]
    tally = await period_tally(period, zone, today, keys)
    past = await period_tally(before, zone, today, keys)
    categories = []
    for line, key in zip(top, keys, strict=True):
        previous = past.appeals.get(key, Counter())
        categories.append(
            TopCategory(
                Trend(line.key, line.key, line.count, earlier.get(line.key, 0)),
                [
                    Trend(phrase, tally.shown(phrase), n, previous[phrase])
                    for phrase, n in most_used(tally.appeals.get(key, Counter()))
                ],
            )
        )
    return TopReport(period, before, categories)


def most_used(counts: Counter[str]) -> list[tuple[str, int]]:
    """The ``TOP_PHRASES`` phrases of most appeals (at least ``MIN_APPEALS``); of a phrase and a
    longer one holding it, used as often, only the longer one (it says more)."""
    ranked = sorted(
        ((phrase, n) for phrase, n in counts.items() if n >= MIN_APPEALS),
        key=lambda item: (-item[1], -item[0].count(" "), item[0]),
    )
    chosen: list[tuple[str, int]] = []
    for phrase, n in ranked:
        if any(f" {phrase} " in f" {longer} " and m >= n for longer, m in chosen):
            continue
        chosen.append((phrase, n))
        if len(chosen) == TOP_PHRASES:
            break
    return chosen
