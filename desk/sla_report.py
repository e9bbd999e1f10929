"""SLA over a period (``/sla``): first answers and resolutions, their times and how often the due
time was kept, overall and per team, and the breaches raised."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.expressions import F, Q
from tortoise.functions import Count

from desk.appeal_report import Target, breaches_by_target, targets
from desk.periods import Period
from desk.rating_report import NONE, share
from models import Appeal, Event

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


async def sla_report(period: Period) -> SlaReport:
    """The SLA of first answers given and appeals done in ``period``."""
    answered = await _per_team(period, "first_response_at", "first_response_due")
    done = await _per_team(period, "done_at", "resolution_due")
    counts = [*answered, *done]
    used = {team for c in counts for team, n in c.items() if n}
    teams = sorted(used, key=lambda k: (-counts[0].get(k, 0), k))
    first, resolution = await targets(period)
    return SlaReport(
        period=period,
        first_response=first,
        resolution=resolution,
        by_team=[TeamSla(t, *(c.get(t, 0) for c in counts)) for t in teams],
        breaches=sum((await breaches_by_target(period)).values()),
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


async def _per_team(period: Period, at: str, due: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per team: appeals whose ``at`` falls in the period with a due time, and those on time."""
    on_time: dict[str, Any] = {f"{at}__lte": F(due)}
    rows = (
        await Appeal.filter(**{f"{at}__gte": period.start, f"{at}__lt": period.end})
        .annotate(with_due=Count(due), met=Count("id", _filter=Q(**on_time)))
        .group_by("team")
        .values("team", "with_due", "met")
    )
    with_due: dict[str, int] = {}
    met: dict[str, int] = {}
    for row in rows:
        key = str(row["team"]) if row["team"] not in (None, "") else NONE
        with_due[key] = with_due.get(key, 0) + int(row["with_due"] or 0)
        met[key] = met.get(key, 0) + int(row["met"] or 0)
    return with_due, met
