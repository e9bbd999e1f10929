"""Domain events: each one is a history row, and subscribers react inside the same transaction."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime
from enum import IntEnum
from typing import Any, cast

from desk.appeals import appeal_changes, history, outbox
from desk.appeals.event_types import DomainEvent
from desk.ops.log_context import about
from models import sql

log = logging.getLogger(__name__)


Subscriber = Callable[[Any], Awaitable[None]]  # takes one event
BatchSubscriber = Callable[[Sequence[Any]], Awaitable[None]]  # takes a batch's events


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


@dataclass(frozen=True, slots=True)
class _Subscription:
    stage: Stage
    order: int  # among subscribers of one stage: as they subscribed
    handler: Subscriber | BatchSubscriber
    kinds: tuple[type[DomainEvent], ...]
    per_batch: bool  # handed the batch's events at its end (a list), else each at once


# Inside ``EventBus.batch()``: the events per-batch subscribers have still to be handed.
_pending: ContextVar[list[DomainEvent] | None] = ContextVar("events_pending", default=None)
_cause: ContextVar[tuple[str, ...]] = ContextVar("events_cause", default=())
MAX_ROUNDS = 10  # per-batch subscribers whose events lead to events again, at most this deep


class EventBus:
    """Records events in the history and hands them to subscribers (staff topic, routing…).

    A subscriber takes each event of its kinds as it is emitted (``subscribe``), or the events
    of a whole batch at its end, once (``subscribe_batch``: the SLA clock computes each appeal's
    due times once, however many of its events the batch held); outside a batch, an event is a
    batch of its own. Subscribers run inside the caller's transaction and only write rows
    (outbox, tasks), so an event and what it causes commit or roll back together.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._subscriptions: list[_Subscription] = []
        self._routes: dict[type[DomainEvent], tuple[_Subscription, ...]] = {}
        self._clock = clock

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Events emitted inside are one batch: their history rows are written together at the
        end, per-batch subscribers get them there, and subscribers do once-per-batch work once
        (``first_in_batch``). Call inside the batch's transaction."""
        token = _done_once.set(set())
        cached = _cache.set({})
        pending = _pending.set([])
        try:
            async with history.batched(), outbox.batched(), appeal_changes.batched():
                yield
                await self._hand_over()
        finally:
            _pending.reset(pending)
            _cache.reset(cached)
            _done_once.reset(token)

    def subscribe(self, stage: Stage, subscriber: Subscriber, *kinds: type[DomainEvent]) -> None:
        """Call ``subscriber`` with every event of ``kinds`` (their subclasses too) as it is
        emitted, in ``stage``'s place among the subscribers."""
        self._add(_Subscription(stage, len(self._subscriptions), subscriber, kinds, False))

    def subscribe_batch(
        self, stage: Stage, subscriber: BatchSubscriber, *kinds: type[DomainEvent]
    ) -> None:
        """Call ``subscriber`` once a batch with its events of ``kinds``, in the order they were
        emitted (at once with one event outside a batch)."""
        self._add(_Subscription(stage, len(self._subscriptions), subscriber, kinds, True))

    def _add(self, subscription: _Subscription) -> None:
        if subscription.kinds:
            self._subscriptions.append(subscription)
            self._subscriptions.sort(key=lambda s: (s.stage, s.order))
            self._routes.clear()

    def _route(self, kind: type[DomainEvent]) -> tuple[_Subscription, ...]:
        route = self._routes.get(kind)
        if route is None:
            route = tuple(s for s in self._subscriptions if issubclass(kind, s.kinds))
            self._routes[kind] = route
        return route

    async def emit(self, event: DomainEvent) -> DomainEvent:
        """Write the event's history row and hand it to its subscribers in their stages' order
        (per-batch ones at the batch's end); call inside the change's transaction."""
        await sql.give_turn()  # a batch emits many: the loop's other work has its turns
        appeal = event.appeal
        if event.customer is None and appeal is not None:
            held = batch_held(CUSTOMERS, appeal.customer_id)  # as the batch has it
            if held is not None:
                event = replace(event, customer=held)
        cause = _cause.get()
        if cause and not event.cause:
            event = replace(event, cause=cause)
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
        if not route:
            return event
        pending = _pending.get()
        number, channel = (appeal.number, appeal.channel) if appeal is not None else (None, None)
        with about(appeal=number, channel=channel):  # what subscribers log is about it
            for subscription in route:
                if not subscription.per_batch:
                    await cast(Subscriber, subscription.handler)(event)
                elif pending is None:
                    await cast(BatchSubscriber, subscription.handler)([event])
        if pending is not None and any(s.per_batch for s in route):
            pending.append(event)
        return event

    async def _hand_over(self) -> None:
        """Give each per-batch subscriber, in stage order, the batch's events it has not seen:
        what one emits meanwhile reaches the later stages in the same round and the earlier
        ones (and itself) in the next."""
        log = _pending.get()
        assert log is not None
        batch_subscriptions = [s for s in self._subscriptions if s.per_batch]
        seen = dict.fromkeys(range(len(batch_subscriptions)), 0)
        for _ in range(MAX_ROUNDS):
            if all(n == len(log) for n in seen.values()):
                return
            for index, subscription in enumerate(batch_subscriptions):
                new, seen[index] = log[seen[index] :], len(log)
                mine = [e for e in new if isinstance(e, subscription.kinds)]
                if mine:
                    await cast(BatchSubscriber, subscription.handler)(mine)
        raise RuntimeError(f"events still leading to events after {MAX_ROUNDS} rounds")

    @staticmethod
    @contextmanager
    def caused_by(cause: tuple[str, ...]) -> Iterator[None]:
        """Events emitted inside carry ``cause`` (the automation rules whose actions made them,
        so a rule does not fire again from its own actions, however late it hears them)."""
        token = _cause.set(cause)
        try:
            yield
        finally:
            _cause.reset(token)
