"""The history log: every state change of an appeal or customer is an Event row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from models import Appeal, Customer, Event

# Inside ``batched()``: the rows recorded and not written yet.
_held: ContextVar[list[Event] | None] = ContextVar("history_held", default=None)


@asynccontextmanager
async def batched() -> AsyncIterator[None]:
    """Inside, events are kept and written together (one bulk INSERT) when the block ends, or
    earlier when history is read (``flush``); call inside the change's transaction."""
    token = _held.set([])
    try:
        yield
        await flush()
    finally:
        _held.reset(token)


async def flush() -> None:
    """Write the events kept by ``batched()`` so far (nothing outside it); a reader of the
    history inside a batch calls this first."""
    held = _held.get()
    if held:
        rows, held[:] = list(held), []
        await Event.bulk_create(rows)


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
    """Write one history event; call inside the transaction of the change it describes (inside
    ``batched()`` it is written with the batch: it has no id until then)."""
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
    held = _held.get()
    if held is None:
        await event.save()
    else:
        held.append(event)
    return event
