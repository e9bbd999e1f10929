"""The appeals whose customer waits for an answer, and those put off for later: what the staff
group's pinned feed shows."""

from __future__ import annotations

from dataclasses import dataclass

from models import Appeal, AppealStatus, Customer, KeyValue

WAITING = (AppealStatus.NEW, AppealStatus.OPEN)


@dataclass(frozen=True, slots=True)
class Waiting:
    """The oldest waiting appeals, how many wait in all, and their customers' names."""

    appeals: list[Appeal]
    total: int
    names: dict[int, str]


async def waiting_appeals(limit: int) -> Waiting:
    """Appeals whose customer waits for an answer, oldest first."""
    query = Appeal.filter(status__in=list(WAITING), waiting_since__isnull=False)
    total = await query.count()
    appeals = list(await query.order_by("waiting_since", "id").limit(limit))
    return Waiting(appeals, total, await _names(appeals))


async def postponed_appeals(limit: int) -> Waiting:
    """Appeals put off (``pending``): soonest back first; any without a time (put off before
    postponements had one) after them."""
    query = Appeal.filter(status=AppealStatus.PENDING)
    total = await query.count()
    timed = query.filter(pending_until__isnull=False).order_by("pending_until", "id")
    appeals = list(await timed.limit(limit))
    if len(appeals) < min(limit, total):
        untimed = query.filter(pending_until__isnull=True).order_by("id")
        appeals += await untimed.limit(limit - len(appeals))
    return Waiting(appeals, total, await _names(appeals))


async def _names(appeals: list[Appeal]) -> dict[int, str]:
    ids = {a.customer_id for a in appeals}
    rows = await Customer.filter(id__in=ids).values_list("id", "name") if ids else []
    return {int(i): str(n) for i, n in rows}


async def kept_value(key: str) -> str | None:
    """A small value kept across restarts under ``key`` (the pinned feed's message, say)."""
    row = await KeyValue.get_or_none(key=key)
    return row.value if row is not None else None


async def keep_value(key: str, value: str) -> None:
    """Keep ``value`` under ``key``."""
    await KeyValue.update_or_create(key=key, defaults={"value": value})
