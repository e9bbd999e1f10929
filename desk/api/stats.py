"""The desk's reports in the API: ``/reports/appeals`` (volume, times, SLA, reopenings, backlog,
ratings), ``/reports/sla`` and ``/reports/top`` (categories and customers' phrases), as JSON or
as CSV with ``?format=csv``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, Field

from desk.api.operation import Operation, QueryParam, ctx_of
from desk.api.reports import PERIOD_PARAMS, PeriodOut, report_response
from desk.reports.appeal_report import AppealReport, appeal_report
from desk.reports.periods import Period, today_in
from desk.reports.sla_report import SlaReport, sla_report
from desk.reports.top_report import TopReport, top_report

_FORMAT = QueryParam("format", {"type": "string", "enum": ["json", "csv"]}, "csv: as a table")


class SpreadOut(BaseModel):
    """Durations in seconds: median and 90th percentile, wall clock and business hours."""

    count: int
    median_s: int | None
    p90_s: int | None
    business_median_s: int | None
    business_p90_s: int | None


class TargetOut(SpreadOut):
    """An SLA target: its times, how many had a due time, how many kept it, breaches raised."""

    with_due: int
    met: int
    met_share: float | None
    breaches: int


class LineOut(BaseModel):
    """Appeals of one channel, category, team or agent."""

    key: str
    name: str
    count: int
    agent_id: int | None = None


class BacklogOut(BaseModel):
    """Appeals open now: by status, overdue, ages (seconds) and age groups."""

    at: str
    total: int
    by_status: dict[str, int]
    overdue: int
    oldest_s: int | None
    median_age_s: int | None
    ages: dict[str, int]


class RatingsOut(BaseModel):
    """The headline of the rating report of the same period."""

    count: int
    average: float | None
    low: int
    response_rate: float | None


class DayVolumeOut(BaseModel):
    """Appeals opened and done in a day (a week for periods over two months)."""

    day: str
    created: int
    done: int


class AppealReportOut(BaseModel):
    """The desk's figures of a period."""

    period: PeriodOut
    created: int
    by_channel: list[LineOut]
    by_category: list[LineOut]
    by_team: list[LineOut]
    by_agent: list[LineOut]
    first_response: TargetOut
    resolution: TargetOut
    reopened: int
    reopen_rate: float | None
    backlog: BacklogOut
    ratings: RatingsOut
    daily: list[DayVolumeOut]


class TeamTargetOut(BaseModel):
    """One target of one team."""

    with_due: int
    met: int
    met_share: float | None


class TeamSlaOut(BaseModel):
    """How often a team kept its due times."""

    key: str
    name: str = Field(description="the team's title")
    first_response: TeamTargetOut
    resolution: TeamTargetOut


class BreachOut(BaseModel):
    """One SLA breach."""

    number: str
    target: str
    at: str


class SlaReportOut(BaseModel):
    """The SLA of a period."""

    period: PeriodOut
    first_response: TargetOut
    resolution: TargetOut
    by_team: list[TeamSlaOut]
    breaches: int
    latest_breaches: list[BreachOut]


class TrendOut(BaseModel):
    """A count now and in the period before; ``change`` as a share (None from zero)."""

    key: str
    shown: str
    count: int
    previous: int
    change: float | None


class TopCategoryOut(TrendOut):
    """A frequent category and the phrases customers used most in it."""

    phrases: list[TrendOut]


class TopReportOut(BaseModel):
    """The most frequent categories of a period and their phrases."""

    period: PeriodOut
    previous: PeriodOut
    categories: list[TopCategoryOut]


def table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """Rows as CSV (``None`` as an empty cell)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def appeals_csv(report: AppealReport) -> str:
    """Every figure as a row: ``section,key,value``."""
    body = report.to_json()
    rows: list[tuple[str, str, Any]] = [("appeals", "created", report.created)]
    for section in ("by_channel", "by_category", "by_team", "by_agent"):
        rows += [
            (section.removeprefix("by_"), line["name"], line["count"]) for line in body[section]
        ]
    for section in ("first_response", "resolution", "backlog", "ratings"):
        rows += [
            (section, key, value)
            for key, value in body[section].items()
            if not isinstance(value, dict)
        ]
    rows += [("backlog_status", k, v) for k, v in report.backlog.by_status.items()]
    rows += [("backlog_age", k, v) for k, v in report.backlog.ages.items()]
    rows += [("reopen", "reopened", report.reopened), ("reopen", "rate", report.reopen_rate)]
    rows += [("created_on", b.label, b.created) for b in report.buckets]
    rows += [("done_on", b.label, b.done) for b in report.buckets]
    return table(["section", "key", "value"], rows)


def sla_csv(report: SlaReport) -> str:
    """One row for the whole desk, then one per team."""
    first, done = report.first_response, report.resolution
    rows = [
        ["all", first.with_due, first.met, first.met_share, done.with_due, done.met, done.met_share]
    ]
    for team in report.by_team:
        data = team.to_json()
        rows.append(
            [team.key]
            + [data["first_response"][k] for k in ("with_due", "met", "met_share")]
            + [data["resolution"][k] for k in ("with_due", "met", "met_share")]
        )
    header = [
        "team",
        "first_response_with_due",
        "first_response_met",
        "first_response_met_share",
        "resolution_with_due",
        "resolution_met",
        "resolution_met_share",
    ]
    return table(header, rows)


def top_csv(report: TopReport) -> str:
    """A row per category (phrase empty) and per phrase of it."""
    rows: list[list[Any]] = []
    for item in report.categories:
        c = item.category
        rows.append([c.key, c.count, c.previous, "", "", None, None])
        rows += [
            [c.key, c.count, c.previous, p.key, p.shown, p.count, p.previous] for p in item.phrases
        ]
    header = [
        "category",
        "appeals",
        "previous",
        "phrase",
        "shown",
        "phrase_appeals",
        "phrase_previous",
    ]
    return table(header, rows)


async def appeals(request: web.Request) -> web.Response:
    """The desk's figures of the period."""
    ctx = ctx_of(request)
    zone = ZoneInfo(ctx.settings.company.timezone)

    async def build(period: Period) -> AppealReport:
        return await appeal_report(period, ctx.clock(), zone)

    return await report_response(request, "appeals", build, appeals_csv, AppealReportOut)


async def sla(request: web.Request) -> web.Response:
    """The SLA of the period."""
    ctx = ctx_of(request)
    zone = ZoneInfo(ctx.settings.company.timezone)

    async def build(period: Period) -> SlaReport:
        return await sla_report(period, zone, today_in(ctx.clock(), zone))

    return await report_response(request, "sla", build, sla_csv, SlaReportOut)


async def top(request: web.Request) -> web.Response:
    """The most frequent categories and phrases of the period."""
    ctx = ctx_of(request)
    zone = ZoneInfo(ctx.settings.company.timezone)

    async def build(period: Period) -> TopReport:
        return await top_report(period, zone, today_in(ctx.clock(), zone))

    return await report_response(request, "top", build, top_csv, TopReportOut)


OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/reports/appeals",
        appeals,
        "Appeals of a period: by channel/category/team/agent, first response and resolution "
        "times (median, p90; wall and business hours), SLA met, reopen rate, backlog, ratings",
        response=AppealReportOut,
        errors=(400, 401),
        media=("text/csv",),
        query=(*PERIOD_PARAMS, _FORMAT),
    ),
    Operation(
        "GET",
        "/api/v1/reports/sla",
        sla,
        "SLA of a period: first responses and resolutions on time, by team, breaches",
        response=SlaReportOut,
        errors=(400, 401),
        media=("text/csv",),
        query=(*PERIOD_PARAMS, _FORMAT),
    ),
    Operation(
        "GET",
        "/api/v1/reports/top",
        top,
        "What customers come about: the most frequent categories of a period and the phrases "
        "customers use most in them, against the period before",
        response=TopReportOut,
        errors=(400, 401),
        media=("text/csv",),
        query=(*PERIOD_PARAMS, _FORMAT),
    ),
]
