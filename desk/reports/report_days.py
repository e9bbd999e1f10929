"""The reports' figures by day. A finished day (in the company's time zone) is counted once into
``report_day`` rows, and a period adds its days up; today (and any later day of the period) is
counted live by the same function, so a day shows the same figures before and after midnight.

Each figure belongs to the day its own moment falls on, as the live report has always counted:
an appeal is opened on the day of ``created_at``, answered on the day of ``first_response_at``,
done on the day of ``done_at`` (so one opened on Monday and resolved on Friday counts among
Friday's resolutions, with its whole duration), and an SLA breach on the day it was raised.

A counted day changes only when something late changes what it counted: an appeal done that
day is reopened (it leaves the day), an appeal of the day gets another category, team or owner,
or a due time moves so that a target counts as met or missed otherwise. Those changes mark the
day (``ReportStale``, in the change's transaction); a marked day is counted again before a
report reads it, and by the nightly job."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError
from tortoise.functions import Count, Sum
from tortoise.transactions import in_transaction

from desk.appeals.event_types import AppealAssigned, AppealCategorised, AppealTransferred
from desk.reports.durations import Durations
from desk.reports.periods import Period, local_midnight, today_in
from desk.reports.rating_report import NONE, UNASSIGNED, as_date
from models import Appeal, Event, ReportDay, ReportStale

log = logging.getLogger(__name__)

ALL = "all"
# line kind: the appeal column it counts by
DIMENSIONS = {"channel": "channel", "category": "category", "team": "team", "agent": "assignee_id"}
TARGETS = ("first_response", "resolution")
CLOCKS = ("wall", "business")
# target: (its moment, wall seconds, business seconds, due time)
TARGET_COLUMNS = {
    "first_response": (
        "first_response_at",
        "first_response_s",
        "first_response_work_s",
        "first_response_due",
    ),
    "resolution": ("done_at", "resolution_s", "resolution_work_s", "resolution_due"),
}
# The events that may move an appeal to another category, team or owner: a finished day that
# counted it is counted again. Nothing else changes what a finished day counted: messages,
# ratings, deliveries, SLA alerts, tasks, orders and customers' own changes are of today; a
# status change or a new priority can only move a due time (``due_flags`` tells when that
# matters); an appeal is created today.
LINE_CHANGES = (AppealAssigned, AppealTransferred, AppealCategorised)


@dataclass(slots=True)
class Counts:
    """The counted figures of one line over some days."""

    created: int = 0
    answered: int = 0
    answered_due: int = 0
    answered_met: int = 0
    done: int = 0
    done_due: int = 0
    done_met: int = 0
    reopened: int = 0

    def add(self, other: Counts) -> None:
        """Count ``other``'s figures too."""
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


COUNTS = tuple(f.name for f in fields(Counts))


@dataclass(slots=True)
class Figures:
    """What the reports need of some span of time: counts per line (``(ALL, "")`` for the
    whole desk), the durations of each target on each clock, the SLA breaches raised per
    target, and appeals opened and done per day."""

    lines: dict[tuple[str, str], Counts] = field(default_factory=dict)
    times: dict[str, Durations] = field(default_factory=dict)
    breaches: Counter[str] = field(default_factory=Counter)
    daily: dict[date, tuple[int, int]] = field(default_factory=dict)

    def line(self, kind: str, key: str = "") -> Counts:
        """The counts of one line (zeros when it has none)."""
        return self.lines.setdefault((kind, key), Counts())

    @property
    def total(self) -> Counts:
        """The counts of the whole desk."""
        return self.line(ALL)

    def durations(self, target: str, clock: str) -> Durations:
        """How long ``target`` took on ``clock`` (``wall`` or ``business``)."""
        return self.times.setdefault(f"{target}.{clock}", Durations())

    def of(self, kind: str) -> dict[str, Counts]:
        """The lines of one kind (``channel``, ``category``, ``team``, ``agent``) by key."""
        return {key: counts for (k, key), counts in self.lines.items() if k == kind}

    def add(self, other: Figures) -> None:
        """Count ``other``'s figures too."""
        for (kind, key), counts in other.lines.items():
            self.line(kind, key).add(counts)
        for name, durations in other.times.items():
            self.times.setdefault(name, Durations()).add(durations)
        self.breaches.update(other.breaches)
        for day, (created, done) in other.daily.items():
            before = self.daily.get(day, (0, 0))
            self.daily[day] = (before[0] + created, before[1] + done)

    def rows(self, day: date, zone: str) -> list[ReportDay]:
        """The ``report_day`` rows of a day counted as these figures."""
        total = self.total
        out = [
            ReportDay(
                day=day,
                kind=ALL,
                key="",
                zone=zone,
                figures={
                    "times": {name: d.to_json() for name, d in sorted(self.times.items())},
                    "breaches": dict(sorted(self.breaches.items())),
                },
                **{name: getattr(total, name) for name in COUNTS},
            )
        ]
        for (kind, key), counts in sorted(self.lines.items()):
            if kind != ALL:
                out.append(
                    ReportDay(
                        day=day, kind=kind, key=key, **{n: getattr(counts, n) for n in COUNTS}
                    )
                )
        return out


def line_key(kind: str, value: Any) -> str:
    """The key of a column value as the reports show it: ``none`` for no channel, category
    or team, ``unassigned`` for nobody's appeal."""
    if value in (None, ""):
        return UNASSIGNED if kind == "agent" else NONE
    return str(value)


async def count_span(start: datetime, end: datetime, day: date) -> Figures:
    """The figures of ``[start, end)`` straight from the appeals and the breach events; its
    opened and done appeals are filed under ``day``."""
    figures = Figures()
    columns = tuple(DIMENSIONS.values())
    opened = (
        await Appeal.filter(created_at__gte=start, created_at__lt=end)
        .annotate(n=Count("id"))
        .group_by(*columns)
        .values(*columns, "n")
    )
    for row in opened:
        for counts in _lines_of(figures, row):
            counts.created += int(row["n"])
    for target in TARGETS:
        await _count_target(figures, target, start, end)
    breaches = Event.filter(kind="sla.breached", created_at__gte=start, created_at__lt=end)
    for data in await breaches.values_list("data", flat=True):
        figures.breaches[str(data.get("target", "")) if isinstance(data, dict) else ""] += 1
    total = figures.total
    figures.daily[day] = (total.created, total.done)
    return figures


async def _count_target(figures: Figures, target: str, start: datetime, end: datetime) -> None:
    """First answers (or resolutions) whose moment falls in ``[start, end)``: per line how many,
    how many had a due time and kept it (and, done, had been reopened); their durations."""
    at, wall, work, due = TARGET_COLUMNS[target]
    columns = tuple(DIMENSIONS.values())
    rows = await Appeal.filter(**{f"{at}__gte": start, f"{at}__lt": end}).values(
        *columns, at, wall, work, due, "reopens"
    )
    walls: list[int] = []
    works: list[int] = []
    for row in rows:
        has_due = row[due] is not None
        met = has_due and row[at] <= row[due]
        reopened = bool(row["reopens"])
        for counts in _lines_of(figures, row):
            if target == "first_response":
                counts.answered += 1
                counts.answered_due += has_due
                counts.answered_met += met
            else:
                counts.done += 1
                counts.done_due += has_due
                counts.done_met += met
                counts.reopened += reopened
        if row[wall] is not None:
            walls.append(int(row[wall]))
            works.append(int(row[work] if row[work] is not None else row[wall]))
    figures.durations(target, "wall").add(Durations.of(walls))
    figures.durations(target, "business").add(Durations.of(works))


def _lines_of(figures: Figures, row: dict[str, Any]) -> list[Counts]:
    """The lines an appeal's row counts in: the whole desk and one of each kind."""
    return [figures.total] + [
        figures.line(kind, line_key(kind, row[column])) for kind, column in DIMENSIONS.items()
    ]


async def roll_up(day: date, zone: ZoneInfo) -> bool:
    """Count a finished day into ``report_day`` (again, when it was marked); False when another
    process counted it at the same time."""
    marks = list(await ReportStale.filter(day=day).values_list("id", flat=True))
    start, end = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
    rows = (await count_span(start, end, day)).rows(day, zone.key)
    try:
        async with in_transaction():
            await ReportDay.filter(day=day).delete()
            await ReportDay.bulk_create(rows)
            if marks:  # only the marks read before counting: a later one still stands
                await ReportStale.filter(id__in=marks).delete()
    except IntegrityError:
        return False
    return True


async def bring_up_to_date(first: date, last: date, zone: ZoneInfo) -> int:
    """Count every day of ``first``..``last`` not counted yet (from the desk's first appeal
    on), marked since, or counted in another time zone; returns how many were counted."""
    if last < first:
        return 0
    counted = dict(
        await ReportDay.filter(kind=ALL, day__gte=first, day__lte=last).values_list("day", "zone")
    )
    marks = ReportStale.filter(day__gte=first, day__lte=last)
    marked = set(await marks.values_list("day", flat=True))
    wanted = [d for d in _days(first, last) if counted.get(d) != zone.key or d in marked]
    if not wanted:
        return 0
    opened = await first_day(zone)
    rolled = 0
    for day in wanted:
        if opened is not None and day >= opened:
            rolled += await roll_up(day, zone)
    return rolled


async def first_day(zone: ZoneInfo) -> date | None:
    """The day the desk's first appeal was opened (None before any): no day before it is
    counted or stored."""
    first = Appeal.all().order_by("created_at").limit(1)
    moments: list[Any] = list(await first.values_list("created_at", flat=True))
    return moments[0].astimezone(zone).date() if moments else None


async def catch_up(today: date, zone: ZoneInfo) -> int:
    """The nightly job: count yesterday, any day missed and every day marked since."""
    opened = await first_day(zone)
    if opened is None:
        return 0
    counted = await bring_up_to_date(opened, today - timedelta(days=1), zone)
    log.info("report days counted", extra={"days": counted})
    return counted


async def period_figures(
    period: Period, zone: ZoneInfo, today: date, *, durations: bool = True
) -> Figures:
    """The figures of ``period``: its finished days (before ``today``) from ``report_day``,
    counted first where missing or marked; today and any later day live. Without
    ``durations`` the finished days' durations and breaches are not read (counts only)."""
    figures = Figures()
    last_finished = min(period.last_day, today - timedelta(days=1))
    if period.first_day <= last_finished:
        await bring_up_to_date(period.first_day, last_finished, zone)
        figures.add(await read_days(period.first_day, last_finished, durations=durations))
    live_from = max(period.first_day, today)
    start = max(period.start, local_midnight(live_from, zone))
    if start < period.end:
        figures.add(await count_span(start, period.end, live_from))
    return figures


async def read_days(first: date, last: date, *, durations: bool = True) -> Figures:
    """The figures stored for ``first``..``last``, added up by the database (durations and
    breaches in Python, from the days' ``all`` rows, unless not wanted)."""
    figures = Figures()
    sums = {name: Sum(name) for name in COUNTS}
    grouped = (
        await ReportDay.filter(day__gte=first, day__lte=last)
        .annotate(**{f"sum_{name}": total for name, total in sums.items()})
        .group_by("kind", "key")
        .values("kind", "key", *(f"sum_{name}" for name in COUNTS))
    )
    for row in grouped:
        counts = figures.line(str(row["kind"]), str(row["key"]))
        for name in COUNTS:
            setattr(counts, name, int(row[f"sum_{name}"] or 0))
    columns = ("day", "created", "done", "figures") if durations else ("day", "created", "done")
    days = await ReportDay.filter(kind=ALL, day__gte=first, day__lte=last).values(*columns)
    times: dict[str, Counter[str]] = {}  # added up as stored, read as buckets once at the end
    for row in days:
        figures.daily[as_date(row["day"])] = (int(row["created"]), int(row["done"]))
        stored = row.get("figures") or {}
        for name, counts in (stored.get("times") or {}).items():
            times.setdefault(name, Counter()).update(counts)
        figures.breaches.update(stored.get("breaches") or {})
    figures.times = {name: Durations.from_json(counts) for name, counts in times.items()}
    return figures


# -- marking changed days ----------------------------------------------------------------------


def due_flags(appeal: Appeal) -> tuple[tuple[bool, bool], tuple[bool, bool]]:
    """Per target (first answer, resolution): whether it had a due time and kept it — what a
    moved due time can change of a day already counted."""
    out = []
    for target in TARGETS:
        at, _, _, due = TARGET_COLUMNS[target]
        moment, deadline = getattr(appeal, at), getattr(appeal, due)
        out.append((deadline is not None, bool(moment and deadline and moment <= deadline)))
    return out[0], out[1]


async def mark_stale(moments: Iterable[datetime | None], zone: ZoneInfo, now: datetime) -> None:
    """The finished days of these moments are to be counted again (call inside the change's
    transaction, so the mark stands or falls with it)."""
    today = today_in(now, zone)
    days = sorted({m.astimezone(zone).date() for m in moments if m is not None})
    for day in days:
        if day < today:
            await ReportStale.create(day=day)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
