"""Finished days counted once into ``report_day``: a report reads them instead of the appeals,
today stays live; a late change (a reopening, a new owner, a due time that turns a target
missed) marks its day and the day is counted again, other days are left alone; the nightly job
counts what was missed, once even when two desks run it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from desk.reports.appeal_report import appeal_report
from desk.reports.digest import report_jobs
from desk.reports.periods import parse_period
from desk.reports.report_days import catch_up
from desk.reports.sla_report import sla_report
from models import Appeal, Priority, ReportDay, ReportStale
from tests.conftest import Desk
from tests.desk.test_reports import (
    MONDAY,
    MOSCOW,
    NOW,
    QUIET,
    Traffic,
    check_against_replay,
    hand_week,
    msk,
)
from tests.telegram_world import MovableClock

TODAY = date(2026, 11, 15)
AGENTS = [{"name": "Ирина", "telegram_id": 1001}, {"name": "Олег", "telegram_id": 1002}]


async def counted_days() -> dict[date, int]:
    """The ``all`` row of every counted day: its id (a new id means counted again)."""
    rows = await ReportDay.filter(kind="all").values_list("day", "id")
    return {day: int(row_id) for day, row_id in rows}


async def a_week(start_desk: Callable[..., Any]) -> tuple[Desk, Traffic, dict[str, str]]:
    clock = MovableClock(msk(MONDAY - timedelta(days=3), 9))
    desk: Desk = await start_desk(clock=clock, agents=AGENTS, **QUIET)
    traffic = Traffic(desk, clock)
    numbers = await hand_week(traffic)
    # The desk's own night job may have counted days while the week was written: start clean.
    await ReportDay.all().delete()
    await ReportStale.all().delete()
    return desk, traffic, numbers


async def test_finished_days_are_counted_once_and_today_is_live(
    start_desk: Callable[..., Any],
) -> None:
    _, t, _ = await a_week(start_desk)
    week = parse_period("week", NOW, MOSCOW)
    first = await appeal_report(week, NOW, MOSCOW)
    counted = await counted_days()
    assert sorted(counted) == [MONDAY + timedelta(days=d) for d in range(6)]  # not today
    monday = await ReportDay.get(day=MONDAY, kind="all")
    # a1 and a2 opened on Monday; a1 answered and resolved then, a2 on Tuesday and Wednesday
    assert (monday.created, monday.answered, monday.done) == (2, 1, 1)
    assert (monday.answered_due, monday.answered_met, monday.done_due, monday.done_met) == (
        1,
        1,
        1,
        1,
    )
    email = await ReportDay.get(day=MONDAY, kind="channel", key="email")
    assert (email.created, email.answered, email.done) == (2, 1, 1)

    again = await appeal_report(week, NOW, MOSCOW)
    assert again.to_json() == first.to_json()
    assert await counted_days() == counted  # read, not counted again

    # Today is counted live: an appeal written now is in the report at once, and not stored.
    await t.write("c9@example.com", "Вопрос по доставке", NOW)
    now = await appeal_report(week, NOW, MOSCOW)
    assert now.created == first.created + 1
    assert now.buckets[-1].created == 1 and now.buckets[-1].label == TODAY.isoformat()
    assert not await ReportDay.filter(day=TODAY).exists()
    await check_against_replay("week", NOW)


async def test_a_late_change_counts_only_its_days_again(start_desk: Callable[..., Any]) -> None:
    desk, t, n = await a_week(start_desk)
    ctx = desk.service.ctx
    assert ctx is not None
    week = parse_period("week", NOW, MOSCOW)
    before = await appeal_report(week, NOW, MOSCOW)
    counted = await counted_days()
    assert not await ReportStale.exists()

    # Sunday: a3 (resolved on Saturday) is reopened by its customer; a1 (opened, answered and
    # resolved on Monday) goes to Олег; a2 becomes urgent, so its answer on Tuesday and its
    # resolution on Wednesday come too late for the urgent due times.
    assert await t.write("c3@example.com", "Всё ещё не доставлено", NOW) == n["a3"]
    t.clock.now = NOW
    await ctx.triage.assign(n["a1"], "Олег", actor="Ирина")
    await ctx.triage.set_priority(n["a2"], Priority.URGENT, actor="Ирина")
    saturday, tuesday, wednesday = (MONDAY + timedelta(days=d) for d in (5, 1, 2))
    marked = set(await ReportStale.all().values_list("day", flat=True))
    assert marked == {saturday, MONDAY, tuesday, wednesday}

    after = await appeal_report(week, NOW, MOSCOW)
    await check_against_replay("week", NOW)
    assert after.resolution.times.count == before.resolution.times.count - 1  # a3 left Saturday
    assert after.reopened == before.reopened  # a4 still counts; a3 is not done now
    assert (after.first_response.met, after.resolution.met) == (
        before.first_response.met - 1,  # a2
        before.resolution.met - 2,  # a2, and a3 that is not done any more
    )
    agents = {line.name: line.count for line in after.by_agent}
    assert agents["Олег"] == 1 + sum(line.count for line in before.by_agent if line.name == "Олег")
    recounted = await counted_days()
    assert {d for d in counted if recounted[d] != counted[d]} == marked
    assert not await ReportStale.exists()  # the marks were used up

    sla = await sla_report(week, MOSCOW, TODAY)
    assert (sla.first_response.met, sla.resolution.met) == (
        after.first_response.met,
        after.resolution.met,
    )


async def test_days_counted_in_another_time_zone_are_counted_again(
    start_desk: Callable[..., Any],
) -> None:
    await a_week(start_desk)
    week = parse_period("week", NOW, MOSCOW)
    await appeal_report(week, NOW, MOSCOW)
    vladivostok = ZoneInfo("Asia/Vladivostok")  # 7 hours ahead of Moscow
    far = parse_period("week", NOW, vladivostok)
    report = await appeal_report(far, NOW, vladivostok)
    opened = [a for a in await Appeal.all() if far.contains(a.created_at)]
    assert report.created == len(opened)
    by_day = {b.label: b.created for b in report.buckets}
    for day, created in by_day.items():
        assert created == sum(
            1 for a in opened if a.created_at.astimezone(vladivostok).date().isoformat() == day
        )
    zones = set(await ReportDay.filter(kind="all").values_list("zone", flat=True))
    assert zones == {"Asia/Vladivostok"}


async def test_the_nightly_job_counts_missed_days_once(start_desk: Callable[..., Any]) -> None:
    desk, _, _ = await a_week(start_desk)
    ctx = desk.service.ctx
    assert ctx is not None
    first = (await Appeal.all().order_by("created_at").first()).created_at  # type: ignore[union-attr]
    since = first.astimezone(MOSCOW).date()
    finished = [since + timedelta(days=d) for d in range((TODAY - since).days)]

    # Two desks run the night's job at once: every finished day is counted by one of them.
    counts = await asyncio.gather(catch_up(TODAY, MOSCOW), catch_up(TODAY, MOSCOW))
    assert sum(counts) >= len(finished)
    assert sorted(await counted_days()) == finished
    assert await ReportDay.filter(kind="all").count() == len(finished)
    assert await catch_up(TODAY, MOSCOW) == 0  # nothing left to count

    job = next(j for j in report_jobs(ctx) if j.name == "report-days")
    await ReportDay.filter(day=finished[-1]).delete()  # a night the desk was down
    assert await job.run_if_due(NOW)
    assert sorted(await counted_days()) == finished
    assert not await job.run_if_due(NOW)  # once a day
