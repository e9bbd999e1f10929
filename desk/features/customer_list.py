"""Customers by life-cycle state (seed 002's «Втрачені»): each with warmth, why they are in
that state (the history's reason, and the reason they gave on a win-back call) and their last
purchase; a page costs a constant number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from desk.features.winback import WINBACK
from models import Customer, Event, Lifecycle, Order, Task, TaskStatus, Warmth

STATE_CHANGED = "customer.state_changed"


@dataclass(frozen=True, slots=True)
class StateReason:
    """When and why the customer's life-cycle state last changed."""

    at: datetime
    reason: str
    actor: str


@dataclass(frozen=True, slots=True)
class CustomerLine:
    """One customer of the list."""

    customer: Customer
    state: StateReason | None  # None: never changed (a prospect from the start)
    left_because: str  # what they said on the latest win-back call that reached them
    last_order: Order | None


async def customer_page(
    *,
    state: Lifecycle | None,
    warmth: Warmth | None,
    do_not_contact: bool | None,
    page: int,
    per_page: int,
) -> tuple[int, list[CustomerLine]]:
    """(how many match, the page): the most recently changed first."""
    query = Customer.all()
    if state is not None:
        query = query.filter(lifecycle=state)
    if warmth is not None:
        query = query.filter(warmth=warmth)
    if do_not_contact is not None:
        query = query.filter(do_not_contact=do_not_contact)
    total = await query.count()
    rows = list(
        await query.order_by("-updated_at", "-id").offset((page - 1) * per_page).limit(per_page)
    )
    ids = [c.id for c in rows]
    if not ids:
        return total, []
    reasons: dict[int, StateReason] = {}
    changes = await Event.filter(customer_id__in=ids, kind=STATE_CHANGED).order_by("-id")
    for event in changes:
        customer_id = event.customer_id
        if customer_id is None or customer_id in reasons:
            continue
        if event.data.get("field") == "lifecycle":
            reasons[customer_id] = StateReason(
                event.created_at, str(event.data.get("reason", "")), event.actor
            )
    told: dict[int, str] = {}
    calls = Task.filter(customer_id__in=ids, kind=WINBACK, status=TaskStatus.DONE, result="reached")
    for task in await calls.exclude(reason="").order_by("-completed_at", "-id"):
        if task.customer_id is not None:
            told.setdefault(task.customer_id, task.reason)
    last: dict[int, Order] = {}
    for order in await Order.filter(customer_id__in=ids).order_by("-placed_at", "-id"):
        last.setdefault(order.customer_id, order)
    return total, [
        CustomerLine(c, reasons.get(c.id), told.get(c.id, ""), last.get(c.id)) for c in rows
    ]
