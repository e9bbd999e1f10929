"""SLA over a period (``/sla``): first answers and resolutions, their times and how often the due
time was kept, overall and per team, and the breaches raised."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from desk.reports.appeal_report import Target, targets_of
from desk.reports.periods import Period
from desk.reports.rating_report import share
from desk.reports.report_days import period_figures
from models import Event

BREACHES_SHOWN = 10


@dataclass(frozen=True, slots=True)
class TeamSla:
    """How often one team kept the due times of the period."""

    key: str
    answered: int
    answered_met: int
    done: int
    done_met: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "key": self.key,
            "first_response": {
                "with_due": self.answered,
                "met": self.answered_met,
                "met_share": share(self.answered_met, self.answered),
            },
            "resolution": {
                "with_due": self.done,
                "met": self.done_met,
                "met_share": share(self.done_met, self.done),
            },
        }


@dataclass(frozen=True, slots=True)
class Breach:
    """One SLA breach alert: which appeal, which target, when."""

    number: str
    target: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"number": self.number, "target": self.target, "at": self.at.isoformat()}


@dataclass(frozen=True, slots=True)
class SlaReport:
    """The SLA figures of a period."""

    period: Period
    first_response: Target
    resolution: Target
    by_team: list[TeamSla]
    breaches: int
    latest_breaches: list[Breach]

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        return {
            "period": self.period.to_json(),
            "first_response": self.first_response.to_json(),
            "resolution": self.resolution.to_json(),
            "by_team": [t.to_json() for t in self.by_team],
            "breaches": self.breaches,
            "latest_breaches": [b.to_json() for b in self.latest_breaches],
        }


async def sla_report(period: Period, zone: ZoneInfo, today: date) -> SlaReport:
    """The SLA of first answers given and appeals done in ``period`` (days in ``zone``)."""
    figures = await period_figures(period, zone, today)
    first, resolution = targets_of(figures)
    teams = [
        TeamSla(key, c.answered_due, c.answered_met, c.done_due, c.done_met)
        for key, c in figures.of("team").items()
        if c.answered_due or c.done_due
    ]
    return SlaReport(
        period=period,
        first_response=first,
        resolution=resolution,
        by_team=sorted(teams, key=lambda t: (-t.answered, t.key)),
        breaches=sum(figures.breaches.values()),
        latest_breaches=await latest_breaches(period),
    )


async def latest_breaches(period: Period, limit: int = BREACHES_SHOWN) -> list[Breach]:
    """The last SLA breaches raised in the period, newest first."""
    rows = (
        await Event.filter(
            kind="sla.breached", created_at__gte=period.start, created_at__lt=period.end
        )
        .order_by("-id")
        .limit(limit)
        .values("appeal__number", "data", "created_at")
    )
    return [
        Breach(
            str(row["appeal__number"] or ""),
            str((row["data"] or {}).get("target", "")),
            row["created_at"],
        )
        for row in rows
    ]
