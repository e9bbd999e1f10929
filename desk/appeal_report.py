"""The desk's figures for a period (seed 001 «статистика»): appeals by channel, category, team
and agent; how soon they were answered and resolved (median and 90th percentile, in business
hours and on the wall clock); SLA met; reopenings; the backlog now and its age; the ratings'
headline. Every figure is counted by the database from the report columns of ``appeal``."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.expressions import F
from tortoise.functions import Count
from tortoise.queryset import QuerySet

from desk import report_sql
from desk.periods import Period, local_midnight
from desk.rating_report import NONE, UNASSIGNED, RatingReport, rating_report, share
from desk.report_sql import TargetRow
from models import OPEN_STATUSES, Agent, Appeal, Event
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
    reopened: int = 0  # of these appeals, how many had been reopened

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
    ratings: RatingReport
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


def opened_in(period: Period) -> QuerySet[Appeal]:
    """Appeals opened in the period."""
    return Appeal.filter(created_at__gte=period.start, created_at__lt=period.end)


async def appeal_report(period: Period, now: datetime, zone: ZoneInfo) -> AppealReport:
    """The figures of ``period`` (days in ``zone``); the backlog is the one at ``now``."""
    answered, resolved = await targets(period)
    reopened = resolved.reopened
    by = await volume(opened_in(period))
    return AppealReport(
        period=period,
        created=sum(line.count for line in by["channel"]),
        by_channel=by["channel"],
        by_category=by["category"],
        by_team=by["team"],
        by_agent=by["assignee_id"],
        first_response=answered,
        resolution=resolved,
        reopened=reopened,
        reopen_rate=share(reopened, resolved.times.count),
        backlog=await backlog(now),
        ratings=await rating_report(period),
        buckets=await buckets(period, zone),
    )


# target: (its moment, wall seconds, business seconds, due time)
TARGET_COLUMNS: dict[SlaTarget, tuple[str, str, str, str]] = {
    "first_response": (
        "first_response_at",
        "first_response_s",
        "first_response_work_s",
        "first_response_due",
    ),
    "resolution": ("done_at", "resolution_s", "resolution_work_s", "resolution_due"),
}


async def targets(period: Period) -> tuple[Target, Target]:
    """The first answers and the resolutions of the period, with their SLA."""
    breaches = await breaches_by_target(period)
    return (
        await _target("first_response", period, breaches),
        await _target("resolution", period, breaches),
    )


async def _target(name: SlaTarget, period: Period, breaches: dict[str, int]) -> Target:
    at, wall, work, due = TARGET_COLUMNS[name]
    row = await report_sql.target_row(at, wall, work, due, period.start, period.end)
    if row is None:
        row = await _target_row(at, wall, work, due, period)
    times = Spread(row.timed, row.median_s, row.p90_s, row.work_median_s, row.work_p90_s)
    met_share = share(row.met, row.with_due)
    return Target(
        name, times, row.with_due, row.met, met_share, breaches.get(name, 0), row.reopened
    )


async def _target_row(at: str, wall: str, work: str, due: str, period: Period) -> TargetRow:
    """The figures of ``report_sql.target_row`` counted through the ORM."""
    rows = Appeal.filter(**{f"{at}__gte": period.start, f"{at}__lt": period.end})
    pairs = await rows.filter(**{f"{wall}__isnull": False}).values_list(wall, work)
    walls = sorted(int(a) for a, _ in pairs)
    works = sorted(int(b if b is not None else a) for a, b in pairs)
    return TargetRow(
        timed=len(walls),
        median_s=percentile(walls, 0.5),
        p90_s=percentile(walls, 0.9),
        work_median_s=percentile(works, 0.5),
        work_p90_s=percentile(works, 0.9),
        with_due=await rows.filter(**{f"{due}__isnull": False}).count(),
        met=await rows.filter(**{f"{at}__lte": F(due)}).count(),
        reopened=await rows.filter(reopens__gt=0).count(),
    )


async def breaches_by_target(period: Period) -> dict[str, int]:
    """SLA breaches raised in the period, per target."""
    counted = await report_sql.breach_counts(period.start, period.end)
    if counted is not None:
        return counted
    rows = Event.filter(
        kind="sla.breached", created_at__gte=period.start, created_at__lt=period.end
    )
    return dict(Counter(_target_of(data) for data in await rows.values_list("data", flat=True)))


def _target_of(data: Any) -> str:
    return str(data.get("target", "")) if isinstance(data, dict) else ""


async def lines(rows: QuerySet[Appeal], column: str) -> list[Line]:
    """Appeals per value of ``column``, largest first; empty and NULL are ``NONE``."""
    return (await volume(rows, (column,)))[column]


VOLUME_COLUMNS = ("channel", "category", "team", "assignee_id")


async def volume(
    rows: QuerySet[Appeal], columns: tuple[str, ...] = VOLUME_COLUMNS
) -> dict[str, list[Line]]:
    """Appeals per value of each of ``columns``, counted in one grouped query; largest first,
    empty and NULL as ``NONE`` (``UNASSIGNED`` for nobody's)."""
    counts: dict[str, Counter[str]] = {c: Counter() for c in columns}
    grouped = await rows.annotate(n=Count("id")).group_by(*columns).values(*columns, "n")
    for row in grouped:
        for column in columns:
            value = row[column]
            if value in (None, ""):
                key = UNASSIGNED if column == "assignee_id" else NONE
            else:
                key = str(value)
            counts[column][key] += int(row["n"])
    out = {}
    for column, found in counts.items():
        out[column] = sorted((Line(k, k, n) for k, n in found.items()), key=_largest)
    if "assignee_id" in out:
        out["assignee_id"] = await _named(out["assignee_id"])
    return out


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


async def buckets(period: Period, zone: ZoneInfo) -> list[Bucket]:
    """Appeals opened and done per day of the period (per week beyond two months)."""
    step = 1 if period.day_count <= DAILY_BUCKETS_UP_TO else 7
    out = []
    for offset in range(0, period.day_count, step):
        first = period.first_day + timedelta(days=offset)
        start = local_midnight(first, zone)
        end = min(local_midnight(first + timedelta(days=step), zone), period.end)
        created = await Appeal.filter(created_at__gte=start, created_at__lt=end).count()
        done = await Appeal.filter(done_at__gte=start, done_at__lt=end).count()
        out.append(Bucket(start, first.isoformat(), created, done))
    return out
