"""The desk's figures for a period (seed 001 «статистика»): appeals by channel, category, team
and agent; how soon they were answered and resolved (median and 90th percentile, in business
hours and on the wall clock); SLA met; reopenings; the backlog now and its age; the ratings'
headline. Finished days come from their counted figures (``desk.reports.report_days``), today live;
medians and 90th percentiles from durations in buckets, within ``durations.RELATIVE_ERROR``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.functions import Count

from desk.reports.periods import Period, local_midnight, today_in
from desk.reports.rating_report import UNASSIGNED, RatingTotals, rating_totals, share
from desk.reports.report_days import Figures, period_figures
from models import OPEN_STATUSES, Agent, Appeal
from router.sla import SlaTarget

AGE_EDGES = ((0, "under_1d"), (1, "1_3d"), (3, "3_7d"), (7, "over_7d"))  # days
DAILY_BUCKETS_UP_TO = 62  # longer periods are counted by weeks


def percentile(values: list[int], q: float) -> int | None:
    """The nearest-rank percentile of sorted ``values``: the smallest value with at least
    ``q`` of them at or below it; None for no values."""
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]


@dataclass(frozen=True, slots=True)
class Spread:
    """How long something took: median and 90th percentile in seconds, on the wall clock and
    in business hours, over ``count`` appeals."""

    count: int
    median_s: int | None
    p90_s: int | None
    work_median_s: int | None
    work_p90_s: int | None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "count": self.count,
            "median_s": self.median_s,
            "p90_s": self.p90_s,
            "business_median_s": self.work_median_s,
            "business_p90_s": self.work_p90_s,
        }


@dataclass(frozen=True, slots=True)
class Target:
    """One SLA target over a period: its times and how often its due time was kept."""

    name: SlaTarget
    times: Spread
    with_due: int
    met: int
    met_share: float | None
    breaches: int  # SLA breach alerts raised in the period

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            **self.times.to_json(),
            "with_due": self.with_due,
            "met": self.met,
            "met_share": self.met_share,
            "breaches": self.breaches,
        }


@dataclass(frozen=True, slots=True)
class Line:
    """Appeals of one channel, category, team or agent (``NONE`` / ``UNASSIGNED`` for none)."""

    key: str
    name: str
    count: int
    agent_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        out: dict[str, Any] = {"key": self.key, "name": self.name, "count": self.count}
        if self.key == UNASSIGNED or self.agent_id is not None:
            out["agent_id"] = self.agent_id
        return out


@dataclass(frozen=True, slots=True)
class Bucket:
    """Appeals opened and done within one day (or week) of the period."""

    start: datetime
    label: str
    created: int
    done: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"day": self.label, "created": self.created, "done": self.done}


@dataclass(frozen=True, slots=True)
class Backlog:
    """Appeals still open at ``at``: by status, overdue, and how old they are."""

    at: datetime
    total: int
    by_status: dict[str, int]
    overdue: int
    oldest_s: int | None
    median_age_s: int | None
    ages: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "at": self.at.isoformat(),
            "total": self.total,
            "by_status": self.by_status,
            "overdue": self.overdue,
            "oldest_s": self.oldest_s,
            "median_age_s": self.median_age_s,
            "ages": self.ages,
        }


@dataclass(frozen=True, slots=True)
class AppealReport:
    """The figures of a period (``/stats``)."""

    period: Period
    created: int
    by_channel: list[Line]
    by_category: list[Line]
    by_team: list[Line]
    by_agent: list[Line]
    first_response: Target
    resolution: Target
    reopened: int
    reopen_rate: float | None
    backlog: Backlog
    ratings: RatingTotals
    buckets: list[Bucket]

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        ratings = self.ratings
        return {
            "period": self.period.to_json(),
            "created": self.created,
            "by_channel": [line.to_json() for line in self.by_channel],
            "by_category": [line.to_json() for line in self.by_category],
            "by_team": [line.to_json() for line in self.by_team],
            "by_agent": [line.to_json() for line in self.by_agent],
            "first_response": self.first_response.to_json(),
            "resolution": self.resolution.to_json(),
            "reopened": self.reopened,
            "reopen_rate": self.reopen_rate,
            "backlog": self.backlog.to_json(),
            "ratings": {
                "count": ratings.count,
                "average": ratings.average,
                "low": ratings.distribution[1] + ratings.distribution[2],
                "response_rate": ratings.response_rate,
            },
            "daily": [b.to_json() for b in self.buckets],
        }


async def appeal_report(period: Period, now: datetime, zone: ZoneInfo) -> AppealReport:
    """The figures of ``period`` (days in ``zone``); the backlog is the one at ``now``."""
    figures = await period_figures(period, zone, today_in(now, zone))
    answered, resolved = targets_of(figures)
    total = figures.total
    return AppealReport(
        period=period,
        created=total.created,
        by_channel=lines_of(figures, "channel"),
        by_category=lines_of(figures, "category"),
        by_team=lines_of(figures, "team"),
        by_agent=await _named(lines_of(figures, "agent")),
        first_response=answered,
        resolution=resolved,
        reopened=total.reopened,
        reopen_rate=share(total.reopened, resolved.times.count),
        backlog=await backlog(now),
        ratings=await rating_totals(period),
        buckets=buckets_of(period, zone, figures),
    )


def targets_of(figures: Figures) -> tuple[Target, Target]:
    """The first answers and the resolutions of the figures, with their SLA."""
    total = figures.total
    return (
        _target("first_response", figures, total.answered_due, total.answered_met),
        _target("resolution", figures, total.done_due, total.done_met),
    )


def _target(name: SlaTarget, figures: Figures, with_due: int, met: int) -> Target:
    wall, business = figures.durations(name, "wall"), figures.durations(name, "business")
    times = Spread(
        wall.count,
        wall.percentile(0.5),
        wall.percentile(0.9),
        business.percentile(0.5),
        business.percentile(0.9),
    )
    return Target(name, times, with_due, met, share(met, with_due), figures.breaches[name])


def lines_of(figures: Figures, kind: str) -> list[Line]:
    """Appeals opened per channel, category, team or agent, largest first."""
    found = [Line(key, key, c.created) for key, c in figures.of(kind).items() if c.created]
    return sorted(found, key=_largest)


def _largest(line: Line) -> tuple[int, str, str]:
    return (-line.count, line.name, line.key)


async def _named(lines: list[Line]) -> list[Line]:
    """Agent lines with the agents' names."""
    ids = [int(line.key) for line in lines if line.key != UNASSIGNED]
    names = dict(await Agent.filter(id__in=ids).values_list("id", "name")) if ids else {}
    named = [
        line
        if line.key == UNASSIGNED
        else Line(
            line.key, str(names.get(int(line.key)) or f"#{line.key}"), line.count, int(line.key)
        )
        for line in lines
    ]
    return sorted(named, key=_largest)


async def backlog(now: datetime) -> Backlog:
    """The appeals open at ``now``: how many, in which status, overdue, and their ages."""
    open_ = Appeal.filter(status__in=list(OPEN_STATUSES), created_at__lte=now)
    by_status = {s.value: 0 for s in OPEN_STATUSES}
    for row in await open_.annotate(n=Count("id")).group_by("status").values("status", "n"):
        by_status[str(getattr(row["status"], "value", row["status"]))] = int(row["n"])
    overdue = await open_.filter(resolution_due__lt=now).count()
    opened: list[Any] = list(await open_.values_list("created_at", flat=True))
    ages = sorted(max(0, int((now - created).total_seconds())) for created in opened)
    buckets = dict.fromkeys((name for _, name in AGE_EDGES), 0)
    for age in ages:
        name = next(n for days, n in reversed(AGE_EDGES) if age >= days * 86_400)
        buckets[name] += 1
    return Backlog(
        at=now,
        total=len(ages),
        by_status=by_status,
        overdue=overdue,
        oldest_s=ages[-1] if ages else None,
        median_age_s=percentile(ages, 0.5),
        ages=buckets,
    )


async def buckets(period: Period, zone: ZoneInfo, today: date) -> list[Bucket]:
    """Appeals opened and done per day of the period (per week beyond two months)."""
    return buckets_of(period, zone, await period_figures(period, zone, today))


def buckets_of(period: Period, zone: ZoneInfo, figures: Figures) -> list[Bucket]:
    """The figures' appeals opened and done per day of the period (per week beyond two
    months)."""
    step = 1 if period.day_count <= DAILY_BUCKETS_UP_TO else 7
    days = list(period.days())
    out = []
    for offset in range(0, len(days), step):
        group = days[offset : offset + step]
        counts = [figures.daily.get(day, (0, 0)) for day in group]
        out.append(
            Bucket(
                local_midnight(group[0], zone),
                group[0].isoformat(),
                sum(created for created, _ in counts),
                sum(done for _, done in counts),
            )
        )
    return out
