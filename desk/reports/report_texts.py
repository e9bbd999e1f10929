"""The desk's reports as the managers' chat reads them (Telegram HTML from ``templates/``):
``/stats``, ``/sla``, ``/top`` and the daily digest share the wording of times, shares and
names here."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from desk.config.settings import Settings, categories_of
from desk.config.texts import Texts
from desk.reports.appeal_report import AppealReport, Backlog, Line, Target
from desk.reports.periods import Period, describe
from desk.reports.rating_report import NONE, UNASSIGNED
from desk.reports.sla_report import Breach, SlaReport
from desk.reports.top_report import TopReport, Trend

TOP_LINES = 5  # lines per breakdown: the rest is «ещё N»
_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def score_text(value: float | None) -> str:
    """An average for people: 4.33, 4.3, 4.0; «—» when there is none."""
    if value is None:
        return "—"
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


def percent_text(share: float | None) -> str:
    """A share as a percentage: 0.8125 → 81.3, 0.8 → 80; «—» when there is none."""
    if share is None:
        return "—"
    return f"{share * 100:.1f}".removesuffix(".0")


class ReportTexts:
    """Renders the reports in the company's language."""

    def __init__(self, texts: Texts, settings: Settings) -> None:
        self.texts = texts
        self.lang = settings.company.language
        self.zone = ZoneInfo(settings.company.timezone)
        self.categories = {c.id: c.title.get(self.lang) or c.id for c in categories_of(settings)}
        self.teams = {t.id: t.title or t.id for t in settings.teams}

    def s(self, key: str, **values: Any) -> str:
        """A short string in the company's language."""
        return self.texts.string(key, self.lang, **values)

    def days(self, period: Period) -> str:
        """The period's days as people write them."""
        return describe(period, self.s("report.date_format"))

    def span(self, seconds: int | None) -> str:
        """A duration in its two largest units: «1 ч 20 мин», «3 д 4 ч», «45 с»; «—» for none."""
        if seconds is None:
            return "—"
        parts: list[str] = []
        left = seconds
        for unit, size in _UNITS:
            if left >= size or (unit == "second" and not parts):
                parts.append(f"{left // size} {self.s(f'stats.short.{unit}')}")
                left %= size
            if len(parts) == 2 or (parts and left == 0):
                break
        return " ".join(parts)

    def name(self, line: Line | Trend, kind: str) -> str:
        """A category's, team's or channel's title, an agent's name, «не указано» for none."""
        if line.key == UNASSIGNED:
            return self.s("report.unassigned")
        if line.key == NONE:
            return self.s("report.none")
        if kind == "category":
            return self.categories.get(line.key, line.key)
        if kind == "team":
            return self.teams.get(line.key, line.key)
        if kind == "channel":
            return self.texts.channel(line.key, self.lang)
        return line.name if isinstance(line, Line) else line.shown

    def target(self, target: Target) -> dict[str, Any]:
        """An SLA target's figures as words."""
        times = target.times
        return {
            "count": times.count,
            "median": self.span(times.median_s),
            "p90": self.span(times.p90_s),
            "work_median": self.span(times.work_median_s),
            "work_p90": self.span(times.work_p90_s),
            "met_percent": percent_text(target.met_share),
            "met": target.met,
            "with_due": target.with_due,
            "breaches": target.breaches,
        }

    def backlog(self, backlog: Backlog) -> dict[str, Any]:
        """The backlog as words."""
        statuses = ", ".join(
            f"{self.s(f'stats.status.{status}')} {n}" for status, n in backlog.by_status.items()
        )
        ages = " · ".join(f"{self.s(f'stats.age.{age}')}: {n}" for age, n in backlog.ages.items())
        return {
            "total": backlog.total,
            "statuses": statuses,
            "overdue": backlog.overdue,
            "oldest": self.span(backlog.oldest_s),
            "median_age": self.span(backlog.median_age_s),
            "ages": ages,
        }

    def stats(self, report: AppealReport) -> str:
        """``/stats``: volume, times, SLA, reopenings, backlog and ratings."""
        groups = []
        for title, kind, rows in (
            ("report.by_channel", "channel", report.by_channel),
            ("report.by_category", "category", report.by_category),
            ("report.by_team", "team", report.by_team),
            ("report.by_agent", "agent", report.by_agent),
        ):
            if rows:
                groups.append(
                    {
                        "title": self.s(title),
                        "lines": [
                            {"name": self.name(r, kind), "count": r.count} for r in rows[:TOP_LINES]
                        ],
                        "more": max(0, len(rows) - TOP_LINES),
                    }
                )
        ratings = report.ratings
        return self.texts.render(
            "telegram/stats_report.html.j2",
            self.lang,
            period=self.days(report.period),
            created=report.created,
            groups=groups,
            first=self.target(report.first_response),
            resolution=self.target(report.resolution),
            reopened=report.reopened,
            reopen_percent=percent_text(report.reopen_rate),
            backlog=self.backlog(report.backlog),
            ratings={
                "average": score_text(ratings.average),
                "count": ratings.count,
                "low": ratings.distribution[1] + ratings.distribution[2],
                "rate": percent_text(ratings.response_rate),
            },
        ).strip()

    def breaches(self, rows: list[Breach]) -> list[dict[str, str]]:
        """SLA breaches as lines: the appeal, the target, the local time."""
        return [
            {
                "number": b.number,
                "target": self.s(f"sla.{b.target}") if b.target else "",
                "at": b.at.astimezone(self.zone).strftime("%d.%m %H:%M"),
            }
            for b in rows
        ]

    def sla(self, report: SlaReport) -> str:
        """``/sla``: the targets, per team, the latest breaches."""
        teams = [
            {
                "name": self.teams.get(t.key, t.key) if t.key != NONE else self.s("report.none"),
                "first": percent_text(t.to_json()["first_response"]["met_share"]),
                "answered": t.answered,
                "done_share": percent_text(t.to_json()["resolution"]["met_share"]),
                "done": t.done,
            }
            for t in report.by_team[: TOP_LINES * 2]
        ]
        return self.texts.render(
            "telegram/sla_report.html.j2",
            self.lang,
            period=self.days(report.period),
            first=self.target(report.first_response),
            resolution=self.target(report.resolution),
            teams=teams,
            breaches=self.breaches(report.latest_breaches),
            breach_count=report.breaches,
        ).strip()

    def change(self, trend: Trend) -> str:
        """+25%, −10%, «новое» when there was nothing before."""
        if trend.change is None:
            return self.s("stats.new_phrase") if trend.count else "0%"
        value = round(trend.change * 100)
        return f"+{value}%" if value > 0 else f"−{-value}%" if value < 0 else "0%"

    def top(self, report: TopReport) -> str:
        """``/top``: the most frequent categories and their phrases, against the period before."""
        categories = [
            {
                "name": self.name(c.category, "category"),
                "count": c.category.count,
                "previous": c.category.previous,
                "change": self.change(c.category),
                "phrases": [
                    {
                        "shown": p.shown,
                        "count": p.count,
                        "previous": p.previous,
                        "change": self.change(p),
                    }
                    for p in c.phrases
                ],
            }
            for c in report.categories
        ]
        return self.texts.render(
            "telegram/top_report.html.j2",
            self.lang,
            period=self.days(report.period),
            days=report.period.day_count,
            categories=categories,
        ).strip()
