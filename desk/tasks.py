"""Tasks for people (call-backs, follow-ups): one way to create them, with their event."""

from __future__ import annotations

from datetime import datetime

from desk.events import EventBus
from models import Appeal, Customer, Task


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
