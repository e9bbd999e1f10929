"""Lost customers (seed 002): the daily scan marks customers lost when they stop ordering —
after ``customers.lost_after_days``, or after ``rhythm_factor`` times their own median interval
once they have enough orders — and makes managers call lost customers on a fixed rhythm by
their warmth, never twice at once and never those who asked not to be contacted."""

from __future__ import annotations

import itertools
import logging
import statistics
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from desk.appeals.customers import set_state
from desk.appeals.event_types import TaskCompleted, TaskReason
from desk.appeals.events import EventBus
from desk.appeals.tasks import closed_error, create_task, phones_of
from desk.config.errors import InvalidInput, TaskNotFound
from desk.config.settings import CustomerSettings, Settings
from desk.config.texts import Texts
from models import Agent, Appeal, Customer, KeyValue, Lifecycle, Order, Task, TaskStatus, parse_id

log = logging.getLogger(__name__)

WINBACK = "winback"  # the kind of a win-back call task
BATCH = 500


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What one daily scan did."""

    lost: int = 0
    tasks: int = 0

    def __str__(self) -> str:
        return f"{self.lost} lost, {self.tasks} win-back tasks"


class WinBack:
    """The daily scan and the win-back tasks."""

    def __init__(
        self, settings: Settings, events: EventBus, texts: Texts, clock: Callable[[], datetime]
    ) -> None:
        self._settings = settings.customers
        self._lang = settings.company.language
        self._zone = ZoneInfo(settings.company.timezone)
        self._events = events
        self._texts = texts
        self._clock = clock

    async def scan(self) -> ScanResult:
        """Mark customers lost, then give lost customers their due win-back calls."""
        now = self._clock()
        lost = await self._mark_lost(now)
        tasks = await self._schedule_calls(now)
        return ScanResult(lost, tasks)

    async def _mark_lost(self, now: datetime) -> int:
        """Customers past their ``lost_after`` (checked again with today's settings)."""
        marked = 0
        async for customer in _customers(lifecycle=Lifecycle.ACTIVE, lost_after__lte=now):
            if customer.last_order_at is None:
                continue
            days = await limit_days(self._settings, customer.id)
            quiet = (now - customer.last_order_at).total_seconds() / 86400
            async with in_transaction():
                if quiet <= days:  # the settings changed since the last order
                    customer.lost_after = customer.last_order_at + timedelta(days=days)
                    await customer.save(update_fields=["lost_after", "updated_at"])
                    continue
                await set_state(
                    self._events,
                    customer,
                    Lifecycle.LOST,
                    actor="scheduler",
                    reason=f"no order for {round(quiet)} days (limit {days:g})",
                )
            marked += 1
        return marked

    async def _schedule_calls(self, now: datetime) -> int:
        created = 0
        async for customer in _customers(lifecycle=Lifecycle.LOST, do_not_contact=False):
            if await self._call_due(customer, now):
                async with in_transaction():
                    await self._call(customer, now)
                created += 1
        return created

    async def _call_due(self, customer: Customer, now: datetime) -> bool:
        """No open win-back task, and the last one is at least the warmth's interval old."""
        tasks = Task.filter(customer_id=customer.id, kind=WINBACK)
        if await tasks.filter(status=TaskStatus.OPEN).exists():
            return False
        last = await tasks.order_by("-created_at").first()
        if last is None:
            return True
        interval = timedelta(days=self._settings.winback_days[customer.warmth.value])
        return now - last.created_at >= interval - timedelta(hours=1)  # a scan's drift

    async def _call(self, customer: Customer, now: datetime) -> Task:
        assignee = await self.caller(customer)
        text = self._texts.render(
            "tasks/winback_call.txt.j2",
            self._lang,
            name=customer.name,
            phones=await phones_of(customer.id),
            last_order=(
                customer.last_order_at.astimezone(self._zone).strftime("%d.%m.%Y")
                if customer.last_order_at
                else ""
            ),
            warmth=customer.warmth.value,
        ).strip()
        local = now.astimezone(self._zone)
        end_of_day = datetime.combine(local.date(), datetime.max.time(), tzinfo=self._zone)
        return await create_task(
            self._events,
            kind=WINBACK,
            text=text,
            due_at=end_of_day.replace(microsecond=0),
            actor="scheduler",
            reason="lost customer",
            customer=customer,
            assignee_id=assignee.id if assignee is not None else None,
            at=now,
        )

    async def caller(self, customer: Customer) -> Agent | None:
        """The customer's last agent if still active, else the least busy of the win-back
        team (``customers.winback_team``), else nobody (the task waits in the group)."""
        last = await (
            Appeal.filter(customer_id=customer.id, assignee_id__isnull=False)
            .order_by("-id")
            .first()
        )
        if last is not None:
            agent = await Agent.get_or_none(id=last.assignee_id, active=True)
            if agent is not None:
                return agent
        team = self._settings.winback_team
        if team is None:
            return None
        members = [a for a in await Agent.filter(active=True) if team in a.teams]
        if not members:
            return None
        loads = {
            a.id: await Task.filter(assignee_id=a.id, status=TaskStatus.OPEN).count()
            for a in members
        }
        return min(members, key=lambda a: (loads[a.id], a.id))


async def _customers(**filters: Any) -> AsyncIterator[Customer]:
    """The customers matching ``filters``, read ``BATCH`` at a time in id order."""
    after = 0
    while True:
        batch = await Customer.filter(id__gt=after, **filters).order_by("id").limit(BATCH)
        if not batch:
            return
        for customer in batch:
            yield customer
        after = batch[-1].id


async def limit_days(settings: CustomerSettings, customer_id: int) -> float:
    """How many days without an order make this customer lost: their own rhythm (the median
    interval times ``rhythm_factor``) once they have ``rhythm_min_orders``, else the default."""
    rows = await (
        Order.filter(customer_id=customer_id, placed_at__isnull=False)
        .order_by("placed_at")
        .values_list("placed_at", flat=True)
    )
    placed = cast(list[datetime], rows)  # flat: one datetime per row
    if len(placed) < settings.rhythm_min_orders:
        return float(settings.lost_after_days)
    gaps = [(b - a).total_seconds() / 86400 for a, b in itertools.pairwise(placed)]
    return max(1.0, float(statistics.median(gaps)) * settings.rhythm_factor)


async def ordered(
    events: EventBus, settings: CustomerSettings, customer: Customer, now: datetime
) -> None:
    """A new order: the customer is active, open win-back tasks are done as «returned», and
    the day they would count as lost moves on; call inside the order's transaction."""
    returned = customer.lifecycle is Lifecycle.LOST
    await close_winback(events, customer, now, actor="api")
    await set_state(
        events,
        customer,
        Lifecycle.ACTIVE,
        actor="api",
        reason="returned with a new order" if returned else "first order",
    )
    if customer.last_order_at is not None:
        days = await limit_days(settings, customer.id)
        customer.lost_after = customer.last_order_at + timedelta(days=days)
        await customer.save(update_fields=["lost_after", "updated_at"])


async def close_winback(events: EventBus, customer: Customer, now: datetime, actor: str) -> int:
    """A new order: the customer's open win-back tasks are done, «returned»; call inside the
    order's transaction."""
    open_tasks = await Task.filter(customer_id=customer.id, kind=WINBACK, status=TaskStatus.OPEN)
    for task in open_tasks:
        task.status, task.result, task.completed_at = TaskStatus.DONE, "returned", now
        await task.save(update_fields=["status", "result", "completed_at"])
        await events.emit(
            TaskCompleted(
                actor=actor, customer=customer, task_id=task.id, kind=task.kind, result="returned"
            )
        )
    return len(open_tasks)


RESULTS = ("reached", "no_answer", "returned")


async def complete_call(
    events: EventBus,
    settings: CustomerSettings,
    task_id: int,
    result: str,
    *,
    reason: str = "",
    actor: str,
    now: datetime,
) -> Task:
    """Record a win-back call's result: «reached» (with the reason the customer left),
    «no_answer» (tried again after ``no_answer_retry_days``) or «returned»; call inside a
    transaction. A task already done is ``TaskClosed``."""
    if result not in RESULTS:
        raise InvalidInput(f"result must be one of {', '.join(RESULTS)}")
    task = await Task.get_or_none(id=task_id)
    if task is None:
        raise TaskNotFound(str(task_id))
    won = await Task.filter(id=task.id, status=TaskStatus.OPEN).update(
        status=TaskStatus.DONE, result=result, reason=reason.strip()[:500], completed_at=now
    )
    if not won:
        raise await closed_error(task.id)
    customer = await Customer.get_or_none(id=task.customer_id) if task.customer_id else None
    await events.emit(
        TaskCompleted(
            actor=actor,
            customer=customer,
            task_id=task.id,
            kind=task.kind,
            result=result,
            reason=reason,
        )
    )
    if customer is not None and task.kind == WINBACK:
        if result == "no_answer":
            await create_task(
                events,
                kind=WINBACK,
                text=task.text,
                due_at=now + timedelta(days=settings.no_answer_retry_days),
                actor=actor,
                reason="no answer: try again",
                customer=customer,
                assignee_id=task.assignee_id,
                at=now,
            )
        elif result == "returned":
            await came_back(events, settings, customer, now, actor=actor)
    return await Task.get(id=task.id)


async def came_back(
    events: EventBus, settings: CustomerSettings, customer: Customer, now: datetime, actor: str
) -> None:
    """A manager says the customer is back (ordered by phone, say): active again, and the
    lost clock starts from today; call inside a transaction."""
    changed = await set_state(
        events, customer, Lifecycle.ACTIVE, actor=actor, reason="returned after a win-back call"
    )
    if changed:
        customer.lost_after = now + timedelta(days=await limit_days(settings, customer.id))
        await customer.save(update_fields=["lost_after", "updated_at"])


async def give_reason(events: EventBus, task_id: int, reason: str, *, actor: str) -> Task:
    """The reason a reached customer gave for leaving, recorded on their finished call task
    (picked from ``customers.leave_reasons`` or typed); call inside a transaction."""
    reason = " ".join(reason.split())[:500]
    if not reason:
        raise InvalidInput("the reason is empty")
    task = await Task.get_or_none(id=task_id, kind=WINBACK)
    if task is None:
        raise TaskNotFound(str(task_id))
    if task.result != "reached":
        raise InvalidInput("a reason is kept only for a call that reached the customer")
    await Task.filter(id=task.id).update(reason=reason)
    customer = await Customer.get_or_none(id=task.customer_id) if task.customer_id else None
    await events.emit(TaskReason(actor=actor, customer=customer, task_id=task.id, reason=reason))
    task.reason = reason
    return task


# -- what the staff group's task board reads and keeps -----------------------------------------


async def task_by_id(task_id: int) -> Task | None:
    """A task by its id."""
    return await Task.get_or_none(id=task_id)


async def earlier_calls(customer_id: int, limit: int) -> list[Task]:
    """The customer's win-back calls already made, the latest first."""
    return list(
        await Task.filter(customer_id=customer_id, kind=WINBACK, status=TaskStatus.DONE)
        .order_by("-completed_at")
        .limit(limit)
    )


def _reason_key(agent_id: int) -> str:
    """Where the task whose reason an agent is asked to type is kept."""
    return f"reason:{agent_id}"


async def await_reason(agent_id: int, task_id: int, until: datetime) -> None:
    """The agent's next words in General until ``until`` are the reason for ``task_id``."""
    await KeyValue.update_or_create(
        key=_reason_key(agent_id), defaults={"value": f"{task_id} {until.isoformat()}"}
    )


async def awaited_reason(agent_id: int, now: datetime) -> int | None:
    """The task whose reason the agent is asked to type, while the question stands (one that
    has run out is forgotten)."""
    waiting = await KeyValue.get_or_none(key=_reason_key(agent_id))
    if waiting is None:
        return None
    raw_id, _, until = waiting.value.partition(" ")
    task_id = parse_id(raw_id)
    if task_id is None or datetime.fromisoformat(until) < now:
        await forget_reason(agent_id)
        return None
    return task_id


async def forget_reason(agent_id: int, task_id: int | None = None) -> None:
    """The agent is no longer asked for a reason (for ``task_id`` only, when given)."""
    rows = KeyValue.filter(key=_reason_key(agent_id))
    if task_id is not None:
        rows = rows.filter(value__startswith=f"{task_id} ")
    await rows.delete()


@dataclass(frozen=True, slots=True)
class Overdue:
    """Open tasks past their time, with their assignees and customers' names."""

    tasks: list[Task]  # by due time
    agents: dict[int, Agent]
    names: dict[int, str]  # customers' names by id


async def overdue_tasks(now: datetime) -> Overdue:
    """Every open task past its due time."""
    tasks = list(await Task.filter(status=TaskStatus.OPEN, due_at__lt=now).order_by("due_at"))
    agent_ids = {t.assignee_id for t in tasks if t.assignee_id}
    agents = {a.id: a for a in await Agent.filter(id__in=agent_ids)} if agent_ids else {}
    customer_ids = {t.customer_id for t in tasks if t.customer_id}
    names = (
        dict(await Customer.filter(id__in=customer_ids).values_list("id", "name"))
        if customer_ids
        else {}
    )
    return Overdue(tasks, agents, names)
