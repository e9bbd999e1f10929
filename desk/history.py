"""The history log: every state change of an appeal or customer is an Event row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models import Appeal, Customer, Event


async def record(
    kind: str,
    /,
    *,
    actor: str,
    appeal: Appeal | None = None,
    customer: Customer | None = None,
    at: datetime | None = None,
    **data: Any,
) -> Event:
    """Write one history event; call inside the transaction of the change it describes."""
    customer_id = customer.id if customer is not None else None
    if customer_id is None and appeal is not None:
        customer_id = appeal.customer_id
    event = Event(
        kind=kind,
        actor=actor,
        appeal_id=appeal.id if appeal is not None else None,
        customer_id=customer_id,
        data=data,
    )
    if at is not None:
        event.created_at = at  # the service clock, so SLA pauses are measured in one time
    await event.save()
    return event
