"""The event bus: typed events to their subscribers, each as it happens or once a batch, in the
order ``Stage`` states; every event a history row."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
from tortoise.transactions import in_transaction

from desk.appeals.event_types import (
    EVENT_TYPES,
    CustomerLinked,
    CustomerStateChanged,
    DomainEvent,
    TaskReason,
)
from desk.appeals.events import EventBus, Stage
from models import Event, db

Heard = list[tuple[str, list[str]]]


@pytest.fixture
async def bus(db_url: str) -> AsyncIterator[EventBus]:
    await db.connect(db_url)
    yield EventBus()
    await db.disconnect()


def linked(channel: str) -> CustomerLinked:
    return CustomerLinked(actor="customer", channel=channel)


def listen(bus: EventBus, heard: Heard) -> None:
    """Three subscribers: the staff group as events happen, the SLA clock and the rules once a
    batch; the SLA clock answers a linked VK chat with an event the rules hear."""

    async def staff(event: DomainEvent) -> None:
        heard.append(("staff", [event.KIND]))

    async def sla(events: Sequence[DomainEvent]) -> None:
        heard.append(("sla", [e.KIND for e in events]))
        if any(isinstance(e, CustomerLinked) and e.channel == "vk" for e in events):
            await bus.emit(TaskReason(actor="sla", task_id=1, reason="later"))

    async def rules(events: Sequence[DomainEvent]) -> None:
        heard.append(("rules", [e.KIND for e in events]))

    # Subscribed out of order on purpose: the stages decide.
    bus.subscribe_batch(Stage.AUTOMATION, rules, CustomerLinked, TaskReason)
    bus.subscribe_batch(Stage.SLA, sla, CustomerLinked, TaskReason)
    bus.subscribe(Stage.STAFF, staff, CustomerLinked)


async def test_a_batch_is_heard_once_at_its_end_in_stage_order(bus: EventBus) -> None:
    heard: Heard = []
    listen(bus, heard)
    async with in_transaction(), bus.batch():
        await bus.emit(linked("telegram"))
        await bus.emit(
            CustomerStateChanged(actor="x", field="warmth", before="hot", after="warm", reason="")
        )
        await bus.emit(linked("vk"))
        assert heard == [("staff", ["customer.linked"]), ("staff", ["customer.linked"])]
    assert heard[2:] == [
        ("sla", ["customer.linked", "customer.linked"]),
        # What the SLA clock emitted reaches the later stage in the same round…
        ("rules", ["customer.linked", "customer.linked", "task.reason"]),
        # … and the SLA clock itself in the next.
        ("sla", ["task.reason"]),
    ]
    kinds = [e.kind for e in await Event.all().order_by("id")]
    assert kinds == ["customer.linked", "customer.state_changed", "customer.linked", "task.reason"]


async def test_outside_a_batch_an_event_is_a_batch_of_its_own(bus: EventBus) -> None:
    heard: Heard = []
    listen(bus, heard)
    async with in_transaction():
        await bus.emit(linked("telegram"))
    assert heard == [
        ("staff", ["customer.linked"]),
        ("sla", ["customer.linked"]),
        ("rules", ["customer.linked"]),
    ]


async def test_an_event_carries_the_rules_that_caused_it(bus: EventBus) -> None:
    async with in_transaction():
        with EventBus.caused_by(("first", "second")):
            event = await bus.emit(linked("vk"))
        plain = await bus.emit(linked("telegram"))
    assert event.cause == ("first", "second") and plain.cause == ()
    stored = (
        await Event.filter(kind="customer.linked").order_by("id").values_list("data", flat=True)
    )
    assert list(stored) == [{"channel": "vk"}, {"channel": "telegram"}]  # not in the history


def test_every_kind_is_one_type_and_its_data_is_its_own_fields() -> None:
    assert len(EVENT_TYPES) == len(set(EVENT_TYPES.values()))
    for kind, cls in EVENT_TYPES.items():
        assert kind == cls.KIND
    event = TaskReason(actor="Ирина", task_id=7, reason="дорого")
    assert event.data() == {"task_id": 7, "reason": "дорого"}
    with pytest.raises(AttributeError):
        event.reason = "другое"  # type: ignore[misc]
