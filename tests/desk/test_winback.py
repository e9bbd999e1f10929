"""Lost customers (seed 002) with a controllable clock: a shop's year of orders replayed day by
day through the real order intake and the daily scan; who was lost when, which win-back calls
were made, who came back — checked against hand-computed dates and an independent replay."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from desk.features.orders import Contacts, OrderChange
from desk.features.winback import WINBACK, complete_call
from desk.ops.scheduler import Daily
from models import Customer, Event, Lifecycle, Task, TaskStatus, Warmth
from tests.conftest import Desk
from tests.telegram_world import MovableClock

MSK = ZoneInfo("Europe/Moscow")
DAY0 = datetime(2025, 12, 1, tzinfo=MSK)


def at(day: int, hour: int) -> datetime:
    return (DAY0 + timedelta(days=day)).replace(hour=hour).astimezone(UTC)


@dataclass
class Shop:
    """The desk's order intake and daily scan driven day by day."""

    desk: Desk
    clock: MovableClock
    workers: int = 1
    calls: list[Task] = field(default_factory=list)

    def _ctx(self) -> Any:
        return self.desk.service.ctx

    async def order(self, email: str, day: int, external_id: str, **contacts: Any) -> None:
        self.clock.now = at(day, 12)
        change = OrderChange(
            external_id=external_id,
            contacts=Contacts(name=email.split("@")[0], email=email, **contacts),
            stage="completed",
            placed_at=at(day, 12),
        )
        await self._ctx().orders.upsert(change)

    async def morning(self, day: int) -> int:
        """08:00: the daily scan, run by ``workers`` processes at once (one wins)."""
        self.clock.now = at(day, 8)
        jobs = [
            Daily("winback", time(8, 0), MSK, self._ctx().winback.scan) for _ in range(self.workers)
        ]
        ran = await asyncio.gather(*(j.run_if_due(self.clock.now) for j in jobs))
        return sum(ran)

    async def evening(self, day: int) -> None:
        """18:00: managers record every open win-back call as reached."""
        self.clock.now = at(day, 18)
        ctx = self._ctx()
        for task in await Task.filter(kind=WINBACK, status=TaskStatus.OPEN).order_by("id"):
            await complete_call(
                ctx.lifecycle.events,
                ctx.settings.customers,
                task.id,
                "reached",
                reason="дорого",
                actor="Вера",
                now=self.clock.now,
            )


async def shop(start_desk: Callable[..., Any], workers: int = 1) -> Shop:
    clock = MovableClock(at(0, 7))
    desk: Desk = await start_desk(
        clock=clock,
        company={"timezone": "Europe/Moscow"},
        # The service's own daily loop stays out of the way: the test runs the scan.
        customers={"scan_at": "23:59"},
    )
    return Shop(desk, clock, workers)


async def lost_days(email: str) -> list[int]:
    customer = await Customer.get(contact_points__address=email)
    rows = await Event.filter(customer_id=customer.id, kind="customer.state_changed")
    return [(r.created_at.astimezone(MSK) - DAY0).days for r in rows if r.data["after"] == "lost"]


async def call_days(email: str) -> list[int]:
    customer = await Customer.get(contact_points__address=email)
    tasks = await Task.filter(customer_id=customer.id, kind=WINBACK).order_by("id")
    return [(t.created_at.astimezone(MSK) - DAY0).days for t in tasks]


async def test_hand_computed_customers(start_desk: Callable[..., Any]) -> None:
    s = await shop(start_desk)
    # Анна: every 10 days, five orders → her own rhythm: 3 × 10 = 30 days.
    anna = [0, 10, 20, 30, 40]
    # Борис: two orders → the default 90 days; he is cold → called every 30 days.
    # Вика: one order and «do not call me».
    for day in range(0, 200):
        await s.morning(day)
        if day in anna or day == 100:
            await s.order("anna@example.com", day, f"A{day}")
        if day in (0, 5):
            await s.order("boris@example.com", day, f"B{day}")
        if day == 0:
            await s.order("vika@example.com", day, "V0")
            await Customer.filter(contact_points__address="vika@example.com").update(
                do_not_contact=True
            )
            await Customer.filter(contact_points__address="boris@example.com").update(
                warmth=Warmth.COLD
            )
        await s.evening(day)

    # Last order on day 40 at 12:00; 30 days later is day 70 12:00: the day-71 scan sees it.
    # Warm: called on 71, 85, 99; her order on day 100 makes her active again. Her median
    # interval is still 10 days (gaps 10, 10, 10, 10, 60): lost again at the day-131 scan.
    assert await lost_days("anna@example.com") == [71, 131]
    assert await call_days("anna@example.com") == [71, 85, 99, 131, 145, 159, 173, 187]
    # Борис: day 5 + 90 days = day 95 12:00 → lost at the day-96 scan; cold: every 30 days.
    assert await lost_days("boris@example.com") == [96]
    assert await call_days("boris@example.com") == [96, 126, 156, 186]
    # Вика is lost on day 91 but never called.
    assert await lost_days("vika@example.com") == [91]
    assert await call_days("vika@example.com") == []
    reached = await Task.filter(kind=WINBACK, result="reached", reason="дорого").count()
    assert reached == 8 + 4


async def test_a_new_order_closes_the_open_call_as_returned(start_desk: Callable[..., Any]) -> None:
    s = await shop(start_desk)
    await s.order("gleb@example.com", 0, "G0")
    await s.morning(91)
    task = await Task.get(kind=WINBACK)
    assert task.status is TaskStatus.OPEN
    await s.order("gleb@example.com", 92, "G92")
    task = await Task.get(id=task.id)
    assert (task.status, task.result) == (TaskStatus.DONE, "returned")
    gleb = await Customer.get(contact_points__address="gleb@example.com")
    assert gleb.lifecycle is Lifecycle.ACTIVE
    reasons = [
        e.data["reason"]
        for e in await Event.filter(customer_id=gleb.id, kind="customer.state_changed").order_by(
            "id"
        )
    ]
    assert reasons == [
        "first order",
        "no order for 91 days (limit 90)",
        "returned with a new order",
    ]


def _limit(orders: list[int]) -> float:
    """Days without an order that make a customer lost (the rules, written out again)."""
    if len(orders) < 4:
        return 90
    return 3 * statistics.median(b - a for a, b in itertools.pairwise(orders))


def reference(history: dict[str, list[int]], days: int, dnc: set[str]) -> tuple[int, int, int]:
    """The rules replayed independently: (lost events, returns, win-back calls)."""
    lost = returns = calls = 0
    for email, orders in history.items():
        placed: list[float] = []
        state, last_call = "prospect", None
        for day in range(days):
            scan = day + 8 / 24
            if state == "active":
                gaps = [b - a for a, b in itertools.pairwise(placed)]
                limit = 3 * statistics.median(gaps) if len(placed) >= 4 else 90
                if scan - placed[-1] > limit:
                    state, lost = "lost", lost + 1
            due = last_call is None or scan - last_call >= 14 - 1 / 24
            if state == "lost" and email not in dnc and due:
                calls, last_call = calls + 1, scan
            if day in orders:
                if state == "lost":
                    returns += 1
                state = "active"
                placed.append(day + 12 / 24)
    return lost, returns, calls


async def test_a_year_of_a_shop_with_two_workers(start_desk: Callable[..., Any]) -> None:
    rng = random.Random(2026)
    days = 365
    history: dict[str, list[int]] = {}
    for n in range(200):
        every = rng.choice([7, 14, 21, 30, 45, 60])
        start = rng.randrange(0, 60)
        stop = rng.choice([days, days, rng.randrange(60, days)])  # a third stop buying
        comeback = rng.random() < 0.3
        orders = list(range(start, stop, every))
        if comeback and stop < days - 30:
            orders.append(rng.randrange(stop + 20, days))
        history[f"c{n}@example.com"] = sorted(set(orders))
    dnc = {f"c{n}@example.com" for n in range(0, 200, 17)}

    s = await shop(start_desk, workers=2)
    runs = 0
    by_day: dict[int, list[str]] = {}
    for email, orders in history.items():
        for day in orders:
            by_day.setdefault(day, []).append(email)
    for day in range(days):
        runs += await s.morning(day)
        for email in by_day.get(day, []):
            await s.order(email, day, f"{email}:{day}")
            if day == history[email][0] and email in dnc:
                await Customer.filter(contact_points__address=email).update(do_not_contact=True)
        await s.evening(day)
    assert runs == days  # two workers, one scan a day

    lost, returns, calls = reference(history, days, dnc)
    events = await Event.filter(kind="customer.state_changed")
    assert sum(e.data["after"] == "lost" for e in events) == lost
    assert sum(e.data["reason"] == "returned with a new order" for e in events) == returns
    assert await Task.filter(kind=WINBACK).count() == calls
    assert lost > 30 and returns > 5 and calls > lost  # the year is worth checking

    # The report of the year says the same; every call was made the evening it was due.
    last = (DAY0 + timedelta(days=days - 1)).date().isoformat()
    status, report = await s.desk.get(
        f"/api/v1/reports/customers?from={DAY0.date().isoformat()}&to={last}"
    )
    assert status == 200, report
    assert report["lost"] == lost and report["returned"]["count"] == returns
    assert report["calls"]["due"] == calls and report["calls"]["on_time"] == calls
    assert report["reasons"] == [{"reason": "дорого", "count": calls}]
    still_lost = sum(
        1
        for email, orders in history.items()
        if orders and (days - 1 + 8 / 24) - (orders[-1] + 12 / 24) > _limit(orders)
    )
    assert report["now"]["lost"] == still_lost
    assert sum(d["lost"] for d in report["daily"]) == lost


async def test_tasks_api_lists_and_completes_calls(start_desk: Callable[..., Any]) -> None:
    s = await shop(start_desk)
    await s.order("dina@example.com", 0, "D0")
    await s.morning(91)
    status, page = await s.desk.get("/api/v1/tasks?status=open&kind=winback")
    assert status == 200 and page["total"] == 1
    task = page["items"][0]
    assert "dina" in task["text"] and "Дозвонились" in task["text"]

    url = f"/api/v1/tasks/{task['id']}/complete"
    status, done = await s.desk.post(url, {"result": "no_answer"})
    assert status == 200 and done["status"] == "done" and done["result"] == "no_answer"
    status, again = await s.desk.post(url, {"result": "reached"})
    assert again["error"]["code"] == "conflict"
    assert status == 409
    status, page = await s.desk.get("/api/v1/tasks?status=open&kind=winback")
    retry = page["items"][0]
    assert page["total"] == 1 and retry["id"] != task["id"]
    assert retry["due_at"].startswith("2026-03-04")  # two days after day 91 (2 March)
    status, bad = await s.desk.post(f"/api/v1/tasks/{retry['id']}/complete", {"result": "maybe"})
    assert "result" in bad["error"]["message"]
    assert status == 422
    status, _ = await s.desk.post("/api/v1/tasks/999999/complete", {"result": "reached"})
    assert status == 404
