"""Lost customers over a period (seed 002): how many are lost now and were lost in the period,
who came back and what they ordered since, the reasons they gave for leaving, and whether the
win-back calls were made on time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.functions import Count

from desk.features.winback import WINBACK
from desk.reports.periods import Period
from desk.reports.rating_report import share
from models import Customer, Event, Lifecycle, Order, Task, TaskStatus

STATE_CHANGED = "customer.state_changed"


@dataclass(frozen=True, slots=True)
class Returned:
    """A customer who came back in the period, and what they ordered from then on."""

    customer_id: int
    name: str
    at: datetime
    orders: int
    amount: Decimal

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (the amount as a string, exact)."""
        return {
            "customer_id": self.customer_id,
            "name": self.name,
            "at": self.at.isoformat(),
            "orders": self.orders,
            "amount": str(self.amount),
        }


@dataclass(frozen=True, slots=True)
class CallFigures:
    """Win-back calls due in the period: done by their time, done late, overdue, not yet due."""

    due: int
    on_time: int
    late: int
    overdue: int
    waiting: int
    results: dict[str, int]

    @property
    def on_time_share(self) -> float | None:
        """Calls done on time out of those whose time has come."""
        return share(self.on_time, self.on_time + self.late + self.overdue)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "due": self.due,
            "on_time": self.on_time,
            "late": self.late,
            "overdue": self.overdue,
            "waiting": self.waiting,
            "on_time_share": self.on_time_share,
            "results": dict(self.results),
        }


@dataclass(frozen=True, slots=True)
class DayLine:
    """One day of the period: customers lost and returned, and the returned customers' orders."""

    day: date
    lost: int
    returned: int
    amount: Decimal


@dataclass(frozen=True, slots=True)
class CustomerReport:
    """Lost and returned customers of a period, the reasons for leaving, the calls."""

    period: Period
    lost_now: int
    active_now: int
    prospects_now: int
    lost: int
    returned: list[Returned]
    reasons: list[tuple[str, int]]
    calls: CallFigures
    daily: list[DayLine]

    @property
    def returned_amount(self) -> Decimal:
        """What the returned customers have ordered since they came back."""
        return sum((r.amount for r in self.returned), Decimal(0))

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        return {
            "period": self.period.to_json(),
            "now": {
                "lost": self.lost_now,
                "active": self.active_now,
                "prospect": self.prospects_now,
            },
            "lost": self.lost,
            "returned": {
                "count": len(self.returned),
                "amount": str(self.returned_amount),
                "customers": [r.to_json() for r in self.returned],
            },
            "reasons": [{"reason": reason, "count": n} for reason, n in self.reasons],
            "calls": self.calls.to_json(),
            "daily": [
                {
                    "day": d.day.isoformat(),
                    "lost": d.lost,
                    "returned": d.returned,
                    "amount": str(d.amount),
                }
                for d in self.daily
            ],
        }


async def customer_report(period: Period, now: datetime, zone: ZoneInfo) -> CustomerReport:
    """The report of ``period`` as it stands at ``now``; days in the company's ``zone``."""
    rows = (
        await Customer.annotate(n=Count("id")).group_by("lifecycle").values_list("lifecycle", "n")
    )
    counts = {Lifecycle(state): int(n) for state, n in rows}
    changes = await Event.filter(
        kind=STATE_CHANGED, created_at__gte=period.start, created_at__lt=period.end
    ).order_by("id")
    lost_events = [e for e in changes if _moved(e, to=Lifecycle.LOST)]
    back_events = [e for e in changes if _moved(e, to=Lifecycle.ACTIVE, source=Lifecycle.LOST)]
    returned = await _returned(back_events, period)
    daily = _days(period, zone, lost_events, returned)
    return CustomerReport(
        period=period,
        lost_now=counts.get(Lifecycle.LOST, 0),
        active_now=counts.get(Lifecycle.ACTIVE, 0),
        prospects_now=counts.get(Lifecycle.PROSPECT, 0),
        lost=len(lost_events),
        returned=returned,
        reasons=await _reasons(period),
        calls=await _calls(period, now),
        daily=daily,
    )


def _moved(event: Event, *, to: Lifecycle, source: Lifecycle | None = None) -> bool:
    data = event.data
    if data.get("field") != "lifecycle" or data.get("after") != to.value:
        return False
    return source is None or data.get("before") == source.value


async def _returned(events: list[Event], period: Period) -> list[Returned]:
    """Each return in the period, with the customer's orders placed from the moment they were
    lost to the period's end — the order that brought them back and those after it (a
    customer who returned twice counts twice, each return with its own orders)."""
    out: list[Returned] = []
    ids = {e.customer_id for e in events if e.customer_id is not None}
    names = dict(await Customer.filter(id__in=ids).values_list("id", "name")) if ids else {}
    for event in events:
        if event.customer_id is None:
            continue
        earlier = await Event.filter(
            customer_id=event.customer_id, kind=STATE_CHANGED, id__lt=event.id
        ).order_by("-id")
        lost_at = next((e.created_at for e in earlier if _moved(e, to=Lifecycle.LOST)), None)
        orders = Order.filter(customer_id=event.customer_id, placed_at__lt=period.end)
        if lost_at is not None:
            orders = orders.filter(placed_at__gte=lost_at)
        amounts = await orders.values_list("amount", flat=True)
        out.append(
            Returned(
                customer_id=event.customer_id,
                name=str(names.get(event.customer_id, "")),
                at=event.created_at,
                orders=len(amounts),
                amount=sum((Decimal(a) for a in amounts if a is not None), Decimal(0)),
            )
        )
    return out


async def _reasons(period: Period) -> list[tuple[str, int]]:
    """Reasons given on calls finished in the period, most frequent first (same wording,
    whatever the case, counts as one)."""
    rows = (
        await Task.filter(kind=WINBACK, completed_at__gte=period.start, completed_at__lt=period.end)
        .exclude(reason="")
        .values_list("reason", flat=True)
    )
    spelled: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for reason in rows:
        key = str(reason).casefold()
        spelled.setdefault(key, str(reason))
        counts[key] += 1
    return [(spelled[k], n) for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


async def _calls(period: Period, now: datetime) -> CallFigures:
    tasks = await Task.filter(kind=WINBACK, due_at__gte=period.start, due_at__lt=period.end)
    on_time = late = overdue = waiting = 0
    results: Counter[str] = Counter()
    for task in tasks:
        if task.status is TaskStatus.OPEN:
            if task.due_at is not None and task.due_at < now:
                overdue += 1
            else:
                waiting += 1
            continue
        results[task.result or "done"] += 1
        if task.completed_at is not None and task.due_at is not None:
            if task.completed_at <= task.due_at:
                on_time += 1
            else:
                late += 1
    return CallFigures(len(tasks), on_time, late, overdue, waiting, dict(results))


def _days(
    period: Period, zone: ZoneInfo, lost: list[Event], returned: list[Returned]
) -> list[DayLine]:
    lost_by_day = Counter(e.created_at.astimezone(zone).date() for e in lost)
    back_by_day = Counter(r.at.astimezone(zone).date() for r in returned)
    amount_by_day: dict[date, Decimal] = {}
    for r in returned:
        day = r.at.astimezone(zone).date()
        amount_by_day[day] = amount_by_day.get(day, Decimal(0)) + r.amount
    return [
        DayLine(day, lost_by_day[day], back_by_day[day], amount_by_day.get(day, Decimal(0)))
        for day in period.days()
    ]
