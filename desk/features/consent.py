"""«Do not contact»: a customer the desk sends nothing by itself — no notices (order stages,
acknowledgements, resolutions), no rating requests, no win-back calls — while answers an agent
writes still go. Nothing is erased: the customer, their appeals and history stay."""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from desk.appeals.event_types import CustomerStateChanged, TaskCompleted
from desk.appeals.lifecycle import Lifecycle
from desk.features.winback import WINBACK
from models import ContactPoint, Customer, OutboxItem, OutboxStatus, Task, TaskStatus

FIELD = "do_not_contact"
HELD_BACK = "not sent: the customer asked not to be contacted"


async def set_do_not_contact(
    life: Lifecycle, customer: Customer, on: bool, *, actor: str, reason: str, now: datetime
) -> bool:
    """Set or lift the flag with its ``customer.state_changed`` event (field
    ``do_not_contact``); setting it also cancels the customer's open win-back calls and the
    automatic messages still waiting in the outbox. False when it was so already."""

    async def run() -> bool:
        async with in_transaction():
            fresh = await Customer.get(id=customer.id)
            if fresh.do_not_contact is on:
                return False
            await Customer.filter(id=customer.id).update(do_not_contact=on, updated_at=now)
            customer.do_not_contact = on
            await life.events.emit(
                CustomerStateChanged(
                    actor=actor,
                    customer=customer,
                    field=FIELD,
                    before=_word(not on),
                    after=_word(on),
                    reason=reason,
                )
            )
            if on:
                await _cancel_calls(life, customer, actor=actor, now=now)
                await _hold_back_notices(customer.id)
            return True

    changed = await life.atomic(run)
    life.wake()
    return changed


def _word(on: bool) -> str:
    return "yes" if on else "no"


async def _cancel_calls(life: Lifecycle, customer: Customer, *, actor: str, now: datetime) -> None:
    tasks = await Task.filter(customer_id=customer.id, kind=WINBACK, status=TaskStatus.OPEN)
    for task in tasks:
        cancelled = await Task.filter(id=task.id, status=TaskStatus.OPEN).update(
            status=TaskStatus.CANCELLED, result="cancelled", completed_at=now
        )
        if cancelled:
            await life.events.emit(
                TaskCompleted(
                    actor=actor,
                    customer=customer,
                    task_id=task.id,
                    kind=task.kind,
                    result="cancelled",
                    reason="the customer asked not to be contacted",
                )
            )


async def _hold_back_notices(customer_id: int) -> None:
    """Automatic messages not yet sent (held for quiet hours, say) to the customer's
    addresses are not sent; the rows stay, marked why."""
    points = await ContactPoint.filter(customer_id=customer_id).values_list("channel", "address")
    addresses = {(str(c), str(a)) for c, a in points}
    if not addresses:
        return
    waiting = await OutboxItem.filter(
        status=OutboxStatus.PENDING, address__in=sorted({a for _, a in addresses})
    )
    held = [
        row.id
        for row in waiting
        if (row.channel, row.address) in addresses
        and (row.payload.get("extra") or {}).get("automatic") is True
    ]
    if held:
        await OutboxItem.filter(id__in=held, status=OutboxStatus.PENDING).update(
            status=OutboxStatus.FAILED, last_error=HELD_BACK
        )
