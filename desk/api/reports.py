"""The reports API: the ratings of a period (seed 004's «средняя оценка за период») as JSON,
as a CSV of its days, and as a PNG chart."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from desk.api.errors import ApiError, json_response
from desk.api.operation import Operation, QueryParam, ctx_of
from desk.config.settings import Settings, category_titles
from desk.reports.charts import rating_chart
from desk.reports.periods import (
    BadPeriod,
    Period,
    describe,
    parse_date,
    parse_period,
    period_of_days,
    today_in,
)
from desk.reports.rating_report import RatingReport, rating_report

T = TypeVar("T")
NO_STORE = {"Cache-Control": "no-store"}
PERIOD_PARAMS = (
    QueryParam(
        "period",
        {"type": "string", "maxLength": 100, "default": "week"},
        "today, yesterday, week (7 days), month (30 days), a date (2026-11-05 or 05.11.2026) "
        "or a range (2026-11-01..2026-11-15); Russian words work too",
    ),
    QueryParam("from", {"type": "string", "format": "date"}, "first day, instead of period"),
    QueryParam("to", {"type": "string", "format": "date"}, "last day (default: today)"),
)


class PeriodOut(BaseModel):
    """The days a report covers (``from``..``to`` in the company's time zone) and the same
    span as UTC instants ``[start, end)``."""

    model_config = ConfigDict(populate_by_name=True)

    label: str
    from_: str = Field(alias="from")
    to: str
    start: str
    end: str


class RequestsOut(BaseModel):
    """Rating requests sent in the period and how many of them were answered."""

    sent: int
    answered: int
    response_rate: float | None


class BreakdownOut(BaseModel):
    """The ratings of one agent, category, team or channel."""

    key: str
    name: str
    count: int
    average: float | None
    agent_id: int | None = None


class DayOut(BaseModel):
    """The ratings of one day."""

    day: str
    count: int
    average: float | None


class RatingReportOut(BaseModel):
    """The ratings of a period: totals, scores 1-5, response rate, breakdowns and days."""

    period: PeriodOut
    count: int
    average: float | None
    distribution: dict[str, int]
    requests: RequestsOut
    by_agent: list[BreakdownOut]
    by_category: list[BreakdownOut]
    by_team: list[BreakdownOut]
    by_channel: list[BreakdownOut]
    daily: list[DayOut]


def period_of(request: web.Request) -> Period:
    """The period of ``?period=`` or ``?from=&to=`` in the company's time zone; a bad one is
    a 400 that says what is accepted."""
    ctx = ctx_of(request)
    zone = ZoneInfo(ctx.settings.company.timezone)
    now = ctx.clock()
    text = request.query.get("period", "")
    first, last = request.query.get("from", ""), request.query.get("to", "")
    if "from" not in request.query and "to" not in request.query:
        return _checked("period", lambda: parse_period(text, now, zone))
    if text:
        message = "give either period or from/to, not both"
        raise ApiError(400, "bad_request", message, [{"field": "period", "message": message}])
    if not first:
        message = "from is missing: ?from=2026-11-01&to=2026-11-15"
        raise ApiError(400, "bad_request", message, [{"field": "from", "message": message}])
    start = _checked("from", lambda: parse_date(first))
    end = _checked("to", lambda: parse_date(last)) if "to" in request.query else today_in(now, zone)
    return _checked("to", lambda: period_of_days(start, end, zone))


def _checked(field: str, parse: Callable[[], T]) -> T:
    """``parse()``; a BadPeriod becomes a 400 naming the query parameter."""
    try:
        return parse()
    except BadPeriod as exc:
        raise ApiError(
            400, "bad_request", str(exc), [{"field": field, "message": str(exc)}]
        ) from None


def format_of(request: web.Request) -> str:
    """``?format=``: json (the default) or csv; anything else is a 400."""
    kind = request.query.get("format", "json")
    if kind not in ("json", "csv"):
        raise ApiError(400, "bad_request", f"unknown format '{kind[:20]}': use json or csv")
    return kind


def csv_response(text: str, name: str, period: Period) -> web.Response:
    """A CSV download named for the report and its days."""
    filename = f"{name}-{period.first_day.isoformat()}-{period.last_day.isoformat()}.csv"
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{filename}"'},
    )


def daily_csv(report: RatingReport) -> str:
    """The report's days as CSV: ``day,count,average`` (average empty on a day without)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["day", "count", "average"])
    for day in report.daily:
        average = "" if day.average is None else f"{day.average:.2f}"
        writer.writerow([day.day.isoformat(), day.count, average])
    return out.getvalue()


class Report(Protocol):
    """What every report can do: show itself as plain JSON types."""

    def to_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Report)


async def report_response(
    request: web.Request,
    name: str,
    build: Callable[[Period], Awaitable[R]],
    csv_of: Callable[[R], str],
    shape: type[BaseModel],
) -> web.Response:
    """A report of the request's period as JSON (checked against the documented ``shape``),
    or as the CSV download ``name-<from>-<to>.csv`` with ``?format=csv``."""
    period, kind = period_of(request), format_of(request)
    report = await build(period)
    if kind == "csv":
        return csv_response(csv_of(report), name, period)
    body = named(report.to_json(), ctx_of(request).settings)
    shape.model_validate(body)  # the document promises this shape
    return json_response(body, headers=NO_STORE)


def named(body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A report's category and team lines with their titles (in the company's language)
    beside their ids: ``name`` of the ``by_category`` and ``by_team`` lines, ``shown`` of
    the top categories."""
    lang = settings.company.language
    titles = {
        "by_category": category_titles(settings, lang),
        "by_team": {t.id: t.title or t.id for t in settings.teams},
    }
    for section, names in titles.items():
        for line in body.get(section, []):
            line["name"] = names.get(line["key"], line.get("name", line["key"]))
    for line in body.get("categories", []):
        line["shown"] = titles["by_category"].get(line["key"], line["shown"])
    return body


async def ratings_report(request: web.Request) -> web.Response:
    """The ratings of the period as JSON, or its days as CSV with ``?format=csv``."""
    return await report_response(request, "ratings", rating_report, daily_csv, RatingReportOut)


async def ratings_chart(request: web.Request) -> web.Response:
    """The period's ratings per day and average score as a PNG."""
    ctx = ctx_of(request)
    period = period_of(request)
    lang = request.query.get("lang", ctx.settings.company.language)
    if lang not in ("ru", "en"):
        raise ApiError(400, "bad_request", "lang must be ru or en")
    report = await rating_report(period)
    date_format = ctx.texts.string("report.date_format", lang)
    title = ctx.texts.string("report.chart.title", lang, period=describe(period, date_format))
    png = await asyncio.to_thread(rating_chart, report, lang, title, texts=ctx.texts)
    return web.Response(body=png, content_type="image/png", headers=NO_STORE)


OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/reports/ratings",
        ratings_report,
        "Ratings of a period: average, scores, response rate, by agent/category/team/channel/day",
        response=RatingReportOut,
        errors=(400, 401),
        media=("text/csv",),
        query=(
            *PERIOD_PARAMS,
            QueryParam(
                "format", {"type": "string", "enum": ["json", "csv"]}, "csv: the days as CSV"
            ),
        ),
    ),
    Operation(
        "GET",
        "/api/v1/reports/ratings/chart.png",
        ratings_chart,
        "Ratings of a period as a PNG chart: ratings per day and the day's average score",
        errors=(400, 401),
        media=("image/png",),
        query=(
            *PERIOD_PARAMS,
            QueryParam("lang", {"type": "string", "enum": ["ru", "en"]}, "labels' language"),
        ),
    ),
]
