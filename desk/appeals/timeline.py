"""A customer's life cycle in order (seed 002, Fig. 1): appeals, orders, ratings, call tasks,
and the changes of state and warmth, read from the history log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models import Appeal, Event

# The history kinds that make up a life cycle; messages and routing stay in the appeal's topic.
KINDS = (
    "appeal.created",
    "appeal.status_changed",
    "appeal.reopened",
    "order.created",
    "order.stage_changed",
    "rating.received",
    "rating.commented",
    "task.created",
    "task.completed",
    "task.reason",
    "customer.state_changed",
    "customer.merged",
)
# Status changes worth a line: the appeal's end, not every step on the way.
ENDINGS = frozenset({"resolved", "closed"})
MAX_ENTRIES = 500


@dataclass(frozen=True, slots=True)
class Entry:
    """One step of a customer's life cycle."""

    at: datetime
    kind: str
    actor: str
    number: str | None = None  # the appeal's number, for appeal-related steps
    data: dict[str, Any] = field(default_factory=dict)


def _when(event: Event) -> datetime:
    """When it happened: an imported order at the time it was placed, the rest when recorded."""
    placed = event.data.get("placed_at") if event.kind == "order.created" else None
    if isinstance(placed, str):
        try:
            return datetime.fromisoformat(placed)
        except ValueError:
            pass
    return event.created_at


def _kept(event: Event) -> bool:
    if event.kind == "appeal.status_changed":
        return event.data.get("after") in ENDINGS
    return True


async def timeline(customer_id: int, limit: int = MAX_ENTRIES) -> list[Entry]:
    """The latest ``limit`` steps of the customer's life cycle, oldest first."""
    rows = await (
        Event.filter(customer_id=customer_id, kind__in=KINDS)
        .order_by("-id")
        .limit(max(1, min(limit, MAX_ENTRIES)) * 2)  # room for the status steps left out
    )
    events = [e for e in rows if _kept(e)][:limit]
    events.reverse()  # oldest first, so steps recorded at the same moment keep their order
    appeal_ids = {e.appeal_id for e in events if e.appeal_id is not None}
    numbers = dict(
        await Appeal.filter(id__in=appeal_ids).values_list("id", "number") if appeal_ids else []
    )
    entries = [
        Entry(
            at=_when(e),
            kind=e.kind,
            actor=e.actor,
            number=numbers.get(e.appeal_id) if e.appeal_id is not None else None,
            data=dict(e.data),
        )
        for e in events
    ]
    return sorted(entries, key=lambda entry: entry.at)
