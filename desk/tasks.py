"""Tasks for people (call-backs, follow-ups): one way to create them, with their event."""

from __future__ import annotations

from datetime import datetime, timedelta

from channels.web import PHONE_CHANNEL
from desk.events import EventBus
from models import Appeal, ContactPoint, Customer, Task

CALL_DUE = timedelta(hours=2)  # when a call task is due, from its creation


async def phones_of(customer_id: int) -> str:
    """The customer's phone numbers for a call task, comma-separated ("" when none)."""
    phones = await ContactPoint.filter(customer_id=customer_id, channel=PHONE_CHANNEL).values_list(
        "address", flat=True
    )
    return ", ".join(str(p) for p in phones)


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
) -> Task:
    """Store a task and emit ``task.created`` (the staff group shows it); call inside the
    transaction that decided it. Without an explicit assignee, the appeal's assignee gets it."""
    customer_id = customer.id if customer is not None else None
    if customer_id is None and appeal is not None:
        customer_id = appeal.customer_id
    if assignee_id is None and appeal is not None:
        assignee_id = appeal.assignee_id
    task = await Task.create(
        kind=kind,
        customer_id=customer_id,
        appeal_id=appeal.id if appeal is not None else None,
        assignee_id=assignee_id,
        text=text,
        due_at=due_at,
    )
    await events.emit(
        "task.created",
        actor=actor,
        appeal=appeal,
        customer=customer if appeal is None else None,
        task_id=task.id,
        kind=kind,
        reason=reason,
        text=text,
    )
    return task
