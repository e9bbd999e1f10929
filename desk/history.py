"""The history log: every state change of an appeal or customer is an Event row."""

from __future__ import annotations

from typing import Any

from models import Appeal, Customer, Event


async def record(
    kind: str,
    *,
    actor: str,
    appeal: Appeal | None = None,
    customer: Customer | None = None,
    **data: Any,
) -> Event:
    """Write one history event; call inside the transaction of the change it describes."""
    customer_id = customer.id if customer is not None else None
    if customer_id is None and appeal is not None:
        customer_id = appeal.customer_id
    return await Event.create(
        kind=kind,
        actor=actor,
        appeal_id=appeal.id if appeal is not None else None,
        customer_id=customer_id,
        data=data,
    )
