"""Domain events: each one is a history row, and subscribers react inside the same transaction."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from desk import appeal_changes, history, outbox
from desk.log_context import about
from models import Appeal, Customer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Something that happened to an appeal or a customer (``appeal.created``, …)."""

    kind: str
    actor: str
    appeal: Appeal | None = None
    customer_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    customer: Customer | None = None  # as the emitter has it, when it has it (spares a read)


Subscriber = Callable[[DomainEvent], Awaitable[None]]

# Inside ``EventBus.batch()``: what subscribers did once for the whole batch, and what they
# read once for it.
_done_once: ContextVar[set[str] | None] = ContextVar("events_done_once", default=None)
_cache: ContextVar[dict[str, Any] | None] = ContextVar("events_batch_cache", default=None)


def batch_cache() -> dict[str, Any] | None:
    """A dict that lives as long as the batch being handled (None outside one): for what a
    subscriber reads once a batch and keeps current itself."""
    return _cache.get()


CUSTOMERS = "events.customers"  # the batch cache's key: the batch's customers by id
MESSAGES = "events.messages"  # and the messages it stored, by id
CONTACTS = "events.contacts"  # the contact points of the customers it created, by customer id
ROUTES = "events.routes"  # (channel, address) of each appeal's last message in it, by appeal


def batch_held(key: str, item_id: int) -> Any:
    """What the batch holds under ``key`` (``CUSTOMERS``, ``MESSAGES``) for ``item_id``, or
    None (outside a batch, or not held)."""
    cache = _cache.get()
    return cache.get(key, {}).get(item_id) if cache is not None else None


def hold_in_batch(key: str, item_id: int, item: Any) -> None:
    """Keep ``item`` for the batch's readers under ``key`` (nothing outside a batch)."""
    cache = _cache.get()
    if cache is not None:
        cache.setdefault(key, {})[item_id] = item


def first_in_batch(key: str) -> bool:
    """Whether a subscriber's once-per-batch work named ``key`` is still to do in this batch
    (it is then counted as done); always True outside a batch."""
    done = _done_once.get()
    if done is None:
        return True
    if key in done:
        return False
    done.add(key)
    return True


class EventBus:
    """Records events in the history and hands them to subscribers (staff topic, notifications).

    Subscribers run inside the caller's transaction and only write rows (outbox, tasks), so an
    event and what it causes commit or roll back together.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._subscribers: list[Subscriber] = []
        self._clock = clock

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Events emitted inside are one batch: their history rows are written together at the
        end, and subscribers do once-per-batch work once (``first_in_batch``). Call inside the
        batch's transaction."""
        token = _done_once.set(set())
        cached = _cache.set({})
        try:
            async with history.batched(), outbox.batched(), appeal_changes.batched():
                yield
        finally:
            _cache.reset(cached)
            _done_once.reset(token)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` for every event from now on."""
        self._subscribers.append(subscriber)

    async def emit(
        self,
        kind: str,
        /,
        *,
        actor: str,
        appeal: Appeal | None = None,
        customer: Customer | None = None,
        **data: Any,
    ) -> DomainEvent:
        """Write the history row and tell every subscriber; call inside the change's transaction."""
        at = self._clock() if self._clock is not None else None
        if customer is None and appeal is not None:  # as the batch has it, when it has it
            customer = batch_held(CUSTOMERS, appeal.customer_id)
        row = await history.record(
            kind, actor=actor, appeal=appeal, customer=customer, at=at, **data
        )
        event = DomainEvent(kind, actor, appeal, row.customer_id, data, customer)
        number, channel = (appeal.number, appeal.channel) if appeal is not None else (None, None)
        with about(appeal=number, channel=channel):  # what subscribers log is about this appeal
            for subscriber in self._subscribers:
                await subscriber(event)
        return event
