"""The desk's figures for a period (seed 001 «статистика»): appeals by channel, category, team
and agent; how soon they were answered and resolved (median and 90th percentile, in business
hours and on the wall clock); SLA met; reopenings; the backlog now and its age; the ratings'
headline. Every figure is counted by the database from the report columns of ``appeal``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.expressions import F
from tortoise.functions import Count
from tortoise.queryset import QuerySet

from desk.periods import Period, local_midnight
from desk.rating_report import NONE, UNASSIGNED, RatingReport, rating_report, share
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
            "period": period_json(self.period),
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


def period_json(period: Period) -> dict[str, str]:
    """A period as every report shows it."""
    return {
        "label": period.label,
        "from": period.first_day.isoformat(),
        "to": period.last_day.isoformat(),
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
    }


def opened_in(period: Period) -> QuerySet[Appeal]:
    """Appeals opened in the period."""
    return Appeal.filter(created_at__gte=period.start, created_at__lt=period.end)


async def appeal_report(period: Period, now: datetime, zone: ZoneInfo) -> AppealReport:
    """The figures of ``period`` (days in ``zone``); the backlog is the one at ``now``."""
    opened = opened_in(period)
    answered, resolved = await targets(period)
    done = Appeal.filter(done_at__gte=period.start, done_at__lt=period.end)
    reopened = await done.filter(reopens__gt=0).count()
    return AppealReport(
        period=period,
        created=await opened.count(),
        by_channel=await lines(opened, "channel"),
        by_category=await lines(opened, "category"),
        by_team=await lines(opened, "team"),
        by_agent=await agent_lines(opened),
        first_response=answered,
        resolution=resolved,
        reopened=reopened,
        reopen_rate=share(reopened, resolved.times.count),
        backlog=await backlog(now),
        ratings=await rating_report(period),
        buckets=await buckets(period, zone),
    )


async def targets(period: Period) -> tuple[Target, Target]:
    """The first answers and the resolutions of the period, with their SLA."""
    answered = Appeal.filter(first_response_at__gte=period.start, first_response_at__lt=period.end)
    done = Appeal.filter(done_at__gte=period.start, done_at__lt=period.end)
    return (
        await _target(
            "first_response",
            period,
            answered.filter(first_response_s__isnull=False),
            ("first_response_s", "first_response_work_s"),
            answered.filter(first_response_due__isnull=False),
            answered.filter(first_response_at__lte=F("first_response_due")),
        ),
        await _target(
            "resolution",
            period,
            done.filter(resolution_s__isnull=False),
            ("resolution_s", "resolution_work_s"),
            done.filter(resolution_due__isnull=False),
            done.filter(done_at__lte=F("resolution_due")),
        ),
    )


async def _target(
    name: SlaTarget,
    period: Period,
    timed: QuerySet[Appeal],
    columns: tuple[str, str],
    with_due: QuerySet[Appeal],
    met: QuerySet[Appeal],
) -> Target:
    times = await spread(timed, *columns)
    due, kept = await with_due.count(), await met.count()
    breaches = await breaches_in(period, name)
    return Target(name, times, due, kept, share(kept, due), breaches)


async def spread(rows: QuerySet[Appeal], wall: str, work: str) -> Spread:
    """Median and 90th percentile of two duration columns over ``rows``."""
    pairs = await rows.values_list(wall, work)
    walls = sorted(int(a) for a, _ in pairs)
    works = sorted(int(b if b is not None else a) for a, b in pairs)
    return Spread(
        len(walls),
        percentile(walls, 0.5),
        percentile(walls, 0.9),
        percentile(works, 0.5),
        percentile(works, 0.9),
    )


async def breaches_in(period: Period, target: str | None = None) -> int:
    """SLA breaches raised in the period (of one target, or all)."""
    query = Event.filter(
        kind="sla.breached", created_at__gte=period.start, created_at__lt=period.end
    )
    if target is None:
        return await query.count()
    return sum(
        1 for data in await query.values_list("data", flat=True) if _target_of(data) == target
    )


def _target_of(data: Any) -> str:
    return str(data.get("target", "")) if isinstance(data, dict) else ""


async def lines(rows: QuerySet[Appeal], column: str) -> list[Line]:
    """Appeals per value of ``column``, largest first; empty and NULL are ``NONE``."""
    counts: dict[str, int] = {}
    for row in await rows.annotate(n=Count("id")).group_by(column).values(column, "n"):
        key = str(row[column]) if row[column] not in (None, "") else NONE
        counts[key] = counts.get(key, 0) + int(row["n"])
    return sorted((Line(k, k, n) for k, n in counts.items()), key=lambda x: (-x.count, x.key))


async def agent_lines(rows: QuerySet[Appeal]) -> list[Line]:
    """Appeals per assignee, largest first; ``UNASSIGNED`` for nobody."""
    grouped = await rows.annotate(n=Count("id")).group_by("assignee_id").values("assignee_id", "n")
    ids = [int(r["assignee_id"]) for r in grouped if r["assignee_id"] is not None]
    names = dict(await Agent.filter(id__in=ids).values_list("id", "name")) if ids else {}
    out = []
    for row in grouped:
        agent_id = int(row["assignee_id"]) if row["assignee_id"] is not None else None
        if agent_id is None:
            out.append(Line(UNASSIGNED, UNASSIGNED, int(row["n"])))
        else:
            name = str(names.get(agent_id) or f"#{agent_id}")
            out.append(Line(str(agent_id), name, int(row["n"]), agent_id))
    return sorted(out, key=lambda x: (-x.count, x.name, x.key))


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
