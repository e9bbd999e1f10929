"""Changes to the appeals a batch creates, written once when the batch ends.

A new appeal is changed several times while its first message is handled: intake gives it its
number and last message, the SLA clock its due times, the router its category, status and
assignee. Nobody outside the batch's transaction can see the appeal yet, so these changes are
kept on the object and written with one UPDATE when the batch ends, not one each. Inside the
batch, read such an appeal with ``loaded(id)`` or ``by_number`` (the object holds what the row
will).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar

from models import Appeal

# Appeals created in this batch, with the fields changed since their INSERT.
_fresh: ContextVar[dict[int, tuple[Appeal, set[str]]] | None] = ContextVar(
    "fresh_appeals", default=None
)


@asynccontextmanager
async def batched() -> AsyncIterator[None]:
    """Inside, appeals passed to ``created`` keep their changes for one UPDATE at the end."""
    token = _fresh.set({})
    try:
        yield
        await flush()
    finally:
        _fresh.reset(token)


def created(appeal: Appeal) -> None:
    """``appeal`` was inserted in this batch (nothing outside one)."""
    fresh = _fresh.get()
    if fresh is not None:
        fresh[appeal.id] = (appeal, set())


def is_fresh(appeal: Appeal) -> bool:
    """Whether ``appeal`` was created in the batch being handled."""
    fresh = _fresh.get()
    return fresh is not None and appeal.id in fresh


def loaded(appeal_id: int) -> Appeal | None:
    """The batch's own object of an appeal it created (None for any other)."""
    fresh = _fresh.get()
    found = fresh.get(appeal_id) if fresh is not None else None
    return found[0] if found is not None else None


def by_number(number: str) -> Appeal | None:
    """The batch's own object of an appeal it created with this number (its row has none yet:
    the number is written with the batch's other changes)."""
    fresh = _fresh.get() or {}
    return next((a for a, _ in fresh.values() if a.number == number), None)


async def save(appeal: Appeal, fields: Iterable[str]) -> None:
    """Write ``fields`` of ``appeal`` as they are on the object: now, or with the batch's
    other changes to it when the batch created it."""
    fresh = _fresh.get()
    held = fresh.get(appeal.id) if fresh is not None else None
    if held is not None and held[0] is appeal:
        held[1].update(fields)
        return
    await appeal.save(update_fields=list(fields))


async def flush() -> None:
    """Write what the batch's new appeals changed so far: one UPDATE an appeal."""
    fresh = _fresh.get()
    if not fresh:
        return
    for appeal, fields in fresh.values():
        if fields:
            await appeal.save(update_fields=sorted(fields))
            fields.clear()
