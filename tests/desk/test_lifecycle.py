"""The appeal lifecycle on a real database: threading, idempotency, transitions, history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from channels.base import ChannelKind, ContactHint, InboundMessage
from desk.appeals.events import Stage
from desk.appeals.lifecycle import Lifecycle
from desk.appeals.outbox import Outbox
from desk.appeals.triage import Triage
from desk.config.errors import InvalidInput, InvalidTransition
from desk.config.settings import Settings
from desk.decide.sla import RECOMPUTE_ON, SlaClock
from models import Appeal, AppealStatus, ContactPoint, Customer, Event, Message, OutboxItem, db


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def lifecycle(db_url: str, clock: Clock) -> AsyncIterator[Lifecycle]:
    await db.connect(db_url)
    settings = Settings(
        database_url=db_url, lifecycle={"reopen_window_hours": 72, "max_text_chars": 1000}
    )
    life = Lifecycle(settings, Outbox(clock), clock)
    sla = SlaClock(settings, Triage(life, settings), life.events, clock)
    life.events.subscribe_batch(Stage.SLA, sla.on_batch, *RECOMPUTE_ON)
    yield life
    await db.disconnect()


def tg(text: str, mid: int, user: str = "500", **kw: object) -> InboundMessage:
    return InboundMessage(
        channel=ChannelKind.TELEGRAM,
        external_id=f"{user}:{mid}",
        address=user,
        text=text,
        sender_name="Ирина",
        **kw,
    )  # type: ignore[arg-type]


async def kinds(appeal_id: int) -> list[str]:
    return [e.kind for e in await Event.filter(appeal_id=appeal_id).order_by("id")]


async def test_first_message_registers_appeal_with_number_and_history(
    lifecycle: Lifecycle, clock: Clock
) -> None:
    result = await lifecycle.ingest(tg("Хочу вернуть заказ", 1))
    appeal = await Appeal.get(id=result.appeal_id)
    assert result.created and appeal.number == "A-000001"
    assert appeal.status is AppealStatus.NEW
    assert appeal.subject == "Хочу вернуть заказ"
    # «answer in 2 hours»: Monday 12:00 in Moscow, two working hours later
    assert appeal.first_response_due == clock.now + timedelta(hours=2)
    assert await kinds(appeal.id) == ["appeal.created", "message.received"]
    assert await Event.filter(kind="customer.created", customer_id=appeal.customer_id).exists()
    point = await ContactPoint.get(channel="telegram", address="500")
    assert (await Customer.get(id=point.customer_id)).name == "Ирина"


async def test_next_message_of_same_customer_joins_the_open_appeal(lifecycle: Lifecycle) -> None:
    first = await lifecycle.ingest(tg("Здравствуйте", 1))
    second = await lifecycle.ingest(tg("Заказ 123", 2))
    assert second.appeal_id == first.appeal_id and not second.created
    assert await Message.filter(appeal_id=first.appeal_id).count() == 2


async def test_same_external_id_is_stored_once(lifecycle: Lifecycle) -> None:
    first = await lifecycle.ingest(tg("Привет", 7))
    again = await lifecycle.ingest(tg("Привет", 7))
    assert again.duplicate and again.message_id == first.message_id
    assert await Message.all().count() == 1
    assert await Appeal.all().count() == 1


async def test_other_customer_gets_own_appeal(lifecycle: Lifecycle) -> None:
    a = await lifecycle.ingest(tg("one", 1, user="500"))
    b = await lifecycle.ingest(tg("two", 1, user="501"))
    assert a.appeal_id != b.appeal_id and b.number == "A-000002"


async def test_message_inside_reopen_window_reopens_resolved_appeal(
    lifecycle: Lifecycle, clock: Clock
) -> None:
    first = await lifecycle.ingest(tg("Не работает", 1))
    await lifecycle.transition(first.number, AppealStatus.RESOLVED, actor="agent")
    clock.now += timedelta(hours=71)
    again = await lifecycle.ingest(tg("Опять не работает", 2))
    assert again.reopened and again.appeal_id == first.appeal_id
    appeal = await Appeal.get(id=first.appeal_id)
    assert appeal.status is AppealStatus.OPEN and appeal.resolved_at is None
    assert "appeal.reopened" in await kinds(appeal.id)


async def test_message_after_reopen_window_starts_new_appeal(
    lifecycle: Lifecycle, clock: Clock
) -> None:
    first = await lifecycle.ingest(tg("Вопрос", 1))
    await lifecycle.transition(first.number, AppealStatus.RESOLVED, actor="agent")
    clock.now += timedelta(hours=73)
    later = await lifecycle.ingest(tg("Новый вопрос", 2))
    assert later.created and later.appeal_id != first.appeal_id
    assert (await Appeal.get(id=first.appeal_id)).status is AppealStatus.RESOLVED


async def test_closed_appeal_is_never_reopened_by_customer(lifecycle: Lifecycle) -> None:
    first = await lifecycle.ingest(tg("Вопрос", 1))
    await lifecycle.transition(first.number, AppealStatus.CLOSED, actor="agent")
    later = await lifecycle.ingest(tg("Ещё", 2))
    assert later.created


async def test_invalid_transition_is_refused_and_changes_nothing(lifecycle: Lifecycle) -> None:
    first = await lifecycle.ingest(tg("Вопрос", 1))
    await lifecycle.transition(first.number, AppealStatus.CLOSED, actor="agent")
    with pytest.raises(InvalidTransition, match="closed: it cannot become open"):
        await lifecycle.transition(first.number, AppealStatus.OPEN, actor="agent")
    assert (await Appeal.get(id=first.appeal_id)).status is AppealStatus.CLOSED


async def test_every_status_change_is_in_history_with_actor(lifecycle: Lifecycle) -> None:
    first = await lifecycle.ingest(tg("Вопрос", 1))
    await lifecycle.transition(first.number, AppealStatus.OPEN, actor="api:anna")
    await lifecycle.transition(
        first.number, AppealStatus.PENDING, actor="api:anna", reason="ждём фото"
    )
    changes = await Event.filter(appeal_id=first.appeal_id, kind="appeal.status_changed").order_by(
        "id"
    )
    assert [(e.data["before"], e.data["after"], e.actor) for e in changes] == [
        ("new", "open", "api:anna"),
        ("open", "pending", "api:anna"),
    ]
    assert changes[1].data["reason"] == "ждём фото"


async def test_shared_email_links_web_and_email_contacts_to_one_customer(
    lifecycle: Lifecycle,
) -> None:
    web = InboundMessage(
        channel=ChannelKind.WEB,
        external_id="w-1",
        address="a@example.com",
        text="С сайта",
        sender_name="Анна",
        new_appeal=True,
        contacts=(ContactHint("email", "a@example.com"), ContactHint("phone", "+79990001122")),
    )
    by_phone = InboundMessage(
        channel=ChannelKind.WEB,
        external_id="w-2",
        address="+79990001122",
        text="Снова",
        sender_name="Анна",
        new_appeal=True,
        contacts=(ContactHint("phone", "+79990001122"),),
    )
    a = await lifecycle.ingest(web)
    b = await lifecycle.ingest(by_phone)
    assert a.appeal_id != b.appeal_id  # asked for a new appeal explicitly
    assert await Customer.all().count() == 1


async def test_staff_reply_is_queued_in_outbox_and_opens_new_appeal(
    lifecycle: Lifecycle, clock: Clock
) -> None:
    first = await lifecycle.ingest(tg("Вопрос", 1))
    clock.now += timedelta(minutes=5)
    message = await lifecycle.reply(first.number, "Ответ", actor="Ирина")
    item = await OutboxItem.get(message_id=message.id)
    assert (item.channel, item.address, item.payload["text"]) == ("telegram", "500", "Ответ")
    appeal = await Appeal.get(id=first.appeal_id)
    assert appeal.status is AppealStatus.OPEN
    assert appeal.first_response_at == clock.now


async def test_note_is_never_queued_for_the_customer(lifecycle: Lifecycle) -> None:
    first = await lifecycle.ingest(tg("Вопрос", 1))
    await lifecycle.note(first.number, "внутреннее", actor="Ирина")
    assert await OutboxItem.all().count() == 0


async def test_oversized_text_is_refused_with_clear_error(lifecycle: Lifecycle) -> None:
    with pytest.raises(InvalidInput, match="over the limit of 1000"):
        await lifecycle.ingest(tg("x" * 1001, 1))
    assert await Message.all().count() == 0


async def test_concurrent_first_messages_of_one_customer_make_one_appeal(
    lifecycle: Lifecycle,
) -> None:
    import asyncio

    results = await asyncio.gather(*(lifecycle.ingest(tg(f"часть {i}", i)) for i in range(8)))
    assert len({r.appeal_id for r in results}) == 1
    assert await Customer.all().count() == 1
    assert await ContactPoint.all().count() == 1
    assert await Message.all().count() == 8
