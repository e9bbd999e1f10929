"""Domain events: each one is a history row, and subscribers react inside the same transaction."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime
from enum import IntEnum
from typing import Any

from desk import appeal_changes, history, outbox
from desk.event_types import DomainEvent
from desk.log_context import about

log = logging.getLogger(__name__)


Subscriber = Callable[[Any], Awaitable[None]]


class Stage(IntEnum):
    """The order in which subscribers see an event, stated once.

    The staff group first: a new appeal's topic and card and the customer's message are queued
    as intake stores them, and what the router then changes redraws the card once (the router
    first made the 10,000-message polling benchmark a third slower: 322 and 239 msg/s against
    455 in the same hour). Then the router (category, priority, owner), the due times, the
    automation rules (they see the routed, timed appeal) and the report columns last.
    """

    STAFF = 1
    TASKS = 2
    ROUTING = 3
    SLA = 4
    AUTOMATION = 5
    REPORTS = 6


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
        self._subscribers: list[tuple[Stage, int, Subscriber, tuple[type[DomainEvent], ...]]] = []
        self._routes: dict[type[DomainEvent], tuple[Subscriber, ...]] = {}
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

    def subscribe(self, stage: Stage, subscriber: Subscriber, *kinds: type[DomainEvent]) -> None:
        """Call ``subscriber`` with every event of ``kinds`` (their subclasses too) from now on,
        in ``stage``'s place among the subscribers."""
        if not kinds:
            return
        self._subscribers.append((stage, len(self._subscribers), subscriber, kinds))
        self._subscribers.sort(key=lambda s: (s[0], s[1]))
        self._routes.clear()

    def _route(self, kind: type[DomainEvent]) -> tuple[Subscriber, ...]:
        route = self._routes.get(kind)
        if route is None:
            route = tuple(s for _, _, s, kinds in self._subscribers if issubclass(kind, kinds))
            self._routes[kind] = route
        return route

    async def emit(self, event: DomainEvent) -> DomainEvent:
        """Write the event's history row and hand it to its subscribers in their stages' order;
        call inside the change's transaction."""
        appeal = event.appeal
        if event.customer is None and appeal is not None:
            held = batch_held(CUSTOMERS, appeal.customer_id)  # as the batch has it
            if held is not None:
                event = replace(event, customer=held)
        at = self._clock() if self._clock is not None else None
        await history.record(
            event.KIND,
            actor=event.actor,
            appeal=appeal,
            customer=event.customer,
            at=at,
            **event.data(),
        )
        route = self._route(type(event))
        if route:
            number, channel = (
                (appeal.number, appeal.channel) if appeal is not None else (None, None)
            )
            with about(appeal=number, channel=channel):  # what subscribers log is about it
                for subscriber in route:
                    await subscriber(event)
        return event
