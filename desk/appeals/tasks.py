"""Tasks for people (call-backs, follow-ups): one way to create them, with their event."""

from __future__ import annotations

from datetime import datetime, timedelta

from tortoise.transactions import in_transaction

from channels.base import PHONE_CHANNEL
from desk.appeals.event_types import TaskCreated, TaskDue
from desk.appeals.events import EventBus
from desk.config.errors import TaskClosed
from desk.config.settings import Settings
from models import (
    Agent,
    AgentRole,
    Appeal,
    ContactPoint,
    Customer,
    Event,
    Task,
    TaskStatus,
    parse_id,
)

CALL_DUE = timedelta(hours=2)  # when a call task is due, from its creation


async def phones_of(customer_id: int) -> str:
    """The customer's phone numbers for a call task, comma-separated ("" when none)."""
    phones = await ContactPoint.filter(customer_id=customer_id, channel=PHONE_CHANNEL).values_list(
        "address", flat=True
    )
    return ", ".join(str(p) for p in phones)


async def contacts_of(customer_id: int) -> list[dict[str, object]]:
    """The customer's other contact points (not phones) for a call task's next step:
    channel, address and whether it is reachable."""
    points = await ContactPoint.filter(customer_id=customer_id).exclude(channel=PHONE_CHANNEL)
    return [
        {"channel": p.channel, "address": p.address, "reachable": p.reachable}
        for p in sorted(points, key=lambda p: (not p.reachable, p.id))
    ]


async def call_owner(
    settings: Settings, appeal: Appeal | None, customer_id: int | None
) -> int | None:
    """Who gets a call task: the appeal's assignee; else the agent of the customer's latest
    assigned appeal, if still active; else the lead of the appeal's team (``teams[].lead``);
    else the first active manager; None when there is nobody."""
    if appeal is not None and appeal.assignee_id is not None:
        return appeal.assignee_id
    if customer_id is not None:
        last = await (
            Appeal.filter(customer_id=customer_id, assignee_id__isnull=False)
            .order_by("-id")
            .first()
        )
        if last is not None and await Agent.filter(id=last.assignee_id, active=True).exists():
            return last.assignee_id
    team = next((t for t in settings.teams if appeal is not None and t.id == appeal.team), None)
    if team is not None and team.lead:
        lead = await _agent(team.lead)
        if lead is not None:
            return int(lead.id)
    manager = await Agent.filter(active=True, role=AgentRole.MANAGER).order_by("id").first()
    return manager.id if manager is not None else None


async def _agent(ref: str) -> Agent | None:
    """An active agent by name or Telegram id (as ``teams[].lead`` names one)."""
    query = Agent.filter(active=True)
    number = parse_id(ref.strip())
    if number is not None and (found := await query.filter(telegram_id=number).first()):
        return found
    return await query.filter(name=ref.strip()).first()


async def create_task(
    events: EventBus,
    *,
    kind: str,
    text: str,
    due_at: datetime | None,
    actor: str,
    reason: str = "",
    appeal: Appeal | None = None,
    customer: Customer | None = None,
    assignee_id: int | None = None,
    at: datetime | None = None,
    once: str = "",
) -> Task:
    """Store a task and emit ``task.created`` (the staff group shows it); call inside the
    transaction that decided it. Without an explicit assignee, the appeal's assignee gets it.

    With ``once`` (a cause, e.g. ``unreachable``) an appeal keeps at most one open task of
    this kind and cause: a repeat adds its text to the open one instead of a new task."""
    if once and appeal is not None:
        open_task = await _open_task(appeal.id, kind, once)
        if open_task is not None:
            if text not in open_task.text:
                open_task.text = f"{open_task.text}\n\n{text}"
                await open_task.save(update_fields=["text"])
            return open_task
    customer_id = customer.id if customer is not None else None
    if customer_id is None and appeal is not None:
        customer_id = appeal.customer_id
    if assignee_id is None and appeal is not None:
        assignee_id = appeal.assignee_id
    task = Task(
        kind=kind,
        customer_id=customer_id,
        appeal_id=appeal.id if appeal is not None else None,
        assignee_id=assignee_id,
        text=text,
        due_at=due_at,
    )
    if at is not None:
        task.created_at = at  # the service clock, so intervals between tasks are its time
    await task.save()
    await events.emit(
        TaskCreated(
            actor=actor,
            appeal=appeal,
            customer=customer if appeal is None else None,
            task_id=task.id,
            kind=kind,
            reason=reason,
            text=text,
            once=once or "",
        )
    )
    return task


async def closed_error(task_id: int) -> TaskClosed:
    """Why a task can no longer be completed: its state, result, when it was closed and, when
    its history says, by whom."""
    task = await Task.get(id=task_id)
    events = Event.filter(kind="task.completed")
    if task.customer_id is None:
        events = events.filter(customer_id__isnull=True)
    else:
        events = events.filter(customer_id=task.customer_id)
    by = None
    for event in await events.order_by("-id").limit(50):
        if event.data.get("task_id") == task.id:
            by = event.actor
            break
    return TaskClosed(task.id, task.status.value, result=task.result, at=task.completed_at, by=by)


async def _open_task(appeal_id: int, kind: str, once: str) -> Task | None:
    """The appeal's open task of ``kind`` created with the cause ``once``, if any."""
    tasks = await Task.filter(appeal_id=appeal_id, kind=kind, status=TaskStatus.OPEN).order_by("id")
    if not tasks:
        return None
    created = await Event.filter(appeal_id=appeal_id, kind="task.created")
    causes = {e.data.get("task_id"): e.data.get("once") for e in created if e.data.get("once")}
    return next((t for t in tasks if causes.get(t.id) == once), None)


async def raise_due(events: EventBus, now: datetime, limit: int = 200) -> int:
    """Emit ``task.due`` once for each open task whose time has come; returns how many.
    Safe with several processes: a conditional update decides who raises each one."""
    raised = 0
    due = (
        await Task.filter(status=TaskStatus.OPEN, due_at__lte=now, due_raised_at__isnull=True)
        .order_by("due_at")
        .limit(limit)
    )
    for task in due:
        async with in_transaction():
            won = await Task.filter(id=task.id, due_raised_at__isnull=True).update(
                due_raised_at=now
            )
            if not won:
                continue
            appeal = await Appeal.get_or_none(id=task.appeal_id) if task.appeal_id else None
            customer = (
                await Customer.get_or_none(id=task.customer_id)
                if appeal is None and task.customer_id
                else None
            )
            await events.emit(
                TaskDue(
                    actor="scheduler",
                    appeal=appeal,
                    customer=customer,
                    task_id=task.id,
                    kind=task.kind,
                    text=task.text,
                    due=task.due_at.isoformat() if task.due_at else "",
                )
            )
        raised += 1
    return raised
