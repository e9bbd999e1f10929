"""The figures reports read from an appeal, written the moment they happen: how long the first
answer and the resolution took (wall and business seconds), when the appeal was done and how
often it was reopened. A report then counts columns instead of replaying history. A late change
to what a finished day counted (a reopening, another category, team or owner) marks that day to
be counted again (``desk.reports.report_days``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from tortoise.expressions import F

from desk.appeals.event_types import (
    AppealAssigned,
    AppealCategorised,
    AppealReopened,
    AppealTransferred,
    DomainEvent,
    MessageSent,
    StatusChanged,
)
from desk.reports.report_days import LINE_CHANGES, mark_stale
from models import Appeal, AppealStatus
from router.sla import Calendar, working_minutes_between

DONE = frozenset({AppealStatus.RESOLVED.value, AppealStatus.CLOSED.value})


def spans(start: datetime, end: datetime, calendar: Calendar) -> tuple[int, int]:
    """Whole seconds from ``start`` to ``end``: on the wall clock and in business hours."""
    wall = max(0, int((end - start).total_seconds()))
    work = int(working_minutes_between(start, end, calendar) * 60)
    return wall, work


class ReportFacts:
    """Keeps an appeal's report columns right as its events happen (inside their transaction)."""

    KINDS = (MessageSent, StatusChanged, AppealReopened, *LINE_CHANGES)  # what it listens to

    def __init__(self, calendar: Calendar, zone: ZoneInfo, clock: Callable[[], datetime]) -> None:
        self._calendar = calendar
        self._zone = zone
        self._clock = clock

    async def on_batch(self, events: Sequence[DomainEvent]) -> None:
        """The first answers, resolutions or closings, reopenings; other categories, teams or
        owners: the last of the batch's subscribers."""
        for event in events:
            await self._one(event)

    async def _one(self, event: DomainEvent) -> None:
        appeal = event.appeal
        if appeal is None or appeal.created_at is None:
            return
        match event:
            case MessageSent():
                await self._answered(appeal)
            case StatusChanged(after=after) if after in DONE:
                await self._done(appeal)
            case AppealReopened():
                await self._reopened(appeal)
            case AppealAssigned() | AppealTransferred() | AppealCategorised():  # LINE_CHANGES
                moments = (appeal.created_at, appeal.first_response_at, appeal.done_at)
                await mark_stale(moments, self._zone, self._clock())

    async def _answered(self, appeal: Appeal) -> None:
        if appeal.first_response_at is None or appeal.first_response_s is not None:
            return
        wall, work = spans(appeal.created_at, appeal.first_response_at, self._calendar)
        appeal.first_response_s, appeal.first_response_work_s = wall, work
        await Appeal.filter(id=appeal.id).update(first_response_s=wall, first_response_work_s=work)

    async def _done(self, appeal: Appeal) -> None:
        done_at = appeal.resolved_at or appeal.closed_at
        if done_at is None or appeal.done_at is not None:
            return  # resolved, then closed: it was done when it was resolved
        wall, work = spans(appeal.created_at, done_at, self._calendar)
        appeal.done_at, appeal.resolution_s, appeal.resolution_work_s = done_at, wall, work
        await Appeal.filter(id=appeal.id).update(
            done_at=done_at, resolution_s=wall, resolution_work_s=work
        )

    async def _reopened(self, appeal: Appeal) -> None:
        await mark_stale((appeal.done_at,), self._zone, self._clock())  # it leaves that day
        await Appeal.filter(id=appeal.id).update(
            reopens=F("reopens") + 1, done_at=None, resolution_s=None, resolution_work_s=None
        )
        appeal.reopens = (appeal.reopens or 0) + 1
        appeal.done_at = appeal.resolution_s = appeal.resolution_work_s = None
