"""The history log: every state change of an appeal or customer is an Event row."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from desk.appeals.held import holding
from models import Appeal, Customer, Event, sql

BORN = "appeal.created"
COLUMNS = ("kind", "actor", "data", "created_at", "appeal_id", "customer_id")


class _Held:
    """The rows recorded inside ``batched()`` and not written yet, also by appeal."""

    def __init__(self) -> None:
        self.rows: list[Event] = []
        self.by_appeal: dict[int, list[Event]] = {}

    def add(self, event: Event) -> None:
        self.rows.append(event)
        if event.appeal_id is not None:
            self.by_appeal.setdefault(event.appeal_id, []).append(event)

    def take(self) -> list[Event]:
        rows, self.rows, self.by_appeal = self.rows, [], {}
        return rows


_held: ContextVar[_Held | None] = ContextVar("history_held", default=None)


def batched() -> AbstractAsyncContextManager[None]:
    """Inside, events are kept and written together (one bulk INSERT) when the block ends, or
    earlier when history is read (``flush``); call inside the change's transaction."""
    return holding(_held, _Held(), flush)


async def flush() -> None:
    """Write the events kept by ``batched()`` so far (nothing outside it); a reader of the
    history inside a batch calls this first."""
    held = _held.get()
    if held is not None and held.rows:
        rows = [
            (e.kind, e.actor, sql.json_value(e.data), e.created_at, e.appeal_id, e.customer_id)
            for e in held.take()
        ]
        await sql.insert_many("event", COLUMNS, rows, returning=None)


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
    appeal_id = appeal.id if appeal is not None else None
    held = _held.get()
    if held is None:
        event = Event(
            kind=kind, actor=actor, appeal_id=appeal_id, customer_id=customer_id, data=data
        )
        if at is not None:
            event.created_at = at  # the service clock, so SLA pauses are measured in one time
        await event.save()
        return event
    # Kept for the batch's one INSERT, made as the ORM makes a row it read: 15 µs, where a new
    # object's defaults and checks took 25 (a new appeal records half a dozen events).
    row = {
        "id": None,
        "kind": kind,
        "actor": actor,
        "appeal_id": appeal_id,
        "customer_id": customer_id,
        "data": data,
        "created_at": at or datetime.now(UTC),  # as the row would get it, for the order
    }
    [event] = sql.models_of(Event, [row])
    held.add(event)
    return event


async def of_appeal(appeal_id: int, kind: str) -> list[Event]:
    """An appeal's events of one kind, oldest first, with those its batch holds still; an
    appeal born in the batch has no rows yet, so nothing is read for it."""
    batch = _held.get()
    held = batch.by_appeal.get(appeal_id, []) if batch is not None else []
    if any(e.kind == BORN for e in held):
        stored: list[Event] = []
    else:
        stored = await Event.filter(appeal_id=appeal_id, kind=kind).order_by("id")
    return stored + [e for e in held if e.kind == kind]
