"""«Средняя оценка за период» (seed 004): a period's ratings counted by the database, with the
response rate of the requests sent and the figures per agent, category, team, channel and day."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tortoise.functions import Count, Sum

from desk.reports.periods import Period
from models import Agent, Rating, RatingRequest

SCORES = (1, 2, 3, 4, 5)
UNASSIGNED = "unassigned"  # the agent key of ratings given when nobody had the appeal
NONE = "none"  # the key of ratings without a category, a team or a channel
_CENT = Decimal("0.01")


def average(total: int, count: int) -> float | None:
    """``total / count`` rounded half up to 2 decimals; None for no ratings."""
    if count <= 0:
        return None
    return float((Decimal(total) / Decimal(count)).quantize(_CENT, rounding=ROUND_HALF_UP))


def share(part: int, whole: int) -> float | None:
    """``part / whole`` to 4 decimals (0.8125 is 81.25 %); None when ``whole`` is 0."""
    if whole <= 0:
        return None
    return float((Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Breakdown:
    """The ratings of one agent, category, team or channel."""

    key: str
    name: str
    count: int
    average: float | None
    agent_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"key": self.key, "name": self.name, "count": self.count, "average": self.average}


@dataclass(frozen=True, slots=True)
class DayFigures:
    """The ratings of one day of the period."""

    day: date
    count: int
    average: float | None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"day": self.day.isoformat(), "count": self.count, "average": self.average}


@dataclass(frozen=True, slots=True)
class RatingReport:
    """What customers said about a period: totals, distribution, response rate, breakdowns."""

    period: Period
    count: int
    average: float | None
    distribution: dict[int, int]
    requests_sent: int
    requests_answered: int
    response_rate: float | None
    by_agent: list[Breakdown]
    by_category: list[Breakdown]
    by_team: list[Breakdown]
    by_channel: list[Breakdown]
    daily: list[DayFigures]

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types (dates as ISO strings, score keys as strings)."""
        return {
            "period": self.period.to_json(),
            "count": self.count,
            "average": self.average,
            "distribution": {str(score): n for score, n in self.distribution.items()},
            "requests": {
                "sent": self.requests_sent,
                "answered": self.requests_answered,
                "response_rate": self.response_rate,
            },
            "by_agent": [{**b.to_json(), "agent_id": b.agent_id} for b in self.by_agent],
            "by_category": [b.to_json() for b in self.by_category],
            "by_team": [b.to_json() for b in self.by_team],
            "by_channel": [b.to_json() for b in self.by_channel],
            "daily": [d.to_json() for d in self.daily],
        }


@dataclass(frozen=True, slots=True)
class RatingTotals:
    """The headline of a period's ratings: how many, their average and scores, and how many of
    the rating requests sent were answered."""

    count: int
    average: float | None
    distribution: dict[int, int]
    requests_sent: int
    requests_answered: int
    response_rate: float | None


async def rating_totals(period: Period) -> RatingTotals:
    """The headline of ``period``: ratings by their ``day``, requests by when they were sent."""
    scores = await _grouped("score", period)
    distribution = dict.fromkeys(SCORES, 0)
    for row in scores:
        if int(row["score"]) in distribution:
            distribution[int(row["score"])] = int(row["n"])
    count = sum(_figures(row)[0] for row in scores)
    total = sum(_figures(row)[1] for row in scores)
    sent = RatingRequest.filter(created_at__gte=period.start, created_at__lt=period.end)
    requests = await sent.annotate(sent=Count("id"), answered=Count("answered_at")).values(
        "sent", "answered"
    )
    requests_sent = int(requests[0]["sent"] or 0) if requests else 0
    requests_answered = int(requests[0]["answered"] or 0) if requests else 0
    return RatingTotals(
        count=count,
        average=average(total, count),
        distribution=distribution,
        requests_sent=requests_sent,
        requests_answered=requests_answered,
        response_rate=share(requests_answered, requests_sent),
    )


async def rating_report(period: Period) -> RatingReport:
    """The rating report of ``period``: ratings by their ``day``, requests by when they were
    sent; every figure is counted by the database, grouped, never row by row."""
    totals = await rating_totals(period)
    by_day = {as_date(row["day"]): row for row in await _grouped("day", period)}
    daily = []
    for day in period.days():
        n, day_total = _figures(by_day.get(day))
        daily.append(DayFigures(day, n, average(day_total, n)))
    return RatingReport(
        period=period,
        count=totals.count,
        average=totals.average,
        distribution=totals.distribution,
        requests_sent=totals.requests_sent,
        requests_answered=totals.requests_answered,
        response_rate=totals.response_rate,
        by_agent=await _by_agent(period),
        by_category=await _by("category", period),
        by_team=await _by("team", period),
        by_channel=await _by("channel", period),
        daily=daily,
    )


async def _grouped(field: str, period: Period) -> list[dict[str, Any]]:
    """Rows of ``{field, n, total}`` for the period's ratings, one per value of ``field``."""
    rows = (
        await Rating.filter(day__gte=period.first_day, day__lte=period.last_day)
        .annotate(n=Count("id"), total=Sum("score"))
        .group_by(field)
        .values(field, "n", "total")
    )
    return list(rows)


def _figures(row: dict[str, Any] | None) -> tuple[int, int]:
    """(count, sum of scores) of a grouped row; (0, 0) for a group with no ratings."""
    if row is None:
        return 0, 0
    return int(row["n"]), int(row["total"] or 0)


def _sorted(lines: Iterable[Breakdown]) -> list[Breakdown]:
    return sorted(lines, key=lambda b: (-b.count, -(b.average or 0), b.name, b.key))


async def _by(field: str, period: Period) -> list[Breakdown]:
    """One line per category, team or channel; ratings without one are under ``NONE``."""
    sums: dict[str, tuple[int, int]] = {}
    for row in await _grouped(field, period):
        key = str(row[field]) if row[field] not in (None, "") else NONE  # NULL and "" are one
        n, total = _figures(row)
        before = sums.get(key, (0, 0))
        sums[key] = (before[0] + n, before[1] + total)
    return _sorted(Breakdown(key, key, n, average(total, n)) for key, (n, total) in sums.items())


async def _by_agent(period: Period) -> list[Breakdown]:
    rows = await _grouped("agent_id", period)
    ids = [int(row["agent_id"]) for row in rows if row["agent_id"] is not None]
    names = dict(await Agent.filter(id__in=ids).values_list("id", "name")) if ids else {}
    lines = []
    for row in rows:
        agent_id = int(row["agent_id"]) if row["agent_id"] is not None else None
        n, total = _figures(row)
        if agent_id is None:
            key, name = UNASSIGNED, UNASSIGNED
        else:
            key, name = str(agent_id), str(names.get(agent_id) or f"#{agent_id}")
        lines.append(Breakdown(key, name, n, average(total, n), agent_id))
    return _sorted(lines)


def as_date(value: Any) -> date:
    """A grouped ``day`` as a date (drivers hand back a date or its ISO text)."""
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
